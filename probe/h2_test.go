package probe

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
}

func (c *scriptedConn) Read(p []byte) (int, error) {
	if c.chunk > 0 && len(p) > c.chunk {
		p = p[:c.chunk]
	}
	return c.answer.Read(p)
}
func (c *scriptedConn) Write(p []byte) (int, error)     { c.written += len(p); return len(p), nil }
func (c *scriptedConn) SetReadDeadline(time.Time) error { return nil }

// h2Answer is a well-formed answer: SETTINGS, PING, headers, a message split in two DATA frames
// (one padded), trailers split into HEADERS and CONTINUATION.
func h2Answer() []byte {
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	field := func(name, value string) { _ = enc.WriteField(hpack.HeaderField{Name: name, Value: value}) }
	var out []byte
	out = appendH2Frame(out, h2Settings, 0, 0, []byte{0, 4, 0, 1, 0, 0})
	out = appendH2Frame(out, h2Ping, 0, 0, make([]byte, 8))
	field(":status", "200")
	field("content-type", "application/grpc")
	out = appendH2Frame(out, h2Headers, h2FlagEndHeaders, 1, block.Bytes())
	out = appendH2Frame(out, h2Data, h2FlagPadded, 1, []byte{2, 0, 0, 0, 0, 0, 0})
	out = appendH2Frame(out, h2Data, 0, 1, []byte{2, 0x08, 0x01})
	block.Reset()
	field("grpc-status", "0")
	field("grpc-message", "")
	trailers := bytes.Clone(block.Bytes())
	out = appendH2Frame(out, h2Headers, h2FlagEndStream, 1, trailers[:2])
	out = appendH2Frame(out, h2Continuation, h2FlagEndHeaders, 1, trailers[2:])
	return out
}

func TestH2ReadResponse(t *testing.T) {
	for _, chunk := range []int{0, 1, 7} {
		conn := &scriptedConn{answer: bytes.NewReader(h2Answer()), chunk: chunk}
		resp, err := newH2Client(conn).readResponse(maxGRPCMessageBytes + 5)
		if err != nil {
			t.Fatalf("chunk %d: %v", chunk, err)
		}
		if !resp.endStream || resp.truncated || h2Get(resp.header, ":status") != "200" || h2Get(resp.trailer, "grpc-status") != "0" {
			t.Errorf("chunk %d: %+v", chunk, resp)
		}
		if status, err := DecodeHealthCheckResponse(resp.body); err != nil || status != StatusServing {
			t.Errorf("chunk %d: body % x: %v, %v", chunk, resp.body, status, err)
		}
	}
}

func TestH2WriteRequestSplitsFrames(t *testing.T) {
	conn := &scriptedConn{answer: bytes.NewReader(nil)}
	long := make([]byte, 40000)
	if err := newH2Client(conn).writeRequest([]hpack.HeaderField{{Name: "x", Value: string(long[:20000])}}, long); err != nil {
		t.Fatal(err)
	}
	// preface, SETTINGS, HEADERS + CONTINUATION (20000-odd bytes), DATA ×3 (40000 bytes)
	if want := len(h2Preface) + 9 + 18 + 2*9 + 20000 + 3 + 3*9 + 40000; conn.written < want || conn.written > want+8 {
		t.Errorf("wrote %d bytes, want about %d", conn.written, want)
	}
	if err := newH2Client(conn).writeRequest(nil, make([]byte, h2InitialWindow+1)); err == nil {
		t.Error("a body over the initial window was written")
	}
}

// FuzzH2ReadResponse feeds the frame reader arbitrary answers: it must not panic, must return within
// the bytes it is given, and must never keep more body than asked.
func FuzzH2ReadResponse(f *testing.F) {
	f.Add(h2Answer(), uint8(0))
	f.Add(h2Answer()[:40], uint8(3))
	f.Add([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"), uint8(0))
	f.Add([]byte{0x15, 3, 3, 0, 2, 2, 70}, uint8(0))
	f.Add(appendH2Frame(appendH2Frame(nil, h2Settings, 0, 0, nil), h2GoAway, 0, 0, []byte{0, 0, 0, 0, 0, 0, 0, 11, 'x'}), uint8(1))
	f.Add(appendH2Frame(appendH2Frame(nil, h2Settings, 0, 0, nil), h2RSTStream, 0, 1, []byte{0, 0, 0, 7}), uint8(0))
	f.Fuzz(func(t *testing.T, answer []byte, chunk uint8) {
		const maxBody = 100
		conn := &scriptedConn{answer: bytes.NewReader(answer), chunk: int(chunk)}
		resp, err := newH2Client(conn).readResponse(maxBody)
		if resp == nil {
			t.Fatal("no response")
		}
		if len(resp.body) > maxBody {
			t.Fatalf("kept %d bytes of body", len(resp.body))
		}
		if err == nil && (resp.header == nil || !resp.endStream && !resp.truncated && h2Get(resp.header, ":status") == "200") {
			t.Fatalf("returned an unfinished answer without an error: %+v", resp)
		}
	})
}
