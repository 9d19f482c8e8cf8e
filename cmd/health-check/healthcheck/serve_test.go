package healthcheck

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
	"github.com/health-check-proxy/health-check-proxy/probe"
)

// configs are the probe configs of parsed serve options, by check name.
func configs(t *testing.T, opts *serveOptions) map[string]probe.Config {
	t.Helper()
	byName := map[string]probe.Config{}
	for _, c := range opts.server.Checks {
		session, ok := c.Checker.(*probe.Session)
		require.True(t, ok)
		assert.Equal(t, session.Config().Timeout, c.Timeout, "the check's -timeout bounds its answer")
		byName[c.Name] = session.Config()
	}
	return byName
}

func TestParseServeOptions(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, o *serveOptions, c map[string]probe.Config)
		wantErr string
	}{
		{name: "defaults", args: []string{"-check", "live=https://localhost:8443/livez"},
			check: func(t *testing.T, o *serveOptions, c map[string]probe.Config) {
				assert.Equal(t, ":8086", o.listen)
				assert.False(t, o.server.Metrics)
				assert.Equal(t, "https://localhost:8443/livez", c["live"].Target.String())
				assert.Equal(t, probe.DefaultTimeout, c["live"].Timeout)
				assert.Equal(t, "200-399", c["live"].ExpectStatus.String())
				assert.Equal(t, "health-check/"+Version, c["live"].UserAgent)
			}},
		{name: "shared flags apply to every check, in the order given",
			args: []string{"-listen", "127.0.0.1:9000", "-metrics", "-cacert", "/c/ca.crt", "-cert", "/c/tls.crt", "-key", "/c/tls.key", "-timeout", "2s",
				"-check", "ready=grpcs://localhost:9443", "-check", "live=https://localhost:8443/livez"},
			check: func(t *testing.T, o *serveOptions, c map[string]probe.Config) {
				assert.Equal(t, "127.0.0.1:9000", o.listen)
				assert.True(t, o.server.Metrics)
				assert.Equal(t, []string{"ready", "live"}, []string{o.server.Checks[0].Name, o.server.Checks[1].Name})
				for _, name := range []string{"ready", "live"} {
					assert.Equal(t, probe.TLSOptions{CACert: "/c/ca.crt", Cert: "/c/tls.crt", Key: "/c/tls.key"}, c[name].TLS, name)
					assert.Equal(t, 2*time.Second, c[name].Timeout, name)
				}
			}},
		{name: "per-check flags", args: []string{"-check", "live=https://localhost:8443/livez",
			"-check", "ready=grpcs://localhost:9443", "-check", "other=https://localhost:8443/",
			"-check-header", "live=Authorization: Bearer t", "-check-header", "other=Authorization: Bearer t",
			"-check-service", "ready=my.v1.API", "-check-expect-status", "live=200-204", "-check-timeout", "ready=2s",
			"-check-header", "live=X-Probe: live", "-check-insecure", "other", "-check-server-name", "ready=api.internal"},
			check: func(t *testing.T, o *serveOptions, c map[string]probe.Config) {
				assert.Equal(t, "my.v1.API", c["ready"].GRPCService)
				assert.Equal(t, "api.internal", c["ready"].TLS.ServerName)
				assert.Equal(t, 2*time.Second, c["ready"].Timeout)
				assert.Equal(t, "200-204", c["live"].ExpectStatus.String())
				assert.Equal(t, probe.DefaultTimeout, c["live"].Timeout)
				assert.Equal(t, map[string][]string{"Authorization": {"Bearer t"}, "X-Probe": {"live"}}, c["live"].Header, "-check-header repeats")
				assert.Equal(t, map[string][]string{"Authorization": {"Bearer t"}}, c["other"].Header, "to its own check only")
				assert.Empty(t, c["ready"].Header)
				assert.True(t, c["other"].TLS.Insecure)
				assert.False(t, c["live"].TLS.Insecure)
				assert.Empty(t, c["other"].GRPCService)
			}},
		{name: "the connection's headers are dropped, and said so at start-up", args: []string{"-header", "Connection: Keep-Alive",
			"-check", "a=http://x/", "-check", "b=http://x/", "-check-header", "b=Upgrade: h2c"},
			check: func(t *testing.T, o *serveOptions, c map[string]probe.Config) {
				assert.Equal(t, []string{
					"check a: -header Connection is not sent: the connection is the probe's own (a hop-by-hop header)",
					"check b: -header Connection is not sent: the connection is the probe's own (a hop-by-hop header)",
					"check b: -header Upgrade is not sent: the connection is the probe's own (a hop-by-hop header)",
				}, o.notes)
			}},
		{name: "-check-header adds to -header", args: []string{"-header", "A: 1", "-check", "a=http://x/", "-check", "b=http://x/", "-check-header", "a=B: 2"},
			check: func(t *testing.T, o *serveOptions, c map[string]probe.Config) {
				assert.Equal(t, map[string][]string{"A": {"1"}, "B": {"2"}}, c["a"].Header)
				assert.Equal(t, map[string][]string{"A": {"1"}}, c["b"].Header)
			}},
		{name: "a bool flag per check can be turned off", args: []string{"-insecure", "-check", "a=https://x/", "-check", "b=https://x/", "-check-insecure", "b=false"},
			check: func(t *testing.T, o *serveOptions, c map[string]probe.Config) {
				assert.True(t, c["a"].TLS.Insecure)
				assert.False(t, c["b"].TLS.Insecure)
			}},
		{name: "environment", args: []string{"-check", "live=https://localhost:8443/"},
			env: map[string]string{"HEALTH_CHECK_TIMEOUT": "3s", "HEALTH_CHECK_LISTEN": ":9999", "HEALTH_CHECK_HEADER": "A: 1\nB: 2",
				"HEALTH_CHECK_URL": "http://ignored/", "HEALTH_CHECK_CHECK": "x=http://ignored/"},
			check: func(t *testing.T, o *serveOptions, c map[string]probe.Config) {
				assert.Equal(t, ":9999", o.listen)
				assert.Len(t, c, 1)
				assert.Equal(t, 3*time.Second, c["live"].Timeout)
				assert.Equal(t, map[string][]string{"A": {"1"}, "B": {"2"}}, c["live"].Header)
			}},
		{name: "a flag wins over the environment", args: []string{"-timeout", "1s", "-check", "live=http://localhost/"},
			env: map[string]string{"HEALTH_CHECK_TIMEOUT": "9s"},
			check: func(t *testing.T, o *serveOptions, c map[string]probe.Config) {
				assert.Equal(t, time.Second, c["live"].Timeout)
			}},
		{name: "a URL's query is the URL's", args: []string{"-check", "live=https://localhost:8443/healthz?full=1"},
			check: func(t *testing.T, o *serveOptions, c map[string]probe.Config) {
				assert.Equal(t, "full=1", c["live"].Target.RawQuery)
			}},

		{name: "no check", args: []string{"-listen", ":8086"}, wantErr: "serve needs a check: -check NAME=URL"},
		{name: "an argument", args: []string{"-check", "a=http://x/", "https://u:p@x/?token=1"}, wantErr: `serve takes no arguments, got "https://…@x/?…"`},
		{name: "no name", args: []string{"-check", "http://x/"}, wantErr: `invalid value "http://x/" for flag -check: want NAME=URL`},
		{name: "no URL", args: []string{"-check", "live"}, wantErr: "invalid value \"live\" for flag -check: want NAME=URL"},
		{name: "bad name", args: []string{"-check", "Live=http://x/"}, wantErr: `check name "Live": want lowercase letters, digits and '-'`},
		{name: "twice", args: []string{"-check", "a=http://x/", "-check", "a=http://y/"}, wantErr: "-check a given twice"},
		{name: "bad URL, redacted", args: []string{"-check", "a=ftp://u:secret@x/"}, wantErr: `check a: bad URL "ftp://…@x/": unknown scheme "ftp"`},
		{name: "override of no check", args: []string{"-check", "a=grpc://x:1", "-check-service", "b=api"}, wantErr: `-check-service b: no -check named "b"`},
		{name: "override without a value", args: []string{"-check", "a=grpc://x:1", "-check-service", "a"}, wantErr: "want NAME=VALUE"},
		{name: "bad override value", args: []string{"-check", "a=http://x/", "-check-timeout", "a=soon"}, wantErr: `check a: invalid value "soon" for -check-timeout`},
		{name: "override that does not fit the scheme", args: []string{"-check", "a=https://x/", "-check-service", "a=api"}, wantErr: "check a: -service applies to grpc and grpcs, not https"},
		{name: "shared flag that does not fit a check", args: []string{"-service", "api", "-check", "a=grpc://x:1", "-check", "b=https://x/"},
			wantErr: "check b: -service applies to grpc and grpcs, not https"},
		{name: "bad listen", args: []string{"-listen", "8086", "-check", "a=http://x/"}, wantErr: `bad -listen "8086": want host:port or :port`},
		{name: "metrics is taken", args: []string{"-metrics", "-check", "metrics=http://x/"}, wantErr: "/metrics serves the metrics"},
		{name: "bad variable", args: []string{"-check", "a=http://x/"}, env: map[string]string{"HEALTH_CHECK_TIMEOUT": "forever"}, wantErr: "HEALTH_CHECK_TIMEOUT"},
		{name: "a header that frames a body", args: []string{"-check", "a=http://x/", "-check-header", "a=Content-Length: 0"},
			wantErr: `check a: bad -header "Content-Length: 0": Content-Length would frame a body`},
		{name: "help", args: []string{"-h"}, wantErr: errHelp.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, err := parseServeOptions(tt.args, env(tt.env))
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			tt.check(t, opts, configs(t, opts))
		})
	}
}

func TestServeUsageAndHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	assert.Equal(t, probe.ExitUsage, runServe([]string{"-check", "Bad=http://x/"}, env(nil), &stdout, &stderr))
	assert.Equal(t, "usage: invalid value \"Bad=http://x/\" for flag -check: check name \"Bad\": want lowercase letters, digits and '-' (see health-check serve -h)\n", stderr.String())
	assert.Empty(t, stdout.String())

	stdout.Reset()
	stderr.Reset()
	assert.Equal(t, probe.ExitHealthy, runServe([]string{"-h"}, env(nil), &stdout, &stderr))
	assert.Contains(t, stdout.String(), "-check NAME=URL")
	assert.Contains(t, stdout.String(), "[HEALTH_CHECK_LISTEN]")
	assert.NotContains(t, stdout.String(), "\n  -check-service", "the per-check forms are described once")
	assert.NotContains(t, stdout.String(), "HEALTH_CHECK_CHECK")

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	stderr.Reset()
	assert.Equal(t, exitServeFailed, runServe([]string{"-listen", taken.Addr().String(), "-check", "a=http://x/"}, env(nil), &stdout, &stderr))
	assert.Equal(t, "serve: listen tcp "+taken.Addr().String()+": bind: address already in use\n", stderr.String())
}

// listening matches serve's first line, which says the address it listens on.
var listening = regexp.MustCompile(`listening on (\S+) for `)

