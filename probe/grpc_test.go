package probe_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"log"
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
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
	"github.com/health-check-proxy/health-check-proxy/probe"
	"github.com/health-check-proxy/health-check-proxy/probe/internal/grpchealth"
)

// grpcTestTimeout bounds each run against a server that answers; it is generous so that a loaded CI
// machine does not turn an answer into a timeout.
const grpcTestTimeout = 3 * time.Second

// grpcConfig is a one-attempt check of rawURL.
// assertReport checks a report's verdict and that its line contains each of lines.
func assertReport(t *testing.T, report probe.Report, want probe.Result, lines ...string) {
	t.Helper()
	assert.Equal(t, want, report.Result, report.Line())
	for _, line := range lines {
		assert.Contains(t, report.Line(), line)
	}
}

func grpcConfig(t *testing.T, rawURL string) *probe.Config {
	t.Helper()
	target, err := probe.ParseTarget(rawURL)
	require.NoError(t, err)
	return &probe.Config{Target: target, Timeout: grpcTestTimeout, UserAgent: "health-check/test"}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return lis
}

// closedPort is a port on 127.0.0.1 where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	lis := listen(t)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close())
	return addr
}

// h2cServer serves handler over unencrypted HTTP/2 (and HTTP/1): an HTTP/2 server that is not gRPC,
// or one that imitates gRPC badly.
func h2cServer(t *testing.T, handler http.HandlerFunc) string {
	t.Helper()
	s := httptest.NewUnstartedServer(handler)
	s.Config.Protocols = new(http.Protocols)
	s.Config.Protocols.SetHTTP1(true)
	s.Config.Protocols.SetUnencryptedHTTP2(true)
	s.Start()
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// fakeGRPC answers like a gRPC server with the given length-prefixed body and trailers.
func fakeGRPC(body []byte, trailers map[string]string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
		for name, value := range trailers {
			w.Header().Set(http.TrailerPrefix+name, value)
		}
	}
}

func TestGRPCOverH2C(t *testing.T) {
	lis := listen(t)
	var sawDeadline, sawUserAgent []bool
	recordCall := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		deadline, ok := ctx.Deadline()
		// The probe gives the server 10 ms more than its own deadline (grpcTimeoutMargin): the server's
		// deadline must never come first.
		sawDeadline = append(sawDeadline, ok && time.Until(deadline) <= grpcTestTimeout+10*time.Millisecond)
		md, _ := metadata.FromIncomingContext(ctx)
		sawUserAgent = append(sawUserAgent, len(md["user-agent"]) == 1 && strings.HasPrefix(md["user-agent"][0], "health-check/test"))
		return handler(ctx, req)
	}
	server := testutil.StartGRPC(t, lis, testutil.GRPCOptions{Options: []grpc.ServerOption{grpc.UnaryInterceptor(recordCall)}})
	server.Health.SetServingStatus("app.Serving", healthpb.HealthCheckResponse_SERVING)
	server.Health.SetServingStatus("app.NotServing", healthpb.HealthCheckResponse_NOT_SERVING)
	server.Health.SetServingStatus("app.Unknown", healthpb.HealthCheckResponse_UNKNOWN)
	noHealth := testutil.StartGRPC(t, listen(t), testutil.GRPCOptions{NoHealth: true})
	url := "grpc://" + server.Addr

	tests := []struct {
		name     string
		url      string
		service  string
		retries  int
		want     probe.Result
		wantLine []string
	}{
		{name: "whole server SERVING", url: url, want: probe.Healthy},
		{name: "named service SERVING", url: url, service: "app.Serving", want: probe.Healthy},
		{name: "trailing slash in URL", url: url + "/", service: "app.Serving", want: probe.Healthy},
		{name: "named service NOT_SERVING", url: url, service: "app.NotServing", want: probe.Unhealthy,
			wantLine: []string{"unhealthy: ", `Check("app.NotServing")`, url, "status NOT_SERVING"}},
		{name: "named service UNKNOWN", url: url, service: "app.Unknown", want: probe.Unhealthy,
			wantLine: []string{"status UNKNOWN"}},
		{name: "NOT_SERVING after retries", url: url, service: "app.NotServing", retries: 2, want: probe.Unhealthy,
			wantLine: []string{"status NOT_SERVING after 3 attempts"}},
		{name: "unknown service is NOT_FOUND", url: url, service: "no.such.Service", want: probe.Unhealthy,
			wantLine: []string{"unhealthy: ", `Check("no.such.Service")`, "grpc-status NOT_FOUND: unknown service"}},
		{name: "server without the health service is UNIMPLEMENTED", url: "grpc://" + noHealth.Addr, want: probe.Unhealthy,
			wantLine: []string{"unhealthy: ", "grpc-status UNIMPLEMENTED", "grpc.health.v1.Health"}},
		{name: "nothing listening", url: "grpc://" + closedPort(t), want: probe.Unreachable,
			wantLine: []string{"unreachable: ", "connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			config := grpcConfig(t, tt.url)
			config.GRPCService = tt.service
			config.Retries = tt.retries
			report := probe.Run(context.Background(), config, nil)
			assertReport(t, report, tt.want, tt.wantLine...)
			if tt.want == probe.Healthy {
				assert.Equal(t, 1, report.Attempts)
			}
		})
	}
	require.NotEmpty(t, sawDeadline)
	for i := range sawDeadline {
		assert.True(t, sawDeadline[i], "call %d: the server saw no grpc-timeout within -timeout", i)
		assert.True(t, sawUserAgent[i], "call %d: the server saw no health-check user agent", i)
	}
}

