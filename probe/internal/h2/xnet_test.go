package h2

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// These tests hold the client to x/net/http2, the reference implementation in Go: its Framer writes
// the server's frames, and reads and decodes ours.

// tableSizeUpdates returns the Dynamic Table Size Updates (RFC 7541 §6.3) at the start of a header
// block, where they must be.
func tableSizeUpdates(block []byte) []uint32 {
	var updates []uint32
	for len(block) > 0 && block[0]&0xe0 == 0x20 {
		value, n := uint32(block[0]&0x1f), 1
		if value == 0x1f {
			for shift := 0; n < len(block); shift += 7 {
				value += uint32(block[n]&0x7f) << shift
				n++
				if block[n-1]&0x80 == 0 {
					break
				}
			}
		}
		updates = append(updates, value)
		block = block[n:]
	}
	return updates
}

// strictRequest is what the strict server read of one request: its header block as sent, its fields
// as decoded with the table the server allows, or the error of decoding it.
type strictRequest struct {
	block  []byte
	fields []hpack.HeaderField
	err    error
}

// serveStrict is an HTTP/2 server written with x/net's Framer that holds the client to the HPACK table
// it announces, as x/net's own server does: it decodes every header block with a table of the size it
// announced last, from the moment it announced it. It announces sizes[0] in its first SETTINGS, and
// sizes[i] with its answer to request i: SETTINGS that change mid-connection. Each answer is 200 with
// the body "ok", its header block padded and split into CONTINUATION frames.
func serveStrict(conn net.Conn, sizes []uint32, requests chan<- strictRequest) error {
	defer close(requests)
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(conn, preface); err != nil {
		return err
	}
	fr := http2.NewFramer(conn, conn)
	dec := hpack.NewDecoder(defaultHeaderTableSize, nil)
	var answer bytes.Buffer
	enc := hpack.NewEncoder(&answer)
	announce := func(size uint32) error {
		dec.SetAllowedMaxDynamicTableSize(size)
		dec.SetMaxDynamicTableSize(size)
		return fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: size})
	}
	if err := announce(sizes[0]); err != nil {
		return err
	}
	for i := 1; ; i++ {
		var req strictRequest
		for ended := false; !ended; {
			f, err := fr.ReadFrame()
			if err != nil {
				return err
			}
			switch f := f.(type) {
			case *http2.HeadersFrame:
				req.block = append(req.block, f.HeaderBlockFragment()...)
			case *http2.ContinuationFrame:
				req.block = append(req.block, f.HeaderBlockFragment()...)
			case *http2.DataFrame:
				ended = f.StreamEnded()
			}
		}
		req.fields, req.err = dec.DecodeFull(req.block)
		requests <- req
		if i < len(sizes) {
			if err := announce(sizes[i]); err != nil {
				return err
			}
		}
		stream := uint32(2*i - 1)
		answer.Reset()
		_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		_ = enc.WriteField(hpack.HeaderField{Name: "x-answer", Value: fmt.Sprint(i)})
		block := answer.Bytes()
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: block[:1], PadLength: 7}); err != nil {
			return err
		}
		if err := fr.WriteContinuation(stream, true, block[1:]); err != nil {
			return err
		}
		if err := fr.WriteDataPadded(stream, true, []byte("ok"), make([]byte, 3)); err != nil {
			return err
		}
	}
}

