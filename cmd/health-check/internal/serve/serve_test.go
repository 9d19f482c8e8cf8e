package serve

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
	"github.com/health-check-proxy/health-check-proxy/probe"
)

// The tests put a kubelet-like client in front of a real Server, and real mTLS HTTPS and grpc-go
// health servers behind it.

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate", path)
	}
	return pool, nil
}

// kubelet probes as the kubelet does: a new connection per probe, its User-Agent, a timeout.
func kubelet(t *testing.T, method, rawURL string) (*http.Response, string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	req, err := http.NewRequest(method, rawURL, nil)
	require.NoError(t, err)
	req.Header.Set("User-Agent", "kube-probe/1.34")
	req.Header.Set("Accept", "*/*")
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

// upstream is a real HTTPS server that demands a client certificate, with a status to flip, a pause
// to make it slow, and counts of the requests and connections it got.
type upstream struct {
	*httptest.Server
	status      atomic.Int32
	delay       atomic.Int64 // nanoseconds each request waits
	requests    atomic.Int32
	connections atomic.Int32
	files       *testutil.MTLSFiles
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	files, err := testutil.WriteMTLSFiles(t.TempDir(), []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, false)
	require.NoError(t, err)
	serverPair, err := tls.LoadX509KeyPair(files.ServerCert, files.ServerKey)
	require.NoError(t, err)
	ca, err := loadPool(files.CACert)
	require.NoError(t, err)
	u := &upstream{files: files}
	u.status.Store(http.StatusOK)
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.requests.Add(1)
		time.Sleep(time.Duration(u.delay.Load()))
		w.WriteHeader(int(u.status.Load()))
	}))
	u.Server.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			u.connections.Add(1)
		}
	}
	u.TLS = &tls.Config{Certificates: []tls.Certificate{serverPair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca}
	u.StartTLS()
	t.Cleanup(u.Close)
	return u
}

// check is a Check of the upstream's path through probe.Run, with the upstream's client certificate.
func (u *upstream) check(name, path string, timeout time.Duration) Check {
	target, err := probe.ParseTarget(u.URL + path)
	if err != nil {
		panic(err)
	}
	expect, err := probe.ParseStatusSet(probe.DefaultExpectStatus)
	if err != nil {
		panic(err)
	}
	return Check{Name: name, Timeout: timeout, Checker: probe.NewSession(probe.Config{
		Target: target, Timeout: timeout, Retries: 0, ExpectStatus: expect,
		TLS: probe.TLSOptions{CACert: u.files.CACert, Cert: u.files.ClientCert, Key: u.files.ClientKey},
	})}
}

// startServer serves opts on a loopback port until the test ends, and returns its base URL.
func startServer(t *testing.T, opts Options) (*Server, string) {
	t.Helper()
	s, err := New(opts)
	require.NoError(t, err)
	l, err := Listen("127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, s.Shutdown(ctx))
		assert.NoError(t, <-served)
	})
	return s, "http://" + l.Addr().String()
}

func TestHTTPSChecks(t *testing.T) {
	app := startUpstream(t)
	_, base := startServer(t, Options{Checks: []Check{app.check("live", "/livez", time.Second)}})

	resp, body := kubelet(t, "GET", base+"/live")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "healthy: GET "+app.URL+"/livez: 200 OK\n", body)
	assert.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"))
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))

	app.status.Store(http.StatusServiceUnavailable)
	resp, body = kubelet(t, "GET", base+"/live")
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, "unhealthy: GET "+app.URL+"/livez: 503 Service Unavailable (want 200-399)\n", body)

	app.status.Store(http.StatusNoContent)
	resp, _ = kubelet(t, "GET", base+"/live")
	assert.Equal(t, 200, resp.StatusCode, "the status flips back")

	resp, body = kubelet(t, "HEAD", base+"/live")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Empty(t, body)
	assert.NotZero(t, resp.ContentLength, "HEAD has the GET's Content-Length")

	resp, body = kubelet(t, "GET", base+"/live?verbose=1")
	assert.Equal(t, 200, resp.StatusCode, "a query is ignored: %s", body)

	for _, path := range []string{"/ready", "/", "/live/", "/LIVE", "/%6Cive", "/metrics"} {
		resp, _ = kubelet(t, "GET", base+path)
		assert.Equal(t, 404, resp.StatusCode, path)
	}
	for _, method := range []string{"POST", "PUT", "DELETE", "OPTIONS"} {
		resp, _ = kubelet(t, method, base+"/live")
		assert.Equal(t, 405, resp.StatusCode, method)
		assert.Equal(t, "GET, HEAD", resp.Header.Get("Allow"))
	}
}