func TestGRPCServingStatusChanges(t *testing.T) {
	server := testutil.StartGRPC(t, listen(t), testutil.GRPCOptions{})
	config := grpcConfig(t, "grpc://"+server.Addr)
	steps := []struct {
		status healthpb.HealthCheckResponse_ServingStatus
		want   probe.Result
	}{
		{healthpb.HealthCheckResponse_SERVING, probe.Healthy},
		{healthpb.HealthCheckResponse_NOT_SERVING, probe.Unhealthy},
		{healthpb.HealthCheckResponse_SERVING, probe.Healthy},
	}
	for _, step := range steps {
		server.Health.SetServingStatus("", step.status)
		report := probe.Run(context.Background(), config, nil)
		assert.Equal(t, step.want, report.Result, "after SetServingStatus(%s): %s", step.status, report.Line())
	}
}

func TestGRPCSMutualTLS(t *testing.T) {
	p := testutil.TestPKI(t, testutil.ECDSAP256)
	server := testutil.StartGRPC(t, listen(t), testutil.GRPCOptions{TLS: p.MTLSConfig(p.Server)})
	server.Health.SetServingStatus("app.NotServing", healthpb.HealthCheckResponse_NOT_SERVING)
	_, port, err := net.SplitHostPort(server.Addr)
	require.NoError(t, err)
	withClientCert := probe.TLSOptions{CACert: p.CAFile, Cert: p.ClientCert, Key: p.ClientKey}

	// An HTTPS server with HTTP/2 that is not gRPC: every path is 404.
	notGRPC := httptest.NewUnstartedServer(http.NotFoundHandler())
	notGRPC.EnableHTTP2 = true
	notGRPC.TLS = &tls.Config{Certificates: []tls.Certificate{p.Server.TLS}}
	notGRPC.StartTLS()
	t.Cleanup(notGRPC.Close)

	tests := []struct {
		name        string
		url         string
		service     string
		tls         probe.TLSOptions
		want        probe.Result
		wantLine    []string
		wantVerbose []string
	}{
		{name: "client certificate, SERVING", url: "grpcs://" + server.Addr, tls: withClientCert, want: probe.Healthy,
			wantVerbose: []string{"connected to tcp 127.0.0.1:", "TLS handshake in", "TLS 1.3", `server certificate "CN=health-check test server"`, "ALPN h2", "SERVING"}},
		{name: "client certificate, by DNS name", url: "grpcs://localhost:" + port, tls: withClientCert, want: probe.Healthy},
		{name: "server name overrides the host", url: "grpcs://" + server.Addr,
			tls:  probe.TLSOptions{CACert: p.CAFile, Cert: p.ClientCert, Key: p.ClientKey, ServerName: "grpc.test"},
			want: probe.Healthy},
		{name: "client certificate, NOT_SERVING", url: "grpcs://" + server.Addr, service: "app.NotServing", tls: withClientCert,
			want: probe.Unhealthy, wantLine: []string{"unhealthy: ", "grpc.health.v1.Health/Check", "status NOT_SERVING"}},
		{name: "client certificate, unknown service", url: "grpcs://" + server.Addr, service: "nope", tls: withClientCert,
			want: probe.Unhealthy, wantLine: []string{"grpc-status NOT_FOUND"}},
		{name: "no client certificate", url: "grpcs://" + server.Addr, tls: probe.TLSOptions{CACert: p.CAFile},
			want: probe.Unreachable, wantLine: []string{"unreachable: ", "the server closed the connection: remote error: tls: certificate required"}},
		{name: "client certificate from a foreign CA", url: "grpcs://" + server.Addr,
			tls:  probe.TLSOptions{CACert: p.CAFile, Cert: p.OtherClientCert, Key: p.OtherClientKey},
			want: probe.Unreachable, wantLine: []string{"unreachable: ", "the server closed the connection: remote error: tls: unknown certificate authority"}},
		{name: "server certificate from an unknown CA", url: "grpcs://" + server.Addr,
			tls:  probe.TLSOptions{CACert: p.OtherCAFile, Cert: p.ClientCert, Key: p.ClientKey},
			want: probe.Unreachable, wantLine: []string{"unreachable: ", "certificate signed by unknown authority"}},
		{name: "server name not in the certificate", url: "grpcs://" + server.Addr,
			tls:  probe.TLSOptions{CACert: p.CAFile, Cert: p.ClientCert, Key: p.ClientKey, ServerName: "other.test"},
			want: probe.Unreachable, wantLine: []string{"unreachable: ", "other.test"}},
		{name: "plain gRPC client against the TLS server", url: "grpc://" + server.Addr,
			want: probe.Unreachable, wantLine: []string{"unreachable: "}},
		{name: "HTTPS server with h2 that is not gRPC", url: "grpcs://" + notGRPC.Listener.Addr().String(),
			tls:  probe.TLSOptions{CACert: p.CAFile},
			want: probe.Unhealthy, wantLine: []string{"unhealthy: ", "not a gRPC server: HTTP 404 Not Found"}},
		{name: "nothing listening", url: "grpcs://" + closedPort(t), tls: withClientCert,
			want: probe.Unreachable, wantLine: []string{"unreachable: ", "connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			config := grpcConfig(t, tt.url)
			config.GRPCService = tt.service
			config.TLS = tt.tls
			var verbose strings.Builder
			report := probe.Run(context.Background(), config, &verbose)
			assertReport(t, report, tt.want, tt.wantLine...)
			for _, want := range tt.wantVerbose {
				assert.Contains(t, verbose.String(), want)
			}
			assert.NotContains(t, report.Line(), "PRIVATE KEY")
		})
	}
}