// TestClientFollowsTheServersHeaderTable: a server lowers, raises and lowers again its HPACK table
// mid-connection; every request on the one connection decodes with the table the server allows, and
// each one after a change starts with the Dynamic Table Size Update it calls for (at most 4096, the
// most our encoder uses). A field repeated in one block (a -header given twice) is no exception.
func TestClientFollowsTheServersHeaderTable(t *testing.T) {
	sizes := []uint32{4096, 0, 100, 100, 1 << 20, 4096, 40, 0, 1<<32 - 1}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer lis.Close()
	requests := make(chan strictRequest, len(sizes)+1)
	served := make(chan error, 1)
	go func() {
		conn, err := lis.Accept()
		if err != nil {
			served <- err
			close(requests)
			return
		}
		defer conn.Close()
		served <- serveStrict(conn, sizes, requests)
	}()

	conn, err := net.Dial("tcp", lis.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	client := NewClient(conn)
	fields := []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"}, {Name: ":path", Value: "/grpc.health.v1.Health/Check"},
		{Name: ":authority", Value: "localhost:50051"}, {Name: "content-type", Value: "application/grpc"},
		{Name: "te", Value: "trailers"}, {Name: "authorization", Value: "Bearer a-token-of-some-length"},
		{Name: "x-tenant", Value: "blue"}, {Name: "x-tenant", Value: "blue"},
	}
	for i := range sizes {
		request := append(fields, hpack.HeaderField{Name: "x-request", Value: fmt.Sprint(i)})
		require.NoError(t, client.WriteRequest(request, nil), "request %d", i)
		resp, err := client.ReadResponse(100)
		require.NoError(t, err, "request %d", i)
		assert.Equal(t, "ok", string(resp.Body), "request %d", i)
		assert.Equal(t, fmt.Sprint(i+1), Get(resp.Header, "x-answer"), "request %d", i)

		req := <-requests
		require.NoError(t, req.err, "request %d: the server could not decode it with the table it allows", i)
		assert.Equal(t, request, req.fields, "request %d", i)
		// The first request goes before the server's SETTINGS, with no table; request i after the
		// SETTINGS that announced sizes[i].
		updates := tableSizeUpdates(req.block)
		if i == 0 {
			assert.Equal(t, []uint32{0}, updates, "the first request uses no table")
			continue
		}
		used, before := min(sizes[i], defaultHeaderTableSize), min(sizes[i-1], defaultHeaderTableSize)
		if i == 1 {
			before = 0
		}
		if used != before {
			assert.NotEmpty(t, updates, "request %d: the table changed from %d to %d", i, before, used)
		}
		if len(updates) > 0 {
			assert.Equal(t, used, updates[len(updates)-1], "request %d", i)
		}
		assert.LessOrEqual(t, len(updates), 2, "request %d", i)
	}
	assert.True(t, client.Reusable(0))
	conn.Close()
	assert.Error(t, <-served, "the server ends when the client closes")
}

// TestClientSettingsBounds: the values a server may announce (RFC 9113 §6.5.2, as x/net's
// Setting.Valid reads it) are taken, whatever they are; a value out of bounds ends the read with one
// clear error. The client's table never grows past 4096 bytes, whatever the server allows.
func TestClientSettingsBounds(t *testing.T) {
	tests := []struct {
		setting http2.Setting
		wantErr string
	}{
		{setting: http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0}},
		{setting: http2.Setting{ID: http2.SettingHeaderTableSize, Val: 1<<32 - 1}},
		{setting: http2.Setting{ID: http2.SettingEnablePush, Val: 0}},
		{setting: http2.Setting{ID: http2.SettingEnablePush, Val: 1}},
		{setting: http2.Setting{ID: http2.SettingEnablePush, Val: 2}, wantErr: "SETTINGS_ENABLE_PUSH of 2"},
		{setting: http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 1<<32 - 1}},
		{setting: http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}},
		{setting: http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1}},
		{setting: http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31}, wantErr: "SETTINGS_INITIAL_WINDOW_SIZE of 2147483648"},
		{setting: http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1<<14 - 1}, wantErr: "SETTINGS_MAX_FRAME_SIZE of 16383"},
		{setting: http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 14}},
		{setting: http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1<<24 - 1}},
		{setting: http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 24}, wantErr: "SETTINGS_MAX_FRAME_SIZE of 16777216"},
		{setting: http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: 0}},
		{setting: http2.Setting{ID: 0xff, Val: 1<<32 - 1}},
	}
	for _, tt := range tests {
		t.Run(tt.setting.String(), func(t *testing.T) {
			var answer bytes.Buffer
			fr := http2.NewFramer(&answer, nil)
			require.NoError(t, fr.WriteSettings(tt.setting))
			assert.Equal(t, tt.wantErr == "", tt.setting.Valid() == nil, "as x/net reads it")
			answer.Write(answerOn(1, nil))
			client := NewClient(&scriptedConn{answer: bytes.NewReader(answer.Bytes())})
			require.NoError(t, client.WriteRequest([]hpack.HeaderField{{Name: ":path", Value: "/"}}, nil))
			resp, err := client.ReadResponse(100)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.True(t, resp.EndStream)
			assert.LessOrEqual(t, client.enc.MaxDynamicTableSize(), uint32(defaultHeaderTableSize))
		})
	}
}