func TestGRPCChecks(t *testing.T) {
	files, err := testutil.WriteMTLSFiles(t.TempDir(), []string{"localhost"}, nil, false)
	require.NoError(t, err)
	serverPair, err := tls.LoadX509KeyPair(files.ServerCert, files.ServerKey)
	require.NoError(t, err)
	ca, err := loadPool(files.CACert)
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	grpcServer := testutil.StartGRPC(t, l, testutil.GRPCOptions{TLS: &tls.Config{
		Certificates: []tls.Certificate{serverPair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca}})
	_, port, _ := net.SplitHostPort(grpcServer.Addr)
	target, err := probe.ParseTarget("grpcs://localhost:" + port)
	require.NoError(t, err)
	config := probe.Config{Target: target, Timeout: time.Second, GRPCService: "api",
		TLS: probe.TLSOptions{CACert: files.CACert, Cert: files.ClientCert, Key: files.ClientKey}}
	_, base := startServer(t, Options{Checks: []Check{{Name: "ready", Timeout: time.Second, Checker: probe.NewSession(config)}}})

	grpcServer.Health.SetServingStatus("api", healthpb.HealthCheckResponse_SERVING)
	resp, body := kubelet(t, "GET", base+"/ready")
	assert.Equal(t, 200, resp.StatusCode, body)
	assert.Contains(t, body, `healthy: grpc.health.v1.Health/Check("api") grpcs://localhost:`+port)

	grpcServer.Health.SetServingStatus("api", healthpb.HealthCheckResponse_NOT_SERVING)
	resp, body = kubelet(t, "GET", base+"/ready")
	assert.Equal(t, 503, resp.StatusCode)
	assert.Contains(t, body, "unhealthy: ")
	assert.Contains(t, body, "NOT_SERVING")

	grpcServer.Health.SetServingStatus("api", healthpb.HealthCheckResponse_SERVING)
	resp, _ = kubelet(t, "GET", base+"/ready")
	assert.Equal(t, 200, resp.StatusCode)
}

// TestAppDown: an upstream that refuses or never answers is a 503 within the check's timeout, with
// the reason in the body.
func TestAppDown(t *testing.T) {
	hole := testutil.BlackHole(t)
	refused, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refusedAddr := refused.Addr().String()
	refused.Close()
	checkOf := func(name, raw string, timeout time.Duration) Check {
		target, err := probe.ParseTarget(raw)
		require.NoError(t, err)
		return Check{Name: name, Timeout: timeout, Checker: probe.NewSession(probe.Config{Target: target, Timeout: timeout, Retries: 1, RetryDelay: 50 * time.Millisecond})}
	}
	_, base := startServer(t, Options{Checks: []Check{
		checkOf("hangs", "http://"+hole.Addr().String()+"/healthz", 300*time.Millisecond),
		checkOf("down", "http://"+refusedAddr+"/healthz", 300*time.Millisecond),
	}})

	start := time.Now()
	resp, body := kubelet(t, "GET", base+"/hangs")
	elapsed := time.Since(start)
	assert.Equal(t, 503, resp.StatusCode)
	assert.Contains(t, body, "unreachable: GET http://"+hole.Addr().String()+"/healthz: no answer within -timeout 300ms")
	assert.Less(t, elapsed, 300*time.Millisecond+answerMargin, "the check's -timeout bounds the answer")

	resp, body = kubelet(t, "GET", base+"/down")
	assert.Equal(t, 503, resp.StatusCode)
	assert.Contains(t, body, "connection refused after 2 attempts")
	assert.Equal(t, 1, strings.Count(body, "\n"), "one line")
}

// TestAliveNeverTouchesUpstream: /-/alive answers at once while every check hangs.
func TestAliveNeverTouchesUpstream(t *testing.T) {
	app := startUpstream(t)
	app.delay.Store(int64(2 * time.Second))
	_, base := startServer(t, Options{Checks: []Check{app.check("live", "/", 3*time.Second)}})
	probing := make(chan struct{})
	go func() {
		defer close(probing)
		client := &http.Client{Timeout: 5 * time.Second}
		if resp, err := client.Get(base + "/live"); assert.NoError(t, err) {
			resp.Body.Close()
		}
	}()
	time.Sleep(50 * time.Millisecond)
	requestsBefore := app.requests.Load()
	start := time.Now()
	resp, body := kubelet(t, "GET", base+"/-/alive")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "alive\n", body)
	assert.Less(t, time.Since(start), 200*time.Millisecond)
	assert.Equal(t, requestsBefore, app.requests.Load())
	<-probing
}

