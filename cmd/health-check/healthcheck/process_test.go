package healthcheck

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
)

// The tests in this file run the real binary, built as it ships: static, stripped, trimmed.

var (
	buildOnce  sync.Once
	binaryPath string
	buildErr   error
)

// probeBinary builds cmd/health-check once per test process.
func probeBinary(t *testing.T) string {
	t.Helper()
	testutil.NeedsGoTree(t)
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "health-check-bin")
		if err != nil {
			buildErr = err
			return
		}
		binaryPath = filepath.Join(dir, "health-check")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -buildid= -X main.version=v0.0.0-test", "-o", binaryPath, "..")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binaryPath
}

// exitSlack is how long after -timeout a process may end in these tests: measured here, about 50 ms
// on an idle machine (process start and exit included); the rest is room for a loaded CI machine.
const exitSlack = 300 * time.Millisecond

type processResult struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

func runProbe(t *testing.T, env []string, args ...string) processResult {
	t.Helper()
	cmd := exec.Command(probeBinary(t), args...)
	cmd.Env = append([]string{}, env...) // not nil: nothing from the test's own environment leaks in
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	result := processResult{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		result.code = exitErr.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return result
}

// TestExitCodes runs the binary for every row of the exit-code table and checks the code, that the
// output is silent or exactly one line, and the time it took.
func TestExitCodes(t *testing.T) {
	pki := testutil.TestPKI(t, testutil.ECDSAP256)
	dir, caFile, certFile, keyFile := pki.Dir, pki.CAFile, pki.ClientCert, pki.ClientKey

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	srv.TLS = pki.MTLSConfig(pki.Server)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "https://"))
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" && r.URL.Path != "/" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(plain.Close)
	_, plainPort, _ := net.SplitHostPort(strings.TrimPrefix(plain.URL, "http://"))
	hole, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { hole.Close() }) // accepts (the kernel's backlog) and never answers

	mTLS := []string{"-cacert", caFile, "-cert", certFile, "-key", keyFile}
	tests := []struct {
		name       string
		env        []string
		args       []string
		wantCode   int
		wantStderr string // a substring of the one line; empty means silent
		maxElapsed time.Duration
	}{
		{name: "healthy mTLS", args: append(mTLS, srv.URL+"/healthz"), wantCode: 0},
		{name: "healthy with the original tool's flags", args: []string{"-statusPort", plainPort, "-path", "healthz", "-retry", "0"}, wantCode: 0},
		{name: "healthy from the environment", env: []string{"HEALTH_CHECK_URL=" + srv.URL + "/healthz", "HEALTH_CHECK_CACERT=" + caFile,
			"HEALTH_CHECK_CERT=" + certFile, "HEALTH_CHECK_KEY=" + keyFile}, wantCode: 0},
		{name: "healthy: the command line's URL replaces HEALTH_CHECK_URL", env: []string{"HEALTH_CHECK_URL=http://127.0.0.1:1/"},
			args: []string{plain.URL + "/healthz"}, wantCode: 0},
		{name: "healthy: -path on the command line, the port from a shared env: block", env: []string{"HEALTH_CHECK_STATUS_PORT=" + plainPort,
			"HEALTH_CHECK_URL=http://127.0.0.1:1/"}, args: []string{"-path=healthz"}, wantCode: 0},
		{name: "unhealthy: another -path with the same env: block", env: []string{"HEALTH_CHECK_STATUS_PORT=" + plainPort,
			"HEALTH_CHECK_URL=http://127.0.0.1:1/"}, args: []string{"-path=ready", "-retry=0"}, wantCode: 1,
			wantStderr: "unhealthy: GET http://localhost:" + plainPort + "/ready: 503 Service Unavailable"},
		{name: "usage: both forms of the target in the environment", env: []string{"HEALTH_CHECK_STATUS_PORT=" + plainPort,
			"HEALTH_CHECK_URL=" + plain.URL}, wantCode: 64, wantStderr: "usage: HEALTH_CHECK_STATUS_PORT builds a URL and HEALTH_CHECK_URL is one: set either, not both"},
		{name: "unhealthy", args: append(mTLS, srv.URL+"/down"), wantCode: 1,
			wantStderr: "unhealthy: GET " + srv.URL + "/down: 503 Service Unavailable (want 200-399) after 2 attempts"},
		{name: "unreachable: refused", args: []string{"-retry", "0", "https://127.0.0.1:1/healthz"}, wantCode: 3,
			wantStderr: "unreachable: GET https://127.0.0.1:1/healthz: dial tcp 127.0.0.1:1: connect: connection refused"},
		{name: "unreachable: no client certificate", args: []string{"-cacert", caFile, "https://localhost:" + port + "/healthz"}, wantCode: 3,
			wantStderr: "certificate required"},
		{name: "unreachable: black hole within the timeout", args: []string{"-timeout", "300ms", "tls://" + hole.Addr().String()}, wantCode: 3,
			wantStderr: "no answer within -timeout 300ms", maxElapsed: 300*time.Millisecond + exitSlack},
		{name: "unreachable: default timeout beats the kubelet's 1s", args: []string{"http://" + hole.Addr().String()}, wantCode: 3,
			wantStderr: "no answer within -timeout 800ms", maxElapsed: 800*time.Millisecond + exitSlack},
		{name: "usage: unknown flag", args: []string{"-port", "80"}, wantCode: 64, wantStderr: "usage: flag provided but not defined: -port (see health-check -h)"},
		{name: "usage: bad URL", args: []string{"ftp://x/"}, wantCode: 64, wantStderr: `unknown scheme "ftp"`},
		{name: "usage: missing key file", args: []string{"-cert", certFile, "-key", dir + "/nope.key", srv.URL}, wantCode: 64,
			wantStderr: "usage: GET " + srv.URL + ": read client key: open " + dir + "/nope.key: no such file or directory"},
		{name: "usage: a timeout whose watchdog would overflow", args: []string{"-timeout", "2562047h47m16.7s", plain.URL}, wantCode: 64,
			wantStderr: "usage: -timeout 2562047h47m16.7s is longer than the maximum, 24h0m0s"},
		{name: "usage: bad variable", env: []string{"HEALTH_CHECK_TIMEOUT=forever"}, args: []string{srv.URL}, wantCode: 64,
			wantStderr: "HEALTH_CHECK_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			result := runProbe(t, tt.env, tt.args...)
			assert.Equal(t, tt.wantCode, result.code, result.stderr)
			assert.Empty(t, result.stdout)
			if tt.wantStderr == "" {
				assert.Empty(t, result.stderr)
			} else {
				assert.Contains(t, result.stderr, tt.wantStderr)
				assert.Equal(t, 1, strings.Count(result.stderr, "\n"), "exactly one line: %q", result.stderr)
			}
			if tt.maxElapsed > 0 {
				assert.Less(t, result.elapsed, tt.maxElapsed)
			}
		})
	}
}

