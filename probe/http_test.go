package probe

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
)

// healthHandler answers /healthz with "ok", /fail with 503 and a body, and echoes what the probe sent.
func healthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok: all good")
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, "database down\n")
	})
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/teapot", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "method=%s host=%s ua=%s x=%s", r.Method, r.Host, r.UserAgent(), r.Header.Get("X-Probe"))
	})
	mux.HandleFunc("/only-head", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodHead {
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/healthz", http.StatusFound)
	})
	mux.HandleFunc("/redirect-to-fail", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/fail", http.StatusFound)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for range 1024 { // 64 MiB, far more than we read
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/control", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, "\x1b[31mred\x1b[0m\r\nSet-Cookie: evil\x00")
	})
	return mux
}

func TestHTTPChecks(t *testing.T) {
	p := newPKI(t, testutil.ECDSAP256)
	srv := startMTLS(t, p, healthHandler())
	plain := httptest.NewServer(healthHandler())
	t.Cleanup(plain.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	_, port, _ := net.SplitHostPort(host)

	tests := []struct {
		name      string
		url       string
		configure func(c *Config)
		want      Result
		inLine    []string
		notInLine []string
	}{
		{name: "mTLS healthy", url: srv.URL + "/healthz", want: Healthy, inLine: []string{"200 OK"}},
		{name: "mTLS by localhost name", url: "https://localhost:" + port + "/healthz", want: Healthy},
		{name: "mTLS by IPv4 SAN", url: "https://127.0.0.1:" + port + "/healthz", want: Healthy},
		{name: "plain http healthy", url: plain.URL + "/healthz", want: Healthy},
		{name: "503 is unhealthy and quotes the body", url: srv.URL + "/fail", want: Unhealthy,
			inLine: []string{"unhealthy: GET https://127.0.0.1:", "/fail: 503 Service Unavailable", `"database down"`}},
		{name: "204 is healthy by default", url: srv.URL + "/nocontent", want: Healthy},
		{name: "418 is unhealthy by default", url: srv.URL + "/teapot", want: Unhealthy, inLine: []string{"418", "want 200-399"}},
		{name: "expect-status accepts 418", url: srv.URL + "/teapot", want: Healthy,
			configure: func(c *Config) { c.ExpectStatus, _ = ParseStatusSet("200,418") }},
		{name: "expect-status 200 rejects 204", url: srv.URL + "/nocontent", want: Unhealthy,
			configure: func(c *Config) { c.ExpectStatus, _ = ParseStatusSet("200") }},
		{name: "expect-body found", url: srv.URL + "/healthz", want: Healthy,
			configure: func(c *Config) { c.ExpectBody = "all good" }},
		{name: "expect-body missing", url: srv.URL + "/healthz", want: Unhealthy,
			configure: func(c *Config) { c.ExpectBody = "ready" },
			inLine:    []string{`body does not contain "ready"`, `"ok: all good"`}},
		{name: "huge body is read only up to the limit", url: srv.URL + "/huge", want: Unhealthy,
			configure: func(c *Config) { c.ExpectBody = "needle" }, inLine: []string{"does not contain"}},
		{name: "HEAD method", url: srv.URL + "/only-head", want: Healthy,
			configure: func(c *Config) { c.Method = http.MethodHead }},
		{name: "GET where only HEAD works", url: srv.URL + "/only-head", want: Unhealthy, inLine: []string{"405"}},
		{name: "headers, Host and User-Agent reach the server", url: srv.URL + "/echo", want: Healthy,
			configure: func(c *Config) {
				c.Header = http.Header{"X-Probe": {"yes"}}
				c.Host = "app.example"
				c.ExpectBody = "method=GET host=app.example ua=health-check/test x=yes"
			}},
		{name: "same-origin redirect is followed", url: srv.URL + "/redirect", want: Healthy,
			configure: func(c *Config) { c.ExpectBody = "all good" }},
		{name: "same-origin redirect to a failure", url: srv.URL + "/redirect-to-fail", want: Unhealthy,
			inLine: []string{"503", "from https://127.0.0.1:" + port + "/fail"}},
		{name: "redirect loop", url: srv.URL + "/loop", want: Unhealthy, inLine: []string{"stopped after 10 redirects"}},
		{name: "no client certificate", url: srv.URL + "/healthz", want: Unreachable,
			configure: func(c *Config) { c.TLS.Cert, c.TLS.Key = "", "" }, inLine: []string{"certificate required"}},
		{name: "client certificate from a foreign CA", url: srv.URL + "/healthz", want: Unreachable,
			configure: func(c *Config) { c.TLS.Cert, c.TLS.Key = p.OtherClientCert, p.OtherClientKey },
			inLine:    []string{"unreachable:", "tls: "}},
		{name: "server verified by the wrong CA", url: srv.URL + "/healthz", want: Unreachable,
			configure: func(c *Config) { c.TLS.CACert = p.OtherCAFile }, inLine: []string{"certificate signed by unknown authority"}},
		{name: "insecure skips verification", url: srv.URL + "/healthz", want: Healthy,
			configure: func(c *Config) { c.TLS.CACert, c.TLS.Insecure = p.OtherCAFile, true }},
		{name: "server name override that the certificate has", url: srv.URL + "/healthz", want: Healthy,
			configure: func(c *Config) { c.TLS.ServerName = "api.internal" }},
		{name: "server name override that the certificate lacks", url: srv.URL + "/healthz", want: Unreachable,
			configure: func(c *Config) { c.TLS.ServerName = "other.internal" }, inLine: []string{"other.internal"}},
		{name: "post-quantum key exchange", url: srv.URL + "/healthz", want: Healthy,
			configure: func(c *Config) { c.TLS.PostQuantum = true }},
		{name: "server control characters never reach the line", url: srv.URL + "/control", want: Unhealthy,
			inLine: []string{"500"}, notInLine: []string{"\x1b", "\r", "\n", "\x00"}},
		{name: "nothing listening", url: "https://" + closedPort(t) + "/healthz", want: Unreachable, inLine: []string{"connection refused"}},
		{name: "plain http to a TLS server", url: "http://" + host + "/healthz", want: Unhealthy, inLine: []string{"400"},
			configure: func(c *Config) { c.TLS = TLSOptions{} }},
		{name: "unknown host", url: "https://no-such-host.invalid/healthz", want: Unreachable, inLine: []string{"no-such-host.invalid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(t, tt.url)
			if c.Target.Scheme == "https" {
				c.TLS = clientTLS(p)
			}
			if tt.configure != nil {
				tt.configure(c)
			}
			report := run(c)
			line := report.Line()
			assert.Equal(t, tt.want, report.Result, line)
			for _, s := range tt.inLine {
				assert.Contains(t, line, s)
			}
			for _, s := range tt.notInLine {
				assert.NotContains(t, line, s)
			}
			assert.NotContains(t, line, "\n")
			assert.LessOrEqual(t, len(line), maxLineBytes)
		})
	}
}

func TestHTTPRedirectToAnotherHostIsNotFollowed(t *testing.T) {
	p := newPKI(t, testutil.ECDSAP256)
	var otherHostHits, certificatesSeen atomic.Int32
	other := startMTLS(t, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherHostHits.Add(1)
		certificatesSeen.Add(int32(len(r.TLS.PeerCertificates)))
	}))
	_, otherPort, _ := net.SplitHostPort(strings.TrimPrefix(other.URL, "https://"))
	srv := startMTLS(t, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// localhost and 127.0.0.1 are one machine but two hosts: the probe must not follow.
		http.Redirect(w, r, "https://localhost:"+otherPort+"/elsewhere", http.StatusFound)
	}))

	c := testConfig(t, srv.URL+"/healthz")
	c.TLS = clientTLS(p)
	report := run(c)
	assert.Equal(t, Healthy, report.Result, "a 302 is in the default 200-399: %s", report.Line())
	assert.Contains(t, report.Detail, "302")
	assert.Zero(t, otherHostHits.Load(), "the other host must not be contacted")
	assert.Zero(t, certificatesSeen.Load())

	c.ExpectStatus, _ = ParseStatusSet("200")
	report = run(c)
	assert.Equal(t, Unhealthy, report.Result)
	assert.Contains(t, report.Line(), "302 Found (want 200)")
}