// TestConcurrentProbesShareUpstreamCalls: 200 probes at once make a handful of upstream requests.
func TestConcurrentProbesShareUpstreamCalls(t *testing.T) {
	app := startUpstream(t)
	app.delay.Store(int64(300 * time.Millisecond))
	_, base := startServer(t, Options{Checks: []Check{app.check("live", "/", 2*time.Second)}, MaxConnections: 256})
	const probes = 200
	var wg sync.WaitGroup
	codes := make([]int, probes)
	start := make(chan struct{})
	for i := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
			resp, err := client.Get(base + "/live")
			if !assert.NoError(t, err) {
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	close(start)
	wg.Wait()
	for i, code := range codes {
		assert.Equal(t, 200, code, "probe %d", i)
	}
	// The probes arrive within a few milliseconds of each other and each upstream call takes 300 ms:
	// all but the stragglers of a loaded machine share the first call.
	assert.LessOrEqual(t, app.requests.Load(), int32(3), "upstream requests")
	assert.LessOrEqual(t, app.connections.Load(), int32(3), "upstream connections")
	t.Logf("%d probes: %d upstream requests on %d connections", probes, app.requests.Load(), app.connections.Load())
}

// TestBusy: beyond the limit of upstream calls in flight, a probe gets a quick 503, not a queue.
func TestBusy(t *testing.T) {
	app := startUpstream(t)
	app.delay.Store(int64(time.Second))
	_, base := startServer(t, Options{MaxUpstream: 1, Checks: []Check{app.check("one", "/", 2*time.Second), app.check("two", "/", 2*time.Second)}})
	first := make(chan int, 1)
	go func() {
		resp, err := http.Get(base + "/one")
		if !assert.NoError(t, err) {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	resp, body := kubelet(t, "GET", base+"/two")
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, "unreachable: check two: busy: 1 upstream checks already in flight\n", body)
	assert.Less(t, time.Since(start), 200*time.Millisecond)
	assert.Equal(t, 200, <-first)
}

// rawRequest sends text on a new connection and returns the status code of the answer and whether
// the server closed the connection after it.
func rawRequest(t *testing.T, base, text string) (status int, closed bool) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = io.WriteString(conn, text)
	require.NoError(t, err)
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	require.NoError(t, err)
	_, err = io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	_, err = r.ReadByte()
	return resp.StatusCode, err == io.EOF && resp.Close
}

func TestRefusedRequests(t *testing.T) {
	app := startUpstream(t)
	_, base := startServer(t, Options{Checks: []Check{app.check("live", "/", time.Second)}})
	tests := []struct {
		name    string
		request string
		status  int
	}{
		{"a body", "POST /live HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 400},
		{"a body on a GET", "GET /live HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 400},
		{"chunked", "GET /live HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400},
		{"oversized headers", "GET /live HTTP/1.1\r\nHost: x\r\nCookie: " + strings.Repeat("a", 9000) + "\r\n\r\n", 431},
		{"many headers", "GET /live HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: b\r\n", 2000) + "\r\n", 431},
		{"absolute form: no proxy", "GET http://example.com/live HTTP/1.1\r\nHost: example.com\r\n\r\n", 400},
		{"CONNECT: no proxy", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 400},
		{"no Host", "GET /live HTTP/1.1\r\n\r\n", 400},
		{"two Hosts", "GET /live HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"obsolete line folding", "GET /live HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n", 400},
		{"space before the colon", "GET /live HTTP/1.1\r\nHost : x\r\n\r\n", 400},
		{"a path that does not decode, which net/http refuses", "GET /live%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"HTTP/2 in plain text", "GET /live HTTP/2.0\r\nHost: x\r\n\r\n", 505},
		{"garbage", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, closed := rawRequest(t, base, tt.request)
			assert.Equal(t, tt.status, status)
			assert.True(t, closed, "the connection closes after a refusal")
		})
	}

	// net/http's own client, as a program would send a body.
	resp, err := http.Post(base+"/live", "text/plain", strings.NewReader(strings.Repeat("x", 100000)))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 400, resp.StatusCode)

	status, closed := rawRequest(t, base, "GET /live HTTP/1.0\r\n\r\n")
	assert.Equal(t, 200, status, "HTTP/1.0 needs no Host")
	assert.True(t, closed)
	status, closed = rawRequest(t, base, "GET /live HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	assert.Equal(t, 200, status, "an empty body is no body")
	assert.True(t, closed, "Connection: close is honoured")
}

// TestKeepAlive: a client that keeps its connection alive gets several answers on it.
func TestKeepAlive(t *testing.T) {
	app := startUpstream(t)
	_, base := startServer(t, Options{Checks: []Check{app.check("live", "/", time.Second)}})
	client := &http.Client{Timeout: 5 * time.Second}
	var reused []bool
	for range 3 {
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused = append(reused, info.Reused) }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", base+"/live", nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		_, err = io.Copy(io.Discard, resp.Body)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode)
		assert.False(t, resp.Close)
	}
	assert.Equal(t, []bool{false, true, true}, reused)
}

// TestSlowClients: a client that sends its head slowly (slowloris) does not delay a probe, and is
// cut off after the read-header timeout; at the connection limit, a new connection cuts off the
// one that has waited longest on its client, and a probe still gets in.
func TestSlowClients(t *testing.T) {
	app := startUpstream(t)
	server, base := startServer(t, Options{Metrics: true, Checks: []Check{app.check("live", "/", time.Second)},
		ReadHeaderTimeout: 500 * time.Millisecond, MaxConnections: 3})
	addr := strings.TrimPrefix(base, "http://")

	// Three slow clients fill the server, oldest first. Each sends a first byte, as clients do at
	// once: Listen accepts a connection when data arrives.
	slow := make([]net.Conn, 3)
	for i := range slow {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		_, err = io.WriteString(conn, "GET /live HTTP/1.1\r\nHost: x\r\n") // and never the blank line
		require.NoError(t, err)
		slow[i] = conn
		require.Eventually(t, func() bool { return server.connections() == i+1 }, time.Second, 5*time.Millisecond)
	}
	start := time.Now()
	resp, _ := kubelet(t, "GET", base+"/live")
	assert.Equal(t, 200, resp.StatusCode, "a probe gets in at the limit")
	assert.Less(t, time.Since(start), 300*time.Millisecond, "a slow client delays no probe")
	cutOff := func(conn net.Conn) bool {
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
		n, err := conn.Read(make([]byte, 1))
		return n == 0 && errors.Is(err, io.EOF)
	}
	assert.True(t, cutOff(slow[0]), "the oldest slow client made room")
	assert.False(t, cutOff(slow[1]), "the others are still held")
	resp, body := kubelet(t, "GET", base+"/metrics")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, 1.0, parseMetrics(t, body)["health_check_connections_cut_off_total"], "the probe made room; /metrics found some")

	// The read-header timeout cuts the other slow clients off, without an answer.
	for _, conn := range slow[1:] {
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(2*time.Second)))
		n, err := conn.Read(make([]byte, 1))
		assert.Equal(t, 0, n)
		assert.ErrorIs(t, err, io.EOF)
	}
	assert.Less(t, time.Since(start), 1500*time.Millisecond)
	assert.Eventually(t, func() bool { return server.connections() == 0 }, time.Second, 5*time.Millisecond)
}

