package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
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
func checkHTTP(ctx context.Context, c *Config, tlsConfig *tls.Config, log logf) outcome {
	transport := newTransport(c, tlsConfig, log)
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, CheckRedirect: sameHostRedirects(log)}

	method := c.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(withTrace(ctx, log), method, c.Target.String(), nil)
	if err != nil {
		return outcome{Usage, err.Error()}
	}
	req.Header = c.Header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	if c.Host != "" {
		req.Host = c.Host
	}

	resp, err := client.Do(req)
	if err != nil {
		return unreachable(err)
	}
	defer resp.Body.Close()
	status := resp.Status
	if resp.Request != nil && resp.Request.URL.String() != c.Target.String() {
		status += " from " + redacted(resp.Request.URL)
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

// newTransport is a single-use HTTP/1.1 transport: no proxy (the kubelet's probes use none either),
// no keep-alive, no compression, our dialer, and every wait bounded by the request's context.
func newTransport(c *Config, tlsConfig *tls.Config, log logf) *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dial(ctx, c, addr, log)
		},
		TLSClientConfig:        tlsConfig,
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
	}
}

// sameHostRedirects follows redirects to the same host, like the kubelet. A redirect to another host
// is not followed: its 3xx answer is judged as it is, and the client certificate never leaves for a
// host it was not configured for.
func sameHostRedirects(log logf) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxRedirects {
			return errRedirectLoop
		}
		if req.URL.Hostname() != via[0].URL.Hostname() {
			log("not following the redirect to another host: %s", redacted(req.URL))
			return http.ErrUseLastResponse
		}
		log("following redirect to %s", redacted(req.URL))
		return nil
	}
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

// withTrace adds -v lines for the phases of a request: DNS, TLS, and the first byte of the answer.
func withTrace(ctx context.Context, log logf) context.Context {
	var tlsStart time.Time
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		DNSDone: func(info httptrace.DNSDoneInfo) {
			if info.Err == nil {
				log("resolved %v", info.Addrs)
			}
		},
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