// A server that rejects the client certificate after a TLS 1.3 handshake closes the connection while
// the probe still writes a long request: the failure says why, not "broken pipe".
func TestGRPCSRejectedDuringTheRequest(t *testing.T) {
	p := testutil.TestPKI(t, testutil.ECDSAP256)
	server := testutil.StartGRPC(t, listen(t), testutil.GRPCOptions{TLS: p.MTLSConfig(p.Server)})
	for range 5 {
		config := grpcConfig(t, "grpcs://"+server.Addr)
		config.TLS = probe.TLSOptions{CACert: p.CAFile, Cert: p.OtherClientCert, Key: p.OtherClientKey}
		config.GRPCService = strings.Repeat("s", 60000)
		report := probe.Run(context.Background(), config, nil)
		assert.Equal(t, probe.Unreachable, report.Result, report.Detail)
		assert.Equal(t, "the server closed the connection: remote error: tls: unknown certificate authority", report.Detail)
	}
}

func TestGRPCNotGRPCServers(t *testing.T) {
	p := testutil.TestPKI(t, testutil.ECDSAP256)
	http1 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(http1.Close)
	http1TLS := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok"))
	}))
	http1TLS.TLS = &tls.Config{Certificates: []tls.Certificate{p.Server.TLS}} // ALPN offers http/1.1 only
	http1TLS.StartTLS()
	t.Cleanup(http1TLS.Close)

	// A TLS server that ignores ALPN and speaks HTTP/1.
	noALPNListener, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{p.Server.TLS}})
	require.NoError(t, err)
	noALPN := &http.Server{Handler: http.NotFoundHandler(), ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = noALPN.Serve(noALPNListener) }()
	t.Cleanup(func() { noALPN.Close() })

	h2cText := h2cServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok"))
	})
	servingFrame := frame(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1))
	// A percent-encoded grpc-message with control characters and a newline, as a hostile server
	// could send: the line must stay one line.
	hostileMessage := "bad%0Anews%1B[31m"

	tests := []struct {
		name     string
		url      string
		tls      probe.TLSOptions
		want     probe.Result
		wantLine []string
	}{
		{name: "HTTP/1 server on grpc://", url: "grpc://" + http1.Listener.Addr().String(),
			want: probe.Unreachable, wantLine: []string{"unreachable: ", `not a gRPC server: it answered "HTTP/1.1 200 OK", not HTTP/2`}},
		{name: "HTTPS server without h2 on grpcs://", url: "grpcs://" + http1TLS.Listener.Addr().String(),
			tls:  probe.TLSOptions{CACert: p.CAFile},
			want: probe.Unreachable, wantLine: []string{"unreachable: ", "not a gRPC server: it does not speak HTTP/2 over TLS (ALPN h2)"}},
		{name: "TLS server that ignores ALPN on grpcs://", url: "grpcs://" + noALPNListener.Addr().String(),
			tls:  probe.TLSOptions{CACert: p.CAFile},
			want: probe.Unreachable, wantLine: []string{"unreachable: ", "not a gRPC server: it does not speak HTTP/2 over TLS (ALPN h2): it selected no protocol"}},
		{name: "h2c server that answers text/plain", url: "grpc://" + h2cText,
			want: probe.Unhealthy, wantLine: []string{"unhealthy: ", `not a gRPC server: content-type "text/plain"`}},
		{name: "gRPC answer with grpc-status 0 is healthy", url: "grpc://" + h2cServer(t, fakeGRPC(servingFrame, map[string]string{"Grpc-Status": "0"})),
			want: probe.Healthy},
		{name: "gRPC answer without grpc-status", url: "grpc://" + h2cServer(t, fakeGRPC(servingFrame, nil)),
			want: probe.Unhealthy, wantLine: []string{"answer without grpc-status"}},
		{name: "gRPC answer with a malformed message", url: "grpc://" + h2cServer(t, fakeGRPC([]byte{0, 0, 0, 0, 9, 1}, map[string]string{"Grpc-Status": "0"})),
			want: probe.Unhealthy, wantLine: []string{"bad answer: ", "prefix says 9"}},
		{name: "gRPC answer with a compressed message", url: "grpc://" + h2cServer(t, fakeGRPC([]byte{1, 0, 0, 0, 0}, map[string]string{"Grpc-Status": "0"})),
			want: probe.Unhealthy, wantLine: []string{"bad answer: compressed"}},
		{name: "gRPC error with an unnamed code", url: "grpc://" + h2cServer(t, fakeGRPC(nil, map[string]string{"Grpc-Status": "42"})),
			want: probe.Unhealthy, wantLine: []string{"grpc-status code 42"}},
		{name: "gRPC error with a hostile message", url: "grpc://" + h2cServer(t, fakeGRPC(nil, map[string]string{"Grpc-Status": "14", "Grpc-Message": hostileMessage})),
			want: probe.Unhealthy, wantLine: []string{"grpc-status UNAVAILABLE: bad?news?[31m"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			config := grpcConfig(t, tt.url)
			config.TLS = tt.tls
			report := probe.Run(context.Background(), config, nil)
			assertReport(t, report, tt.want, tt.wantLine...)
			assert.NotContains(t, report.Line(), "\n")
			assert.NotContains(t, report.Line(), "\x1b")
		})
	}
}