// TestBusyConnections: when every connection held waits for its check, there is no client to cut
// off, and a new connection gets a quick 503.
func TestBusyConnections(t *testing.T) {
	app := startUpstream(t)
	app.delay.Store(int64(500 * time.Millisecond))
	server, base := startServer(t, Options{Checks: []Check{app.check("live", "/", time.Second)}, MaxConnections: 2})
	answers := make(chan int, 2)
	for range 2 {
		go func() {
			resp, err := http.Get(base + "/live")
			if !assert.NoError(t, err) {
				answers <- 0
				return
			}
			resp.Body.Close()
			answers <- resp.StatusCode
		}()
	}
	require.Eventually(t, func() bool { return server.connections() == 2 && server.waitingOnClients() == 0 }, time.Second, time.Millisecond)
	start := time.Now()
	refused, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	require.NoError(t, err)
	defer refused.Close()
	_, err = io.WriteString(refused, "GET /live HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, refused.SetReadDeadline(time.Now().Add(time.Second)))
	answer, err := io.ReadAll(refused)
	if err == nil { // or the close's reset overtook the answer
		assert.True(t, strings.HasPrefix(string(answer), "HTTP/1.1 503 Service Unavailable\r\n"), "%q", answer)
	}
	assert.NotErrorIs(t, err, os.ErrDeadlineExceeded, "refused at once")
	assert.Less(t, time.Since(start), 300*time.Millisecond)
	assert.Equal(t, 200, <-answers)
	assert.Equal(t, 200, <-answers)
}

// TestSilentClient: a client that connects and sends nothing is held back by the kernel at first
// (TCP_DEFER_ACCEPT, on Linux), then accepted all the same, and cut off by the read-header timeout.
func TestSilentClient(t *testing.T) {
	app := startUpstream(t)
	server, base := startServer(t, Options{Checks: []Check{app.check("live", "/", time.Second)}, ReadHeaderTimeout: 300 * time.Millisecond})
	silent, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	require.NoError(t, err)
	defer silent.Close()
	start := time.Now()
	require.NoError(t, silent.SetReadDeadline(time.Now().Add(10*time.Second)))
	n, err := silent.Read(make([]byte, 1))
	assert.Equal(t, 0, n)
	assert.ErrorIs(t, err, io.EOF, "cut off without an answer")
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Eventually(t, func() bool { return server.connections() == 0 }, time.Second, 5*time.Millisecond)
}

// metricLine is one sample of the Prometheus text format, as the server writes it.
var metricLine = regexp.MustCompile(`^([a-z_]+)(?:\{((?:[a-z]+="[^"]*",?)*)\})? ([0-9.e+-]+|\+Inf)$`)

// parseMetrics reads the exposition: every line is a comment or a sample; samples by name and labels.
func parseMetrics(t *testing.T, text string) map[string]float64 {
	t.Helper()
	samples := map[string]float64{}
	types := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if strings.HasPrefix(line, "# TYPE ") {
			fields := strings.Fields(line)
			require.Len(t, fields, 4, line)
			types[fields[2]] = fields[3]
			continue
		}
		if strings.HasPrefix(line, "# HELP ") {
			continue
		}
		m := metricLine.FindStringSubmatch(line)
		require.NotNil(t, m, "not a sample: %q", line)
		family := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m[1], "_bucket"), "_sum"), "_count")
		assert.Contains(t, types, family, "a TYPE line comes before %s", m[1])
		value, err := strconv.ParseFloat(m[3], 64)
		require.NoError(t, err, line)
		name := m[1]
		if m[2] != "" {
			name += "{" + m[2] + "}"
		}
		samples[name] = value
	}
	return samples
}

