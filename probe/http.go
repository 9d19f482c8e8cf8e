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
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
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
// It speaks HTTP/1.1 on one connection of its own, on the calling goroutine, with net/http's request
// writer and response reader: no Transport, whose connection pool, proxy logic and dialing goroutines
// cost a probe that makes one request and exits more than the request itself.
func checkHTTP(ctx context.Context, c *Config, tlsConfig *tls.Config, log logf) outcome {
	target := c.Target
	for redirects := 0; ; redirects++ {
		resp, err := roundTrip(ctx, c, tlsConfig, target, log)
		if err != nil {
			return unreachable(err)
		}
		defer resp.Body.Close()
		next, err := sameHostRedirect(resp, c.Target, log)
		if err != nil {
			return unreachable(err)
		}
		if next == nil {
			return judge(c, resp, target)
		}
		if redirects == maxRedirects {
			return unreachable(errRedirectLoop)
		}
		target = next
	}
}

// judge is the verdict on an answer: its status, then its body.
func judge(c *Config, resp *http.Response, from *url.URL) outcome {
	status := resp.Status
	if from != c.Target {
		status += " from " + redacted(from)
	}
	if !c.ExpectStatus.Contains(resp.StatusCode) {
		snippet, _ := readUpTo(resp.Body, bodySnippetBytes)
		return unhealthy("%s (want %s)%s", status, c.ExpectStatus, quoteBody(snippet))
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

// roundTrip sends one request for target on a new connection and reads the answer's head. Every wait,
// the body's included, ends at ctx's deadline. Closing the body closes the connection.
func roundTrip(ctx context.Context, c *Config, tlsConfig *tls.Config, target *url.URL, log logf) (*http.Response, error) {
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

	req := &http.Request{
		Method:     c.Method,
		URL:        target,
		Host:       c.Host,
		Header:     c.Header.Clone(),
		Close:      true, // one request a connection: the server closes after answering
		ProtoMajor: 1, ProtoMinor: 1,
	}
	if req.Method == "" {
		req.Method = http.MethodGet
	}
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	start := time.Now()
	writer := bufio.NewWriterSize(conn, 1024)
	if err := req.Write(writer); err != nil {
		conn.Close()
		return nil, err
	}
	if err := writer.Flush(); err != nil {
		conn.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(io.LimitReader(conn, maxResponseHeaderBytes+maxBodyBytes)), req)
	if err != nil {
		conn.Close()
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("connection closed without an answer")
		}
		return nil, err
	}
	log("answer %s in %s", resp.Status, since(start))
	resp.Body = bodyCloser{resp.Body, conn}
	return resp, nil
}

// bodyCloser closes the connection with the body.
type bodyCloser struct {
	io.Reader
	conn net.Conn
}

func (b bodyCloser) Close() error { return b.conn.Close() }

// sameHostRedirect returns where a redirect leads when we follow it: to the same host only, like the
// kubelet. A redirect to another host is not followed — its 3xx answer is judged as it is — so the
// client certificate never leaves for a host it was not configured for.
func sameHostRedirect(resp *http.Response, original *url.URL, log logf) (*url.URL, error) {
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		return nil, nil
	}
	location := resp.Header.Get("Location")
	if location == "" {
		return nil, nil
	}
	next, err := resp.Request.URL.Parse(location)
	if err != nil {
		return nil, fmt.Errorf("%s with a bad Location: %w", resp.Status, err)
	}
	if next.Scheme != "http" && next.Scheme != "https" || next.Hostname() != original.Hostname() {
		log("not following the redirect to another host: %s", redacted(next))
		return nil, nil
	}
	log("following redirect to %s", redacted(next))
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

// withTrace adds -v lines for the phases of a net/http request: TLS, and the first byte of the answer.
func withTrace(ctx context.Context, log logf) context.Context {
	var tlsStart time.Time
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		TLSHandshakeStart: func() { tlsStart = time.Now() },
		TLSHandshakeDone: func(state tls.ConnectionState, err error) {
			if err == nil {
				log("TLS handshake in %s: %s", since(tlsStart), describeConnection(state))
			}
		},
		GotFirstResponseByte: func() { log("first byte of the answer") },
	})
}

// isTimeout reports whether err is a deadline running out.
func isTimeout(err error) bool {
	var netErr net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout())
}
