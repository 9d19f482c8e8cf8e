package probe

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"

	"golang.org/x/net/http2/hpack"
)

// A minimal HTTP/2 client (RFC 9113) for one request on one connection, on the calling goroutine:
// enough for a gRPC unary call. It writes the preface, its SETTINGS, the request's HEADERS and DATA in
// one write, then reads frames until the answer's stream ends. It never opens a second stream, never
// accepts a frame larger than the protocol's default maximum (it does not raise it), and reads at most
// maxBody bytes of the answer's body, so a server cannot make it read or buffer more than that.

const (
	h2Preface        = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	h2FrameHeaderLen = 9
	// h2MaxFrameSize is SETTINGS_MAX_FRAME_SIZE's default, which we never raise: no frame we accept, or
	// send, is larger.
	h2MaxFrameSize = 1 << 14
	// h2InitialWindow is the most a request body may be: the connection's flow-control window, which
	// only a WINDOW_UPDATE (that we do not wait for) raises.
	h2InitialWindow = 65535
	// h2ReceiveWindow is our stream's window (SETTINGS_INITIAL_WINDOW_SIZE): larger than any answer we
	// read, so a server never waits for a WINDOW_UPDATE from us.
	h2ReceiveWindow = 1 << 14
	// h2MaxHeaderListBytes bounds the header list of each header block, counted as SETTINGS_MAX_HEADER_LIST_SIZE
	// counts it (name, value and 32 bytes a field); we announce it, too.
	h2MaxHeaderListBytes = 16 << 10
	// h2StreamID is the one stream we open.
	h2StreamID = 1
)

// Frame types and flags.
const (
	h2Data         = 0x0
	h2Headers      = 0x1
	h2Priority     = 0x2
	h2RSTStream    = 0x3
	h2Settings     = 0x4
	h2PushPromise  = 0x5
	h2Ping         = 0x6
	h2GoAway       = 0x7
	h2WindowUpdate = 0x8
	h2Continuation = 0x9

	h2FlagEndStream  = 0x1 // DATA, HEADERS
	h2FlagAck        = 0x1 // SETTINGS, PING
	h2FlagEndHeaders = 0x4 // HEADERS, CONTINUATION
	h2FlagPadded     = 0x8 // DATA, HEADERS
	h2FlagPriority   = 0x20

	h2SettingEnablePush        = 0x2
	h2SettingInitialWindowSize = 0x4
	h2SettingMaxHeaderListSize = 0x6
)

// h2ErrorCodes are the names of HTTP/2 error codes, as RST_STREAM and GOAWAY carry them.
var h2ErrorCodes = [...]string{
	"NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
	"STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
	"CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
}

func h2ErrorName(code uint32) string {
	if code < uint32(len(h2ErrorCodes)) {
		return h2ErrorCodes[code]
	}
	return "error code 0x" + strconv.FormatUint(uint64(code), 16)
}

// h2ResetError is a RST_STREAM on our stream: the server answered the call by refusing or abandoning it.
type h2ResetError struct{ code uint32 }

func (e *h2ResetError) Error() string { return "the server reset the call: " + h2ErrorName(e.code) }

// notHTTP2Error is a server that answered something else than HTTP/2.
type notHTTP2Error struct{ answer string }

func (e *notHTTP2Error) Error() string {
	return fmt.Sprintf("not a gRPC server: it answered %s, not HTTP/2", e.answer)
}

// h2Response is the answer on our stream: its header block, its trailers, up to maxBody bytes of body.
type h2Response struct {
	header, trailer []hpack.HeaderField
	body            []byte
	truncated       bool // the body is longer than maxBody: body holds its first maxBody bytes
	endStream       bool // the stream ended: trailer is complete
}

