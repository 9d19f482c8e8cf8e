package probe

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/health-check-proxy/health-check-proxy/probe/internal/http1"
)

const (
	// maxBodyBytes is how much of a body -expect-body searches: the kubelet's maxRespBodyLength, of
	// the decoded body, however it is framed. A health body is small; a huge one is cut here instead
	// of being read to the end.
	maxBodyBytes = 10 << 10
	// bodySnippetBytes is how much of an unhealthy answer's body the failure line quotes.
	bodySnippetBytes = 80
	// readerBytes is the size of an HTTP/1.1 connection's reader, and so the longest line it reads.
	readerBytes = 4 << 10
	// bodySlackBytes is what the body's budget allows beyond maxBodyBytes. A chunked body's framing
	// does not count (http1 gives it back), but only once a line of it is read whole: the budget holds
	// one line more than the window, so that the window is whole however the body is chunked, and a
	// body that fills it is read to the end of its trailers, for the kept connection.
	bodySlackBytes = readerBytes
	// maxResponseHeaderBytes bounds the head a server can make us read, interim 1xx heads included:
	// more than curl accepts in one header line (100 KiB), far less than net/http's 10 MiB default.
	maxResponseHeaderBytes = 128 << 10
	// maxRedirects is net/http's own limit, kept explicit because the redirect policy is ours.
	maxRedirects = 10
)

// errRedirectLoop ends a chain of redirects that does not end.
var errRedirectLoop = fmt.Errorf("stopped after %d redirects", maxRedirects)

// checkHTTP sends one request and judges the answer by its status and, with -expect-body, its body.
// The connection is one of a.conns: with a Session, the one kept from the last check when it can, and
// it is kept for the next one when the answer leaves it reusable.
//
// It speaks HTTP/1.1 itself, on one connection of its own and on the calling goroutine. net/http would
// cost a probe that makes one request and exits more than the request does: its package alone adds
// about a megabyte of resident memory and its Transport a connection pool, proxy logic and goroutines.
func checkHTTP(ctx context.Context, a *attempt) outcome {
	c := a.config
	target := c.Target
	for redirects := 0; ; redirects++ {
		resp, conn, err := roundTrip(ctx, a, target)
		if err != nil {
			if target != c.Target {
				err = fmt.Errorf("following a redirect to %s: %w", redacted(target), err)
			}
			return failed(err)
		}
		next, elsewhere, err := sameOriginRedirect(resp, target, a)
		if next != nil && redirects < maxRedirects {
			a.conns.releaseHTTP(conn, resp) // a chain of redirects holds one connection at a time
			target = next
			continue
		}
		// A broken redirect, or one that never ends, is still an answer: unhealthy, not unreachable.
		var verdict outcome
		switch {
		case err != nil:
			verdict = unhealthy("%v", err)
		case next != nil:
			verdict = unhealthy("%v", errRedirectLoop)
		default:
			verdict = judge(c, resp, target, elsewhere) // reads the answer's body from conn
		}
		a.conns.releaseHTTP(conn, resp)
		return verdict
	}
}

// judge is the verdict on an answer: its status, then its body. elsewhere is where a redirect that was
// not followed leads, for the failure line.
func judge(c *Config, resp *http1.Response, from, elsewhere *url.URL) outcome {
	status := resp.Status
	if from != c.Target {
		status += " from " + redacted(from)
	}
	if !c.ExpectStatus.Contains(resp.StatusCode) {
		snippet, _ := readUpTo(resp.Body, bodySnippetBytes)
		notFollowed := ""
		if elsewhere != nil {
			notFollowed = ", not following its redirect to another origin: " + redacted(elsewhere)
		}
		return unhealthy("%s (want %s)%s%s", status, c.ExpectStatus, notFollowed, quoteBody(snippet))
	}
	if c.ExpectBody != "" {
		body, err := readUpTo(resp.Body, maxBodyBytes)
		if err != nil {
			return unreachable(fmt.Errorf("%s, reading body: %w", status, err))
		}
		if !bytes.Contains(body, []byte(c.ExpectBody)) {
			return unhealthy("%s, body does not contain %q%s", status, c.ExpectBody, quoteBody(body[:min(len(body), bodySnippetBytes)]))
		}
	}
	return healthy(status)
}

// roundTrip sends one request for target and reads the answer's head; its body is still on conn. Every
// wait, the body's included, ends at ctx's deadline. The caller hands conn to a.conns.releaseHTTP.
//
// From Run's source, the connection is new and the request says "Connection: close". From a Session,
// it is the connection kept from an earlier check when there is one; if that fails before a byte of the
// answer arrives — the server closed it while it was idle — the request goes once more on a new
// connection. An answer cut short is never sent again.
func roundTrip(ctx context.Context, a *attempt, target *url.URL) (*http1.Response, *httpConn, error) {
	conn := a.conns.takeHTTP(a.log)
	for {
		if conn == nil {
			var err error
			if conn, err = openHTTP(ctx, a, target); err != nil {
				return nil, nil, err
			}
			a.conns.opened(&conn.keptState)
		}
		head, err := exchangeHead(ctx, a.config, conn, target, a.conns.keepsAlive(), a.log)
		if err == nil {
			return head, conn, nil
		}
		conn.Close()
		if !conn.reused || conn.budget.Left != maxResponseHeaderBytes || isTimeout(err) || ctx.Err() != nil {
			return nil, nil, err
		}
		a.log("the kept connection failed before the answer (%v): sending the request on a new one", err)
		conn = nil
	}
}