func TestGRPCBlackHole(t *testing.T) {
	p := testutil.TestPKI(t, testutil.ECDSAP256)
	const timeout = 300 * time.Millisecond
	// margin is how long past -timeout a run may end: a few milliseconds on an idle machine, the rest
	// room for CI, where other packages compile meanwhile (probe's own tests use timeoutMargin).
	const margin = 250 * time.Millisecond
	hole := testutil.BlackHole(t).Addr().String()
	tests := []struct {
		name    string
		url     string
		tls     probe.TLSOptions
		retries int
	}{
		{name: "grpc", url: "grpc://" + hole},
		{name: "grpc with retries", url: "grpc://" + hole, retries: 3},
		{name: "grpcs, stuck in the TLS handshake", url: "grpcs://" + hole, tls: probe.TLSOptions{CACert: p.CAFile}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			config := grpcConfig(t, tt.url)
			config.Timeout = timeout
			config.Retries = tt.retries
			config.TLS = tt.tls
			start := time.Now()
			report := probe.Run(context.Background(), config, nil)
			elapsed := time.Since(start)
			assert.Equal(t, probe.Unreachable, report.Result, report.Line())
			assert.Contains(t, report.Line(), "no answer within -timeout 300ms")
			assert.GreaterOrEqual(t, elapsed, timeout-10*time.Millisecond, "gave up before -timeout")
			assert.Less(t, elapsed, timeout+margin, "ran past -timeout")
			assert.Equal(t, 1, report.Attempts, "the first attempt uses the whole timeout")
		})
	}
}

