package h2

import (
	"bytes"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"
)

// scriptedConn is a connection whose server side is a fixed byte string: it answers every read from
// it, in pieces of at most chunk bytes, and ignores every write.
type scriptedConn struct {
	net.Conn // nil: methods not defined here are not called
	answer   *bytes.Reader
	chunk    int
	written  int
	sent     []byte // what the client wrote
}

func (c *scriptedConn) Read(p []byte) (int, error) {
	if c.chunk > 0 && len(p) > c.chunk {
		p = p[:c.chunk]
	}
	return c.answer.Read(p)
}
func (c *scriptedConn) Write(p []byte) (int, error) {
	c.written += len(p)
	c.sent = append(c.sent, p...)
	return len(p), nil
}
func (c *scriptedConn) SetReadDeadline(time.Time) error { return nil }

// wellFormedAnswer is a well-formed answer: SETTINGS, PING, headers, a message split in two DATA frames
// (one padded), trailers split into HEADERS and CONTINUATION.
func wellFormedAnswer() []byte {
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	field := func(name, value string) { _ = enc.WriteField(hpack.HeaderField{Name: name, Value: value}) }
	var out []byte
	out = appendFrame(out, frameSettings, 0, 0, []byte{0, 4, 0, 1, 0, 0})
	out = appendFrame(out, framePing, 0, 0, make([]byte, 8))
	field(":status", "200")
	field("content-type", "application/grpc")
	out = appendFrame(out, frameHeaders, flagEndHeaders, 1, block.Bytes())
	out = appendFrame(out, frameData, flagPadded, 1, []byte{2, 0, 0, 0, 0, 0, 0})
	out = appendFrame(out, frameData, 0, 1, []byte{2, 0x08, 0x01})
	block.Reset()
	field("grpc-status", "0")
	field("grpc-message", "")
	trailers := bytes.Clone(block.Bytes())
	out = appendFrame(out, frameHeaders, flagEndStream, 1, trailers[:2])
	out = appendFrame(out, frameContinuation, flagEndHeaders, 1, trailers[2:])
	return out
}

func TestReadResponse(t *testing.T) {
	for _, chunk := range []int{0, 1, 7} {
		conn := &scriptedConn{answer: bytes.NewReader(wellFormedAnswer()), chunk: chunk}
		resp, err := NewClient(conn).ReadResponse(100)
		if err != nil {
			t.Fatalf("chunk %d: %v", chunk, err)
		}
		if !resp.EndStream || resp.Truncated || Get(resp.Header, ":status") != "200" || Get(resp.Trailer, "grpc-status") != "0" {
			t.Errorf("chunk %d: %+v", chunk, resp)
		}
		if want := []byte{0, 0, 0, 0, 2, 0x08, 0x01}; !bytes.Equal(resp.Body, want) {
			t.Errorf("chunk %d: body % x, want % x", chunk, resp.Body, want)
		}
	}
}

func TestWriteRequestSplitsFrames(t *testing.T) {
	conn := &scriptedConn{answer: bytes.NewReader(nil)}
	long := make([]byte, 40000)
	if err := NewClient(conn).WriteRequest([]hpack.HeaderField{{Name: "x", Value: string(long[:20000])}}, long); err != nil {
		t.Fatal(err)
	}
	// preface, SETTINGS, HEADERS + CONTINUATION (20000-odd bytes), DATA ×3 (40000 bytes)
	if want := len(preface) + 9 + 18 + 2*9 + 20000 + 3 + 3*9 + 40000; conn.written < want || conn.written > want+8 {
		t.Errorf("wrote %d bytes, want about %d", conn.written, want)
	}
	if err := NewClient(conn).WriteRequest(nil, make([]byte, InitialSendWindow+1)); err == nil {
		t.Error("a body over the initial window was written")
	}
}

