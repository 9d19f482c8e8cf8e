package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/health-check-proxy/health-check-proxy/internal/kubenode"
	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
)

// requireKubelet returns the kubelet to run, or skips the test saying why the machine cannot run
// one; with REQUIRE_KUBELET=1 (as .ci/run sets it where the machine can) it fails instead, and
// builds the kubelet when the cache lacks it.
func requireKubelet(t *testing.T) string {
	t.Helper()
	strict := os.Getenv("REQUIRE_KUBELET") == "1"
	skipOrFail := func(why string) {
		if strict {
			t.Fatalf("kubelet e2e: %s (REQUIRE_KUBELET=1, so this fails instead of skipping)", why)
		}
		t.Skipf("kubelet e2e: %s (.ci/run sets REQUIRE_KUBELET=1 where the machine can run a kubelet)", why)
	}
	if err := kubenode.Prerequisites(); err != nil {
		skipOrFail(err.Error())
	}
	version := kubenode.Version()
	cache, err := kubenode.CacheDir()
	require.NoError(t, err)
	if _, err := os.Stat(filepath.Join(cache, version, "kubelet")); err != nil && !strict {
		skipOrFail(fmt.Sprintf("kubelet %s is not built: go run ./internal/kubenode/buildkubelet (~6 min on 2 cores), "+
			"or REQUIRE_KUBELET=1 to build it here", version))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	start := time.Now()
	path, err := kubenode.Build(ctx, version, os.Stderr)
	require.NoError(t, err)
	t.Logf("kubelet %s: %s (ready in %s)", version, path, time.Since(start).Round(time.Millisecond))
	return path
}

// startNode starts containerd and the kubelet with the test's images imported and the mTLS files
// written, and stops them when the test ends, pass or fail.
func startNode(t *testing.T) (*kubenode.Node, *testutil.MTLSFiles) {
	t.Helper()
	kubelet := requireKubelet(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	images, err := kubenode.BuildImages(ctx, "", dir)
	require.NoError(t, err)
	require.NoError(t, os.Mkdir(filepath.Join(dir, "certs"), 0o755))
	certs, err := testutil.WriteMTLSFiles(filepath.Join(dir, "certs"), []string{"localhost"},
		[]net.IP{net.ParseIP("127.0.0.1")}, true)
	require.NoError(t, err)

	node, err := kubenode.Start(ctx, kubelet)
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the end of the kubelet's log:\n%s", node.LogTail("kubelet", 40))
		}
		assert.NoError(t, node.Stop(), "leaving the machine as found")
		assert.Empty(t, node.Shims(), "shims of our containerd left running")
	})
	for _, tarball := range images {
		require.NoError(t, node.Import(ctx, tarball))
	}
	return node, certs
}

// demoPod is the README's Kubernetes setup as a static pod: the app with an exec liveness probe
// running /health-check over mTLS inside the app's container, and a `health-check serve` native
// sidecar behind the app's httpGet readiness probe. hostNetwork: every address is loopback.
func demoPod(certs string, appPort, servePort int) string {
	url := fmt.Sprintf("https://localhost:%d/healthz", appPort)
	mtls := `"-cacert", "/certs/ca.crt", "-cert", "/certs/client.crt", "-key", "/certs/client.key"`
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: demo, namespace: default}
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 10
  volumes:
    - {name: certs, hostPath: {path: %[1]s, type: Directory}}
  initContainers:
    - name: serve
      image: %[2]s
      imagePullPolicy: Never
      restartPolicy: Always
      args: ["serve", "-listen", "127.0.0.1:%[3]d", %[4]s, "-timeout", "900ms", "-check", "live=%[5]s"]
      volumeMounts: [{name: certs, mountPath: /certs, readOnly: true}]
  containers:
    - name: app
      image: %[6]s
      imagePullPolicy: Never
      args: ["-https", "127.0.0.1:%[7]d", "-http", ""]
      volumeMounts: [{name: certs, mountPath: /certs, readOnly: true}]
      livenessProbe:
        exec:
          command: ["/health-check", %[4]s, "-timeout", "900ms", "%[5]s"]
        periodSeconds: 1
        timeoutSeconds: 2
        failureThreshold: 5
      readinessProbe:
        httpGet: {host: 127.0.0.1, port: %[3]d, path: /live}
        periodSeconds: 1
        timeoutSeconds: 1
        failureThreshold: 1
