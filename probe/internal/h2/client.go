// Package h2 is a minimal HTTP/2 client (RFC 9113) for one request at a time on one connection, on
// the calling goroutine: enough for a unary RPC and its answer, or the messages of a server-streaming
// one, read one after another for as long as the stream stays open (ReadMore). It writes the preface,
// its SETTINGS, the request's HEADERS and DATA in one write, then reads frames until the answer's
// stream ends (or the caller has read enough of it, and cancels it); a connection kept alive carries
// the next request on the next stream (Reusable says when it can). It never has two streams open,
// never accepts a frame larger than the protocol's default maximum (it does not raise it), keeps its
// HPACK table within the size the server announces (SETTINGS_HEADER_TABLE_SIZE), and reads at most
// maxBody bytes of the answer's body, so a server cannot make it read or buffer more than that.
//
// It knows nothing of what it carries: no URLs, no gRPC. The caller dials, sets deadlines, builds the
// header fields and judges the answer.
package h2

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

	"github.com/health-check-proxy/health-check-proxy/probe/internal/printable"
)

const (
	preface        = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	frameHeaderLen = 9
	// MaxFrameSize is SETTINGS_MAX_FRAME_SIZE's default, which we never raise: no frame we accept, or
	// send, is larger.
	MaxFrameSize = 1 << 14
	// InitialSendWindow is the most a request body may be: the connection's flow-control window, which
	// only a WINDOW_UPDATE (that we do not wait for) raises.
	InitialSendWindow = 65535
	// streamReceiveWindow is our stream's window (SETTINGS_INITIAL_WINDOW_SIZE): larger than any answer we
	// read, so a server never waits for a WINDOW_UPDATE from us.
	streamReceiveWindow = 1 << 14
	// MaxHeaderListBytes bounds the header list of each header block, counted as SETTINGS_MAX_HEADER_LIST_SIZE
	// counts it (name, value and 32 bytes a field); we announce it, too.
	MaxHeaderListBytes = 16 << 10
	// connectionWindow is the connection's flow-control window before any WINDOW_UPDATE.
	connectionWindow = 65535
	// maxWindow is the largest flow-control window HTTP/2 allows.
	maxWindow = 1<<31 - 1
	// maxStreamID is the last stream a client may open (odd, under 2^31).
	maxStreamID = 1<<31 - 1
	// windowUpdateBytes is how much the answers on a kept connection may use of its receive window
	// before we give it back to the server: well within the default window of 65535 bytes.
	windowUpdateBytes = 16 << 10
)

// Frame types and flags.
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9

	flagEndStream  = 0x1 // DATA, HEADERS
	flagAck        = 0x1 // SETTINGS, PING
	flagEndHeaders = 0x4 // HEADERS, CONTINUATION
	flagPadded     = 0x8 // DATA, HEADERS
	flagPriority   = 0x20

	errorCancel = 0x8 // RST_STREAM's CANCEL

	settingHeaderTableSize      = 0x1
	settingEnablePush           = 0x2
	settingMaxConcurrentStreams = 0x3
	settingInitialWindowSize    = 0x4
	settingMaxFrameSize         = 0x5
	settingMaxHeaderListSize    = 0x6

	// defaultHeaderTableSize is SETTINGS_HEADER_TABLE_SIZE's default: the HPACK table each side may use
	// until the other says otherwise, and the most ours ever uses, whatever more a server allows.
	defaultHeaderTableSize = 4096
	// maxFrameSizeLimit is the largest SETTINGS_MAX_FRAME_SIZE a server may announce.
	maxFrameSizeLimit = 1<<24 - 1
)

// errorCodes are the names of HTTP/2 error codes, as RST_STREAM and GOAWAY carry them.
var errorCodes = [...]string{
	"NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
	"STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
	"CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
}

// ErrorName is the name of an HTTP/2 error code, as RST_STREAM and GOAWAY carry it.
func ErrorName(code uint32) string {
	if code < uint32(len(errorCodes)) {
		return errorCodes[code]
	}
	return "error code 0x" + strconv.FormatUint(uint64(code), 16)
}

