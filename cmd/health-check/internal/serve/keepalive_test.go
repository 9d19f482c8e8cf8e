package serve

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
	"github.com/health-check-proxy/health-check-proxy/probe"
)

// These tests run probe.Session, the kept-alive checker `health-check serve` uses, behind a real
// Server and in front of real mTLS HTTPS and grpc-go servers, and count the upstream connections.

// keptUpstream is an mTLS HTTPS server that records, for each connection, whether its TLS session
// was resumed, and for each request the client certificate's common name.
type keptUpstream struct {
	*httptest.Server
	pki    *testutil.PKI
	status atomic.Int32

	mu      sync.Mutex
	known   []net.Conn // the connections seen, in the order they started
	resumed []bool     // one per connection
	clients []string   // one per request
}

func startKeptUpstream(t *testing.T) *keptUpstream {
	t.Helper()
	u := &keptUpstream{pki: testutil.TestPKI(t, testutil.ECDSAP256)}
	u.status.Store(http.StatusOK)
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.clients = append(u.clients, r.TLS.PeerCertificates[0].Subject.CommonName)
		u.mu.Unlock()
		w.WriteHeader(int(u.status.Load()))
	}))
	u.Server.Config.ConnState = func(conn net.Conn, state http.ConnState) {
		if state != http.StateActive {
			return
		}
		tlsConn, ok := conn.(*tls.Conn)
		if !ok {
			return
		}
		u.mu.Lock()
		defer u.mu.Unlock()
		// StateActive comes once per request: a connection is new when its first request comes.
		if !u.seen(conn) {
			u.resumed = append(u.resumed, tlsConn.ConnectionState().DidResume)
			u.known = append(u.known, conn)
		}
	}
	u.TLS = u.pki.MTLSConfig(u.pki.Server)
	u.StartTLS()
	t.Cleanup(u.Close)
	return u
}

func (u *keptUpstream) seen(conn net.Conn) bool {
	for _, c := range u.known {
		if c == conn {
			return true
		}
	}
	return false
}

// connections returns whether each connection so far resumed its TLS session, and the client
// certificate of each request.
func (u *keptUpstream) connections() (resumed []bool, clients []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]bool(nil), u.resumed...), append([]string(nil), u.clients...)
}

// session is a kept-alive check of the upstream with the test PKI's client certificate, from
// copies of its files that the test may replace.
func (u *keptUpstream) session(t *testing.T, name string) (Check, *probe.Session, probe.TLSOptions) {
	t.Helper()
	dir := t.TempDir()
	files := probe.TLSOptions{CACert: u.pki.CAFile, Cert: filepath.Join(dir, "tls.crt"), Key: filepath.Join(dir, "tls.key")}
	replaceFile(t, u.pki.ClientCert, files.Cert)
	replaceFile(t, u.pki.ClientKey, files.Key)
	expect, err := probe.ParseStatusSet(probe.DefaultExpectStatus)
	require.NoError(t, err)
	target, err := probe.ParseTarget(u.URL + "/healthz")
	require.NoError(t, err)
	session := probe.NewSession(probe.Config{Target: target, Timeout: 2 * time.Second, ExpectStatus: expect, TLS: files, UserAgent: "health-check/test"})
	t.Cleanup(session.Close)
	return Check{Name: name, Timeout: 2 * time.Second, Checker: session}, session, files
}

// replaceFile puts a copy of from at to the way a rotated Kubernetes Secret does: a new file renamed
// over the old one.
func replaceFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	require.NoError(t, err)
	writeOver(t, to, data)
}