// TestHTTPRedirectsStayInTheirOrigin: a redirect is followed only within the target's scheme, host and
// port, so neither a -header credential nor the client certificate ever goes anywhere else: not in
// cleartext to http:// on the same host, not to another port.
func TestHTTPRedirectsStayInTheirOrigin(t *testing.T) {
	p := newPKI(t, testutil.ECDSAP256)
	var cleartextCredentials, otherPortHits, otherPortCertificates atomic.Int32
	cleartext := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			cleartextCredentials.Add(1)
		}
	}))
	t.Cleanup(cleartext.Close)
	otherPort := startMTLS(t, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherPortHits.Add(1)
		otherPortCertificates.Add(int32(len(r.TLS.PeerCertificates)))
	}))
	srv := startMTLS(t, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-http":
			http.Redirect(w, r, cleartext.URL+"/healthz", http.StatusFound)
		case "/to-other-port":
			http.Redirect(w, r, otherPort.URL+"/healthz", http.StatusFound)
		case "/to-same-origin":
			http.Redirect(w, r, "https://"+r.Host+"/healthz", http.StatusFound)
		case "/healthz":
			fmt.Fprint(w, "ok: here")
		}
	}))
	require.Equal(t, mustURL(t, srv.URL).Hostname(), mustURL(t, cleartext.URL).Hostname(), "one host, other schemes and ports")

	tests := []struct {
		name     string
		path     string
		location string
		followed bool
	}{
		{name: "https to http on the same host", path: "/to-http", location: cleartext.URL + "/healthz"},
		{name: "another port on the same host", path: "/to-other-port", location: otherPort.URL + "/healthz"},
		{name: "the same origin", path: "/to-same-origin", followed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(t, srv.URL+tt.path)
			c.TLS = clientTLS(p)
			c.Header = map[string][]string{"Authorization": {"Bearer s3cret"}}
			var verbose bytes.Buffer
			report := Run(t.Context(), c, &verbose)
			if tt.followed {
				assert.Equal(t, Healthy, report.Result, report.Line())
				assert.Equal(t, "200 OK from "+srv.URL+"/healthz", report.Detail)
				return
			}
			assert.Equal(t, Healthy, report.Result, "a 302 is in the default 200-399: %s", report.Line())
			assert.Equal(t, "302 Found", report.Detail)
			assert.Contains(t, verbose.String(), "not following the redirect to "+tt.location+": another origin (scheme, host or port) than "+srv.URL+tt.path)

			c.ExpectStatus, _ = ParseStatusSet("200")
			report = run(c)
			assert.Equal(t, Unhealthy, report.Result)
			assert.Contains(t, report.Line(), "302 Found (want 200), not following its redirect to another origin: "+tt.location)
		})
	}
	assert.Zero(t, cleartextCredentials.Load(), "the credential never went out in cleartext")
	assert.Zero(t, otherPortHits.Load(), "the other port was never contacted")
	assert.Zero(t, otherPortCertificates.Load(), "the client certificate was never presented there")
}

