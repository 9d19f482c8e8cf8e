// Package http1 reads HTTP/1.1 answers (RFC 9112) from a bufio.Reader: the status line, the headers,
// and the body framed as the answer says — chunked, Content-Length or up to the connection's close —
// within the limits the caller sets with a Budget. It knows nothing of what the answer means: the probe
// judges status and body, follows redirects and writes the request.
package http1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strconv"
	"strings"
)

// maxInterimAnswers is net/http's limit on 1xx answers before the final one.
const maxInterimAnswers = 5

// Response is the head of an HTTP answer, with its body still on the reader.
type Response struct {
	Status     string // "503 Service Unavailable", as the server sent it
	StatusCode int
	Header     textproto.MIMEHeader
	Body       io.Reader // the body alone, whatever its framing
	// KeepAlive: the connection may carry another request once this answer is read to its end —
	// HTTP/1.1 without "Connection: close", and a body whose end is framed, not the connection's close.
	KeepAlive bool
	chunked   *chunkedReader // the body, when chunked: its trailers are read by Drain
}

// ReadResponse reads the status line and headers of the final answer, skipping a few interim 1xx
// ones, and frames the body as RFC 9112 section 6.3 says. budget, when not nil, is the Budget that r
// reads through: a chunked body gives its framing back to it (see chunkedReader), so that the budget
// set for the body counts the body's own bytes, however they are chunked.
func ReadResponse(r *bufio.Reader, budget *Budget, head bool) (*Response, error) {
	text := textproto.NewReader(r)
	for interim := 0; ; interim++ {
		line, err := readStatusLine(r)
		if err != nil {
			switch {
			case line == "" && errors.Is(err, io.EOF):
				return nil, errors.New("connection closed without an answer")
			case !strings.HasPrefix(line, "HTTP/"[:min(len(line), 5)]):
				return nil, notHTTP(line) // whatever else it would have said
			case errors.Is(err, io.EOF):
				return nil, errors.New("connection closed in the answer's status line")
			}
			return nil, err // a server too slow to finish its status line ran into the deadline
		}
		resp, err := parseStatusLine(line)
		if err != nil {
			return nil, err
		}
		if resp.Header, err = text.ReadMIMEHeader(); err != nil {
			return nil, fmt.Errorf("reading the answer's headers: %w", unexpectedEOF(err))
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != 101 {
			// 100 Continue, 103 Early Hints: the answer comes next, unless a server sends nothing else.
			if interim == maxInterimAnswers {
				return nil, fmt.Errorf("more than %d interim answers (%s)", maxInterimAnswers, resp.Status)
			}
			continue
		}
		resp.Body, err = bodyReader(r, budget, resp, head)
		resp.chunked, _ = resp.Body.(*chunkedReader)
		resp.KeepAlive = err == nil && strings.HasPrefix(line, "HTTP/1.1 ") && resp.Body != io.Reader(r) &&
			!hasToken(resp.Header.Values("Connection"), "close")
		return resp, err
	}
}

// readStatusLine reads one whole line. A line cut short by the deadline or a closed connection comes
// with that error, so that it is not misread as a whole status line.
func readStatusLine(r *bufio.Reader) (string, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		switch {
		case err == bufio.ErrBufferFull:
			continue // a long line: the head's budget ends it
		case err != nil:
			return string(line), err
		}
		return strings.TrimSuffix(strings.TrimSuffix(string(line), "\n"), "\r"), nil
	}
}

// Drain reads what is left of resp's body, and of a chunked body its trailers, and reports whether the
// connection is then at the start of the next answer: resp.KeepAlive, a body that ends within what r's
// budget allows, and no byte buffered past it.
func Drain(r *bufio.Reader, resp *Response) bool {
	if !resp.KeepAlive {
		return false
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return false
	}
	if framed, ok := resp.Body.(*io.LimitedReader); ok && framed.N > 0 {
		return false // the connection closed inside a Content-Length body
	}
	if resp.chunked != nil {
		for { // trailer fields, then the empty line that ends the answer
			line, err := r.ReadSlice('\n')
			if err != nil || resp.chunked.framing(len(line), 0) != nil {
				return false
			}
			if len(bytes.TrimRight(line, "\r\n")) == 0 {
				break
			}
		}
	}
	return r.Buffered() == 0
}

// hasToken reports whether a comma-separated header holds token, in any case.
func hasToken(values []string, token string) bool {
	for _, value := range values {
		for _, field := range strings.Split(value, ",") {
			if strings.EqualFold(strings.TrimSpace(field), token) {
				return true
			}
		}
	}
	return false
}

// parseStatusLine reads "HTTP/1.1 503 Service Unavailable".
func parseStatusLine(line string) (*Response, error) {
	proto, status, _ := strings.Cut(line, " ")
	code, _, _ := strings.Cut(status, " ")
	n, err := strconv.Atoi(code)
	if (proto != "HTTP/1.1" && proto != "HTTP/1.0") || len(code) != 3 || err != nil || n < 100 {
		return nil, notHTTP(line)
	}
	return &Response{Status: status, StatusCode: n}, nil
}

func notHTTP(line string) error {
	return fmt.Errorf("not an HTTP/1.1 answer: %q", line[:min(len(line), 40)])
}

