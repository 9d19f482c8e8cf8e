package healthcheck

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
)

// attacker is one kind of client that holds a connection of serve's without finishing a request.
type attacker struct {
	name string
	// open is what the client sends first: part of a request head, nothing, or a whole request.
	open string
	// trickle: one more byte of the head every wait, as slowloris does.
	trickle bool
	// deaf: the client never reads, so it never notices being cut off and never comes back.
	deaf bool
}

var attackers = []attacker{
	{name: "half a head", open: "GET /live HTTP/1.1\r\nHo"},
	{name: "slowloris", open: "GET /live HTTP/1.1\r\nX-Pad: ", trickle: true},
	{name: "silent", open: ""},
	{name: "a request, answer never read", open: "GET /live HTTP/1.1\r\nHost: x\r\n\r\n", deaf: true},
}

// flood runs n clients against addr, a quarter of each kind, each coming back as soon as serve cuts
// it off, until ctx ends. It returns once every client has connected and sent what it opens with, and
// a counter of the connections serve has cut off.
func flood(ctx context.Context, t *testing.T, addr string, n int) (cutOff *atomic.Int64, done *sync.WaitGroup) {
	cutOff, done = &atomic.Int64{}, &sync.WaitGroup{}
	var opened sync.WaitGroup
	for i := range n {
		kind := attackers[i%len(attackers)]
		opened.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			first := true
			for ctx.Err() == nil {
				conn, err := net.Dial("tcp", addr)
				if err == nil {
					_, err = io.WriteString(conn, kind.open)
				}
				if first {
					opened.Done()
					first = false
				}
				if err != nil {
					if conn != nil {
						conn.Close()
					}
					time.Sleep(10 * time.Millisecond)
					continue
				}
				hold(ctx, conn, kind)
				conn.Close()
				if ctx.Err() == nil {
					cutOff.Add(1)
				}
			}
		}()
	}
	opened.Wait()
	return cutOff, done
}

// hold keeps conn open until serve closes it or ctx ends, trickling a byte every 300 ms if kind does.
func hold(ctx context.Context, conn net.Conn, kind attacker) {
	if kind.deaf {
		<-ctx.Done()
		return
	}
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 512)
	for ctx.Err() == nil {
		conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := conn.Read(buf)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return // closed, reset, or an answer: serve is done with it
		}
		if kind.trickle {
			if _, err := conn.Write([]byte("a")); err != nil {
				return
			}
		}
	}
}

// memoryKiB is a field of a process's /proc/PID/smaps_rollup, in KiB: Rss, Anonymous, ...
func memoryKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	rollup, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	require.NoError(t, err)
	for _, line := range strings.Split(string(rollup), "\n") {
		if value, ok := strings.CutPrefix(line, field+":"); ok {
			kib, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(value), " kB"))
			require.NoError(t, err)
			return kib
		}
	}
	t.Fatalf("no %s in /proc/%d/smaps_rollup", field, pid)
	return 0
}

// TestServeProcessFlood: clients that hold connections without finishing a request — half a head,
// slowloris, silent, deaf — and come back as soon as they are cut off do not fail the kubelet's
// probe: each is answered 200 within a second, while serve's memory stays bounded. Anyone who can
// reach the port could otherwise restart the pod through its liveness probe. 200 and 1,000 clients
// fit under serve's connection limit; the last case lowers the limit through the open-file limit
// (RLIMIT_NOFILE 128: about 100 connections) and floods it three times over, so that serve must
// cut clients off to let each probe in.
func TestServeProcessFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: floods of up to 1,000 clients")
	}
	pki := testutil.TestPKI(t, testutil.ECDSAP256)
	app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	app.TLS = pki.MTLSConfig(pki.Server)
	app.StartTLS()
	t.Cleanup(app.Close)

	cases := []struct {
		name    string
		clients int
		wrapper []string // runs serve, with a lower open-file limit
	}{
		{name: "200 clients", clients: 200},
		{name: "1000 clients", clients: 1000},
		{name: "300 clients, open files 128", clients: 300, wrapper: []string{"prlimit", "--nofile=128:128", "--"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.wrapper != nil {
				if _, err := exec.LookPath(tc.wrapper[0]); err != nil {
					t.Skipf("no %s (util-linux) to lower the open-file limit", tc.wrapper[0])
				}
			}
			cmd, addr, stderr, wait := startServeCommand(t, "", tc.wrapper, "-cacert", pki.CAFile, "-cert", pki.ClientCert,
				"-key", pki.ClientKey, "-check", "live=https://localhost:"+portOf(t, app.URL)+"/livez")
			ctx, cancel := context.WithCancel(context.Background())
			cutOff, done := flood(ctx, t, addr, tc.clients)
			defer func() {
				cancel()
				done.Wait()
			}()
			time.Sleep(300 * time.Millisecond) // the kernel hands serve what the clients sent

			kubelet := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
			var slowest time.Duration
			for range 5 {
				req, err := http.NewRequest("GET", "http://"+addr+"/live", nil)
				require.NoError(t, err)
				req.Header.Set("User-Agent", "kube-probe/1.34")
				start := time.Now()
				resp, err := kubelet.Do(req)
				require.NoError(t, err)
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				assert.Equal(t, 200, resp.StatusCode, "%s", body)
				slowest = max(slowest, time.Since(start))
				assert.Less(t, time.Since(start), time.Second, "answered within a second")
				time.Sleep(200 * time.Millisecond)
			}
			rss := memoryKiB(t, cmd.Process.Pid, "Rss")
			t.Logf("slowest probe %s, %d clients cut off, serve resident %d KiB", slowest, cutOff.Load(), rss)
			if tc.wrapper != nil {
				assert.Positive(t, cutOff.Load(), "serve cut clients off to make room")
			}
			assert.Less(t, rss, 32<<10, "resident memory within the sidecar's limit")

			cancel()
			done.Wait()
			require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
			awaitExit(t, wait, stderr)
		})
	}
}

// TestServeProcessMemory: serve's own memory (anonymous: heap, stacks, the runtime's; not the
// binary's pages) stays under 4 MiB after thousands of probes of two mTLS checks. Go's default GOGC
// let it reach about 6 MiB (bench/README.md).
func TestServeProcessMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 3,000 probes")
	}
	pki := testutil.TestPKI(t, testutil.ECDSAP256)
	app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	app.TLS = pki.MTLSConfig(pki.Server)
	app.StartTLS()
	t.Cleanup(app.Close)
	target := "https://localhost:" + portOf(t, app.URL) + "/livez"
	cmd, addr, stderr, wait := startServeProcess(t, "-cacert", pki.CAFile, "-cert", pki.ClientCert, "-key", pki.ClientKey,
		"-check", "live="+target, "-check", "ready="+target)
	kubelet := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	for i := range 3000 {
		resp, err := kubelet.Get("http://" + addr + []string{"/live", "/ready"}[i%2])
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
	}
	anonymous := memoryKiB(t, cmd.Process.Pid, "Anonymous")
	t.Logf("serve's anonymous memory after 3,000 probes: %d KiB", anonymous)
	assert.LessOrEqual(t, anonymous, 4<<10)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	awaitExit(t, wait, stderr)
}