func TestGRPCOverUnixSocket(t *testing.T) {
	// A short directory: socket paths are limited to about 100 bytes, and t.TempDir's can be longer.
	dir, err := os.MkdirTemp("", "hc-grpc")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "grpc.sock")
	lis, err := net.Listen("unix", socket)
	require.NoError(t, err)
	server := testutil.StartGRPC(t, lis, testutil.GRPCOptions{})
	server.Health.SetServingStatus("app.NotServing", healthpb.HealthCheckResponse_NOT_SERVING)

	tests := []struct {
		name     string
		url      string
		socket   string
		service  string
		want     probe.Result
		wantLine []string
	}{
		{name: "SERVING", url: "grpc://localhost", socket: socket, want: probe.Healthy},
		{name: "the URL's port is ignored", url: "grpc://app.internal:1", socket: socket, want: probe.Healthy},
		{name: "NOT_SERVING", url: "grpc://localhost", socket: socket, service: "app.NotServing", want: probe.Unhealthy,
			wantLine: []string{"via unix:" + socket, "status NOT_SERVING"}},
		{name: "no such socket", url: "grpc://localhost", socket: filepath.Join(dir, "missing.sock"), want: probe.Unreachable,
			wantLine: []string{"unreachable: ", "missing.sock", "no such file or directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			config := grpcConfig(t, tt.url)
			config.UnixSocket = tt.socket
			config.GRPCService = tt.service
			report := probe.Run(context.Background(), config, nil)
			assertReport(t, report, tt.want, tt.wantLine...)
		})
	}
}

// frame is message with gRPC's 5-byte prefix: uncompressed, big-endian length.
func frame(message []byte) []byte {
	out := make([]byte, 5, 5+len(message))
	binary.BigEndian.PutUint32(out[1:], uint32(len(message)))
	return append(out, message...)
}

// fakeH2Request is what a fake HTTP/2 server read from the probe.
type fakeH2Request struct {
	header   map[string]string
	body     []byte
	settings map[http2.SettingID]uint32
}

// fakeH2Conn is one connection of a fake HTTP/2 server, after it read the probe's request. Its
// methods run on the server's goroutine: they report a failed write with assert (t.Errorf), never
// with require, whose FailNow must run on the test's goroutine. The test then fails, and the probe
// sees a broken answer; fakeH2's cleanup waits for the server to finish.
type fakeH2Conn struct {
	*http2.Framer
	t    *testing.T
	conn net.Conn
	enc  *hpack.Encoder
	buf  bytes.Buffer
}

// ok reports err, if any, as a failure of the test.
func (c *fakeH2Conn) ok(err error) { assert.NoError(c.t, err) }

// block encodes header fields, given as name, value pairs, into a header block.
func (c *fakeH2Conn) block(fields ...string) []byte {
	c.buf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		c.ok(c.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]}))
	}
	return bytes.Clone(c.buf.Bytes())
}

// headers writes a header block on stream 1, split into a HEADERS frame and CONTINUATION frames of at
// most chunk bytes.
func (c *fakeH2Conn) headers(endStream bool, chunk int, block []byte) {
	first := block[:min(chunk, len(block))]
	rest := block[len(first):]
	c.ok(c.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndStream: endStream, EndHeaders: len(rest) == 0}))
	for len(rest) > 0 {
		n := min(chunk, len(rest))
		c.ok(c.WriteContinuation(1, n == len(rest), rest[:n]))
		rest = rest[n:]
	}
}

// hangUp closes the server's side of the connection.
func (c *fakeH2Conn) hangUp() { c.ok(c.conn.(*net.TCPConn).CloseWrite()) }

// answer writes a whole gRPC answer: SETTINGS, headers, a message and grpc-status 0 in the trailers.
func (c *fakeH2Conn) answer(message []byte) {
	c.ok(c.WriteSettings())
	c.headers(false, 1<<14, c.block(":status", "200", "content-type", "application/grpc"))
	c.ok(c.WriteData(1, false, message))
	c.headers(true, 1<<14, c.block("grpc-status", "0"))
}

// fakeH2 serves HTTP/2 connections with serve, after reading the probe's request on each: a server
// that misbehaves as a real one cannot be made to. The requests it read arrive on the channel.
func fakeH2(t *testing.T, serve func(c *fakeH2Conn)) (string, <-chan fakeH2Request) {
	t.Helper()
	lis := listen(t)
	requests := make(chan fakeH2Request, 10)
	done := make(chan struct{})
	t.Cleanup(func() { lis.Close(); <-done })
	go func() {
		defer close(done)
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				preface := make([]byte, len(http2.ClientPreface))
				if _, err := io.ReadFull(conn, preface); err != nil || string(preface) != http2.ClientPreface {
					t.Errorf("fake h2 server: preface %q, %v", preface, err)
					return
				}
				fr := http2.NewFramer(conn, conn)
				fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
				req := fakeH2Request{header: map[string]string{}, settings: map[http2.SettingID]uint32{}}
				for ended := false; !ended; {
					f, err := fr.ReadFrame()
					if err != nil {
						t.Errorf("fake h2 server: reading the request: %v", err)
						return
					}
					switch f := f.(type) {
					case *http2.SettingsFrame:
						_ = f.ForeachSetting(func(s http2.Setting) error { req.settings[s.ID] = s.Val; return nil })
					case *http2.MetaHeadersFrame:
						for _, field := range f.Fields {
							req.header[field.Name] = field.Value
						}
						ended = f.StreamEnded()
					case *http2.DataFrame:
						req.body = append(req.body, f.Data()...)
						ended = f.StreamEnded()
					}
				}
				requests <- req
				c := &fakeH2Conn{Framer: fr, t: t, conn: conn}
				c.enc = hpack.NewEncoder(&c.buf)
				serve(c)
				// Read until the probe closes: closing with its acknowledgements unread would reset
				// the connection, and with it the answer the probe has not read yet.
				_, _ = io.Copy(io.Discard, conn)
			}()
		}
	}()
	return lis.Addr().String(), requests
}