// h2Get returns the value of the first field named name.
func h2Get(fields []hpack.HeaderField, name string) string {
	for _, f := range fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// h2Client is one connection's client side.
type h2Client struct {
	conn    net.Conn
	r       *bufio.Reader // large enough for a frame, which Peek reads without a copy
	pending []byte        // acknowledgements to write before the next read that would wait
	dec     *hpack.Decoder
	// The header block being decoded, and whether it is ours, over its limit, or broken.
	block     []hpack.HeaderField
	blockSize int
	keep      bool
	tooLarge  bool
	goAway    string // the GOAWAY the server sent, for the error when it then closes
}

func newH2Client(conn net.Conn) *h2Client {
	c := &h2Client{conn: conn, r: bufio.NewReaderSize(conn, h2FrameHeaderLen+h2MaxFrameSize)}
	c.dec = hpack.NewDecoder(4096, func(f hpack.HeaderField) { // 4096: SETTINGS_HEADER_TABLE_SIZE's default
		c.blockSize += len(f.Name) + len(f.Value) + 32
		if c.blockSize > h2MaxHeaderListBytes {
			c.tooLarge = true
		}
		if c.keep && !c.tooLarge {
			c.block = append(c.block, f)
		}
	})
	c.dec.SetMaxStringLength(h2MaxHeaderListBytes)
	return c
}

// appendH2Frame appends a frame header and payload.
func appendH2Frame(dst []byte, typ, flags byte, stream uint32, payload []byte) []byte {
	n := len(payload)
	dst = append(dst, byte(n>>16), byte(n>>8), byte(n), typ, flags)
	dst = binary.BigEndian.AppendUint32(dst, stream&0x7fffffff)
	return append(dst, payload...)
}

// appendH2Frames appends payload as frames of at most h2MaxFrameSize bytes: the first of type first,
// the others of type rest, and last set on the last one.
func appendH2Frames(dst []byte, first, rest, last byte, stream uint32, payload []byte) []byte {
	typ := first
	for {
		n := min(len(payload), h2MaxFrameSize)
		var flags byte
		if n == len(payload) {
			flags = last
		}
		dst = appendH2Frame(dst, typ, flags, stream, payload[:n])
		payload = payload[n:]
		if len(payload) == 0 {
			return dst
		}
		typ = rest
	}
}

// writeRequest writes the connection preface, our SETTINGS, and the request on stream 1, in one write.
// fields are written in order, pseudo-header fields first.
func (c *h2Client) writeRequest(fields []hpack.HeaderField, body []byte) error {
	if len(body) > h2InitialWindow {
		return fmt.Errorf("request body of %d bytes is over HTTP/2's initial window of %d", len(body), h2InitialWindow)
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range fields {
		if err := enc.WriteField(f); err != nil {
			return err
		}
	}
	out := make([]byte, 0, 256+block.Len()+len(body)) // 256: the preface and the frame headers
	out = append(out, h2Preface...)
	var settings []byte
	for _, s := range [...][2]uint32{
		{h2SettingEnablePush, 0},
		{h2SettingInitialWindowSize, h2ReceiveWindow},
		{h2SettingMaxHeaderListSize, h2MaxHeaderListBytes},
	} {
		settings = binary.BigEndian.AppendUint16(settings, uint16(s[0]))
		settings = binary.BigEndian.AppendUint32(settings, s[1])
	}
	out = appendH2Frame(out, h2Settings, 0, 0, settings)
	out = appendH2Frames(out, h2Headers, h2Continuation, h2FlagEndHeaders, h2StreamID, block.Bytes())
	out = appendH2Frames(out, h2Data, h2Data, h2FlagEndStream, h2StreamID, body)
	_, err := c.conn.Write(out)
	return err
}

// readResponse reads frames until our stream ends, and returns the answer. It stops early, without an
// error, when the body grows over maxBody or the answer's :status is final and not 200 (its body is of
// no interest to a gRPC client). Errors: I/O errors as they are (a TLS alert among them), notHTTP2Error,
// h2ResetError, and protocol errors.
func (c *h2Client) readResponse(maxBody int) (*h2Response, error) {
	resp := &h2Response{}
	first := true
	var (
		inBlock     bool   // a header block on blockStream awaits its CONTINUATION
		blockStream uint32 // the stream of that header block
		blockEnds   bool   // the HEADERS that started it had END_STREAM
	)
	for {
		typ, flags, stream, payload, err := c.readFrame(first)
		if err != nil {
			return resp, c.explainEOF(err, resp)
		}
		if first && typ != h2Settings {
			return resp, fmt.Errorf("not a gRPC server: its answer does not start with an HTTP/2 SETTINGS frame (but frame type %d)", typ)
		}
		first = false
		if inBlock && (typ != h2Continuation || stream != blockStream) {
			return resp, fmt.Errorf("HTTP/2 protocol error: frame type %d inside a header block", typ)
		}
		switch typ {
		case h2Settings:
			if stream != 0 || len(payload)%6 != 0 || (flags&h2FlagAck != 0 && len(payload) != 0) {
				return resp, errors.New("HTTP/2 protocol error: malformed SETTINGS frame")
			}
			if flags&h2FlagAck == 0 {
				c.pending = appendH2Frame(c.pending, h2Settings, h2FlagAck, 0, nil)
			}
		case h2Ping:
			if stream != 0 || len(payload) != 8 {
				return resp, errors.New("HTTP/2 protocol error: malformed PING frame")
			}
			if flags&h2FlagAck == 0 {
				c.pending = appendH2Frame(c.pending, h2Ping, h2FlagAck, 0, payload)
			}
		case h2GoAway:
			if stream != 0 || len(payload) < 8 {
				return resp, errors.New("HTTP/2 protocol error: malformed GOAWAY frame")
			}
			last := binary.BigEndian.Uint32(payload) & 0x7fffffff
			code := binary.BigEndian.Uint32(payload[4:])
			c.goAway = "GOAWAY " + h2ErrorName(code)
			if debug := payload[8:]; len(debug) > 0 {
				c.goAway += " " + strconv.Quote(sanitize(string(debug), 128))
			}
			// A graceful shutdown that still serves our stream (last ≥ 1, no error) lets us read on.
			if code != 0 || last < h2StreamID {
				return resp, errors.New("the server closed the connection: " + c.goAway)
			}
		case h2RSTStream:
			if len(payload) != 4 || stream == 0 {
				return resp, errors.New("HTTP/2 protocol error: malformed RST_STREAM frame")
			}
			if stream == h2StreamID {
				return resp, &h2ResetError{binary.BigEndian.Uint32(payload)}
			}
		case h2PushPromise:
			return resp, errors.New("HTTP/2 protocol error: PUSH_PROMISE, though push is disabled")
		case h2Headers, h2Continuation:
			if typ == h2Continuation && !inBlock {
				return resp, errors.New("HTTP/2 protocol error: CONTINUATION without HEADERS")
			}
			if typ == h2Headers {
				if stream == 0 {
					return resp, errors.New("HTTP/2 protocol error: HEADERS on stream 0")
				}
				if payload, err = h2Unpad(flags, payload); err != nil {
					return resp, err
				}
				if flags&h2FlagPriority != 0 {
					if len(payload) < 5 {
						return resp, errors.New("HTTP/2 protocol error: HEADERS too short for its priority")
					}
					payload = payload[5:]
				}
				if stream == h2StreamID && resp.trailer != nil {
					return resp, errors.New("HTTP/2 protocol error: a header block after the trailers")
				}
				inBlock, blockStream, blockEnds = true, stream, flags&h2FlagEndStream != 0
				// Every header block goes through the decoder, ours or not, to keep its table in sync.
				c.block, c.blockSize, c.keep, c.tooLarge = nil, 0, stream == h2StreamID, false
			}
			if _, err := c.dec.Write(payload); err != nil {
				return resp, fmt.Errorf("HTTP/2 protocol error: bad header block: %w", err)
			}
			if c.tooLarge {
				return resp, fmt.Errorf("the answer's header block is over %d bytes", h2MaxHeaderListBytes)
			}
			if flags&h2FlagEndHeaders == 0 {
				continue
			}
			inBlock = false
			if err := c.dec.Close(); err != nil {
				return resp, fmt.Errorf("HTTP/2 protocol error: bad header block: %w", err)
			}
			if blockStream != h2StreamID {
				continue
			}
			block := c.block
			if block == nil {
				block = []hpack.HeaderField{}
			}
			switch {
			case resp.header == nil:
				status := h2Get(block, ":status")
				if len(status) == 3 && status[0] == '1' && !blockEnds {
					continue // an informational answer (1xx): the final one follows
				}
				resp.header = block
				if status != "200" {
					resp.endStream = blockEnds
					return resp, nil
				}
			case blockEnds:
				resp.trailer = block
			default:
				return resp, errors.New("HTTP/2 protocol error: trailers without END_STREAM")
			}
			if blockEnds {
				resp.endStream = true
				return resp, nil
			}
		case h2Data:
			if stream == 0 {
				return resp, errors.New("HTTP/2 protocol error: DATA on stream 0")
			}
			if stream != h2StreamID {
				continue
			}
			if resp.header == nil {
				return resp, errors.New("HTTP/2 protocol error: DATA before HEADERS")
			}
			if payload, err = h2Unpad(flags, payload); err != nil {
				return resp, err
			}
			if room := maxBody - len(resp.body); len(payload) > room {
				resp.body = append(resp.body, payload[:room]...)
				resp.truncated = true
				return resp, nil
			}
			resp.body = append(resp.body, payload...)
			if flags&h2FlagEndStream != 0 {
				resp.endStream = true
				return resp, nil
			}
		}
		// PRIORITY, WINDOW_UPDATE and unknown frame types need nothing from us.
	}
}

// readFrame reads the next frame; its payload is valid until the next read. It first writes the
// acknowledgements that the server may be waiting for, when the next frame is not here yet. The
// first frame is checked for an answer that is not HTTP/2 at all.
func (c *h2Client) readFrame(first bool) (typ, flags byte, stream uint32, payload []byte, err error) {
	if len(c.pending) > 0 && !c.frameBuffered() {
		// A failed write shows up in the next read, or does not matter: the answer may be complete.
		_, _ = c.conn.Write(c.pending)
		c.pending = c.pending[:0]
	}
	header, err := c.r.Peek(h2FrameHeaderLen)
	if err != nil {
		if first && len(header) > 0 {
			if e := notHTTP2(header); e != nil {
				return 0, 0, 0, nil, e
			}
		}
		return 0, 0, 0, nil, err
	}
	if first {
		if bytes.HasPrefix(header, []byte("HTTP/1.")) {
			line, _ := c.r.ReadSlice('\n')
			line = bytes.TrimRight(line[:min(len(line), 64)], "\r\n")
			return 0, 0, 0, nil, &notHTTP2Error{strconv.Quote(string(line))}
		}
		if e := notHTTP2(header); e != nil {
			return 0, 0, 0, nil, e
		}
	}
	length := int(header[0])<<16 | int(header[1])<<8 | int(header[2])
	typ, flags = header[3], header[4]
	stream = binary.BigEndian.Uint32(header[5:]) & 0x7fffffff
	if length > h2MaxFrameSize {
		return 0, 0, 0, nil, fmt.Errorf("HTTP/2 protocol error: a frame of %d bytes, over the maximum frame size of %d (FRAME_SIZE_ERROR)", length, h2MaxFrameSize)
	}
	frame, err := c.r.Peek(h2FrameHeaderLen + length)
	if err != nil {
		return 0, 0, 0, nil, err
	}
	_, _ = c.r.Discard(len(frame))
	return typ, flags, stream, frame[h2FrameHeaderLen:], nil
}

// frameBuffered reports whether the next frame is already read, whole.
func (c *h2Client) frameBuffered() bool {
	if c.r.Buffered() < h2FrameHeaderLen {
		return false
	}
	header, _ := c.r.Peek(h2FrameHeaderLen)
	return c.r.Buffered() >= h2FrameHeaderLen+(int(header[0])<<16|int(header[1])<<8|int(header[2]))
}

// notHTTP2 recognises the start of an answer that is not HTTP/2: HTTP/1, or TLS.
func notHTTP2(start []byte) error {
	switch {
	case bytes.HasPrefix(start, []byte("HTTP/")):
		line, _, _ := bytes.Cut(start, []byte("\r\n"))
		return &notHTTP2Error{strconv.Quote(string(line))}
	case len(start) >= 2 && start[0] >= 0x14 && start[0] <= 0x17 && start[1] == 3:
		// A TLS record: a TLS server that could not read our HTTP/2 preface.
		return errors.New("the server speaks TLS, not h2c (use grpcs://)")
	}
	return nil
}

// explainEOF says how far the answer got when the server closed the connection.
func (c *h2Client) explainEOF(err error, resp *h2Response) error {
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	text := "the server closed the connection without an answer"
	if resp.header != nil {
		text = "the server closed the connection before the end of the answer"
	}
	if c.goAway != "" {
		text += " (after " + c.goAway + ")"
	}
	return errors.New(text)
}

// h2Unpad removes the padding of a DATA or HEADERS frame with the PADDED flag.
func h2Unpad(flags byte, payload []byte) ([]byte, error) {
	if flags&h2FlagPadded == 0 {
		return payload, nil
	}
	if len(payload) == 0 || int(payload[0]) >= len(payload) {
		return nil, errors.New("HTTP/2 protocol error: padding longer than its frame")
	}
	return payload[1 : len(payload)-int(payload[0])], nil
}