// fuzzBytes hands out a fuzz input a byte at a time, zeros once it runs out.
type fuzzBytes []byte

func (b *fuzzBytes) byte() byte {
	if len(*b) == 0 {
		return 0
	}
	v := (*b)[0]
	*b = (*b)[1:]
	return v
}

func (b *fuzzBytes) uint32() uint32 {
	return uint32(b.byte())<<24 | uint32(b.byte())<<16 | uint32(b.byte())<<8 | uint32(b.byte())
}

// framerAnswer is a well-formed answer on stream 1 that x/net's Framer writes as choices says: SETTINGS
// of any valid values (the HPACK table size among them), frames the client must ignore or acknowledge
// between the answer's parts, header blocks split into CONTINUATION frames and padded, a body in DATA
// frames of any size, padded or not. It returns the answer, its body, the x-fuzz header it carries,
// and the last HPACK table size it announced (defaultHeaderTableSize when none).
func framerAnswer(choices fuzzBytes) (answer, body []byte, header string, tableSize uint32) {
	var out, blockBuf bytes.Buffer
	fr := http2.NewFramer(&out, nil)
	enc := hpack.NewEncoder(&blockBuf)
	tableSize = defaultHeaderTableSize
	settings := func() {
		var list []http2.Setting
		for range choices.byte() % 4 {
			s := http2.Setting{ID: http2.SettingID(choices.byte()%8 + 1), Val: choices.uint32()}
			if s.ID == http2.SettingMaxFrameSize {
				s.Val = max(s.Val%(1<<24), 1<<14)
			}
			if s.Valid() != nil {
				continue
			}
			if s.ID == http2.SettingHeaderTableSize {
				tableSize = s.Val
			}
			list = append(list, s)
		}
		_ = fr.WriteSettings(list...)
	}
	// noise writes frames that are no part of the answer, as a server may send them at any time.
	noise := func() {
		for range choices.byte() % 3 {
			switch choices.byte() % 8 {
			case 0:
				settings()
			case 1:
				_ = fr.WritePing(choices.byte()%2 == 0, [8]byte{choices.byte()})
			case 2:
				_ = fr.WriteWindowUpdate(uint32(choices.byte()%2), max(choices.uint32()&0x7fffffff, 1))
			case 3:
				_ = fr.WritePriority(1, http2.PriorityParam{StreamDep: 3, Weight: choices.byte()})
			case 4:
				_ = fr.WriteRawFrame(http2.FrameType(0x20+choices.byte()%8), http2.Flags(choices.byte()), uint32(choices.byte()), []byte("unknown"))
			case 5:
				_ = fr.WriteRSTStream(3, http2.ErrCodeCancel)
			case 6:
				_ = fr.WriteSettingsAck()
			case 7:
				// A header block on another stream: the client decodes it too, to keep the table in step.
				blockBuf.Reset()
				_ = enc.WriteField(hpack.HeaderField{Name: "x-other", Value: fmt.Sprint(choices.byte())})
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: blockBuf.Bytes(), EndHeaders: true, EndStream: true})
			}
		}
	}
	headers := func(endStream bool, fields ...string) {
		if choices.byte()%4 == 0 {
			enc.SetMaxDynamicTableSize(uint32(choices.byte()) * 16) // the server's own table, within our 4096
		}
		blockBuf.Reset()
		for i := 0; i+1 < len(fields); i += 2 {
			_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		block := bytes.Clone(blockBuf.Bytes())
		split := 1 + int(choices.byte())
		first := block[:min(split, len(block))]
		rest := block[len(first):]
		param := http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndStream: endStream, EndHeaders: len(rest) == 0,
			PadLength: choices.byte()}
		if choices.byte()%2 == 0 {
			param.Priority = http2.PriorityParam{StreamDep: 0, Weight: choices.byte()}
		}
		_ = fr.WriteHeaders(param)
		for len(rest) > 0 {
			n := min(split, len(rest))
			_ = fr.WriteContinuation(1, n == len(rest), rest[:n])
			rest = rest[n:]
		}
	}

	settings()
	noise()
	header = string(bytes.Repeat([]byte{'h'}, int(choices.byte())))
	headers(false, ":status", "200", "content-type", "application/grpc", "x-fuzz", header)
	noise()
	body = bytes.Repeat([]byte{choices.byte()}, int(choices.byte()))
	for rest := body; len(rest) > 0; {
		n := min(1+int(choices.byte()), len(rest))
		if pad := choices.byte(); pad%2 == 0 {
			_ = fr.WriteData(1, false, rest[:n])
		} else {
			_ = fr.WriteDataPadded(1, false, rest[:n], make([]byte, pad))
		}
		rest = rest[n:]
		noise()
	}
	headers(true, "grpc-status", "0", "x-fuzz", header)
	return out.Bytes(), body, header, tableSize
}