// TestHTTPFailedRedirectSaysSo: when a followed redirect cannot be fetched, the line says it was the
// redirect's target that failed, not the URL the probe was given.
func TestHTTPFailedRedirectSaysSo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	served := make(chan struct{})
	go func() {
		defer close(served)
		conn, err := ln.Accept()
		ln.Close() // the redirect's request finds nothing listening
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = conn.Read(make([]byte, 4096))
		_, _ = conn.Write([]byte("HTTP/1.1 302 Found\r\nLocation: /moved\r\nContent-Length: 0\r\n\r\n"))
	}()
	t.Cleanup(func() { ln.Close(); <-served })

	report := run(testConfig(t, "http://"+addr+"/healthz"))
	assert.Equal(t, Unreachable, report.Result)
	assert.Equal(t, "unreachable: GET http://"+addr+"/healthz: following a redirect to http://"+addr+"/moved: dial tcp "+addr+": connect: connection refused", report.Line())
}

func TestHTTPRetries(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)

	t.Run("a retry turns a blip healthy", func(t *testing.T) {
		hits.Store(0)
		c := testConfig(t, srv.URL)
		c.Retries = 1
		report := run(c)
		assert.Equal(t, Healthy, report.Result, report.Line())
		assert.Equal(t, 2, report.Attempts)
	})
	t.Run("without retries the blip is reported", func(t *testing.T) {
		hits.Store(0)
		c := testConfig(t, srv.URL)
		report := run(c)
		assert.Equal(t, Unhealthy, report.Result)
		assert.Equal(t, 1, report.Attempts)
		assert.NotContains(t, report.Line(), "attempts")
	})
	t.Run("every attempt counts in the line", func(t *testing.T) {
		c := testConfig(t, "http://"+closedPort(t))
		c.Retries = 3
		c.RetryDelay = time.Millisecond
		report := run(c)
		assert.Equal(t, Unreachable, report.Result)
		assert.Equal(t, 4, report.Attempts)
		assert.True(t, strings.HasSuffix(report.Line(), "after 4 attempts"), report.Line())
	})
	t.Run("retries stop when the timeout would run out", func(t *testing.T) {
		c := testConfig(t, "http://"+closedPort(t))
		c.Retries = 100
		c.RetryDelay = 400 * time.Millisecond
		c.Timeout = time.Second
		start := time.Now()
		report := run(c)
		assert.Less(t, time.Since(start), c.Timeout, "no pointless wait for the deadline")
		assert.Equal(t, 3, report.Attempts, "attempts at 0, 400 and 800 ms")
	})
}