func TestGRPCFakeHTTP2Servers(t *testing.T) {
	serving := frame(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1))
	tests := []struct {
		name     string
		serve    func(c *fakeH2Conn)
		want     probe.Result
		wantLine []string
	}{
		{name: "a well-formed answer", want: probe.Healthy, serve: func(c *fakeH2Conn) { c.answer(serving) }},
		{name: "padding and priority on HEADERS and DATA", want: probe.Healthy, serve: func(c *fakeH2Conn) {
			c.ok(c.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 20}))
			c.ok(c.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, PadLength: 200,
				Priority:      http2.PriorityParam{StreamDep: 0, Weight: 15, Exclusive: true},
				BlockFragment: c.block(":status", "200", "content-type", "application/grpc+proto")}))
			c.ok(c.WriteDataPadded(1, false, serving[:3], make([]byte, 255)))
			c.ok(c.WriteDataPadded(1, false, serving[3:], []byte{}))
			c.ok(c.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, PadLength: 1,
				BlockFragment: c.block("grpc-status", "0")}))
		}},
		{name: "header blocks split into CONTINUATION frames", want: probe.Healthy, serve: func(c *fakeH2Conn) {
			c.ok(c.WriteSettings())
			c.headers(false, 3, c.block(":status", "200", "content-type", "application/grpc", "x-filler", strings.Repeat("x", 100)))
			c.ok(c.WriteData(1, false, serving))
			c.headers(true, 1, c.block("grpc-status", "0", "grpc-message", ""))
		}},
		{name: "an informational answer first", want: probe.Healthy, serve: func(c *fakeH2Conn) {
			c.ok(c.WriteSettings())
			c.headers(false, 1<<14, c.block(":status", "103", "link", "</x>"))
			c.answer(serving)
		}},
		{name: "frames the probe must ignore or acknowledge", want: probe.Healthy, serve: func(c *fakeH2Conn) {
			c.ok(c.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}))
			c.ok(c.WritePing(false, [8]byte{1, 2, 3, 4, 5, 6, 7, 8}))
			c.ok(c.WriteWindowUpdate(0, 1<<20))
			c.ok(c.WriteWindowUpdate(1, 1<<20))
			c.ok(c.WritePriority(1, http2.PriorityParam{Weight: 1}))
			c.ok(c.WriteRawFrame(0x20, 0xff, 1, []byte("an unknown frame type")))
			c.ok(c.WriteData(3, true, []byte("another stream")))
			c.ok(c.WriteRSTStream(3, http2.ErrCodeCancel))
			// The probe acknowledges the SETTINGS and the PING before it waits for more.
			var sawSettingsAck, sawPingAck bool
			for !sawSettingsAck || !sawPingAck {
				f, err := c.ReadFrame()
				c.ok(err)
				switch f := f.(type) {
				case *http2.SettingsFrame:
					sawSettingsAck = f.IsAck()
				case *http2.PingFrame:
					sawPingAck = f.IsAck() && f.Data == [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
				}
			}
			c.headers(false, 1<<14, c.block(":status", "200", "content-type", "application/grpc"))
			c.ok(c.WriteData(1, false, serving))
			c.headers(true, 1<<14, c.block("grpc-status", "0"))
		}},
		{name: "graceful GOAWAY that still serves the call", want: probe.Healthy, serve: func(c *fakeH2Conn) {
			c.ok(c.WriteSettings())
			c.ok(c.WriteGoAway(1, http2.ErrCodeNo, []byte("draining")))
			c.answer(serving)
		}},
		{name: "trailers-only NOT_FOUND", want: probe.Unhealthy, wantLine: []string{"grpc-status NOT_FOUND: unknown service"}, serve: func(c *fakeH2Conn) {
			c.ok(c.WriteSettings())
			c.headers(true, 1<<14, c.block(":status", "200", "content-type", "application/grpc", "grpc-status", "5", "grpc-message", "unknown service"))
		}},
		{name: "GOAWAY before the answer", want: probe.Unreachable,
			wantLine: []string{`unreachable: `, `the server closed the connection: GOAWAY ENHANCE_YOUR_CALM "too_many_pings??[1m"`},
			serve: func(c *fakeH2Conn) {
				c.ok(c.WriteSettings())
				c.ok(c.WriteGoAway(0, http2.ErrCodeEnhanceYourCalm, []byte("too_many_pings\n\x1b[1m")))
			}},
		{name: "graceful GOAWAY without our stream", want: probe.Unreachable,
			wantLine: []string{`the server closed the connection: GOAWAY NO_ERROR "shutting down"`},
			serve: func(c *fakeH2Conn) {
				c.ok(c.WriteSettings())
				c.ok(c.WriteGoAway(0, http2.ErrCodeNo, []byte("shutting down")))
			}},
		{name: "graceful GOAWAY, then the server closes", want: probe.Unreachable,
			wantLine: []string{"the server closed the connection without an answer (after GOAWAY NO_ERROR)"},
			serve: func(c *fakeH2Conn) {
				c.ok(c.WriteSettings())
				c.ok(c.WriteGoAway(1, http2.ErrCodeNo, nil))
				c.hangUp()
			}},
		{name: "RST_STREAM REFUSED_STREAM", want: probe.Unhealthy, wantLine: []string{"unhealthy: ", "the server reset the call: REFUSED_STREAM"},
			serve: func(c *fakeH2Conn) {
				c.ok(c.WriteSettings())
				c.ok(c.WriteRSTStream(1, http2.ErrCodeRefusedStream))
			}},
		{name: "RST_STREAM after the headers", want: probe.Unhealthy, wantLine: []string{"the server reset the call: INTERNAL_ERROR"},
			serve: func(c *fakeH2Conn) {
				c.ok(c.WriteSettings())
				c.headers(false, 1<<14, c.block(":status", "200", "content-type", "application/grpc"))
				c.ok(c.WriteRSTStream(1, http2.ErrCodeInternal))
			}},
		{name: "a frame over the maximum frame size", want: probe.Unreachable,
			wantLine: []string{"a frame of 16385 bytes, over the maximum frame size of 16384 (FRAME_SIZE_ERROR)"},
			serve: func(c *fakeH2Conn) {
				c.ok(c.WriteSettings())
				c.headers(false, 1<<14, c.block(":status", "200", "content-type", "application/grpc"))
				c.ok(c.WriteData(1, false, make([]byte, 1<<14+1)))
			}},
		{name: "a header list over the limit", want: probe.Unreachable, wantLine: []string{"the answer's header block is over 16384 bytes"},
			serve: func(c *fakeH2Conn) {
				c.ok(c.WriteSettings())
				big := strings.Repeat("v", 6000)
				c.headers(false, 1<<14, c.block(":status", "200", "a", big, "b", big, "c", big))
			}},
		{name: "an answer that does not start with SETTINGS", want: probe.Unreachable,
			wantLine: []string{"not a gRPC server: its answer does not start with an HTTP/2 SETTINGS frame"},
			serve: func(c *fakeH2Conn) {
				c.headers(true, 1<<14, c.block(":status", "200", "content-type", "application/grpc", "grpc-status", "0"))
			}},
		{name: "a frame inside a header block", want: probe.Unreachable, wantLine: []string{"HTTP/2 protocol error: frame type 6 inside a header block"},
			serve: func(c *fakeH2Conn) {
				c.ok(c.WriteSettings())
				block := c.block(":status", "200", "content-type", "application/grpc")
				c.ok(c.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:2]}))
				c.ok(c.WritePing(false, [8]byte{}))
			}},
		{name: "a broken header block", want: probe.Unreachable, wantLine: []string{"HTTP/2 protocol error: bad header block"},
			serve: func(c *fakeH2Conn) {
				c.ok(c.WriteSettings())
				c.headers(false, 1<<14, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
			}},
		{name: "padding longer than its frame", want: probe.Unreachable, wantLine: []string{"padding longer than its frame"},
			serve: func(c *fakeH2Conn) {
				c.ok(c.WriteSettings())
				c.headers(false, 1<<14, c.block(":status", "200", "content-type", "application/grpc"))
				c.ok(c.WriteRawFrame(http2.FrameData, http2.FlagDataPadded, 1, []byte{9, 1, 2}))
			}},
		{name: "PUSH_PROMISE", want: probe.Unreachable, wantLine: []string{"PUSH_PROMISE, though push is disabled"},
			serve: func(c *fakeH2Conn) {
				c.ok(c.WriteSettings())
				c.ok(c.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, EndHeaders: true,
					BlockFragment: c.block(":method", "GET", ":path", "/")}))
			}},
		{name: "the server closes in the middle of the answer", want: probe.Unreachable,
			wantLine: []string{"the server closed the connection before the end of the answer"},
			serve: func(c *fakeH2Conn) {
				c.ok(c.WriteSettings())
				c.headers(false, 1<<14, c.block(":status", "200", "content-type", "application/grpc"))
				c.hangUp()
			}},
		{name: "an answer over the message limit", want: probe.Unhealthy, wantLine: []string{"bad answer: message of 5000 bytes is too long"},
			serve: func(c *fakeH2Conn) {
				c.ok(c.WriteSettings())
				c.headers(false, 1<<14, c.block(":status", "200", "content-type", "application/grpc"))
				long := frame(make([]byte, 5000))
				c.ok(c.WriteData(1, false, long[:3000]))
				c.ok(c.WriteData(1, false, long[3000:]))
				c.headers(true, 1<<14, c.block("grpc-status", "0"))
			}},
		{name: "two messages", want: probe.Unhealthy, wantLine: []string{"bad answer: message is 9 bytes, its prefix says 2"},
			serve: func(c *fakeH2Conn) { c.answer(append(bytes.Clone(serving), serving...)) }},
		{name: "HTTP 503 without a body's end", want: probe.Unhealthy, wantLine: []string{"not a gRPC server: HTTP 503 Service Unavailable"},
			serve: func(c *fakeH2Conn) {
				c.ok(c.WriteSettings())
				c.headers(false, 1<<14, c.block(":status", "503"))
				c.ok(c.WriteData(1, false, []byte("upstream connect error")))
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, requests := fakeH2(t, tt.serve)
			config := grpcConfig(t, "grpc://"+addr)
			config.GRPCService = "app.Service"
			report := probe.Run(context.Background(), config, nil)
			assertReport(t, report, tt.want, tt.wantLine...)
			assert.NotContains(t, report.Line(), "\n")
			assert.NotContains(t, report.Line(), "\x1b")
			req := <-requests
			assert.Equal(t, "POST", req.header[":method"])
			assert.Equal(t, "http", req.header[":scheme"])
			assert.Equal(t, "/grpc.health.v1.Health/Check", req.header[":path"])
			assert.Equal(t, addr, req.header[":authority"])
			assert.Equal(t, "application/grpc", req.header["content-type"])
			assert.Equal(t, "trailers", req.header["te"])
			assert.Equal(t, "health-check/test", req.header["user-agent"])
			assert.Regexp(t, `^[0-9]{1,8}m$`, req.header["grpc-timeout"])
			assert.Equal(t, grpchealth.EncodeRequest("app.Service"), req.body)
			assert.Equal(t, uint32(0), req.settings[http2.SettingEnablePush])
		})
	}
}