// bodyReader frames the body: none, chunked, Content-Length bytes, or up to the connection's close.
func bodyReader(r *bufio.Reader, budget *Budget, resp *Response, head bool) (io.Reader, error) {
	if head || resp.StatusCode == 204 || resp.StatusCode == 304 || resp.StatusCode == 101 {
		return strings.NewReader(""), nil
	}
	if codings := resp.Header.Values("Transfer-Encoding"); len(codings) > 0 {
		if !strings.EqualFold(strings.TrimSpace(codings[len(codings)-1]), "chunked") {
			return nil, fmt.Errorf("unsupported Transfer-Encoding %q", strings.Join(codings, ", "))
		}
		return &chunkedReader{r: r, budget: budget}, nil
	}
	if values := resp.Header.Values("Content-Length"); len(values) > 0 {
		n, err := contentLength(values)
		if err != nil {
			return nil, err
		}
		return io.LimitReader(r, n), nil
	}
	return r, nil
}

// contentLength is the body's length from the Content-Length fields: digits only, and where a server
// repeats them, the same number each time. RFC 9112 section 6.3 makes anything else a framing error:
// a reader that took the first of two lengths could read a body the server did not mean.
func contentLength(values []string) (int64, error) {
	length := int64(-1)
	for _, value := range values {
		for _, field := range strings.Split(value, ",") {
			field = strings.TrimSpace(field)
			n, err := strconv.ParseInt(field, 10, 64)
			if err != nil || strings.TrimLeft(field, "0123456789") != "" {
				return 0, fmt.Errorf("bad Content-Length %q", strings.Join(values, ", "))
			}
			if length >= 0 && n != length {
				return 0, fmt.Errorf("conflicting Content-Length values %q", strings.Join(values, ", "))
			}
			length = n
		}
	}
	return length, nil
}

// Budget reads from R until its budget is spent: the answer's head gets one, and
// then its body another.
type Budget struct {
	R    io.Reader
	Left int64 // bytes left to read
}

// ErrBudgetSpent is a read past a budget: for a head, an error; for a body, the end of what we look at.
var ErrBudgetSpent = errors.New("read limit reached")

// giveBack returns n bytes read to the budget, if there is one.
func (b *Budget) giveBack(n int) {
	if b != nil {
		b.Left += int64(n)
	}
}

func (b *Budget) Read(p []byte) (int, error) {
	if b.Left <= 0 {
		return 0, ErrBudgetSpent
	}
	n, err := b.R.Read(p[:min(int64(len(p)), b.Left)])
	b.Left -= int64(n)
	return n, err
}

// maxExcessFraming is how far a chunked body's framing may run ahead of what net/http allows it (16
// bytes a chunk and twice the chunk's data): net/http's limit, so that we refuse no body it reads.
const maxExcessFraming = 16 << 10

// chunkedReader decodes a chunked body (RFC 9112 section 7.1); Drain reads its trailers.
//
// Its framing — the chunk-size lines with their extensions, the CRLF after each chunk, the trailers —
// goes back to the budget as it is read: the budget counts the body's data alone, so that what it
// allows of a body is the same whether the body comes in one chunk, in chunks of 7 bytes or of one
// (5 bytes of framing for each byte of data). The framing is bounded instead as net/http bounds it.
type chunkedReader struct {
	r      *bufio.Reader
	budget *Budget // nil: none to give back to
	left   uint64  // bytes left in the current chunk
	excess int64   // framing beyond what the chunks so far allow, as net/http counts it
	done   bool
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if c.done {
		return 0, io.EOF
	}
	if c.left == 0 {
		if err := c.chunkSize(); err != nil || c.done {
			return 0, err
		}
	}
	n, err := c.r.Read(p[:min(uint64(len(p)), c.left)])
	c.left -= uint64(n)
	if c.left == 0 && err == nil {
		var crlf [2]byte
		if _, err = io.ReadFull(c.r, crlf[:]); err == nil && string(crlf[:]) != "\r\n" {
			err = errors.New("chunked body: no CRLF after a chunk")
		}
		c.budget.giveBack(len(crlf))
	}
	return n, unexpectedEOF(err)
}

// chunkSize reads the next chunk-size line: the chunk's size, or the end of the body (io.EOF).
func (c *chunkedReader) chunkSize() error {
	line, err := c.r.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return fmt.Errorf("chunked body: a chunk-size line over %d bytes", c.r.Size())
	case err != nil:
		return fmt.Errorf("chunked body: %w", unexpectedEOF(err))
	}
	size, _, _ := bytes.Cut(bytes.TrimSpace(line), []byte(";"))
	if c.left, err = strconv.ParseUint(string(bytes.TrimSpace(size)), 16, 63); err != nil {
		return fmt.Errorf("chunked body: bad chunk size %q", size)
	}
	c.done = c.left == 0
	if !c.done {
		c.excess += 2 // the CRLF the chunk ends with, given back once read
	}
	if err = c.framing(len(line), c.left); err == nil && c.done {
		err = io.EOF
	}
	return err
}

// framing counts n bytes of framing read, of a chunk of size bytes, gives them back to the budget, and
// refuses a body whose framing runs too far ahead of its data.
func (c *chunkedReader) framing(n int, size uint64) error {
	c.excess = max(c.excess+int64(n)-16-2*int64(min(size, 1<<40)), 0)
	if c.excess > maxExcessFraming {
		return errors.New("chunked body: too much framing for its data (chunk extensions or trailers)")
	}
	c.budget.giveBack(n)
	return nil
}

// unexpectedEOF turns an EOF inside a framed body into the error it is.
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