// FuzzReadFramerAnswer reads well-formed answers that x/net's Framer writes, framed as the fuzzer
// chooses: the client must read each one whole and exactly. The client's next request is then read
// back with x/net's Framer and decoded with the HPACK table the server announced last: it must
// decode, to the fields that were sent.
func FuzzReadFramerAnswer(f *testing.F) {
	f.Add([]byte{}, uint8(0))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 2, 1, 0, 9, 0, 0, 0, 3, 200, 5, 1, 7, 1, 20, 9, 3, 5, 2, 5}, uint8(1))
	f.Add([]byte{3, 0, 0, 0, 0, 0, 1, 5, 0, 0, 0, 0, 4, 0, 0, 16, 0, 2, 2, 0, 7, 1, 0, 50, 2, 2, 1, 100, 0, 3, 7, 8}, uint8(7))
	f.Add(bytes.Repeat([]byte{0xff}, 64), uint8(3))
	f.Fuzz(func(t *testing.T, choices []byte, chunk uint8) {
		answer, body, header, tableSize := framerAnswer(choices)
		conn := &scriptedConn{answer: bytes.NewReader(answer), chunk: int(chunk)}
		client := NewClient(conn)
		request := []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":path", Value: "/a/b"},
			{Name: "x-request", Value: header}}
		require.NoError(t, client.WriteRequest(request, nil))
		resp, err := client.ReadResponse(1000)
		require.NoError(t, err)
		require.True(t, resp.EndStream)
		assert.Equal(t, header, Get(resp.Header, "x-fuzz"))
		assert.Equal(t, header, Get(resp.Trailer, "x-fuzz"))
		assert.Equal(t, "0", Get(resp.Trailer, "grpc-status"))
		assert.Equal(t, string(body), string(resp.Body))
		if !client.Reusable(0) {
			return // the server's SETTINGS allow no other stream
		}
		require.NoError(t, client.WriteRequest(request, nil))

		// The server's side: x/net reads what the client wrote, and decodes its header blocks, the first
		// with the default table, the second with the one announced.
		sent, ok := bytes.CutPrefix(conn.sent, []byte(http2.ClientPreface))
		require.True(t, ok)
		fr := http2.NewFramer(nil, bytes.NewReader(sent))
		dec := hpack.NewDecoder(defaultHeaderTableSize, nil)
		var blocks int
		for {
			frame, err := fr.ReadFrame()
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err)
			headers, ok := frame.(*http2.HeadersFrame)
			if !ok {
				continue
			}
			require.True(t, headers.HeadersEnded())
			if blocks++; blocks == 2 {
				dec.SetAllowedMaxDynamicTableSize(tableSize)
				dec.SetMaxDynamicTableSize(tableSize)
			}
			fields, err := dec.DecodeFull(headers.HeaderBlockFragment())
			require.NoError(t, err, "block %d, table %d", blocks, tableSize)
			assert.Equal(t, request, fields)
		}
		assert.Equal(t, 2, blocks)
	})
}