func TestHTTPTimeouts(t *testing.T) {
	trickle := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		for range 100 {
			if _, err := w.Write([]byte("z")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(50 * time.Millisecond)
		}
	}))
	t.Cleanup(trickle.Close)
	slowHeaders := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slowHeaders.Close)

	slowloris, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serveConns(t, slowloris, func(conn net.Conn) {
		for _, part := range []string{"HT", "TP/", "1.1"} { // and never the rest of the status line
			if _, err := conn.Write([]byte(part)); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		_, _ = conn.Read(make([]byte, 1)) // until the probe hangs up
	})

	tests := []struct {
		name string
		url  string
		body string
	}{
		{name: "black hole accepts and never answers", url: "http://" + blackHole(t) + "/healthz"},
		{name: "status line never ends", url: "http://" + slowloris.Addr().String() + "/healthz"},
		{name: "black hole behind TLS never finishes the handshake", url: "https://" + blackHole(t) + "/healthz"},
		{name: "headers never come", url: slowHeaders.URL},
		{name: "body trickles", url: trickle.URL, body: "never"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(t, tt.url)
			c.Timeout = 300 * time.Millisecond
			c.Retries = 1
			c.ExpectBody = tt.body
			start := time.Now()
			report := run(c)
			elapsed := time.Since(start)
			assert.Equal(t, Unreachable, report.Result, report.Line())
			assert.Contains(t, report.Line(), "no answer within -timeout 300ms")
			assert.NotContains(t, report.Line(), "not an HTTP/1.1 answer", "a slow answer is not a wrong one")
			assert.GreaterOrEqual(t, elapsed, c.Timeout)
			assert.Less(t, elapsed, c.Timeout+timeoutMargin, "the run must end at the timeout")
		})
	}
}

func TestHTTPOverUnixSocket(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "app.sock")
	ln, err := net.Listen("unix", socket)
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(healthHandler())
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)

	c := testConfig(t, "http://localhost/healthz")
	c.UnixSocket = socket
	report := run(c)
	assert.Equal(t, Healthy, report.Result, report.Line())

	c = testConfig(t, "http://localhost/fail")
	c.UnixSocket = socket
	report = run(c)
	assert.Equal(t, Unhealthy, report.Result)
	assert.Contains(t, report.Line(), "GET http://localhost/fail via unix:"+socket+": 503")

	c = testConfig(t, "http://localhost/healthz")
	c.UnixSocket = filepath.Join(t.TempDir(), "missing.sock")
	report = run(c)
	assert.Equal(t, Unreachable, report.Result)
	assert.Contains(t, report.Line(), "no such file or directory")
}

// TestCertificateRotation: the files are read at every run, so replacing them needs no restart.
func TestCertificateRotation(t *testing.T) {
	p := newPKI(t, testutil.ECDSAP256)
	srv := startMTLS(t, p, healthHandler())
	c := testConfig(t, srv.URL+"/healthz")
	c.TLS = clientTLS(p)
	require.Equal(t, Healthy, run(c).Result)

	// The mounted secret now holds a certificate the server does not trust...
	copyFile(t, p.OtherClientCert, p.ClientCert)
	copyFile(t, p.OtherClientKey, p.ClientKey)
	assert.Equal(t, Unreachable, run(c).Result)

	// ...and then a fresh one from the right CA.
	fresh, err := p.CA.Client("client, rotated")
	require.NoError(t, err)
	_, _, err = fresh.WriteFiles(p.Dir, "client")
	require.NoError(t, err)
	assert.Equal(t, Healthy, run(c).Result)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(to, data, 0o600))
}