func TestVersionAndVerbose(t *testing.T) {
	result := runProbe(t, nil, "-version")
	assert.Equal(t, 0, result.code)
	assert.Equal(t, "health-check v0.0.0-test\n", result.stdout)

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "health-check/v0.0.0-test", r.UserAgent())
	}))
	t.Cleanup(srv.Close)
	result = runProbe(t, nil, "-v", srv.URL)
	assert.Equal(t, 0, result.code)
	assert.Contains(t, result.stderr, "connected to tcp 127.0.0.1:")
	assert.Contains(t, result.stderr, "healthy: GET "+srv.URL+": 200 OK (")
}

// TestInsecure: -insecure works and stays silent on success; a failure says, in its one line, that the
// certificate was not verified, and so does -v.
func TestInsecure(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	result := runProbe(t, nil, "-insecure", srv.URL)
	assert.Equal(t, 0, result.code)
	assert.Empty(t, result.stderr, "silent on success")

	result = runProbe(t, nil, "-insecure", "-retry", "0", srv.URL+"/down")
	assert.Equal(t, 1, result.code)
	assert.Equal(t, "unhealthy: GET "+srv.URL+"/down: 503 Service Unavailable (want 200-399) (-insecure: the server's certificate was not verified)\n",
		result.stderr, "one line")

	result = runProbe(t, nil, "-insecure", "-v", srv.URL)
	assert.Equal(t, 0, result.code)
	assert.Contains(t, result.stderr, "-insecure: the server's certificate is not verified\n")
	assert.Contains(t, result.stderr, "healthy: GET "+srv.URL+": 200 OK (-insecure: the server's certificate was not verified) (")
}