func TestMetrics(t *testing.T) {
	app := startUpstream(t)
	_, base := startServer(t, Options{Metrics: true, Checks: []Check{app.check("live", "/", time.Second), app.check("ready", "/", time.Second)}})
	for range 3 {
		kubelet(t, "GET", base+"/live")
	}
	app.status.Store(http.StatusInternalServerError)
	kubelet(t, "GET", base+"/live")

	resp, body := kubelet(t, "GET", base+"/metrics")
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "text/plain; version=0.0.4; charset=utf-8", resp.Header.Get("Content-Type"))
	samples := parseMetrics(t, body)
	assert.Equal(t, 4.0, samples[`health_check_probes_total{check="live"}`])
	assert.Equal(t, 3.0, samples[`health_check_checks_total{check="live",result="healthy"}`])
	assert.Equal(t, 1.0, samples[`health_check_checks_total{check="live",result="unhealthy"}`])
	assert.Equal(t, 0.0, samples[`health_check_checks_total{check="ready",result="healthy"}`])
	assert.Equal(t, 4.0, samples[`health_check_upstream_seconds_count{check="live"}`])
	assert.Equal(t, 4.0, samples[`health_check_upstream_seconds_bucket{check="live",le="+Inf"}`])
	assert.Greater(t, samples[`health_check_upstream_seconds_sum{check="live"}`], 0.0)
	assert.Contains(t, samples, `health_check_upstream_connections_total{check="live",reused="false"}`)
	assert.Contains(t, samples, `health_check_upstream_connections_total{check="live",reused="true"}`)

	// A Checker that reports its connections has them shown.
	_, base = startServer(t, Options{Metrics: true, Checks: []Check{{Name: "kept", Timeout: time.Second, Checker: keptAlive{}}}})
	_, body = kubelet(t, "GET", base+"/metrics")
	samples = parseMetrics(t, body)
	assert.Equal(t, 2.0, samples[`health_check_upstream_connections_total{check="kept",reused="false"}`])
	assert.Equal(t, 40.0, samples[`health_check_upstream_connections_total{check="kept",reused="true"}`])
}