// TestGRPCSessionDeadlineIsATimeout: on serve's kept HTTP/2 connection too, a call that outlasts the
// check's timeout ends as the timeout (unreachable), never as the server's reset of it, which grpc-go
// sends when the grpc-timeout the probe gave it runs out; and the next call works on a new connection.
func TestGRPCSessionDeadlineIsATimeout(t *testing.T) {
	var slow atomic.Bool
	interceptor := grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !slow.Load() {
			return handler(ctx, req)
		}
		<-ctx.Done() // grpc-go's deadline, from the probe's grpc-timeout: it resets the call
		return nil, ctx.Err()
	})
	server := testutil.StartGRPC(t, listen(t), testutil.GRPCOptions{Options: []grpc.ServerOption{interceptor}})
	c := grpcConfig(t, "grpc://"+server.Addr)
	c.Timeout = 100 * time.Millisecond
	session := probe.NewSession(*c)
	defer session.Close()
	for i := range 10 {
		slow.Store(false)
		report := session.Check(context.Background())
		require.Equal(t, probe.Healthy, report.Result, "check %d: %s", 2*i, report.Line())
		slow.Store(true)
		report = session.Check(context.Background())
		assert.Equal(t, probe.Unreachable, report.Result, "check %d: %s", 2*i+1, report.Line())
		assert.Contains(t, report.Line(), "no answer within -timeout 100ms", "check %d", 2*i+1)
	}
	_, reused := session.UpstreamConnections()
	assert.EqualValues(t, 10, reused, "every slow call was made on the connection the fast one kept")
}