func writeOver(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	require.NoError(t, os.WriteFile(tmp, data, 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

// upstreamConnections reads the opened and reused counts of check name from /metrics.
func upstreamConnections(t *testing.T, base, name string) (opened, reused int) {
	t.Helper()
	_, body := kubelet(t, "GET", base+"/metrics")
	_, err := fmt.Sscanf(metricValue(t, body, `health_check_upstream_connections_total{check="`+name+`",reused="false"}`)+" "+
		metricValue(t, body, `health_check_upstream_connections_total{check="`+name+`",reused="true"}`), "%d %d", &opened, &reused)
	require.NoError(t, err)
	return opened, reused
}

// metricValue is the value of the sample named series (name and labels) in a /metrics body.
func metricValue(t *testing.T, body, series string) string {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if value, ok := strings.CutPrefix(line, series+" "); ok {
			return value
		}
	}
	t.Fatalf("no %s in /metrics", series)
	return ""
}

func TestKeptAliveHTTPSReusesOneConnection(t *testing.T) {
	app := startKeptUpstream(t)
	check, _, _ := app.session(t, "live")
	_, base := startServer(t, Options{Metrics: true, Checks: []Check{check}})

	const probes = 20
	for i := 0; i < probes; i++ {
		resp, body := kubelet(t, "GET", base+"/live")
		require.Equal(t, 200, resp.StatusCode, body)
	}
	resumed, clients := app.connections()
	assert.Len(t, resumed, 1, "every probe after the first reuses the one upstream connection")
	assert.Len(t, clients, probes)
	opened, reused := upstreamConnections(t, base, "live")
	assert.Equal(t, 1, opened)
	assert.Equal(t, probes-1, reused)

	// The app turns unhealthy: the kept connection carries the news.
	app.status.Store(http.StatusServiceUnavailable)
	resp, body := kubelet(t, "GET", base+"/live")
	assert.Equal(t, 503, resp.StatusCode)
	assert.Contains(t, body, "503 Service Unavailable")
	app.status.Store(http.StatusOK)
	resp, _ = kubelet(t, "GET", base+"/live")
	assert.Equal(t, 200, resp.StatusCode)
	resumed, _ = app.connections()
	assert.Len(t, resumed, 1, "an unhealthy answer leaves the connection reusable")
}

func TestKeptAliveHTTPSRedialsAndResumes(t *testing.T) {
	app := startKeptUpstream(t)
	check, _, _ := app.session(t, "live")
	_, base := startServer(t, Options{Metrics: true, Checks: []Check{check}})

	resp, body := kubelet(t, "GET", base+"/live")
	require.Equal(t, 200, resp.StatusCode, body)
	// The server drops its idle connection: the next probe redials, transparently, and resumes.
	app.CloseClientConnections()
	resp, body = kubelet(t, "GET", base+"/live")
	require.Equal(t, 200, resp.StatusCode, body)
	resp, body = kubelet(t, "GET", base+"/live")
	require.Equal(t, 200, resp.StatusCode, body)

	resumed, _ := app.connections()
	require.Len(t, resumed, 2)
	assert.False(t, resumed[0], "the first connection has no session to resume")
	assert.True(t, resumed[1], "the redial resumes the TLS session of the first connection")
	opened, reused := upstreamConnections(t, base, "live")
	assert.Equal(t, 2, opened)
	assert.Equal(t, 1, reused)
}

func TestKeptAliveHTTPSRotatedCertificate(t *testing.T) {
	app := startKeptUpstream(t)
	check, _, files := app.session(t, "live")
	_, base := startServer(t, Options{Checks: []Check{check}})

	resp, body := kubelet(t, "GET", base+"/live")
	require.Equal(t, 200, resp.StatusCode, body)

	// A new certificate and key land on disk, as a rotated Secret: the next probe uses them, on a new
	// connection with a full handshake (a resumed session would not present the new certificate).
	rotated, err := app.pki.CA.Client("rotated client")
	require.NoError(t, err)
	certPath, keyPath, err := rotated.WriteFiles(t.TempDir(), "rotated")
	require.NoError(t, err)
	replaceFile(t, keyPath, files.Key)
	replaceFile(t, certPath, files.Cert)
	resp, body = kubelet(t, "GET", base+"/live")
	require.Equal(t, 200, resp.StatusCode, body)
	assert.NotContains(t, body, "keeping")

	resumed, clients := app.connections()
	assert.Equal(t, []bool{false, false}, resumed, "a new certificate, a new connection and a full handshake")
	assert.Equal(t, []string{"health-check test client", "rotated client"}, clients)

	// A garbage certificate: the last good one stays in use, and the answer says so.
	writeOver(t, files.Cert, []byte("not a certificate"))
	resp, body = kubelet(t, "GET", base+"/live")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Regexp(t, `^healthy: GET https://127\.0\.0\.1:\d+/healthz: 200 OK \(-cert: keeping the last good certificate: client certificate .*tls\.crt and key .*tls\.key: tls: failed to find any PEM data in certificate input\)\n$`, body)
	_, clients = app.connections()
	assert.Equal(t, "rotated client", clients[len(clients)-1])

	// Fixed again: the note goes.
	replaceFile(t, app.pki.ClientCert, files.Cert)
	replaceFile(t, app.pki.ClientKey, files.Key)
	resp, body = kubelet(t, "GET", base+"/live")
	assert.Equal(t, 200, resp.StatusCode)
	assert.NotContains(t, body, "keeping")
	_, clients = app.connections()
	assert.Equal(t, "health-check test client", clients[len(clients)-1])
}

func TestKeptAliveParallelProbesBoundUpstream(t *testing.T) {
	app := startKeptUpstream(t)
	check, _, _ := app.session(t, "live")
	_, base := startServer(t, Options{Metrics: true, MaxConnections: 256, Checks: []Check{check}})

	const parallel = 200
	statuses := make([]int, parallel)
	var wg sync.WaitGroup
	for i := range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
			req, err := http.NewRequest("GET", base+"/live", nil)
			if !assert.NoError(t, err) {
				return
			}
			req.Header.Set("User-Agent", "kube-probe/1.34")
			resp, err := client.Do(req)
			if !assert.NoError(t, err) {
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	for i, status := range statuses {
		assert.Equal(t, 200, status, "probe %d", i)
	}
	resumed, clients := app.connections()
	assert.Len(t, resumed, 1, "one upstream connection for all of them")
	assert.Less(t, len(clients), parallel, "concurrent probes share upstream calls")
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	accepted atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return conn, err
}

// grpcSession is a kept-alive check of a grpc-go mTLS health server started with options.
func grpcSession(t *testing.T, options ...grpc.ServerOption) (Check, *testutil.GRPCServer, *countingListener) {
	t.Helper()
	pki := testutil.TestPKI(t, testutil.ECDSAP256)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	lis := &countingListener{Listener: inner}
	server := testutil.StartGRPC(t, lis, testutil.GRPCOptions{TLS: pki.MTLSConfig(pki.Server), Options: options})
	target, err := probe.ParseTarget("grpcs://" + server.Addr)
	require.NoError(t, err)
	session := probe.NewSession(probe.Config{Target: target, Timeout: 2 * time.Second,
		TLS: probe.TLSOptions{CACert: pki.CAFile, Cert: pki.ClientCert, Key: pki.ClientKey}})
	t.Cleanup(session.Close)
	return Check{Name: "ready", Timeout: 2 * time.Second, Checker: session}, server, lis
}

func TestKeptAliveGRPCReusesOneConnection(t *testing.T) {
	check, server, lis := grpcSession(t)
	_, base := startServer(t, Options{Metrics: true, Checks: []Check{check}})

	for i := 0; i < 10; i++ {
		resp, body := kubelet(t, "GET", base+"/ready")
		require.Equal(t, 200, resp.StatusCode, body)
	}
	server.Health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	resp, body := kubelet(t, "GET", base+"/ready")
	assert.Equal(t, 503, resp.StatusCode)
	assert.Contains(t, body, "status NOT_SERVING")
	server.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	resp, body = kubelet(t, "GET", base+"/ready")
	assert.Equal(t, 200, resp.StatusCode, body)

	assert.EqualValues(t, 1, lis.accepted.Load(), "every call on one HTTP/2 connection")
	opened, reused := upstreamConnections(t, base, "ready")
	assert.Equal(t, 1, opened)
	assert.Equal(t, 11, reused)
}

func TestKeptAliveGRPCRedialsAfterGoAway(t *testing.T) {
	// The server sends GOAWAY to a connection idle for 100 ms, and closes it.
	check, _, lis := grpcSession(t, grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 100 * time.Millisecond}))
	_, base := startServer(t, Options{Metrics: true, Checks: []Check{check}})

	for i := 0; i < 3; i++ {
		resp, body := kubelet(t, "GET", base+"/ready")
		require.Equal(t, 200, resp.StatusCode, body)
		time.Sleep(300 * time.Millisecond)
	}
	// grpc-go checks idleness on a timer, so not every pause ends in a GOAWAY before the next call.
	assert.GreaterOrEqual(t, lis.accepted.Load(), int32(2), "a new connection after a GOAWAY")
	opened, _ := upstreamConnections(t, base, "ready")
	assert.EqualValues(t, lis.accepted.Load(), opened)
}

// BenchmarkKeptAliveProbe is one kubelet-style probe (a new connection, no keep-alive) through the
// server to an mTLS HTTPS upstream over a kept-alive connection: go test -bench KeptAliveProbe
// -cpuprofile shows where serve's share of a check goes.
func BenchmarkKeptAliveProbe(b *testing.B) {
	pki := testutil.TestPKI(b, testutil.ECDSAP256)
	upstream := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	upstream.TLS = pki.MTLSConfig(pki.Server)
	upstream.StartTLS()
	defer upstream.Close()
	target, err := probe.ParseTarget(upstream.URL + "/healthz")
	require.NoError(b, err)
	expect, err := probe.ParseStatusSet(probe.DefaultExpectStatus)
	require.NoError(b, err)
	session := probe.NewSession(probe.Config{Target: target, Timeout: 2 * time.Second, ExpectStatus: expect,
		TLS: probe.TLSOptions{CACert: pki.CAFile, Cert: pki.ClientCert, Key: pki.ClientKey}})
	defer session.Close()
	server, err := New(Options{Checks: []Check{{Name: "live", Timeout: 2 * time.Second, Checker: session}}})
	require.NoError(b, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	go func() { _ = server.Serve(l) }()
	defer server.Shutdown(context.Background())
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	url := "http://" + l.Addr().String() + "/live"
	b.ResetTimer()
	for range b.N {
		resp, err := client.Get(url)
		require.NoError(b, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(b, 200, resp.StatusCode)
	}
}
