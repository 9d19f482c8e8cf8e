package probe

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

const (
	// maxBodyBytes is how much of a body -expect-body searches: the kubelet's maxRespBodyLength.
	// A health body is small; a huge one is cut here instead of being read to the end.
	maxBodyBytes = 10 << 10
	// bodySnippetBytes is how much of an unhealthy answer's body the failure line quotes.
	bodySnippetBytes = 80
	// maxResponseHeaderBytes bounds the headers a server can make us read.
	maxResponseHeaderBytes = 64 << 10
	// maxRedirects is net/http's own limit, kept explicit because the redirect policy is ours.
	maxRedirects = 10
)

// errRedirectLoop ends a chain of redirects that does not end.
var errRedirectLoop = fmt.Errorf("stopped after %d redirects", maxRedirects)

// checkHTTP sends one request and judges the answer by its status and, with -expect-body, its body.
//
// It speaks HTTP/1.1 itself, on one connection of its own and on the calling goroutine. net/http would
// cost a probe that makes one request and exits more than the request does: its package alone adds
// about a megabyte of resident memory and its Transport a connection pool, proxy logic and goroutines.
func checkHTTP(ctx context.Context, c *Config, tlsConfig *tls.Config, log logf) outcome {
	target := c.Target
	for redirects := 0; ; redirects++ {
		resp, err := roundTrip(ctx, c, tlsConfig, target, log)
		if err != nil {
			return unreachable(err)
		}
		defer resp.conn.Close()
		// A broken redirect, or one that never ends, is still an answer: unhealthy, not unreachable.
		next, err := sameHostRedirect(resp, target, c.Target, log)
		if err != nil {
			return unhealthy("%v", err)
		}
		if next == nil {
			return judge(c, resp, target)
		}
		if redirects == maxRedirects {
			return unhealthy("%v", errRedirectLoop)
		}
		target = next
	}
}

// judge is the verdict on an answer: its status, then its body.
func judge(c *Config, resp *response, from *url.URL) outcome {
	status := resp.status
	if from != c.Target {
		status += " from " + redacted(from)
	}
	if !c.ExpectStatus.Contains(resp.statusCode) {
		snippet, _ := readUpTo(resp.body, bodySnippetBytes)
		return unhealthy("%s (want %s)%s", status, c.ExpectStatus, quoteBody(snippet))
	}
	if c.ExpectBody != "" {
		body, err := readUpTo(resp.body, maxBodyBytes)
		if err != nil {
			return unreachable(fmt.Errorf("%s, reading body: %w", status, err))
		}
		if !bytes.Contains(body, []byte(c.ExpectBody)) {
			return unhealthy("%s, body does not contain %q%s", status, c.ExpectBody, quoteBody(body[:min(len(body), bodySnippetBytes)]))
		}
	}
	return healthy(status)
}

// response is the head of an HTTP answer, with its body still on the connection.
type response struct {
	status     string // "503 Service Unavailable", as the server sent it
	statusCode int
	header     textproto.MIMEHeader
	body       io.Reader // the body alone, whatever its framing
	conn       net.Conn
}

