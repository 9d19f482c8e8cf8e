package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestServeInTheAppsNetworkNamespaceFollowsTheEndpoint runs the product image as `health-check
// serve` in its own container, in the app container's network namespace (as a native sidecar shares
// the pod's), and probes it from the host as a kubelet does: through the port the app container
// publishes, since serve listens in the app's namespace. The app flips unhealthy and back.
func TestServeInTheAppsNetworkNamespaceFollowsTheEndpoint(t *testing.T) {
	f := setup(t)
	app := f.startApp(t, "serve-app", "-p", "127.0.0.1::8086")
	name := fmt.Sprintf("health-check-e2e-%s-serve", f.runID)
	docker(t, "run", "-d", "--name", name, "--network", "container:"+app, "--read-only", "--cap-drop", "ALL",
		"--label", runLabel+"="+f.runID, "-v", f.certs.Dir+":"+certsDir+":ro", f.probeImage,
		"serve", "-listen", ":8086", "-metrics", "-cacert", certsDir+"/ca.crt", "-cert", certsDir+"/client.crt",
		"-key", certsDir+"/client.key", "-check", "live="+healthyURL)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs of %s:\n%s", name, dockerCmd(t, "logs", name).stderr)
		}
		_ = exec.Command("docker", "rm", "-f", name).Run()
	})
	base := "http://" + strings.TrimSpace(strings.Split(docker(t, "port", app, "8086/tcp"), "\n")[0])

	// probe is a kubelet's httpGet: a new connection each time, its User-Agent.
	probe := func(path string) (int, string) {
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
		req, err := http.NewRequest("GET", base+path, nil)
		if err != nil {
			return 0, err.Error()
		}
		req.Header.Set("User-Agent", "kube-probe/1.34")
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	answers := func(status int, line string) func() (bool, string) {
		return func() (bool, string) {
			code, body := probe("/live")
			return code == status && strings.HasPrefix(body, line), fmt.Sprintf("%d %q", code, body)
		}
	}

	waitFor(t, 30*time.Second, "serve to answer 200", answers(200, "healthy: GET "+healthyURL+": 200 OK"))
	docker(t, "kill", "-s", "USR1", app)
	waitFor(t, 10*time.Second, "serve to answer 503", answers(503, "unhealthy: GET "+healthyURL+": 503 Service Unavailable"))
	docker(t, "kill", "-s", "USR2", app)
	waitFor(t, 10*time.Second, "serve to answer 200 again", answers(200, "healthy:"))

	code, metrics := probe("/metrics")
	require.Equal(t, 200, code, metrics)
	assert.Contains(t, metrics, `health_check_upstream_connections_total{check="live",reused="false"} 1`+"\n",
		"every check on the one kept-alive connection")
	assert.NotContains(t, metrics, `health_check_upstream_connections_total{check="live",reused="true"} 0`+"\n")

	// SIGTERM: serve drains and exits 0, as a native sidecar is stopped after the app.
	docker(t, "stop", "-t", "10", name)
	assert.Equal(t, "0", docker(t, "inspect", "-f", "{{.State.ExitCode}}", name))
}