// ResetError is a RST_STREAM on our stream: the server answered the request by refusing or abandoning it.
type ResetError struct{ Code uint32 }

func (e *ResetError) Error() string { return "the server reset the stream: " + ErrorName(e.Code) }

// NotHTTP2Error is a server that answered something else than HTTP/2.
type NotHTTP2Error struct {
	Reason string // what it answered instead, e.g. `it answered "HTTP/1.1 400 Bad Request", not HTTP/2`
	TLS    bool   // the answer is a TLS record: a TLS server that could not read the cleartext preface
}

func (e *NotHTTP2Error) Error() string { return e.Reason }

// Response is the answer on our stream: its header block, its trailers, up to maxBody bytes of body.
type Response struct {
	Header, Trailer []hpack.HeaderField
	Body            []byte
	Truncated       bool // the body is longer than maxBody: Body holds its first maxBody bytes
	EndStream       bool // the stream ended: Trailer is complete
}

// Get returns the value of the first field named name.
func Get(fields []hpack.HeaderField, name string) string {
	for _, f := range fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// Client is one connection's client side.
type Client struct {
	conn    net.Conn
	r       *bufio.Reader // large enough for a frame, which Peek reads without a copy
	pending []byte        // acknowledgements to write before the next read that would wait
	dec     *hpack.Decoder
	// The header block being decoded: whether one awaits its CONTINUATION, its stream, whether its
	// HEADERS ended the stream, its fields when it is ours, its size, and whether it is over its limit.
	inBlock     bool
	blockStream uint32
	blockEnds   bool
	block       []hpack.HeaderField
	blockSize   int
	keep        bool
	tooLarge    bool
	goAway      string // the GOAWAY the server sent, for the error when it then closes
	// ReceiveWindow, when larger than the default 16 KiB, is how much of the answer's body the server
	// may send before it waits for us: set it to the most a caller reads, before WriteRequest.
	ReceiveWindow int

	// The connection across requests: the stream of the current request, the encoder of header
	// blocks (its table is the connection's), whether a frame was read yet, whether one came on the
	// current stream, and flow control.
	stream       uint32
	prefaceSent  bool
	settingsSeen bool // the server's first SETTINGS came: the table our header blocks may use is known
	enc          *hpack.Encoder
	encoded      bytes.Buffer
	readAny      bool
	streamSeen   bool
	streamEnded  bool
	goAwayLast   uint32
	refused      bool
	maxStreams   uint32 // SETTINGS_MAX_CONCURRENT_STREAMS, unlimited until the server says
	sendWindow   int64  // the connection's send window, which each request body uses
	streamWindow int64  // SETTINGS_INITIAL_WINDOW_SIZE: each new stream's send window
	received     int    // DATA bytes not yet given back in a WINDOW_UPDATE
	// The current stream's receive window: as announced in our SETTINGS, and the DATA bytes received
	// on it that ReadMore has not given back yet (ReadResponse never does: its stream ends first).
	streamReceiveWindow int
	streamReceived      int
}

// NewClient is the client side of conn, which carries nothing yet: WriteRequest writes the preface.
func NewClient(conn net.Conn) *Client {
	c := &Client{conn: conn, r: bufio.NewReaderSize(conn, frameHeaderLen+MaxFrameSize),
		stream: 1, maxStreams: maxStreamID, sendWindow: InitialSendWindow, streamWindow: InitialSendWindow}
	c.enc = hpack.NewEncoder(&c.encoded)
	c.enc.SetMaxDynamicTableSizeLimit(defaultHeaderTableSize)
	// Until the server's SETTINGS say how large a table it keeps, our header blocks use none: x/net's
	// server decodes with the table it announces from the start, not from our ACK, and a field
	// repeated in the first block would refer to an entry it never kept.
	c.enc.SetMaxDynamicTableSize(0)
	c.dec = hpack.NewDecoder(defaultHeaderTableSize, func(f hpack.HeaderField) { // we announce no other size
		c.blockSize += len(f.Name) + len(f.Value) + 32
		if c.blockSize > MaxHeaderListBytes {
			c.tooLarge = true
		}
		if c.keep && !c.tooLarge {
			c.block = append(c.block, f)
		}
	})
	c.dec.SetMaxStringLength(MaxHeaderListBytes)
	return c
}

// appendFrame appends a frame header and payload.
func appendFrame(dst []byte, typ, flags byte, stream uint32, payload []byte) []byte {
	n := len(payload)
	dst = append(dst, byte(n>>16), byte(n>>8), byte(n), typ, flags)
	dst = binary.BigEndian.AppendUint32(dst, stream&0x7fffffff)
	return append(dst, payload...)
}

// appendFrames appends payload as frames of at most MaxFrameSize bytes: the first of type first,
// the others of type rest, and last set on the last one.
func appendFrames(dst []byte, first, rest, last byte, stream uint32, payload []byte) []byte {
	typ := first
	for {
		n := min(len(payload), MaxFrameSize)
		var flags byte
		if n == len(payload) {
			flags = last
		}
		dst = appendFrame(dst, typ, flags, stream, payload[:n])
		payload = payload[n:]
		if len(payload) == 0 {
			return dst
		}
		typ = rest
	}
}

// WriteRequest writes a request on the connection's next stream, in one write: stream 1 after the
// connection preface and our SETTINGS, then 3, 5, … on a connection kept for more (Reusable). fields
// are written in order, pseudo-header fields first.
func (c *Client) WriteRequest(fields []hpack.HeaderField, body []byte) error {
	if len(body) > InitialSendWindow {
		return fmt.Errorf("request body of %d bytes is over HTTP/2's initial window of %d", len(body), InitialSendWindow)
	}
	first := !c.prefaceSent // the first request goes on stream 1, which NewClient set
	if !first {
		if !c.Reusable(len(body)) {
			return errors.New("the HTTP/2 connection cannot take another request")
		}
		c.stream += 2
	}
	c.prefaceSent = true
	c.streamSeen, c.streamEnded, c.refused, c.streamReceived = false, false, false, 0
	c.encoded.Reset()
	for _, f := range fields {
		if err := c.enc.WriteField(f); err != nil {
			return err
		}
	}
	out := make([]byte, 0, 256+len(c.pending)+c.encoded.Len()+len(body)) // 256: the preface and the frame headers
	if first {
		out = append(out, preface...)
		window := uint32(max(streamReceiveWindow, min(c.ReceiveWindow, maxWindow)))
		c.streamReceiveWindow = int(window)
		var settings []byte
		for _, s := range [...][2]uint32{
			{settingEnablePush, 0},
			{settingInitialWindowSize, window},
			{settingMaxHeaderListSize, MaxHeaderListBytes},
		} {
			settings = binary.BigEndian.AppendUint16(settings, uint16(s[0]))
			settings = binary.BigEndian.AppendUint32(settings, s[1])
		}
		out = appendFrame(out, frameSettings, 0, 0, settings)
		if window > connectionWindow {
			// SETTINGS widen the streams' window only; the connection's has its own, 65,535 bytes at first.
			out = appendFrame(out, frameWindowUpdate, 0, 0, binary.BigEndian.AppendUint32(nil, window-connectionWindow))
		}
	}
	out = append(out, c.pending...) // acknowledgements left from the last answer
	c.pending = c.pending[:0]
	out = appendFrames(out, frameHeaders, frameContinuation, flagEndHeaders, c.stream, c.encoded.Bytes())
	out = appendFrames(out, frameData, frameData, flagEndStream, c.stream, body)
	c.sendWindow -= int64(len(body))
	_, err := c.conn.Write(out)
	return err
}

// Reusable reports whether the connection can carry another request with a body of bodyLen bytes:
// the last answer ended, the server has not said GOAWAY, a stream is allowed, and the flow-control
// windows leave room for the body.
func (c *Client) Reusable(bodyLen int) bool {
	return c.streamEnded && c.goAway == "" && !c.inBlock && c.stream+2 <= maxStreamID && c.maxStreams > 0 &&
		c.sendWindow >= int64(bodyLen) && c.streamWindow >= int64(bodyLen)
}

// Unprocessed reports whether the server did not process the current request, which may then be sent
// again on another connection: nothing of its answer came before the error, a GOAWAY said its stream
// was not taken, or the server refused the stream (REFUSED_STREAM).
func (c *Client) Unprocessed() bool {
	return !c.streamSeen || c.refused || (c.goAway != "" && c.goAwayLast < c.stream)
}

// ReadResponse reads frames until our stream ends, and returns the answer. It stops early, without an
// error, when the body grows over maxBody or the answer's :status is final and not 200 (its body is of
// no interest to the caller). Errors: I/O errors as they are (a TLS alert among them), NotHTTP2Error,
// ResetError, and protocol errors.
func (c *Client) ReadResponse(maxBody int) (*Response, error) {
	return c.ReadResponseUntil(maxBody, nil)
}

// ReadResponseUntil is ReadResponse that also stops, without an error, once enough(body) holds after a
// DATA frame: the first message of a stream that goes on, such as a server-streaming RPC's. The
// stream is then still open: Cancel ends it.
func (c *Client) ReadResponseUntil(maxBody int, enough func(body []byte) bool) (*Response, error) {
	resp := &Response{}
	return resp, c.readUntil(resp, maxBody, enough, false)
}

// ReadMore reads on the stream that ReadResponseUntil left open, for an answer that goes on (a
// server-streaming RPC's next message): it drops the first consumed bytes of resp.Body, which the
// caller is done with, and reads until enough(resp.Body) holds again (at once when what is left holds
// it), or the stream ends (resp.EndStream, with the trailers), or the body grows over maxBody
// (resp.Truncated), with the errors of ReadResponse. maxBody bounds what resp.Body holds at a time.
// The next body is new memory: what the caller decoded from the last one without a copy (an
// X.509 certificate refers to the bytes it was parsed from) stays as it was.
//
// A stream that stays open carries more than any window: ReadMore gives the stream's flow-control
// window back to the server as it reads (the connection's goes back as at every read), and answers
// PINGs and SETTINGS, so the server never waits for us while we are reading. It ends at any GOAWAY,
// even one that still serves our stream: a server going away waits for its streams to end, and this
// one might never end by itself; the caller calls again, on a new connection.
func (c *Client) ReadMore(resp *Response, consumed, maxBody int, enough func(body []byte) bool) error {
	if resp.Header == nil || resp.EndStream || resp.Truncated || consumed < 0 || consumed > len(resp.Body) {
		return errors.New("h2: ReadMore needs an open stream whose body holds what was consumed")
	}
	resp.Body = bytes.Clone(resp.Body[consumed:])
	c.giveBackStreamWindow(1) // what the caller consumed, and what came with it
	switch {
	case enough(resp.Body):
		return nil
	case c.goAway != "":
		return c.goingAway()
	}
	return c.readUntil(resp, maxBody, enough, true)
}

// goingAway is the end of a stream kept open on a connection that the server is closing.
func (c *Client) goingAway() error {
	return errors.New("the server is closing the connection: " + c.goAway)
}

// readUntil reads frames into resp until the answer is complete, enough holds after a DATA frame, or
// an error. streaming: the stream's window goes back to the server as its DATA arrives.
func (c *Client) readUntil(resp *Response, maxBody int, enough func(body []byte) bool, streaming bool) error {
	for {
		first := !c.readAny
		typ, flags, stream, payload, err := c.readFrame(first)
		if err != nil {
			return c.explainEOF(err, resp)
		}
		c.readAny = true
		if first && typ != frameSettings {
			return &NotHTTP2Error{Reason: fmt.Sprintf("its answer does not start with an HTTP/2 SETTINGS frame (but frame type %d)", typ)}
		}
		if c.inBlock && (typ != frameContinuation || stream != c.blockStream) {
			return fmt.Errorf("HTTP/2 protocol error: frame type %d inside a header block", typ)
		}
		var done bool
		switch typ {
		case frameSettings:
			err = c.settings(flags, stream, payload)
		case framePing:
			err = c.ping(flags, stream, payload)
		case frameGoAway:
			if err = c.goAwayFrame(stream, payload); err == nil && streaming {
				err = c.goingAway()
			}
		case frameRSTStream:
			err = c.resetStream(stream, payload)
		case framePushPromise:
			err = errors.New("HTTP/2 protocol error: PUSH_PROMISE, though push is disabled")
		case frameHeaders, frameContinuation:
			done, err = c.headerFrame(resp, typ, flags, stream, payload)
		case frameData:
			c.receivedData(len(payload))
			if stream == c.stream {
				c.streamReceived += len(payload)
				if streaming {
					c.giveBackStreamWindow(min(windowUpdateBytes, c.streamReceiveWindow/2))
				}
			}
			done, err = c.dataFrame(resp, flags, stream, payload, maxBody)
			done = done || (err == nil && enough != nil && stream == c.stream && enough(resp.Body))
		case frameWindowUpdate:
			c.windowUpdate(stream, payload)
		}
		// PRIORITY and unknown frame types need nothing from us.
		if err != nil || done {
			return err
		}
	}
}

// Cancel ends our stream with RST_STREAM CANCEL, as a client that has read all it wants of a stream
// that goes on: the server stops sending, and the connection can then be closed without the server
// seeing an error.
func (c *Client) Cancel() error {
	out := appendFrame(c.pending, frameRSTStream, 0, c.stream, binary.BigEndian.AppendUint32(nil, errorCancel))
	c.pending = c.pending[:0]
	_, err := c.conn.Write(out)
	return err
}

// settings acknowledges the server's SETTINGS, and notes those that shape our next requests: the
// streams and window they may use, and the HPACK table their header blocks may refer to. A server
// that lowers SETTINGS_HEADER_TABLE_SIZE decodes our next header block with the smaller table: the
// encoder drops what no longer fits and starts that block with a Dynamic Table Size Update (RFC 7541
// §4.2, RFC 9113 §6.5.2), so the entries it refers to are those the server kept.
func (c *Client) settings(flags byte, stream uint32, payload []byte) error {
	if stream != 0 || len(payload)%6 != 0 || (flags&flagAck != 0 && len(payload) != 0) {
		return errors.New("HTTP/2 protocol error: malformed SETTINGS frame")
	}
	if flags&flagAck == 0 && !c.settingsSeen {
		c.settingsSeen = true
		c.setHeaderTableSize(defaultHeaderTableSize) // what the server keeps unless this frame says otherwise
	}
	for p := payload; len(p) >= 6; p = p[6:] {
		id, value := binary.BigEndian.Uint16(p), binary.BigEndian.Uint32(p[2:])
		if err := validSetting(id, value); err != nil {
			return err
		}
		switch id {
		case settingHeaderTableSize:
			c.setHeaderTableSize(value)
		case settingMaxConcurrentStreams:
			c.maxStreams = value
		case settingInitialWindowSize:
			c.streamWindow = int64(value)
		}
	}
	if flags&flagAck == 0 {
		c.pending = appendFrame(c.pending, frameSettings, flagAck, 0, nil)
	}
	return nil
}

// setHeaderTableSize makes the encoder's table the server's new size, or defaultHeaderTableSize when
// the server allows more: the encoder's limit. A smaller table goes through an empty one: the next
// block then starts with the updates 0 and the new size, which x/net's decoder takes, where it refuses
// a second update after one that left entries in the table (a size lowered, then raised, before the
// next block). A size that stays costs no update.
func (c *Client) setHeaderTableSize(value uint32) {
	size := min(value, defaultHeaderTableSize)
	if size < c.enc.MaxDynamicTableSize() {
		c.enc.SetMaxDynamicTableSize(0)
	}
	if size != c.enc.MaxDynamicTableSize() {
		c.enc.SetMaxDynamicTableSize(size)
	}
}

// validSetting checks a setting's value against the bounds of RFC 9113 §6.5.2, as x/net's Setting.Valid
// does: a server that announces a window or frame size it cannot mean is not one to read on.
func validSetting(id uint16, value uint32) error {
	switch {
	case id == settingEnablePush && value > 1:
		return fmt.Errorf("HTTP/2 protocol error: SETTINGS_ENABLE_PUSH of %d", value)
	case id == settingInitialWindowSize && value > maxWindow:
		return fmt.Errorf("HTTP/2 flow-control error: SETTINGS_INITIAL_WINDOW_SIZE of %d, over %d", value, maxWindow)
	case id == settingMaxFrameSize && (value < MaxFrameSize || value > maxFrameSizeLimit):
		return fmt.Errorf("HTTP/2 protocol error: SETTINGS_MAX_FRAME_SIZE of %d, outside %d-%d", value, MaxFrameSize, maxFrameSizeLimit)
	}
	return nil
}

// ping answers a PING.
func (c *Client) ping(flags byte, stream uint32, payload []byte) error {
	if stream != 0 || len(payload) != 8 {
		return errors.New("HTTP/2 protocol error: malformed PING frame")
	}
	if flags&flagAck == 0 {
		c.pending = appendFrame(c.pending, framePing, flagAck, 0, payload)
	}
	return nil
}

// goAwayFrame notes a GOAWAY, and ends the read unless the server still serves our stream.
func (c *Client) goAwayFrame(stream uint32, payload []byte) error {
	if stream != 0 || len(payload) < 8 {
		return errors.New("HTTP/2 protocol error: malformed GOAWAY frame")
	}
	last := binary.BigEndian.Uint32(payload) & 0x7fffffff
	code := binary.BigEndian.Uint32(payload[4:])
	c.goAwayLast = last
	c.goAway = "GOAWAY " + ErrorName(code)
	if debug := payload[8:]; len(debug) > 0 {
		c.goAway += " " + strconv.Quote(printable.Sanitize(string(debug), 128))
	}
	// A graceful shutdown that still serves our stream (last ≥ 1, no error) lets us read on.
	if code != 0 || last < c.stream {
		return errors.New("the server closed the connection: " + c.goAway)
	}
	return nil
}

// refusedStream is REFUSED_STREAM: the server did not process the stream.
const refusedStream = 0x7

// resetStream is the error of a RST_STREAM: a ResetError on our stream, nothing on another.
func (c *Client) resetStream(stream uint32, payload []byte) error {
	if len(payload) != 4 || stream == 0 {
		return errors.New("HTTP/2 protocol error: malformed RST_STREAM frame")
	}
	if stream == c.stream {
		code := binary.BigEndian.Uint32(payload)
		c.refused = code == refusedStream
		return &ResetError{Code: code}
	}
	return nil
}

// receivedData counts a DATA frame against the connection's receive window, and gives the window back
// to the server once enough is used: a kept connection would otherwise run out of it.
func (c *Client) receivedData(n int) {
	c.received += n
	if c.received >= windowUpdateBytes {
		c.pending = appendFrame(c.pending, frameWindowUpdate, 0, 0, binary.BigEndian.AppendUint32(nil, uint32(c.received)))
		c.received = 0
	}
}

// giveBackStreamWindow gives the DATA bytes received on our stream back to the server in a
// WINDOW_UPDATE, once there are at least atLeast of them. Half the window at most: the server can
// always send the rest of the window meanwhile, however large the message being read.
func (c *Client) giveBackStreamWindow(atLeast int) {
	if c.streamReceived >= max(atLeast, 1) {
		c.pending = appendFrame(c.pending, frameWindowUpdate, 0, c.stream, binary.BigEndian.AppendUint32(nil, uint32(c.streamReceived)))
		c.streamReceived = 0
	}
}

// windowUpdate adds a WINDOW_UPDATE of the connection to its send window.
func (c *Client) windowUpdate(stream uint32, payload []byte) {
	if stream == 0 && len(payload) == 4 {
		c.sendWindow += int64(binary.BigEndian.Uint32(payload) & 0x7fffffff)
	}
}

// headerFrame decodes a HEADERS or CONTINUATION frame; at the end of a header block on our stream, it
// files the block as the answer's header or trailer. done: the answer is complete.
func (c *Client) headerFrame(resp *Response, typ, flags byte, stream uint32, payload []byte) (done bool, err error) {
	if typ == frameContinuation && !c.inBlock {
		return false, errors.New("HTTP/2 protocol error: CONTINUATION without HEADERS")
	}
	if typ == frameHeaders {
		if payload, err = c.startBlock(resp, flags, stream, payload); err != nil {
			return false, err
		}
	}
	if _, err := c.dec.Write(payload); err != nil {
		return false, fmt.Errorf("HTTP/2 protocol error: bad header block: %w", err)
	}
	if c.tooLarge {
		return false, fmt.Errorf("the answer's header block is over %d bytes", MaxHeaderListBytes)
	}
	if flags&flagEndHeaders == 0 {
		return false, nil
	}
	c.inBlock = false
	if err := c.dec.Close(); err != nil {
		return false, fmt.Errorf("HTTP/2 protocol error: bad header block: %w", err)
	}
	if c.blockStream != c.stream {
		return false, nil
	}
	done, err = fileBlock(resp, c.block, c.blockEnds)
	c.streamEnded = resp.EndStream
	return done, err
}

// startBlock starts a header block with its HEADERS frame, and returns the frame's block fragment.
func (c *Client) startBlock(resp *Response, flags byte, stream uint32, payload []byte) ([]byte, error) {
	if stream == 0 {
		return nil, errors.New("HTTP/2 protocol error: HEADERS on stream 0")
	}
	payload, err := unpad(flags, payload)
	if err != nil {
		return nil, err
	}
	if flags&flagPriority != 0 {
		if len(payload) < 5 {
			return nil, errors.New("HTTP/2 protocol error: HEADERS too short for its priority")
		}
		payload = payload[5:]
	}
	if stream == c.stream && resp.Trailer != nil {
		return nil, errors.New("HTTP/2 protocol error: a header block after the trailers")
	}
	c.inBlock, c.blockStream, c.blockEnds = true, stream, flags&flagEndStream != 0
	// Every header block goes through the decoder, ours or not, to keep its table in sync.
	c.block, c.blockSize, c.keep, c.tooLarge = nil, 0, stream == c.stream, false
	if stream == c.stream {
		c.streamSeen = true
	}
	return payload, nil
}

// fileBlock files a whole header block of our stream: an informational answer (skipped), the answer's
// header, or its trailer. ends: the block ended the stream.
func fileBlock(resp *Response, block []hpack.HeaderField, ends bool) (done bool, err error) {
	if block == nil {
		block = []hpack.HeaderField{}
	}
	switch {
	case resp.Header == nil:
		status := Get(block, ":status")
		if len(status) == 3 && status[0] == '1' && !ends {
			return false, nil // an informational answer (1xx): the final one follows
		}
		resp.Header = block
		if status != "200" {
			resp.EndStream = ends
			return true, nil
		}
	case ends:
		resp.Trailer = block
	default:
		return false, errors.New("HTTP/2 protocol error: trailers without END_STREAM")
	}
	resp.EndStream = ends
	return ends, nil
}

// dataFrame adds a DATA frame of our stream to the body, up to maxBody bytes.
func (c *Client) dataFrame(resp *Response, flags byte, stream uint32, payload []byte, maxBody int) (done bool, err error) {
	if stream == 0 {
		return false, errors.New("HTTP/2 protocol error: DATA on stream 0")
	}
	if stream != c.stream {
		return false, nil
	}
	c.streamSeen = true
	if resp.Header == nil {
		return false, errors.New("HTTP/2 protocol error: DATA before HEADERS")
	}
	if payload, err = unpad(flags, payload); err != nil {
		return false, err
	}
	if room := maxBody - len(resp.Body); len(payload) > room {
		resp.Body = append(resp.Body, payload[:room]...)
		resp.Truncated = true
		return true, nil
	}
	resp.Body = append(resp.Body, payload...)
	if flags&flagEndStream != 0 {
		resp.EndStream, c.streamEnded = true, true
		return true, nil
	}
	return false, nil
}

// readFrame reads the next frame; its payload is valid until the next read. It first writes the
// acknowledgements that the server may be waiting for, when the next frame is not here yet. The
// first frame is checked for an answer that is not HTTP/2 at all.
func (c *Client) readFrame(first bool) (typ, flags byte, stream uint32, payload []byte, err error) {
	if len(c.pending) > 0 && !c.frameBuffered() {
		// A failed write shows up in the next read, or does not matter: the answer may be complete.
		_, _ = c.conn.Write(c.pending)
		c.pending = c.pending[:0]
	}
	header, err := c.r.Peek(frameHeaderLen)
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
			return 0, 0, 0, nil, answeredNotHTTP2(line)
		}
		if e := notHTTP2(header); e != nil {
			return 0, 0, 0, nil, e
		}
	}
	length := int(header[0])<<16 | int(header[1])<<8 | int(header[2])
	typ, flags = header[3], header[4]
	stream = binary.BigEndian.Uint32(header[5:]) & 0x7fffffff
	if length > MaxFrameSize {
		return 0, 0, 0, nil, fmt.Errorf("HTTP/2 protocol error: a frame of %d bytes, over the maximum frame size of %d (FRAME_SIZE_ERROR)", length, MaxFrameSize)
	}
	frame, err := c.r.Peek(frameHeaderLen + length)
	if err != nil {
		return 0, 0, 0, nil, err
	}
	_, _ = c.r.Discard(len(frame))
	return typ, flags, stream, frame[frameHeaderLen:], nil
}