// roundTrip sends one request for target on a new connection and reads the answer's head. Every wait,
// the body's included, ends at ctx's deadline. The caller closes resp.conn.
func roundTrip(ctx context.Context, c *Config, tlsConfig *tls.Config, target *url.URL, log logf) (*response, error) {
	conn, err := dial(ctx, c, address(target), log)
	if err != nil {
		return nil, err
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	if target.Scheme == "https" {
		if tlsConfig == nil {
			tlsConfig = &tls.Config{} // an http:// target redirected to https://: verify with the system's roots
		}
		tlsConn, err := handshake(ctx, conn, tlsConfig, target.Hostname(), "http/1.1", log)
		if err != nil {
			conn.Close()
			return nil, err
		}
		conn = tlsConn
	}
	start := time.Now()
	if _, err := conn.Write(requestHead(c, target)); err != nil {
		err = whyClosed(ctx, conn, err)
		conn.Close()
		return nil, err
	}
	// The answer's head and the part of the body we look at, and not a byte more.
	reader := bufio.NewReaderSize(io.LimitReader(conn, maxResponseHeaderBytes+maxBodyBytes), 4<<10)
	resp, err := readResponseHead(reader, c.Method == methodHead)
	if err != nil {
		conn.Close()
		return nil, err
	}
	resp.conn = conn
	log("answer %s in %s", resp.status, since(start))
	return resp, nil
}

// whyClosed is the error to report when a write failed: a server that rejected our client certificate
// after a TLS 1.3 handshake said so in an alert before it closed, and that beats "broken pipe". It
// reads for alertWait at most.
func whyClosed(ctx context.Context, conn net.Conn, writeErr error) error {
	awaitClosingReason(ctx, conn)
	var one [1]byte
	_, err := conn.Read(one[:])
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "remote error" {
		return explainTLSAlert(err)
	}
	return writeErr
}

// requestHead is an HTTP/1.1 request without a body. The header values were checked when they were
// parsed, so none can break the request's framing.
func requestHead(c *Config, target *url.URL) []byte {
	method := c.Method
	if method == "" {
		method = methodGet
	}
	host := c.Host
	if host == "" {
		host = target.Host
	}
	var b bytes.Buffer
	b.WriteString(method + " " + target.RequestURI() + " HTTP/1.1\r\nHost: " + host + "\r\n")
	if len(c.Header["User-Agent"]) == 0 {
		b.WriteString("User-Agent: " + c.UserAgent + "\r\n")
	}
	names := make([]string, 0, len(c.Header))
	for name := range c.Header {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if name == "Host" || framingHeaders[name] { // ParseHeader rejects them; a library caller may not have used it
			continue
		}
		for _, value := range c.Header[name] {
			b.WriteString(name + ": " + value + "\r\n")
		}
	}
	b.WriteString("Connection: close\r\n\r\n") // one request a connection
	return b.Bytes()
}

// readResponseHead reads the status line and headers of the final answer, skipping interim 1xx ones,
// and frames the body as RFC 9112 section 6.3 says.
func readResponseHead(r *bufio.Reader, head bool) (*response, error) {
	text := textproto.NewReader(r)
	for {
		line, err := text.ReadLine()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, errors.New("connection closed without an answer")
			}
			return nil, err
		}
		resp, err := parseStatusLine(line)
		if err != nil {
			return nil, err
		}
		if resp.header, err = text.ReadMIMEHeader(); err != nil {
			return nil, fmt.Errorf("reading the answer's headers: %w", err)
		}
		if resp.statusCode >= 100 && resp.statusCode < 200 && resp.statusCode != 101 {
			continue // 100 Continue, 103 Early Hints: the answer comes next
		}
		resp.body, err = bodyReader(r, resp, head)
		return resp, err
	}
}

// parseStatusLine reads "HTTP/1.1 503 Service Unavailable".
func parseStatusLine(line string) (*response, error) {
	proto, status, _ := strings.Cut(line, " ")
	code, _, _ := strings.Cut(status, " ")
	n, err := strconv.Atoi(code)
	if (proto != "HTTP/1.1" && proto != "HTTP/1.0") || len(code) != 3 || err != nil || n < 100 {
		return nil, fmt.Errorf("not an HTTP/1.1 answer: %q", line[:min(len(line), 40)])
	}
	return &response{status: status, statusCode: n}, nil
}