// keptAlive is a Checker that says it opened 2 connections and reused them 40 times.
type keptAlive struct{}

func (keptAlive) Check(context.Context) probe.Report           { return probe.Report{} }
func (keptAlive) UpstreamConnections() (opened, reused uint64) { return 2, 40 }
func (keptAlive) Close()                                       {}

// TestShutdownClosesCheckers: the server owns its Checkers: Shutdown closes each one, once the answers
// that use it are over, and a Checker is never closed while the server runs.
func TestShutdownClosesCheckers(t *testing.T) {
	first, second := &closeCounter{}, &closeCounter{}
	s, err := New(Options{Checks: []Check{
		{Name: "live", Timeout: time.Second, Checker: first},
		{Name: "ready", Timeout: time.Second, Checker: second},
	}})
	require.NoError(t, err)
	l, err := Listen("127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	resp, _ := kubelet(t, "GET", "http://"+l.Addr().String()+"/live")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Zero(t, first.closed.Load(), "closed while serving")

	require.NoError(t, s.Shutdown(context.Background()))
	require.NoError(t, <-served)
	assert.Equal(t, int32(1), first.closed.Load())
	assert.Equal(t, int32(1), second.closed.Load())
}

// closeCounter is a healthy Checker that counts its Close calls.
type closeCounter struct{ closed atomic.Int32 }

func (*closeCounter) Check(context.Context) probe.Report { return probe.Report{Result: probe.Healthy} }
func (c *closeCounter) Close()                           { c.closed.Add(1) }

// TestShutdownDrains: Shutdown lets the answer in flight finish, with Connection: close, and cuts
// idle connections at once.
func TestShutdownDrains(t *testing.T) {
	app := startUpstream(t)
	app.delay.Store(int64(400 * time.Millisecond))
	s, err := New(Options{Checks: []Check{app.check("live", "/", 2*time.Second)}})
	require.NoError(t, err)
	l, err := Listen("127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	base := "http://" + l.Addr().String()

	idle, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer idle.Close()
	_, err = io.WriteString(idle, "GET") // a head begun: the server holds the connection, waiting
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.connections() == 1 }, time.Second, 5*time.Millisecond)
	type answer struct {
		status int
		close  bool
		err    error
	}
	answers := make(chan answer, 1)
	go func() {
		resp, err := http.Get(base + "/live")
		if err != nil {
			answers <- answer{err: err}
			return
		}
		resp.Body.Close()
		answers <- answer{status: resp.StatusCode, close: resp.Close}
	}()
	time.Sleep(100 * time.Millisecond) // the probe is in flight

	ctx, cancel := context.WithTimeout(context.Background(), s.DrainTime())
	defer cancel()
	start := time.Now()
	require.NoError(t, s.Shutdown(ctx))
	assert.Less(t, time.Since(start), time.Second)
	got := <-answers
	require.NoError(t, got.err)
	assert.Equal(t, 200, got.status)
	assert.True(t, got.close, "Connection: close while shutting down")
	assert.NoError(t, <-served)

	require.NoError(t, idle.SetReadDeadline(time.Now().Add(time.Second)))
	_, err = idle.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "an idle connection is closed")
	_, err = net.Dial("tcp", l.Addr().String())
	assert.Error(t, err, "no longer listening")
}