// TestKeyExchange pins the deliberate trade-off: X25519 by default, Go's hybrid post-quantum
// X25519MLKEM768 with -post-quantum. The -v line names the key exchange the server chose.
func TestKeyExchange(t *testing.T) {
	p := newPKI(t, testutil.ECDSAP256)
	srv := startMTLS(t, p, healthHandler())
	for _, tt := range []struct {
		name        string
		postQuantum bool
		want        string
	}{
		{name: "default is X25519", want: "TLS 1.3 TLS_AES_128_GCM_SHA256 X25519,"},
		{name: "post-quantum restores Go's default", postQuantum: true, want: "X25519MLKEM768"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(t, srv.URL+"/healthz")
			c.TLS = clientTLS(p)
			c.TLS.PostQuantum = tt.postQuantum
			var verbose bytes.Buffer
			report := Run(t.Context(), c, &verbose)
			require.Equal(t, Healthy, report.Result, report.Line())
			assert.Contains(t, verbose.String(), tt.want)
		})
	}
}

// rawServer answers every connection with answer, after reading the request's head, then closes.
func rawServer(t *testing.T, answer string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serveConns(t, ln, func(conn net.Conn) {
		var head bytes.Buffer
		buf := make([]byte, 1024)
		for !bytes.Contains(head.Bytes(), []byte("\r\n\r\n")) {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			head.Write(buf[:n])
		}
		_, _ = conn.Write([]byte(answer))
	})
	return "http://" + ln.Addr().String() + "/healthz"
}