`, certs, kubenode.ProbeImage, servePort, mtls, url, kubenode.AppImage, appPort)
}

// TestKubeletRestartsTheAppOnTheExecProbesFailureAndServeFollowsIt runs the README's two probes
// under a real kubelet (kubenode.KubeletVersion, built from Kubernetes' source): the exec liveness
// probe's failure becomes a restart with the probe's one-line reason in the kubelet's log, the
// httpGet readiness probe through the serve sidecar flips with the app, serve outlives the app's
// restart, and stopping the pod drains serve.
func TestKubeletRestartsTheAppOnTheExecProbesFailureAndServeFollowsIt(t *testing.T) {
	node, certs := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ports, err := kubenode.FreePorts(2)
	require.NoError(t, err)
	appPort, servePort := ports[0], ports[1]
	require.NoError(t, node.Place("demo", demoPod(certs.Dir, appPort, servePort)))
	pod := func(cond func(p *kubenode.Pod) bool) func() (bool, string) {
		return func() (bool, string) {
			p, err := node.Pod("demo")
			if err != nil {
				return false, err.Error()
			}
			return p != nil && cond(p), p.String()
		}
	}
	ready := func(p *kubenode.Pod) bool {
		return p.Ready && p.Containers["app"].Ready && p.Containers["serve"].Running
	}
	waitFor(t, 90*time.Second, "the pod to be Running and Ready", pod(ready))
	first, err := node.Pod("demo")
	require.NoError(t, err)
	serveLog, err := node.ContainerLog(first, "demo", "serve")
	require.NoError(t, err)
	defer serveLog.Close()

	// The app fails: the kubelet's httpGet through serve says not ready at once (threshold 1), the
	// exec probe says unhealthy five times, then the kubelet restarts the app.
	require.NoError(t, node.Signal(ctx, first.Containers["app"].ID, "SIGUSR1"))
	waitFor(t, 20*time.Second, "readiness to turn false before the restart", pod(func(p *kubenode.Pod) bool {
		return !p.Containers["app"].Ready && p.Containers["app"].RestartCount == 0
	}))
	waitFor(t, 60*time.Second, "the kubelet to restart the app", pod(func(p *kubenode.Pod) bool {
		return p.Containers["app"].RestartCount >= 1
	}))
	reason := fmt.Sprintf("unhealthy: GET https://localhost:%d/healthz: 503 Service Unavailable", appPort)
	log := node.Log("kubelet")
	assert.Regexp(t, `"Probe failed" probeType="Liveness" pod="default/demo-kubenode"[^\n]*output=(<\n\s*|")`+regexp.QuoteMeta(reason), log,
		"the exec probe's line, as kubectl describe would show it")
	assert.Contains(t, log, `Container app failed liveness probe, will be restarted`)
	assert.Regexp(t, `"Probe failed" probeType="Readiness" pod="default/demo-kubenode".*HTTP probe failed with statuscode: 503`, log,
		"the kubelet's httpGet saw serve's 503")

	// The restarted app is healthy: ready again through the same serve, which was never restarted.
	waitFor(t, 60*time.Second, "the pod to be Ready again", pod(ready))
	again, err := node.Pod("demo")
	require.NoError(t, err)
	assert.Equal(t, 0, again.Containers["serve"].RestartCount, "serve outlives the app's restart")
	assert.Equal(t, first.Containers["serve"].ID, again.Containers["serve"].ID)
	assert.NotEqual(t, first.Containers["app"].ID, again.Containers["app"].ID)

	// Stopping the pod stops the app, then sends serve SIGTERM: it drains and says so.
	require.NoError(t, node.Remove("demo"))
	var out strings.Builder
	waitFor(t, 60*time.Second, "serve to stop", func() (bool, string) {
		more, _ := io.ReadAll(serveLog)
		out.Write(more)
		return strings.Contains(out.String(), "health-check serve: stopped"), out.String()
	})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	assert.Contains(t, lines[0], "serve: listening on 127.0.0.1:")
	assert.True(t, strings.HasSuffix(lines[len(lines)-1], " health-check serve: stopped"),
		"serve drained on SIGTERM, nothing cut off: %q", lines[len(lines)-1])
}