// startServeProcess runs the real binary in serve mode and returns the address it listens on; its
// stderr collects in the returned buffer. wait waits for the process: it first reads its stderr to
// the end, since exec.Cmd.Wait closes the pipe and would lose what the copy had not read yet.
func startServeProcess(t *testing.T, args ...string) (cmd *exec.Cmd, addr string, output *testutil.SyncBuffer, wait func() error) {
	t.Helper()
	return startServeCommand(t, "", nil, args...)
}

// startServeCommand is startServeProcess run in the working directory dir ("": the test's), with
// the binary run by wrapper, a command that executes it in its place (prlimit ... --), when not nil.
func startServeCommand(t *testing.T, dir string, wrapper []string, args ...string) (cmd *exec.Cmd, addr string, output *testutil.SyncBuffer, wait func() error) {
	t.Helper()
	argv := append(append(append([]string{}, wrapper...), probeBinary(t), "serve", "-listen", "127.0.0.1:0"), args...)
	cmd = exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = []string{}
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	lines := bufio.NewReader(stderr)
	first, err := lines.ReadString('\n')
	require.NoError(t, err)
	m := listening.FindStringSubmatch(first)
	require.NotNil(t, m, first)
	output = &testutil.SyncBuffer{}
	output.WriteString(first)
	copied := make(chan struct{})
	go func() {
		io.Copy(output, lines)
		close(copied)
	}()
	wait = func() error {
		<-copied // EOF: the process has closed its stderr, so it has ended or is ending
		return cmd.Wait()
	}
	return cmd, m[1], output, wait
}

// awaitExit waits for a serve process that was sent SIGTERM to exit 0, within 5 seconds.
func awaitExit(t *testing.T, wait func() error, stderr *testutil.SyncBuffer) {
	t.Helper()
	exited := make(chan error, 1)
	go func() { exited <- wait() }()
	select {
	case err := <-exited:
		assert.NoError(t, err, "exit 0: %s", stderr.String())
	case <-time.After(5 * time.Second):
		t.Fatalf("serve did not exit after SIGTERM: %s", stderr.String())
	}
}