// TestHTTPFraming: the hand-written HTTP/1.1 reader against answers as servers really frame them.
func TestHTTPFraming(t *testing.T) {
	tests := []struct {
		name   string
		answer string
		body   string // -expect-body
		head   bool
		want   Result
		inLine string
	}{
		{name: "content-length", answer: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nready and more", body: "ready", want: Healthy},
		{name: "content-length cuts the body", answer: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nready", body: "ready", want: Unhealthy, inLine: `body does not contain "ready": "rea"`},
		{name: "chunked", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nrea\r\n2;ext=1\r\ndy\r\n0\r\n\r\n", body: "ready", want: Healthy},
		{name: "chunked with a trailer", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nready\r\n0\r\nX-T: 1\r\n\r\n", body: "ready", want: Healthy},
		{name: "bad chunk size", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nready\r\n0\r\n\r\n", body: "ready", want: Unreachable, inLine: "bad chunk size"},
		{name: "chunked body cut short", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nrea", body: "ready", want: Unreachable, inLine: "unexpected EOF"},
		{name: "until close, HTTP/1.0", answer: "HTTP/1.0 200 OK\r\n\r\nall ready", body: "ready", want: Healthy},
		{name: "interim 100 and 103 first", answer: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown", want: Unhealthy, inLine: `503 Service Unavailable (want 200-399): "down"`},
		{name: "status without a reason", answer: "HTTP/1.1 204\r\n\r\n", want: Healthy},
		{name: "HEAD has no body whatever Content-Length says", answer: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", head: true, want: Healthy},
		{name: "not HTTP", answer: "SSH-2.0-OpenSSH_9.2\r\n", want: Unreachable, inLine: `not an HTTP/1.1 answer: "SSH-2.0-OpenSSH_9.2"`},
		{name: "HTTP/2 preface", answer: "\x00\x00\x12\x04\x00\x00\x00\x00\x00", want: Unreachable, inLine: "not an HTTP/1.1 answer"},
		{name: "closed without an answer", answer: "", want: Unreachable, inLine: "connection closed without an answer"},
		{name: "unsupported transfer coding", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx", want: Unreachable, inLine: `unsupported Transfer-Encoding "gzip"`},
		{name: "bad content-length", answer: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", want: Unreachable, inLine: `bad Content-Length "-1"`},
		{name: "conflicting Content-Length values", answer: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nready!", want: Unreachable,
			inLine: `conflicting Content-Length values "5, 6"`},
		{name: "conflicting Content-Length list", answer: "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nready!", want: Unreachable,
			inLine: `conflicting Content-Length values "5, 6"`},
		{name: "signed Content-Length", answer: "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", want: Unreachable, inLine: `bad Content-Length "+2"`},
		{name: "hex Content-Length", answer: "HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\nready", want: Unreachable, inLine: `bad Content-Length "0x5"`},
		{name: "empty Content-Length", answer: "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\nready", want: Unreachable, inLine: `bad Content-Length ""`},
		{name: "repeated equal Content-Length values", answer: "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\nready", body: "ready", want: Healthy},
		{name: "a big head leaves the body its own window",
			answer: "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("h", 72_000) + "\r\n\r\n" + strings.Repeat("b", 5_000) + "ready" + strings.Repeat("b", 4_000),
			body:   "ready", want: Healthy},
		{name: "the body's window is 10 KiB past a big head",
			answer: "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("h", 72_000) + "\r\n\r\n" + strings.Repeat("b", 12_000) + "ready",
			body:   "ready", want: Unhealthy, inLine: `body does not contain "ready"`},
		{name: "a 1 MB header line", answer: "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("h", 1<<20) + "\r\n\r\n", want: Unreachable,
			inLine: "the answer's head is longer than 128 KiB"},
		{name: "five interim answers, then the answer", answer: strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", 5) + "HTTP/1.1 200 OK\r\n\r\n", want: Healthy},
		{name: "thousands of interim answers", answer: strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", 5000), want: Unreachable,
			inLine: "more than 5 interim answers (103 Early Hints)"},
		{name: "closed in the status line", answer: "HTTP/1.1 20", want: Unreachable, inLine: "connection closed in the answer's status line"},
		{name: "closed in the headers", answer: "HTTP/1.1 200 OK\r\nX-A: 1", want: Unreachable, inLine: "reading the answer's headers: unexpected EOF"},
		{name: "redirect without a location is judged as is", answer: "HTTP/1.1 302 Found\r\n\r\n", want: Healthy},
		{name: "redirect to another host is judged as is", answer: "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://elsewhere.invalid/\r\n\r\n", want: Healthy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(t, rawServer(t, tt.answer))
			c.ExpectBody = tt.body
			if tt.head {
				c.Method = "HEAD"
			}
			report := run(c)
			assert.Equal(t, tt.want, report.Result, report.Line())
			assert.Contains(t, report.Line(), tt.inLine)
		})
	}
}

// TestHTTPRequestHead pins what the probe sends: one request, closed after the answer, our headers:
// User-Agent and Accept: */* by default, as the kubelet; a -header replaces them, an empty one removes
// them; the connection's own headers are dropped.
func TestHTTPRequestHead(t *testing.T) {
	c := testConfig(t, "http://app.internal:8080/healthz?full=1")
	c.Header = map[string][]string{"X-B": {"2"}, "X-A": {"1", "1b"}, "X-Empty": {""},
		"Connection": {"Keep-Alive"}, "Keep-Alive": {"timeout=5"}, "Te": {"trailers"}, "Upgrade": {"h2c"}, "Proxy-Connection": {"keep-alive"}}
	assert.Equal(t, "GET /healthz?full=1 HTTP/1.1\r\nHost: app.internal:8080\r\nUser-Agent: health-check/test\r\nAccept: */*\r\n"+
		"X-A: 1\r\nX-A: 1b\r\nX-B: 2\r\nX-Empty: \r\nConnection: close\r\n\r\n", string(requestHead(c, c.Target, false)))
	assert.Equal(t, []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Upgrade"}, c.HopByHopHeaders())

	c = testConfig(t, "http://[::1]")
	c.Method, c.Host = "HEAD", "vhost"
	c.Header = map[string][]string{"User-Agent": {"kube-probe/1.33"}, "Accept": {"application/json"}}
	assert.Equal(t, "HEAD / HTTP/1.1\r\nHost: vhost\r\nAccept: application/json\r\nUser-Agent: kube-probe/1.33\r\nConnection: close\r\n\r\n",
		string(requestHead(c, c.Target, false)))

	c.Header = map[string][]string{"User-Agent": {""}, "Accept": {""}}
	assert.Equal(t, "HEAD / HTTP/1.1\r\nHost: vhost\r\nConnection: close\r\n\r\n", string(requestHead(c, c.Target, false)),
		"an empty value removes a default header")
}

func TestHTTPBadRedirectLocation(t *testing.T) {
	c := testConfig(t, rawServer(t, "HTTP/1.1 302 Found\r\nLocation: http://[::1/\r\n\r\n"))
	report := run(c)
	assert.Equal(t, Unhealthy, report.Result, "the server answered")
	assert.Contains(t, report.Line(), `302 Found with a bad Location: parse "http://[::1/": missing ']' in host`)
}