// openHTTP opens a connection for target: TCP, and TLS for https://.
func openHTTP(ctx context.Context, a *attempt, target *url.URL) (*httpConn, error) {
	// A redirect stays within its origin: target has the scheme of the run's target.
	conn, err := a.conns.dial(ctx, a.config, a.scheme.address(target), a.log)
	if err != nil {
		return nil, err
	}
	if a.scheme.tls {
		tlsConn, err := handshake(ctx, a.config, conn, a.tlsConfig, target.Hostname(), "http/1.1", a.log)
		if err != nil {
			conn.Close()
			return nil, err
		}
		conn = tlsConn
	}
	budget := &http1.Budget{R: conn}
	return &httpConn{Conn: conn, budget: budget, reader: bufio.NewReaderSize(budget, readerBytes)}, nil
}

// exchangeHead writes the request on conn and reads the answer's head. On an error, conn's budget
// says whether any byte of the answer arrived.
func exchangeHead(ctx context.Context, c *Config, conn *httpConn, target *url.URL, keepAlive bool, log logf) (*http1.Response, error) {
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	// The answer's head and the part of the body we look at, and not a byte more: each has its own
	// budget, so that a big head never shrinks the body -expect-body searches.
	conn.budget.Left = maxResponseHeaderBytes
	start := time.Now()
	if _, err := conn.Write(requestHead(c, target, keepAlive)); err != nil {
		return nil, whyClosed(ctx, conn.Conn, err)
	}
	head, err := http1.ReadResponse(conn.reader, conn.budget, c.Method == methodHead)
	if err != nil {
		if errors.Is(err, http1.ErrBudgetSpent) {
			err = fmt.Errorf("the answer's head is longer than %d KiB", maxResponseHeaderBytes>>10)
		}
		return nil, err
	}
	conn.budget.Left = maxBodyBytes + bodySlackBytes // what the reader holds already came out of the head's
	log("answer %s in %s", head.Status, since(start))
	return head, nil
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
// keepAlive leaves out "Connection: close", for a session that sends the next check's request on the
// same connection.
func requestHead(c *Config, target *url.URL, keepAlive bool) []byte {
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
	// A -header of a default's name replaces it; an empty one removes it (defaultHeaders).
	if _, replaced := c.Header["User-Agent"]; !replaced && c.UserAgent != "" {
		b.WriteString("User-Agent: " + c.UserAgent + "\r\n")
	}
	if _, replaced := c.Header["Accept"]; !replaced {
		b.WriteString("Accept: " + acceptAny + "\r\n")
	}
	names := make([]string, 0, len(c.Header))
	for name := range c.Header {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		// ParseHeader refuses the framing headers, but a library caller may not have used it; the
		// connection's own headers are dropped (HopByHopHeaders).
		if name == "Host" || framingHeaders[name] || hopByHopHeaders[name] {
			continue
		}
		for _, value := range c.Header[name] {
			if value == "" && defaultHeaders[name] {
				continue
			}
			b.WriteString(name + ": " + value + "\r\n")
		}
	}
	if !keepAlive {
		b.WriteString("Connection: close\r\n") // one request a connection
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// sameOriginRedirect returns where a redirect from current leads when we follow it: within the origin
// of the run's target (scheme, host and port) only, as curl does with credentials. The kubelet follows any redirect to the
// same host; but it sends no client certificate and no secrets, and we may: a redirect to https://'s
// host on http:// would send a -header credential in cleartext, and one to another port would present
// the client certificate to whatever listens there. Any other redirect is not followed — its 3xx answer
// is judged as it is — and is returned as elsewhere.
func sameOriginRedirect(resp *http1.Response, current *url.URL, a *attempt) (next, elsewhere *url.URL, err error) {
	origin := a.config.Target
	switch resp.StatusCode {
	case 301, 302, 303, 307, 308:
	default:
		return nil, nil, nil
	}
	location := resp.Header.Get("Location")
	if location == "" {
		return nil, nil, nil
	}
	next, err = current.Parse(location)
	if err != nil {
		return nil, nil, fmt.Errorf("%s with a bad Location: %w", resp.Status, err)
	}
	// url.Parse lowercases the scheme; a host name's case does not matter, and address adds the
	// scheme's default port, so that http://h/ and http://h:80/ are one origin.
	if next.Scheme != origin.Scheme || !strings.EqualFold(a.scheme.address(next), a.scheme.address(origin)) {
		a.log("not following the redirect to %s: another origin (scheme, host or port) than %s", redacted(next), redacted(origin))
		return nil, next, nil
	}
	a.log("following redirect to %s", redacted(next))
	next.Fragment, next.RawFragment = "", ""
	return next, nil, nil
}

// readUpTo reads at most limit bytes of r, and what the body's budget allows: what lies past it is past
// what we look at, not an error.
func readUpTo(r io.Reader, limit int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, limit))
	if errors.Is(err, http1.ErrBudgetSpent) {
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