// TestServeProcess: the binary serves a kubelet's probes of a real mTLS endpoint, and on SIGTERM
// finishes the answer in flight, then exits 0.
func TestServeProcess(t *testing.T) {
	files, err := testutil.WriteMTLSFiles(t.TempDir(), []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, false)
	require.NoError(t, err)
	serverPair, err := tls.LoadX509KeyPair(files.ServerCert, files.ServerKey)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(files.CACert)
	require.NoError(t, err)
	require.True(t, pool.AppendCertsFromPEM(caPEM))
	app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(700 * time.Millisecond)
		}
		assert.Equal(t, "health-check/v0.0.0-test", r.UserAgent())
	}))
	app.TLS = &tls.Config{Certificates: []tls.Certificate{serverPair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	app.StartTLS()
	t.Cleanup(app.Close)

	cmd, addr, stderr, wait := startServeProcess(t, "-cacert", files.CACert, "-cert", files.ClientCert, "-key", files.ClientKey,
		"-check", "live=https://localhost:"+portOf(t, app.URL)+"/livez", "-check", "slow="+app.URL+"/slow", "-check-timeout", "slow=2s")
	kubelet := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	get := func(path string) (int, string, error) {
		req, err := http.NewRequest("GET", "http://"+addr+path, nil)
		if err != nil {
			return 0, "", err
		}
		req.Header.Set("User-Agent", "kube-probe/1.34")
		resp, err := kubelet.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}
	status, body, err := get("/live")
	require.NoError(t, err)
	assert.Equal(t, 200, status, body)
	status, _, err = get("/-/alive")
	require.NoError(t, err)
	assert.Equal(t, 200, status)

	type answer struct {
		status int
		err    error
	}
	inFlight := make(chan answer, 1)
	go func() {
		status, _, err := get("/slow")
		inFlight <- answer{status, err}
	}()
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	got := <-inFlight
	require.NoError(t, got.err)
	assert.Equal(t, 200, got.status, "the answer in flight arrives")

	awaitExit(t, wait, stderr)
	assert.Contains(t, stderr.String(), "health-check serve: stopped")
	_, err = net.DialTimeout("tcp", addr, time.Second)
	assert.Error(t, err, "no longer listening")
}

func portOf(t *testing.T, rawURL string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(strings.TrimPrefix(rawURL, "https://"))
	require.NoError(t, err)
	return port
}

// TestServeProcessRelativeTLSFiles: the TLS files named relative to serve's working directory, laid
// out as the kubelet writes a Secret volume (tls.crt -> ..data/tls.crt, ..data -> ..v1): a probe
// presents the client certificate found there, and after the kubelet's update (a new directory,
// ..data swapped by a rename) the next probe presents the new one. docs/serve.md advises relative
// names where the container's root is a FUSE filesystem.
func TestServeProcessRelativeTLSFiles(t *testing.T) {
	pki := testutil.TestPKI(t, testutil.ECDSAP256)
	volume := t.TempDir()
	update := func(version string, client *testutil.Leaf) {
		dir := filepath.Join(volume, version)
		require.NoError(t, os.Mkdir(dir, 0o755))
		_, err := pki.CA.WriteFile(dir, "ca")
		require.NoError(t, err)
		_, _, err = client.WriteFiles(dir, "tls")
		require.NoError(t, err)
		next := filepath.Join(volume, "..data_tmp")
		require.NoError(t, os.Symlink(version, next))
		require.NoError(t, os.Rename(next, filepath.Join(volume, "..data")))
	}
	update("..v1", pki.Client)
	for _, name := range []string{"ca.crt", "tls.crt", "tls.key"} {
		require.NoError(t, os.Symlink(filepath.Join("..data", name), filepath.Join(volume, name)))
	}
	var mu sync.Mutex
	var clients []string
	app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		clients = append(clients, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	app.TLS = pki.MTLSConfig(pki.Server)
	app.StartTLS()
	t.Cleanup(app.Close)
	lastClient := func() string {
		mu.Lock()
		defer mu.Unlock()
		require.NotEmpty(t, clients)
		return clients[len(clients)-1]
	}

	_, addr, stderr, _ := startServeCommand(t, volume, nil, "-cacert", "ca.crt", "-cert", "tls.crt", "-key", "tls.key",
		"-check", "live="+app.URL+"/healthz")
	kubelet := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	probe := func() {
		t.Helper()
		resp, err := kubelet.Get("http://" + addr + "/live")
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode, "%s%s", body, stderr.String())
		assert.NotContains(t, string(body), "keeping")
	}
	probe()
	assert.Equal(t, "health-check test client", lastClient())

	rotated, err := pki.CA.Client("rotated client")
	require.NoError(t, err)
	update("..v2", rotated)
	probe()
	assert.Equal(t, "rotated client", lastClient(), "the next probe presents the updated certificate")
}

// TestServeProcessWorkloadAPI: with -workload-api, the binary keeps one FetchX509SVID stream open for
// all its probes, and still drains and exits 0 on SIGTERM with the stream open.
func TestServeProcessWorkloadAPI(t *testing.T) {
	pki := testutil.TestPKI(t, testutil.ECDSAP256)
	svid, err := pki.CA.SVID([]string{"spiffe://example.org/app"}, time.Hour)
	require.NoError(t, err)
	agent := testutil.StartWorkloadAPI(t)
	agent.SetSVID("spiffe://example.org/app", svid, pki.CA, nil)
	app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	app.TLS = pki.MTLSConfig(pki.Server)
	app.StartTLS()
	t.Cleanup(app.Close)

	cmd, addr, stderr, wait := startServeProcess(t, "-workload-api", agent.Addr, "-cacert", pki.CAFile,
		"-check", "live=https://localhost:"+portOf(t, app.URL)+"/livez")
	kubelet := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	for range 3 {
		resp, err := kubelet.Get("http://" + addr + "/live")
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode, string(body))
	}
	calls, ended := agent.Calls()
	assert.Equal(t, 1, calls, "one stream for every probe")
	assert.Empty(t, ended, "the stream is still open")

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	awaitExit(t, wait, stderr)
}

