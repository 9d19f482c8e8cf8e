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
	// bodyFramingBytes is the room a chunked body's size lines take on the wire beyond maxBodyBytes.
	bodyFramingBytes = 1 << 10
	// maxResponseHeaderBytes bounds the head a server can make us read, interim 1xx heads included:
	// more than curl accepts in one header line (100 KiB), far less than net/http's 10 MiB default.
	maxResponseHeaderBytes = 128 << 10
	// maxInterimAnswers is net/http's limit on 1xx answers before the final one.
	maxInterimAnswers = 5
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
			if target != c.Target {
				err = fmt.Errorf("following a redirect to %s: %w", redacted(target), err)
			}
			return unreachable(err)
		}
		defer resp.conn.Close()
		// A broken redirect, or one that never ends, is still an answer: unhealthy, not unreachable.
		next, elsewhere, err := sameOriginRedirect(resp, target, c.Target, log)
		if err != nil {
			return unhealthy("%v", err)
		}
		if next == nil {
			return judge(c, resp, target, elsewhere)
		}
		if redirects == maxRedirects {
			return unhealthy("%v", errRedirectLoop)
		}
		target = next
	}
}

// judge is the verdict on an answer: its status, then its body. elsewhere is where a redirect that was
// not followed leads, for the failure line.
func judge(c *Config, resp *response, from, elsewhere *url.URL) outcome {
	status := resp.status
	if from != c.Target {
		status += " from " + redacted(from)
	}
	if !c.ExpectStatus.Contains(resp.statusCode) {
		snippet, _ := readUpTo(resp.body, bodySnippetBytes)
		notFollowed := ""
		if elsewhere != nil {
			notFollowed = ", not following its redirect to another origin: " + redacted(elsewhere)
		}
		return unhealthy("%s (want %s)%s%s", status, c.ExpectStatus, notFollowed, quoteBody(snippet))
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
	// The answer's head and the part of the body we look at, and not a byte more: each has its own
	// budget, so that a big head never shrinks the body -expect-body searches.
	budget := &readBudget{r: conn, left: maxResponseHeaderBytes}
	reader := bufio.NewReaderSize(budget, 4<<10)
	resp, err := readResponseHead(reader, c.Method == methodHead)
	if err != nil {
		conn.Close()
		if errors.Is(err, errBudgetSpent) {
			err = fmt.Errorf("the answer's head is longer than %d KiB", maxResponseHeaderBytes>>10)
		}
		return nil, err
	}
	budget.left = maxBodyBytes + bodyFramingBytes // what the reader holds already came out of the head's
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

// readResponseHead reads the status line and headers of the final answer, skipping a few interim 1xx
// ones, and frames the body as RFC 9112 section 6.3 says.
func readResponseHead(r *bufio.Reader, head bool) (*response, error) {
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
		if resp.header, err = text.ReadMIMEHeader(); err != nil {
			return nil, fmt.Errorf("reading the answer's headers: %w", unexpectedEOF(err))
		}
		if resp.statusCode >= 100 && resp.statusCode < 200 && resp.statusCode != 101 {
			// 100 Continue, 103 Early Hints: the answer comes next, unless a server sends nothing else.
			if interim == maxInterimAnswers {
				return nil, fmt.Errorf("more than %d interim answers (%s)", maxInterimAnswers, resp.status)
			}
			continue
		}
		resp.body, err = bodyReader(r, resp, head)
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

// parseStatusLine reads "HTTP/1.1 503 Service Unavailable".
func parseStatusLine(line string) (*response, error) {
	proto, status, _ := strings.Cut(line, " ")
	code, _, _ := strings.Cut(status, " ")
	n, err := strconv.Atoi(code)
	if (proto != "HTTP/1.1" && proto != "HTTP/1.0") || len(code) != 3 || err != nil || n < 100 {
		return nil, notHTTP(line)
	}
	return &response{status: status, statusCode: n}, nil
}

func notHTTP(line string) error {
	return fmt.Errorf("not an HTTP/1.1 answer: %q", line[:min(len(line), 40)])
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
	if values := resp.header.Values("Content-Length"); len(values) > 0 {
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

// readBudget reads from the connection until its budget is spent: the answer's head gets one, and
// then its body another.
type readBudget struct {
	r    io.Reader
	left int64
}

// errBudgetSpent is a read past a budget: for a head, an error; for a body, the end of what we look at.
var errBudgetSpent = errors.New("read limit reached")

func (b *readBudget) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errBudgetSpent
	}
	n, err := b.r.Read(p[:min(int64(len(p)), b.left)])
	b.left -= int64(n)
	return n, err
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

// sameOriginRedirect returns where a redirect leads when we follow it: within the origin of the target
// (scheme, host and port) only, as curl does with credentials. The kubelet follows any redirect to the
// same host; but it sends no client certificate and no secrets, and we may: a redirect to https://'s
// host on http:// would send a -header credential in cleartext, and one to another port would present
// the client certificate to whatever listens there. Any other redirect is not followed — its 3xx answer
// is judged as it is — and is returned as elsewhere.
func sameOriginRedirect(resp *response, current, origin *url.URL, log logf) (next, elsewhere *url.URL, err error) {
	switch resp.statusCode {
	case 301, 302, 303, 307, 308:
	default:
		return nil, nil, nil
	}
	location := resp.header.Get("Location")
	if location == "" {
		return nil, nil, nil
	}
	next, err = current.Parse(location)
	if err != nil {
		return nil, nil, fmt.Errorf("%s with a bad Location: %w", resp.status, err)
	}
	// url.Parse lowercases the scheme; a host name's case does not matter, and address adds the
	// scheme's default port, so that http://h/ and http://h:80/ are one origin.
	if next.Scheme != origin.Scheme || !strings.EqualFold(address(next), address(origin)) {
		log("not following the redirect to %s: another origin (scheme, host or port) than %s", redacted(next), redacted(origin))
		return nil, next, nil
	}
	log("following redirect to %s", redacted(next))
	next.Fragment, next.RawFragment = "", ""
	return next, nil, nil
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

// readUpTo reads at most limit bytes of r, and what the body's budget allows: what lies past it is past
// what we look at, not an error.
func readUpTo(r io.Reader, limit int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, limit))
	if errors.Is(err, errBudgetSpent) {
		err = nil
	}
	return body, err
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
