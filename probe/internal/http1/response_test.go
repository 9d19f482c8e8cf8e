package http1

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// read parses answer as the probe does, with budget bytes for the head, and reads its whole body.
func read(answer string, head bool, budget int64) (*Response, string, error) {
	r := bufio.NewReaderSize(&Budget{R: strings.NewReader(answer), Left: budget}, 64)
	resp, err := ReadResponse(r, nil, head)
	if err != nil {
		return nil, "", err
	}
	body, err := io.ReadAll(resp.Body)
	return resp, string(body), err
}

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name       string
		answer     string
		head       bool
		wantStatus string
		wantBody   string
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nready and more", false, "200 OK", "ready"},
		{"chunked with extensions and a trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nrea\r\n2;ext=1\r\ndy\r\n0\r\nX-T: 1\r\n\r\n", false, "200 OK", "ready"},
		{"until close, HTTP/1.0", "HTTP/1.0 503 Service Unavailable\r\n\r\ndown", false, "503 Service Unavailable", "down"},
		{"interim answers first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204\r\n\r\n", false, "204", ""},
		{"HEAD has no body", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", true, "200 OK", ""},
		{"304 has no body", "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n", false, "304 Not Modified", ""},
		{"repeated equal lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nokay", false, "200 OK", "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body, err := read(tt.answer, tt.head, 1<<20)
			require.NoError(t, err)
			assert.Equal(t, tt.wantStatus, resp.Status)
			assert.Equal(t, tt.wantBody, body)
		})
	}
}

func TestReadResponseRejects(t *testing.T) {
	tests := []struct {
		name, answer, wantErr string
	}{
		{"nothing", "", "connection closed without an answer"},
		{"not HTTP", "SSH-2.0-OpenSSH_9.2\r\n", `not an HTTP/1.1 answer: "SSH-2.0-OpenSSH_9.2"`},
		{"HTTP/2", "HTTP/2 200\r\n\r\n", "not an HTTP/1.1 answer"},
		{"closed in the status line", "HTTP/1.1 20", "connection closed in the answer's status line"},
		{"closed in the headers", "HTTP/1.1 200 OK\r\nX-A: 1", "reading the answer's headers: unexpected EOF"},
		{"too many interim answers", strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", 6), "more than 5 interim answers (103 Early Hints)"},
		{"unsupported coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", `unsupported Transfer-Encoding "gzip"`},
		{"signed length", "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", `bad Content-Length "+2"`},
		{"conflicting lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nready!", `conflicting Content-Length values "5, 6"`},
		{"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"},
		{"no CRLF after a chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n", "no CRLF after a chunk"},
		{"chunked body cut short", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nrea", "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := read(tt.answer, false, 1<<20)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

// TestChunkedFramingGoesBackToTheBudget: the budget of a chunked body counts its data alone, whatever
// its chunks: a budget of what the reader holds (a line of framing, which goes back once read whole)
// and 20 bytes more reads a body of 10 bytes to the end of its trailers, and of a body of 100 bytes at
// least 20 and at most the budget.
func TestChunkedFramingGoesBackToTheBudget(t *testing.T) {
	const readerSize = 16
	framings := []struct {
		name  string
		frame func(data string) string
	}{
		{"one chunk", func(data string) string { return fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(data), data) }},
		{"1-byte chunks", func(data string) string { return strings.Repeat("1\r\nx\r\n", len(data)) + "0\r\n\r\n" }},
		{"1-byte chunks with extensions and trailers", func(data string) string {
			return strings.Repeat("1;e=\"v\"\r\nx\r\n", len(data)) + "0;last\r\nX-T: 1\r\nX-U: 2\r\n\r\n"
		}},
	}
	for _, framing := range framings {
		t.Run(framing.name, func(t *testing.T) {
			read := func(data string) (*bufio.Reader, *chunkedReader, []byte, error) {
				source := &Budget{R: strings.NewReader(framing.frame(data)), Left: readerSize + 20}
				r := bufio.NewReaderSize(source, readerSize)
				body := &chunkedReader{r: r, budget: source}
				read, err := io.ReadAll(body)
				return r, body, read, err
			}
			r, body, data, err := read(strings.Repeat("x", 10))
			require.NoError(t, err)
			assert.Len(t, data, 10)
			assert.True(t, Drain(r, &Response{Body: body, KeepAlive: true, chunked: body}), "read to the end of the trailers")

			_, _, data, err = read(strings.Repeat("x", 100))
			assert.ErrorIs(t, err, ErrBudgetSpent)
			assert.GreaterOrEqual(t, len(data), 20)
			assert.LessOrEqual(t, len(data), readerSize+20)
		})
	}
}

func TestChunkSizeLineTooLong(t *testing.T) {
	_, _, err := read("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;"+strings.Repeat("e", 100)+"\r\nx\r\n0\r\n\r\n", false, 1<<20)
	assert.EqualError(t, err, "chunked body: a chunk-size line over 64 bytes")
}

func TestBudgetEndsTheHead(t *testing.T) {
	_, _, err := read("HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("h", 1000)+"\r\n\r\n", false, 100)
	assert.ErrorIs(t, err, ErrBudgetSpent)
}

// FuzzReadResponse feeds the reader arbitrary answers: it must not panic, and must never read past
// its budget, whatever the answer's framing claims.
func FuzzReadResponse(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nready",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nrea\r\n2;x\r\ndy\r\n0\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nall ready",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
		"SSH-2.0-OpenSSH_9.2\r\n",
	} {
		f.Add(seed, false)
	}
	f.Fuzz(func(t *testing.T, answer string, head bool) {
		const budget = 256
		source := &Budget{R: strings.NewReader(answer), Left: budget}
		resp, err := ReadResponse(bufio.NewReaderSize(source, 16), source, head)
		if err != nil {
			return
		}
		if resp.StatusCode < 100 || resp.StatusCode > 999 || resp.Header == nil || resp.Body == nil {
			t.Fatalf("accepted %q as %+v", answer, resp)
		}
		body, _ := io.ReadAll(resp.Body)
		if len(body) > min(len(answer), budget) {
			t.Fatalf("read %d bytes of body from a %d-byte answer, with a budget of %d", len(body), len(answer), budget)
		}
		if source.Left < 0 {
			t.Fatalf("read %d bytes past the budget", -source.Left)
		}
	})
}

func TestDrain(t *testing.T) {
	tests := []struct {
		name   string
		answer string
		reuse  bool
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true},
		{"chunked with trailers", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n", true},
		{"no body", "HTTP/1.1 204 No Content\r\n\r\n", true},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 2\r\n\r\nok", false},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false},
		{"until the close", "HTTP/1.1 200 OK\r\n\r\nok", false},
		{"bytes past the answer", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1", false},
		{"body cut short", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReader(strings.NewReader(tt.answer))
			resp, err := ReadResponse(r, nil, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := Drain(r, resp); got != tt.reuse {
				t.Errorf("Drain = %v, want %v", got, tt.reuse)
			}
		})
	}
}