// TestServeProcessPerCheckSPIFFEIDs: each check verifies its server by its own -check-spiffe-id on
// top of the shared ones, and never by another check's: with three shared IDs, the slice had room
// for one more, and check b's append overwrote check a's.
func TestServeProcessPerCheckSPIFFEIDs(t *testing.T) {
	pki := testutil.TestPKI(t, testutil.ECDSAP256)
	servers := map[string]string{}
	for _, name := range []string{"a", "b"} {
		svid, err := pki.CA.SVID([]string{"spiffe://example.org/app-" + name}, time.Hour)
		require.NoError(t, err)
		app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		app.TLS = pki.MTLSConfig(svid)
		app.StartTLS()
		t.Cleanup(app.Close)
		servers[name] = app.URL
	}
	cmd, addr, stderr, wait := startServeProcess(t, "-cacert", pki.CAFile, "-cert", pki.ClientCert, "-key", pki.ClientKey,
		"-spiffe-id", "spiffe://example.org/x1", "-spiffe-id", "spiffe://example.org/x2", "-spiffe-id", "spiffe://example.org/x3",
		"-check", "a="+servers["a"], "-check", "b="+servers["b"],
		"-check-spiffe-id", "a=spiffe://example.org/app-a", "-check-spiffe-id", "b=spiffe://example.org/app-b")
	kubelet := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	for _, name := range []string{"a", "b"} {
		resp, err := kubelet.Get("http://" + addr + "/" + name)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode, "check %s: %s", name, body)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	awaitExit(t, wait, stderr)
}

// TestServeProcessDropsConnectionHeaders: serve takes an httpGet probe's httpHeaders as -header, as the
// probe does: it starts, says which headers it drops, and its check sends none of them.
func TestServeProcessDropsConnectionHeaders(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Header["Keep-Alive"]; ok || r.Header.Get("X-Custom") != "1" {
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	t.Cleanup(app.Close)
	cmd, addr, stderr, wait := startServeProcess(t, "-header", "Connection: Keep-Alive", "-header", "X-Custom: 1",
		"-check", "a="+app.URL, "-check-header", "a=Keep-Alive: timeout=5")
	kubelet := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := kubelet.Get("http://" + addr + "/a")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode, string(body))
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	awaitExit(t, wait, stderr)
	assert.Contains(t, stderr.String(), "health-check serve: check a: -header Connection is not sent: the connection is the probe's own")
	assert.Contains(t, stderr.String(), "health-check serve: check a: -header Keep-Alive is not sent")
}