// TestIdentities runs the binary against an X.509-SVID server, with the client SVID from a real
// Workload API server found through SPIFFE_ENDPOINT_SOCKET: the exit codes of -spiffe-id,
// -min-validity and a Workload API that is not there, each failure one line.
func TestIdentities(t *testing.T) {
	pki := testutil.TestPKI(t, testutil.ECDSAP256)
	const serverID, probeID = "spiffe://example.org/ns/prod/sa/api", "spiffe://example.org/ns/prod/sa/probe"
	serverSVID, err := pki.CA.SVID([]string{serverID}, 6*time.Hour)
	require.NoError(t, err)
	probeSVID, err := pki.CA.SVID([]string{probeID}, time.Hour)
	require.NoError(t, err)
	agent := testutil.StartWorkloadAPI(t)
	agent.SetSVID(probeID, probeSVID, pki.CA, nil)

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.TLS = pki.MTLSConfig(serverSVID)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	socket := []string{"SPIFFE_ENDPOINT_SOCKET=" + agent.Addr}

	tests := []struct {
		name       string
		env        []string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{name: "healthy by SPIFFE ID, SVID from the Workload API", env: socket, args: []string{"-spiffe-id", serverID, srv.URL}},
		{name: "healthy by trust domain, SVID from the Workload API", args: []string{"-workload-api", agent.Addr, "-spiffe-id", "spiffe://example.org", srv.URL}},
		{name: "healthy by SPIFFE ID with files", args: []string{"-cacert", pki.CAFile, "-cert", pki.ClientCert, "-key", pki.ClientKey, "-spiffe-id", serverID, srv.URL}},
		{name: "unreachable: another SPIFFE ID", env: socket, args: []string{"-retry", "0", "-spiffe-id", "spiffe://example.org/ns/prod/sa/web", srv.URL}, wantCode: 3,
			wantStderr: "the server's SPIFFE ID is " + serverID + ", want spiffe://example.org/ns/prod/sa/web"},
		{name: "unhealthy: expires within -min-validity", env: socket, args: []string{"-retry", "0", "-spiffe-id", serverID, "-min-validity", "24h", srv.URL}, wantCode: 1,
			wantStderr: "the server's certificate SPIFFE ID " + serverID + " expires " + serverSVID.Cert.NotAfter.UTC().Format(time.RFC3339)},
		{name: "unreachable: no Workload API", args: []string{"-retry", "0", "-workload-api", "unix:///nonexistent/agent.sock", "-spiffe-id", serverID, srv.URL}, wantCode: 3,
			wantStderr: "the Workload API at unix:///nonexistent/agent.sock: dial unix /nonexistent/agent.sock: connect: no such file or directory"},
		{name: "usage: a bad SPIFFE ID", env: socket, args: []string{"-spiffe-id", "spiffe://example.org:443/api", srv.URL}, wantCode: 64,
			wantStderr: `usage: bad -spiffe-id "spiffe://example.org:443/api": a trust domain has no port (see health-check -h)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			result := runProbe(t, tt.env, tt.args...)
			assert.Equal(t, tt.wantCode, result.code, result.stderr)
			if tt.wantStderr == "" {
				assert.Empty(t, result.stderr)
				return
			}
			assert.Contains(t, result.stderr, tt.wantStderr)
			assert.Equal(t, 1, strings.Count(result.stderr, "\n"), "exactly one line: %q", result.stderr)
		})
	}
}

// TestHeadersAsTheKubeletSendsThem: an httpGet probe's httpHeaders work as -header one to one (the
// connection's own are dropped, and -v says so; those that frame a body are refused); the default
// request carries Accept: */*, as the kubelet's, so that a server that negotiates content types
// answers it; and an empty value removes a default header, as the kubelet and curl do.
func TestHeadersAsTheKubeletSendsThem(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var wrong []string // what the server should not have seen
		switch r.URL.Path {
		case "/negotiate": // a framework that answers only what the client accepts
			if !strings.Contains(r.Header.Get("Accept"), "*/*") {
				w.WriteHeader(http.StatusNotAcceptable)
				return
			}
		case "/hop-by-hop":
			for _, name := range []string{"Keep-Alive", "Te", "Upgrade", "Proxy-Connection"} {
				if _, ok := r.Header[name]; ok {
					wrong = append(wrong, name)
				}
			}
			if got := r.Header.Values("Connection"); len(got) != 1 || got[0] != "close" {
				wrong = append(wrong, fmt.Sprintf("Connection %q", got))
			}
			if r.Header.Get("X-Custom") != "1" {
				wrong = append(wrong, "no X-Custom")
			}
		case "/no-user-agent":
			if _, ok := r.Header["User-Agent"]; ok {
				wrong = append(wrong, fmt.Sprintf("User-Agent %q", r.Header.Values("User-Agent")))
			}
		}
		if len(wrong) > 0 {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, strings.Join(wrong, ", "))
		}
	}))
	t.Cleanup(srv.Close)
	kubeletHeaders := []string{"-header", "Connection: Keep-Alive", "-header", "Keep-Alive: timeout=5", "-header", "TE: trailers",
		"-header", "Upgrade: h2c", "-header", "Proxy-Connection: keep-alive", "-header", "X-Custom: 1"}

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr []string // substrings; empty means silent
	}{
		{name: "Accept: */* by default", args: []string{"-retry=0", srv.URL + "/negotiate"}},
		{name: "an httpGet probe's httpHeaders, one to one", args: append(kubeletHeaders, "-retry=0", srv.URL+"/hop-by-hop")},
		{name: "-v says which headers are dropped", args: append(kubeletHeaders, "-v", "-retry=0", srv.URL+"/hop-by-hop"),
			wantStderr: []string{"-header Connection is not sent: the connection is the probe's own (a hop-by-hop header)",
				"-header Upgrade is not sent", "-header Te is not sent", "healthy: GET " + srv.URL + "/hop-by-hop: 200 OK"}},
		{name: "an empty User-Agent removes ours", args: []string{"-header", "User-Agent:", "-retry=0", srv.URL + "/no-user-agent"}},
		{name: "an empty Accept removes ours", args: []string{"-header", "Accept:", "-retry=0", srv.URL + "/negotiate"}, wantCode: 1,
			wantStderr: []string{"406 Not Acceptable"}},
		{name: "usage: Content-Length frames a body", args: []string{"-header", "Content-Length: 0", srv.URL}, wantCode: 64,
			wantStderr: []string{`usage: bad -header "Content-Length: 0": Content-Length would frame a body that the probe's GET or HEAD does not have`}},
		{name: "usage: Transfer-Encoding", args: []string{"-header", "Transfer-Encoding: chunked", srv.URL}, wantCode: 64,
			wantStderr: []string{"Transfer-Encoding would frame a body"}},
		{name: "usage: Trailer", args: []string{"-header", "Trailer: X-Sum", srv.URL}, wantCode: 64, wantStderr: []string{"Trailer would frame a body"}},
		{name: "usage: a connection header on gRPC", args: []string{"-header", "Connection: Keep-Alive", "grpc://127.0.0.1:1"}, wantCode: 64,
			wantStderr: []string{"connection is about the connection, which HTTP/2 forbids in a request"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			result := runProbe(t, nil, tt.args...)
			assert.Equal(t, tt.wantCode, result.code, result.stderr)
			if len(tt.wantStderr) == 0 {
				assert.Empty(t, result.stderr)
			}
			for _, want := range tt.wantStderr {
				assert.Contains(t, result.stderr, want)
			}
		})
	}
}

// TestStaticBinary: the binary as shipped has no dynamic section, no interpreter, and no module but
// golang.org/x/net besides the standard library.
func TestStaticBinary(t *testing.T) {
	path := probeBinary(t)
	file, err := elf.Open(path)
	require.NoError(t, err)
	defer file.Close()
	for _, prog := range file.Progs {
		assert.NotEqual(t, elf.PT_INTERP, prog.Type, "no dynamic loader")
		assert.NotEqual(t, elf.PT_DYNAMIC, prog.Type, "no dynamic section")
	}
	assert.Nil(t, file.Section(".dynamic"))
	assert.Nil(t, file.Section(".symtab"), "stripped")

	info, err := buildinfo.ReadFile(path)
	require.NoError(t, err)
	for _, dep := range info.Deps {
		assert.Equal(t, "golang.org/x/net", dep.Path, "only golang.org/x/net may join the standard library")
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	assert.Equal(t, "0", settings["CGO_ENABLED"])
	assert.Equal(t, "true", settings["-trimpath"])

	stat, err := os.Stat(path)
	require.NoError(t, err)
	t.Logf("binary: %d bytes, %s, %d module dependencies", stat.Size(), info.GoVersion, len(info.Deps))
}

// TestNoHeavyPackages: net/http alone costs a probe about 1 MiB of resident memory and 60 page faults
// a run (measured with bench/), so the probe speaks HTTP/1.1 and HTTP/2 itself; this keeps it so.
func TestNoHeavyPackages(t *testing.T) {
	testutil.NeedsGoTree(t)
	out, err := exec.Command("go", "list", "-deps", "..").Output()
	require.NoError(t, err)
	deps := strings.Fields(string(out))
	for _, heavy := range []string{"net/http", "golang.org/x/net/http2", "google.golang.org/grpc", "google.golang.org/protobuf/proto",
		"github.com/spiffe/go-spiffe/v2/workloadapi", "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"} {
		assert.NotContains(t, deps, heavy)
	}
	for _, dep := range deps {
		assert.False(t, strings.HasPrefix(dep, "github.com/spiffe/go-spiffe/"), "the Workload API is spoken by hand: %s", dep)
	}
	assert.Contains(t, deps, "golang.org/x/net/http2/hpack")
}

// TestGRPCDeadlineIsATimeout: against a grpc-go server slower than -timeout, every run says that
// -timeout ran out and exits 3. The probe sends its remaining time as grpc-timeout, and grpc-go resets
// the call when that time is up: a reset read at that moment once said "unhealthy: the server reset the
// call: CANCEL" (exit 1) in some runs. 50 runs at once, at 300 ms and at 2 s: at once, so that the
// test takes the time of one run, and so that a loaded machine widens the race it checks.
func TestGRPCDeadlineIsATimeout(t *testing.T) {
	slow := grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		select {
		case <-ctx.Done(): // grpc-go's own deadline, from the probe's grpc-timeout: it resets the call
			return nil, ctx.Err()
		case <-time.After(10 * time.Second):
			return handler(ctx, req)
		}
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	server := testutil.StartGRPC(t, lis, testutil.GRPCOptions{Options: []grpc.ServerOption{slow}})
	probeBinary(t) // built once, before the runs start

	for _, timeout := range []string{"300ms", "2s"} {
		t.Run(timeout, func(t *testing.T) {
			const runs = 50
			results := make([]processResult, runs)
			var wg sync.WaitGroup
			for i := range runs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i] = runProbeAsync(probeBinary(t), "-timeout", timeout, "-retry", "0", "grpc://"+server.Addr)
				}()
			}
			wg.Wait()
			for i, result := range results {
				assert.Equal(t, 3, result.code, "run %d: %s", i, result.stderr)
				assert.Contains(t, result.stderr, "no answer within -timeout "+timeout, "run %d", i)
			}
		})
	}
}

// runProbeAsync runs the binary without the test's environment, and may run off the test's goroutine:
// it reports a failure to start as exit code -1 in its result, never through require.
func runProbeAsync(binary string, args ...string) processResult {
	cmd := exec.Command(binary, args...)
	cmd.Env = []string{}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	result := processResult{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		result.code = exitErr.ExitCode()
	case err != nil:
		result.code, result.stderr = -1, err.Error()
	}
	return result
}