// frameBuffered reports whether the next frame is already read, whole.
func (c *Client) frameBuffered() bool {
	if c.r.Buffered() < frameHeaderLen {
		return false
	}
	header, _ := c.r.Peek(frameHeaderLen)
	return c.r.Buffered() >= frameHeaderLen+(int(header[0])<<16|int(header[1])<<8|int(header[2]))
}

// notHTTP2 recognises the start of an answer that is not HTTP/2: HTTP/1, or TLS.
func notHTTP2(start []byte) error {
	switch {
	case bytes.HasPrefix(start, []byte("HTTP/")):
		line, _, _ := bytes.Cut(start, []byte("\r\n"))
		return answeredNotHTTP2(line)
	case len(start) >= 2 && start[0] >= 0x14 && start[0] <= 0x17 && start[1] == 3:
		// A TLS record: a TLS server that could not read our HTTP/2 preface.
		return &NotHTTP2Error{Reason: "the server speaks TLS", TLS: true}
	}
	return nil
}

func answeredNotHTTP2(line []byte) *NotHTTP2Error {
	return &NotHTTP2Error{Reason: "it answered " + strconv.Quote(string(line)) + ", not HTTP/2"}
}

// explainEOF says how far the answer got when the server closed the connection.
func (c *Client) explainEOF(err error, resp *Response) error {
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	text := "the server closed the connection without an answer"
	if resp.Header != nil {
		text = "the server closed the connection before the end of the answer"
	}
	if c.goAway != "" {
		text += " (after " + c.goAway + ")"
	}
	return errors.New(text)
}

// unpad removes the padding of a DATA or HEADERS frame with the PADDED flag.
func unpad(flags byte, payload []byte) ([]byte, error) {
	if flags&flagPadded == 0 {
		return payload, nil
	}
	if len(payload) == 0 || int(payload[0]) >= len(payload) {
		return nil, errors.New("HTTP/2 protocol error: padding longer than its frame")
	}
	return payload[1 : len(payload)-int(payload[0])], nil
}
