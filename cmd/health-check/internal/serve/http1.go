package serve

import (
	"bufio"
	"bytes"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/health-check-proxy/health-check-proxy/internal/httpsyntax"
)

// The server speaks the part of HTTP/1.1 that probes use: a request line and header fields, never a
// body. What it does not need, it refuses: a request with a body, chunked framing, obsolete line
// folding, a request target other than a path. Every refusal closes the connection, so that nothing
// a refused request left unread can be taken for the next request.

// request is what the server keeps of a request: the rest of its head is read and dropped.
type request struct {
	method string
	path   string // the request target up to any '?'
	// keepAlive: the client may send another request on this connection.
	keepAlive bool
}

// httpError is a request the server refuses: the status and a short reason for the body.
type httpError struct {
	status int
	reason string
}

func (e *httpError) Error() string { return e.reason }

func badRequest(reason string) error { return &httpError{status: 400, reason: reason} }

// errHeadTooLarge is reported as 431; it is built where it happens, not at package initialisation.
func errHeadTooLarge(limit int) error {
	return &httpError{status: 431, reason: "request head larger than " + strconv.Itoa(limit) + " bytes"}
}

// headReader reads one request head from r, at most limit bytes of it.
type headReader struct {
	r     *bufio.Reader
	limit int
	read  int
	line  []byte // the current line when it spans more than r's buffer
}

// readLine returns the next line without its line ending ("\r\n" or "\n"). The slice is valid until
// the next call.
func (h *headReader) readLine() ([]byte, error) {
	h.line = h.line[:0]
	for {
		chunk, err := h.r.ReadSlice('\n')
		h.read += len(chunk)
		if h.read > h.limit {
			return nil, errHeadTooLarge(h.limit)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			h.line = append(h.line, chunk...)
			continue
		}
		if err != nil {
			return nil, err
		}
		line := chunk
		if len(h.line) > 0 {
			line = append(h.line, chunk...)
		}
		line = line[:len(line)-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		return line, nil
	}
}

// readRequest reads and checks one request head.
func readRequest(r *bufio.Reader, limit int) (*request, error) {
	h := &headReader{r: r, limit: limit}
	line, err := h.readLine()
	if err != nil {
		return nil, err
	}
	req, http10, err := parseRequestLine(line)
	if err != nil {
		return nil, err
	}
	req.keepAlive = !http10
	hosts := 0
	for {
		line, err := h.readLine()
		if err != nil {
			return nil, err
		}
		if len(line) == 0 {
			break
		}
		name, value, err := parseHeaderLine(line)
		if err != nil {
			return nil, err
		}
		switch {
		case bytes.EqualFold(name, []byte("Host")):
			hosts++
		case bytes.EqualFold(name, []byte("Content-Length")):
			if string(value) != "0" {
				return nil, badRequest("a request body is not accepted")
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return nil, badRequest("a request body is not accepted")
		case bytes.EqualFold(name, []byte("Connection")):
			// HTTP/1.0's keep-alive is not offered: its clients are rare, and each gets a connection.
			for _, option := range strings.Split(string(value), ",") {
				if strings.EqualFold(strings.TrimSpace(option), "close") {
					req.keepAlive = false
				}
			}
		}
	}
	// RFC 9112, section 3.2: a request without exactly one Host (HTTP/1.1), or with several, is refused.
	if hosts > 1 || (hosts == 0 && !http10) {
		return nil, badRequest("want exactly one Host header")
	}
	return req, nil
}

// parseRequestLine parses "GET /live HTTP/1.1".
func parseRequestLine(line []byte) (req *request, http10 bool, err error) {
	method, rest, ok1 := bytes.Cut(line, []byte(" "))
	target, version, ok2 := bytes.Cut(rest, []byte(" "))
	if !ok1 || !ok2 || !httpsyntax.IsToken(method) {
		return nil, false, badRequest("malformed request line")
	}
	switch string(version) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		http10 = true
	default:
		if bytes.HasPrefix(version, []byte("HTTP/")) {
			return nil, false, &httpError{status: 505, reason: "HTTP/1.1 only"}
		}
		return nil, false, badRequest("malformed request line")
	}
	// Only a path: the server is no proxy, and the absolute form would be a request to one.
	if len(target) == 0 || target[0] != '/' {
		return nil, false, badRequest("the request target must be a path")
	}
	for _, c := range target {
		if c <= ' ' || c >= 0x7f {
			return nil, false, badRequest("malformed request target")
		}
	}
	path, _, _ := bytes.Cut(target, []byte("?"))
	if !wellEscaped(path) {
		return nil, false, badRequest("malformed request target")
	}
	return &request{method: string(method), path: string(path)}, http10, nil
}

// wellEscaped reports whether every '%' in path starts a percent-encoded byte (RFC 3986, section 2.1):
// net/http refuses a path that cannot be decoded, and so do we.
func wellEscaped(path []byte) bool {
	for i, c := range path {
		if c == '%' && (i+2 >= len(path) || !isHex(path[i+1]) || !isHex(path[i+2])) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// parseHeaderLine parses "Name: value". Obsolete line folding (a line that starts with white
// space) is refused, as RFC 9112 allows, and so is white space before the colon.
func parseHeaderLine(line []byte) (name, value []byte, err error) {
	name, value, ok := bytes.Cut(line, []byte(":"))
	if !ok || !httpsyntax.IsToken(name) {
		return nil, nil, badRequest("malformed header line")
	}
	value = bytes.Trim(value, " \t")
	if !httpsyntax.IsFieldValue(value) {
		return nil, nil, badRequest("control character in a header value")
	}
	return name, value, nil
}

// response is one answer; the server writes it whole, in one write.
type response struct {
	status      int
	contentType string
	body        string
	allow       string // the Allow header of a 405
	close       bool   // the connection closes after it: Connection: close
}

// httpDate is the format of the Date header (RFC 9110, IMF-fixdate).
const httpDate = "Mon, 02 Jan 2006 15:04:05 GMT"

// appendResponse renders the response; a HEAD response has the headers of a GET and no body.
func appendResponse(b []byte, resp *response, head bool, now time.Time) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(resp.status), 10)
	b = append(b, ' ')
	b = append(b, httpsyntax.StatusText(resp.status)...)
	b = append(b, "\r\nDate: "...)
	b = now.UTC().AppendFormat(b, httpDate)
	contentType := resp.contentType
	if contentType == "" {
		contentType = "text/plain; charset=utf-8"
	}
	b = append(b, "\r\nContent-Type: "...)
	b = append(b, contentType...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(resp.body)), 10)
	// A probe's answer is about now: no cache may keep it, and no browser may read it as anything else.
	b = append(b, "\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"...)
	if resp.allow != "" {
		b = append(b, "Allow: "...)
		b = append(b, resp.allow...)
		b = append(b, "\r\n"...)
	}
	if resp.close {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	if !head {
		b = append(b, resp.body...)
	}
	return b
}