func TestNewRefusesBadChecks(t *testing.T) {
	checker := probe.NewSession(probe.Config{})
	good := Check{Name: "live", Checker: checker, Timeout: time.Second}
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"no checks", Options{}, "no checks"},
		{"uppercase", Options{Checks: []Check{{Name: "Live", Checker: checker, Timeout: time.Second}}}, `check name "Live": want lowercase letters, digits and '-'`},
		{"slash", Options{Checks: []Check{{Name: "a/b", Checker: checker, Timeout: time.Second}}}, "want lowercase"},
		{"empty", Options{Checks: []Check{{Name: "", Checker: checker, Timeout: time.Second}}}, "want 1 to 63 characters"},
		{"too long", Options{Checks: []Check{{Name: strings.Repeat("a", 64), Checker: checker, Timeout: time.Second}}}, "want 1 to 63 characters"},
		{"twice", Options{Checks: []Check{good, good}}, `check name "live": given twice`},
		{"metrics", Options{Metrics: true, Checks: []Check{{Name: "metrics", Checker: checker, Timeout: time.Second}}}, "/metrics serves the metrics"},
		{"no timeout", Options{Checks: []Check{{Name: "live", Checker: checker}}}, "positive Timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			assert.ErrorContains(t, err, tt.wantErr)
		})
	}
	_, err := New(Options{Checks: []Check{{Name: "metrics", Checker: checker, Timeout: time.Second}}})
	assert.NoError(t, err, "without -metrics the name is free")
}

// TestResultChangesAreLogged: the log says when a check's result changes, and why, once.
func TestResultChangesAreLogged(t *testing.T) {
	app := startUpstream(t)
	var log testutil.SyncBuffer
	_, base := startServer(t, Options{Log: &log, Checks: []Check{app.check("live", "/", time.Second)}})
	kubelet(t, "GET", base+"/live")
	kubelet(t, "GET", base+"/live")
	app.status.Store(http.StatusServiceUnavailable)
	kubelet(t, "GET", base+"/live")
	kubelet(t, "GET", base+"/live")
	u, err := url.Parse(app.URL)
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprintf("check live: healthy: GET https://%s/: 200 OK\ncheck live: unhealthy: GET https://%s/: 503 Service Unavailable (want 200-399)\n", u.Host, u.Host), log.String())
}

// connections is how many client connections s holds.
func (s *Server) connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// waitingOnClients is how many connections s holds that wait on their client.
func (s *Server) waitingOnClients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := s.waiting.head; c != nil; c = c.next {
		n++
	}
	return n
}