// bodyReader frames the body: none, chunked, Content-Length bytes, or up to the connection's close.
func bodyReader(r *bufio.Reader, resp *response, head bool) (io.Reader, error) {
	if head || resp.statusCode == 204 || resp.statusCode == 304 || resp.statusCode == 101 {
		return strings.NewReader(""), nil
	}
	if codings := resp.header.Values("Transfer-Encoding"); len(codings) > 0 {
		if !strings.EqualFold(strings.TrimSpace(codings[len(codings)-1]), "chunked") {
			return nil, fmt.Errorf("unsupported Transfer-Encoding %q", strings.Join(codings, ", "))
		}
		return &chunkedReader{r: r}, nil
	}
	if length := resp.header.Get("Content-Length"); length != "" {
		n, err := strconv.ParseInt(strings.TrimSpace(length), 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad Content-Length %q", length)
		}
		return io.LimitReader(r, n), nil
	}
	return r, nil
}

// chunkedReader decodes a chunked body (RFC 9112 section 7.1); trailers are not read.
type chunkedReader struct {
	r    *bufio.Reader
	left uint64 // bytes left in the current chunk
	done bool
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if c.done {
		return 0, io.EOF
	}
	if c.left == 0 {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, fmt.Errorf("chunked body: %w", unexpectedEOF(err))
		}
		size, _, _ := bytes.Cut(bytes.TrimSpace(line), []byte(";"))
		if c.left, err = strconv.ParseUint(string(bytes.TrimSpace(size)), 16, 63); err != nil {
			return 0, fmt.Errorf("chunked body: bad chunk size %q", size)
		}
		if c.left == 0 {
			c.done = true
			return 0, io.EOF
		}
	}
	n, err := c.r.Read(p[:min(uint64(len(p)), c.left)])
	c.left -= uint64(n)
	if c.left == 0 && err == nil {
		var crlf [2]byte
		if _, err = io.ReadFull(c.r, crlf[:]); err == nil && string(crlf[:]) != "\r\n" {
			err = errors.New("chunked body: no CRLF after a chunk")
		}
	}
	return n, unexpectedEOF(err)
}

// unexpectedEOF turns an EOF inside a framed body into the error it is.
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// sameHostRedirect returns where a redirect leads when we follow it: to the same host only, like the
// kubelet. A redirect to another host is not followed — its 3xx answer is judged as it is — so the
// client certificate never leaves for a host it was not configured for.
func sameHostRedirect(resp *response, current, original *url.URL, log logf) (*url.URL, error) {
	switch resp.statusCode {
	case 301, 302, 303, 307, 308:
	default:
		return nil, nil
	}
	location := resp.header.Get("Location")
	if location == "" {
		return nil, nil
	}
	next, err := current.Parse(location)
	if err != nil {
		return nil, fmt.Errorf("%s with a bad Location: %w", resp.status, err)
	}
	if next.Scheme != "http" && next.Scheme != "https" || next.Hostname() != original.Hostname() {
		log("not following the redirect to another host: %s", redacted(next))
		return nil, nil
	}
	log("following redirect to %s", redacted(next))
	next.Fragment = ""
	return next, nil
}

// handshake runs the client side of a TLS handshake on conn, verifying serverName unless the
// configuration names another, and offering one ALPN protocol when alpn is not empty.
func handshake(ctx context.Context, conn net.Conn, tlsConfig *tls.Config, serverName, alpn string, log logf) (*tls.Conn, error) {
	config := tlsConfig.Clone()
	if config.ServerName == "" {
		config.ServerName = serverName
	}
	if alpn != "" {
		config.NextProtos = []string{alpn}
	}
	tlsConn := tls.Client(conn, config)
	start := time.Now()
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	log("TLS handshake in %s: %s", since(start), describeConnection(tlsConn.ConnectionState()))
	return tlsConn, nil
}

// readUpTo reads at most limit bytes of r.
func readUpTo(r io.Reader, limit int64) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r, limit))
}

// quoteBody is the failure line's quote of a body, or nothing for an empty one.
func quoteBody(body []byte) string {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return ""
	}
	return ": " + strconv.QuoteToGraphic(sanitize(string(body), bodySnippetBytes))
}

// isTimeout reports whether err is a deadline running out.
func isTimeout(err error) bool {
	var netErr net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout())
}