// FuzzReadResponse feeds the frame reader arbitrary answers: it must not panic, must return within
// the bytes it is given, and must never keep more body than asked.
func FuzzReadResponse(f *testing.F) {
	f.Add(wellFormedAnswer(), uint8(0))
	f.Add(wellFormedAnswer()[:40], uint8(3))
	f.Add([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"), uint8(0))
	f.Add([]byte{0x15, 3, 3, 0, 2, 2, 70}, uint8(0))
	f.Add(appendFrame(appendFrame(nil, frameSettings, 0, 0, nil), frameGoAway, 0, 0, []byte{0, 0, 0, 0, 0, 0, 0, 11, 'x'}), uint8(1))
	f.Add(appendFrame(appendFrame(nil, frameSettings, 0, 0, nil), frameRSTStream, 0, 1, []byte{0, 0, 0, 7}), uint8(0))
	f.Fuzz(func(t *testing.T, answer []byte, chunk uint8) {
		const maxBody = 100
		conn := &scriptedConn{answer: bytes.NewReader(answer), chunk: int(chunk)}
		resp, err := NewClient(conn).ReadResponse(maxBody)
		if resp == nil {
			t.Fatal("no response")
		}
		if len(resp.Body) > maxBody {
			t.Fatalf("kept %d bytes of body", len(resp.Body))
		}
		if err == nil && (resp.Header == nil || !resp.EndStream && !resp.Truncated && Get(resp.Header, ":status") == "200") {
			t.Fatalf("returned an unfinished answer without an error: %+v", resp)
		}
	})
}

// answerOn is a whole, healthy answer on stream, after settings (nil: none).
func answerOn(stream uint32, settings []byte) []byte {
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	var out []byte
	if settings != nil {
		out = appendFrame(out, frameSettings, 0, 0, settings)
	}
	_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	out = appendFrame(out, frameHeaders, flagEndHeaders, stream, block.Bytes())
	return appendFrame(out, frameData, flagEndStream, stream, []byte{0, 0, 0, 0, 0})
}

func TestClientCarriesRequestsOneAfterAnother(t *testing.T) {
	conn := &scriptedConn{answer: bytes.NewReader(append(answerOn(1, []byte{}), answerOn(3, nil)...))}
	client := NewClient(conn)
	for _, stream := range []uint32{1, 3} {
		if err := client.WriteRequest([]hpack.HeaderField{{Name: ":path", Value: "/"}}, []byte{0, 0, 0, 0, 0}); err != nil {
			t.Fatal(err)
		}
		resp, err := client.ReadResponse(100)
		if err != nil || !resp.EndStream {
			t.Fatalf("stream %d: %v, %+v", stream, err, resp)
		}
		if client.stream != stream || !client.Reusable(5) || client.Unprocessed() {
			t.Errorf("stream %d: on stream %d, reusable %v, unprocessed %v", stream, client.stream, client.Reusable(5), client.Unprocessed())
		}
	}
}

func TestClientNotReusable(t *testing.T) {
	goAway := appendFrame(nil, frameGoAway, 0, 0, []byte{0, 0, 0, 1, 0, 0, 0, 0})
	tests := []struct {
		name   string
		answer []byte
	}{
		{"no streams allowed", answerOn(1, []byte{0, settingMaxConcurrentStreams, 0, 0, 0, 0})},
		{"GOAWAY", append(append(appendFrame(nil, frameSettings, 0, 0, nil), goAway...), answerOn(1, nil)...)},
		{"no send window for the next body", answerOn(1, []byte{0, settingInitialWindowSize, 0, 0, 0, 4})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := NewClient(&scriptedConn{answer: bytes.NewReader(tt.answer)})
			if err := client.WriteRequest(nil, []byte{0, 0, 0, 0, 0}); err != nil {
				t.Fatal(err)
			}
			if _, err := client.ReadResponse(100); err != nil {
				t.Fatal(err)
			}
			if client.Reusable(5) {
				t.Error("reusable")
			}
			if err := client.WriteRequest(nil, []byte{0, 0, 0, 0, 0}); err == nil {
				t.Error("a second request was written")
			}
		})
	}
}
