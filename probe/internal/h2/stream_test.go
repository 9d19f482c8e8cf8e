package h2

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2/hpack"
)

// frameRecorder is a connection that keeps a copy of every byte the client writes, to tell afterwards
// which frames it sent.
type frameRecorder struct {
	net.Conn
	mu      sync.Mutex
	written []byte
}

func (r *frameRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.written = append(r.written, p...)
	r.mu.Unlock()
	return r.Conn.Write(p)
}

// sentFrames counts the frames the client wrote by type: "PING ACK", "SETTINGS", and so on; for
// "WINDOW_UPDATE 0" (the connection's) and "WINDOW_UPDATE 1" (stream 1's), the bytes given back.
func (r *frameRecorder) sentFrames(t *testing.T) map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out, ok := bytes.CutPrefix(r.written, []byte(preface))
	require.True(t, ok, "the client starts with the preface")
	names := map[byte]string{frameSettings: "SETTINGS", frameHeaders: "HEADERS", frameData: "DATA",
		framePing: "PING", frameWindowUpdate: "WINDOW_UPDATE", frameRSTStream: "RST_STREAM"}
	counts := map[string]int{}
	for len(out) > 0 {
		require.GreaterOrEqual(t, len(out), frameHeaderLen)
		length := int(out[0])<<16 | int(out[1])<<8 | int(out[2])
		require.GreaterOrEqual(t, len(out), frameHeaderLen+length)
		name := names[out[3]]
		switch out[3] {
		case framePing:
			if out[4]&flagAck != 0 {
				name += " ACK"
			}
		case frameWindowUpdate:
			name += fmt.Sprintf(" %d", binary.BigEndian.Uint32(out[5:])&0x7fffffff)
		}
		increment := 1
		if out[3] == frameWindowUpdate && length == 4 {
			increment = int(binary.BigEndian.Uint32(out[frameHeaderLen:]) & 0x7fffffff)
		}
		counts[name] += increment
		out = out[frameHeaderLen+length:]
	}
	return counts
}

// TestReadMoreKeepsAStreamFlowing: a real HTTP/2 server (net/http's, cleartext) streams far more than
// our stream's window (16 KiB) and the connection's (64 KiB) in messages of a fixed size, and pauses
// long enough to PING us, closing the connection when no answer comes: ReadMore reads every message
// in order, because it gives the windows back and answers the PING.
func TestReadMoreKeepsAStreamFlowing(t *testing.T) {
	const (
		messageBytes = 1000
		messages     = 300 // 300,000 bytes: over 18 stream windows
		pauseAfter   = 150
	)
	message := func(i int) []byte {
		m := bytes.Repeat([]byte{byte(i)}, messageBytes)
		binary.BigEndian.PutUint32(m, uint32(i))
		return m
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			for i := range messages {
				if i == pauseAfter {
					time.Sleep(400 * time.Millisecond) // silence on the connection: the server PINGs us
				}
				if _, err := w.Write(message(i)); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		}),
		// A PING after 100 ms without a frame from us; no answer within 250 ms closes the connection.
		HTTP2: &http.HTTP2Config{SendPingTimeout: 100 * time.Millisecond, PingTimeout: 250 * time.Millisecond},
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Close() })

	tcp, err := net.Dial("tcp", lis.Addr().String())
	require.NoError(t, err)
	defer tcp.Close()
	require.NoError(t, tcp.SetDeadline(time.Now().Add(5*time.Second)))
	conn := &frameRecorder{Conn: tcp}
	client := NewClient(conn)
	require.NoError(t, client.WriteRequest([]hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: "/stream"}, {Name: ":authority", Value: "localhost"},
	}, nil))

	enough := func(body []byte) bool { return len(body) >= messageBytes }
	resp, err := client.ReadResponseUntil(2*messageBytes, enough)
	require.NoError(t, err)
	require.Equal(t, "200", Get(resp.Header, ":status"))
	for i := range messages {
		require.GreaterOrEqual(t, len(resp.Body), messageBytes, "message %d", i)
		require.Equal(t, message(i), resp.Body[:messageBytes], "message %d", i)
		require.NoError(t, client.ReadMore(resp, messageBytes, 2*messageBytes, enough), "after message %d", i)
	}
	assert.True(t, resp.EndStream, "the stream ended after the last message")
	assert.Empty(t, resp.Body)
	assert.False(t, resp.Truncated)

	sent := conn.sentFrames(t)
	assert.GreaterOrEqual(t, sent["PING ACK"], 1, "the server's PING was answered: %v", sent)
	// The windows go back in steps: the last one may still wait for the next read.
	assert.GreaterOrEqual(t, sent["WINDOW_UPDATE 1"], messages*messageBytes-streamReceiveWindow, "the stream's window went back: %v", sent)
	assert.GreaterOrEqual(t, sent["WINDOW_UPDATE 0"], messages*messageBytes-2*windowUpdateBytes, "the connection's window went back: %v", sent)
}

// TestReadMoreStopsAtEachMessage: messages that arrive together in one DATA frame are handed out one
// at a time, the next from what is already read, without another read; the stream's window goes back
// only once the caller moves on, and ReadMore refuses a stream that ended.
func TestReadMoreStopsAtEachMessage(t *testing.T) {
	var block bytes.Buffer
	_ = hpack.NewEncoder(&block).WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	answer := appendFrame(nil, frameSettings, 0, 0, nil)
	answer = appendFrame(answer, frameHeaders, flagEndHeaders, 1, block.Bytes())
	answer = appendFrame(answer, frameData, 0, 1, []byte("aaabbbc"))
	answer = appendFrame(answer, frameData, flagPadded, 1, []byte{3, 'c', 'c', 0, 0, 0})
	answer = appendFrame(answer, frameData, flagEndStream, 1, nil)
	conn := &scriptedConn{answer: bytes.NewReader(answer)}
	client := NewClient(conn)
	require.NoError(t, client.WriteRequest(nil, nil))
	enough := func(body []byte) bool { return len(body) >= 3 }

	resp, err := client.ReadResponseUntil(100, enough)
	require.NoError(t, err)
	assert.Equal(t, "aaabbbc", string(resp.Body))
	streamUpdate := appendFrame(nil, frameWindowUpdate, 0, 1, []byte{0, 0, 0, 7})
	assert.NotContains(t, string(client.pending), string(streamUpdate), "nothing goes back before the caller moves on")
	written := conn.written

	first := resp.Body[:3] // a caller keeps what it decoded from a message, as the Workload API's does
	require.NoError(t, client.ReadMore(resp, 3, 100, enough))
	assert.Equal(t, "bbbc", string(resp.Body), "the next message was already read")
	assert.Equal(t, written, conn.written, "no read, so nothing written yet")
	assert.True(t, bytes.HasSuffix(client.pending, streamUpdate), "the window of what was read goes back at the next read")

	second := resp.Body[:3]
	require.NoError(t, client.ReadMore(resp, 3, 100, enough))
	assert.Equal(t, "ccc", string(resp.Body), "the padding is no part of the body")
	assert.Equal(t, "aaa", string(first), "the messages handed out are not written over")
	assert.Equal(t, "bbb", string(second), "the messages handed out are not written over")
	require.NoError(t, client.ReadMore(resp, 3, 100, enough))
	assert.True(t, resp.EndStream)
	assert.Empty(t, resp.Body)
	assert.Error(t, client.ReadMore(resp, 0, 100, enough), "the stream ended")
}

// TestReadMoreEndsAtGOAWAY: a server that shuts down gracefully (net/http's Shutdown) says GOAWAY and
// waits for its streams to end; ReadMore ends the stream kept open at once, rather than when the
// server gives up waiting and closes the connection.
func TestReadMoreEndsAtGOAWAY(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("first"))
		w.(http.Flusher).Flush()
		<-r.Context().Done() // a stream that never ends by itself
	})}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Close() })

	conn, err := net.Dial("tcp", lis.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	client := NewClient(conn)
	require.NoError(t, client.WriteRequest([]hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: "/"}, {Name: ":authority", Value: "localhost"},
	}, nil))
	enough := func(body []byte) bool { return len(body) >= 5 }
	resp, err := client.ReadResponseUntil(100, enough)
	require.NoError(t, err)
	require.Equal(t, "first", string(resp.Body))

	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Shutdown(t.Context()) }()
	start := time.Now()
	err = client.ReadMore(resp, 5, 100, enough)
	require.Error(t, err)
	assert.Equal(t, "the server is closing the connection: GOAWAY NO_ERROR", err.Error())
	assert.Less(t, time.Since(start), 500*time.Millisecond, "at the GOAWAY, not when the server gives up")
	conn.Close()
	assert.NoError(t, <-shutdown, "the server's shutdown completes once we are gone")
}
