package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/health-check-proxy/health-check-proxy/internal/imagespec"
)

// probeCase is one run of the probe and the exit code the contract gives it.
type probeCase struct {
	name string
	args []string
	env  []string
	want int
}

// failureWord is the word the probe's one stderr line starts with, per exit code (README.md, "Exit
// codes").
var failureWord = map[int]string{1: "unhealthy", 3: "unreachable", 64: "usage"}

func withMTLS(args ...string) []string {
	return append(append([]string{}, mtlsArgs...), args...)
}

// exitCodeCases are the situations of the exit-code table, as an application container sees them:
// the probe runs next to the server, as user 65532, on a read-only root.
var exitCodeCases = []probeCase{
	{name: "healthy over mTLS", args: withMTLS(healthyURL), want: 0},
	{name: "healthy with the URL from -url", args: withMTLS("-url", healthyURL), want: 0},
	{name: "healthy configured only by environment", env: []string{
		"HEALTH_CHECK_URL=" + healthyURL,
		"HEALTH_CHECK_CACERT=" + certsDir + "/ca.crt",
		"HEALTH_CHECK_CERT=" + certsDir + "/client.crt",
		"HEALTH_CHECK_KEY=" + certsDir + "/client.key",
	}, want: 0},
	{name: "healthy by IP with -server-name", args: withMTLS("-server-name", "app.internal", "https://127.0.0.1:8443/healthz"), want: 0},
	{name: "tcp connect", args: []string{"tcp://localhost:8443"}, want: 0},
	{name: "tls handshake with client certificate", args: withMTLS("tls://localhost:8443"), want: 0},

	{name: "endpoint answers 503", args: withMTLS("https://localhost:8443/fail"), want: 1},
	{name: "endpoint answers 503 on every retry", args: withMTLS("-retry", "2", "-retry-delay", "50ms", "https://localhost:8443/fail"), want: 1},
	{name: "expected body missing", args: withMTLS("-expect-body", "not in there", healthyURL), want: 1},

	{name: "nothing listens on the port", args: withMTLS("-timeout", "3s", "https://localhost:9/healthz"), want: 3},
	{name: "server rejects a probe without client certificate", args: []string{"-cacert", certsDir + "/ca.crt", "-timeout", "3s", healthyURL}, want: 3},
	{name: "server certificate from another CA", args: []string{
		"-cacert", certsDir + "/other-ca.crt", "-cert", certsDir + "/client.crt", "-key", certsDir + "/client.key", "-timeout", "3s", healthyURL,
	}, want: 3},
	{name: "server name not in the certificate", args: withMTLS("-server-name", "elsewhere.example", "-timeout", "3s", healthyURL), want: 3},

	{name: "client certificate file missing", args: []string{
		"-cacert", certsDir + "/ca.crt", "-cert", certsDir + "/missing.crt", "-key", certsDir + "/client.key", healthyURL,
	}, want: 64},
	{name: "client key unreadable for user 65532", args: []string{
		"-cacert", certsDir + "/ca.crt", "-cert", certsDir + "/client.crt", "-key", certsDir + "/locked.key", healthyURL,
	}, want: 64},
	{name: "key does not match certificate", args: []string{
		"-cacert", certsDir + "/ca.crt", "-cert", certsDir + "/client.crt", "-key", certsDir + "/server.key", healthyURL,
	}, want: 64},
	{name: "unknown flag", args: []string{"-no-such-flag", healthyURL}, want: 64},
	{name: "unknown scheme", args: []string{"ftp://localhost:8443/"}, want: 64},
}

// originalFlagCases use only the original tool's flags: -scheme, -host, -statusPort, -path, -retry.
var originalFlagCases = []probeCase{
	{name: "plain http with -statusPort and -path", args: []string{"-statusPort", "8080", "-path", "healthz"}, want: 0},
	{name: "-path with a leading slash", args: []string{"-host", "localhost", "-statusPort", "8080", "-path", "/healthz"}, want: 0},
	{name: "https with -scheme and client certificate", args: withMTLS("-scheme", "https", "-host", "localhost", "-statusPort", "8443", "-path", "healthz", "-retry", "2"), want: 0},
	{name: "503 after -retry 1", args: []string{"-statusPort", "8080", "-path", "fail", "-retry", "1"}, want: 1},
	{name: "-statusPort nothing listens on", args: []string{"-statusPort", "9", "-path", "healthz", "-timeout", "3s"}, want: 3},
	{name: "environment variable for -statusPort", env: []string{"HEALTH_CHECK_STATUS_PORT=8080", "HEALTH_CHECK_PATH=/healthz"}, want: 0},
}

// checkProbeResult asserts the exit code and the output the contract promises with it: silence on
// success, exactly one short line that names the outcome on failure.
func checkProbeResult(t *testing.T, want int, r result) {
	t.Helper()
	assert.Equal(t, want, r.code, "stdout: %q stderr: %q", r.stdout, r.stderr)
	if want == 0 {
		assert.Empty(t, r.stderr, "silent on success")
		return
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	assert.Len(t, lines, 1, "one line on failure: %q", r.stderr)
	assert.True(t, strings.HasPrefix(lines[0], failureWord[want]), "line %q starts with %q", lines[0], failureWord[want])
	assert.Less(t, len(r.stderr), 4096, "Docker keeps at most 4096 bytes")
}

func TestProbeInAppContainerGivesTheContractsExitCodes(t *testing.T) {
	f := setup(t)
	app := f.startApp(t, "exec")
	for _, group := range []struct {
		name  string
		cases []probeCase
	}{{"contract", exitCodeCases}, {"original flags", originalFlagCases}} {
		t.Run(group.name, func(t *testing.T) {
			for _, tc := range group.cases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					args := []string{"exec"}
					for _, e := range tc.env {
						args = append(args, "-e", e)
					}
					args = append(append(args, app, imagespec.BinaryPath), tc.args...)
					checkProbeResult(t, tc.want, dockerCmd(t, args...))
				})
			}
		})
	}
}

// healthState is the part of `docker inspect` that Docker's health check writes.
type healthState struct {
	Status string
	Log    []struct {
		ExitCode int
		Output   string
	}
}

func inspectHealth(t *testing.T, container string) healthState {
	t.Helper()
	var h *healthState
	require.NoError(t, json.Unmarshal([]byte(docker(t, "inspect", "-f", "{{json .State.Health}}", container)), &h))
	require.NotNil(t, h, "%s has no health check", container)
	return *h
}

func waitForHealth(t *testing.T, container, status string) healthState {
	t.Helper()
	var h healthState
	waitFor(t, 30*time.Second, container+" to turn "+status, func() (bool, string) {
		h = inspectHealth(t, container)
		seen, _ := json.Marshal(h)
		return h.Status == status, string(seen)
	})
	return h
}

// TestDockerHealthCheckFollowsTheEndpoint runs the app image's own HEALTHCHECK (exec form, from
// the image config) and flips the endpoint with signals: healthy, unhealthy with the probe's line
// in the health log, healthy again.
func TestDockerHealthCheckFollowsTheEndpoint(t *testing.T) {
	f := setup(t)
	app := f.startApp(t, "health")

	h := waitForHealth(t, app, "healthy")
	require.NotEmpty(t, h.Log)
	assert.Equal(t, 0, h.Log[len(h.Log)-1].ExitCode)

	docker(t, "kill", "-s", "USR1", app)
	h = waitForHealth(t, app, "unhealthy")
	last := h.Log[len(h.Log)-1]
	assert.Equal(t, 1, last.ExitCode)
	assert.True(t, strings.HasPrefix(last.Output, "unhealthy:"), "health log output %q", last.Output)
	assert.Contains(t, last.Output, "503")

	docker(t, "kill", "-s", "USR2", app)
	waitForHealth(t, app, "healthy")
}

// TestShellFormHealthCheckCannotWorkInScratch documents why the README insists on the exec form:
// `--health-cmd` (like `HEALTHCHECK CMD /health-check ...`) runs through /bin/sh, which a scratch
// image does not have, so the container turns unhealthy although the endpoint is healthy.
func TestShellFormHealthCheckCannotWorkInScratch(t *testing.T) {
	f := setup(t)
	shellForm := imagespec.BinaryPath + " " + strings.Join(withMTLS(healthyURL), " ")
	app := f.startApp(t, "shellform",
		"--health-cmd", shellForm, "--health-interval", "1s", "--health-retries", "1", "--health-timeout", "5s")

	// The same command in exec form is healthy: the endpoint is fine, only the shell is missing.
	checkProbeResult(t, 0, dockerCmd(t, append([]string{"exec", app, imagespec.BinaryPath}, withMTLS(healthyURL)...)...))

	h := waitForHealth(t, app, "unhealthy")
	require.NotEmpty(t, h.Log)
	t.Logf("health log of the shell form: exit %d: %s", h.Log[0].ExitCode, h.Log[0].Output)
	for _, entry := range h.Log {
		assert.NotEqual(t, 0, entry.ExitCode)
		assert.Contains(t, entry.Output, "/bin/sh")
	}
}

// TestProbeImageRunsStandaloneInTheAppsNetworkNamespace runs the product image itself, not the
// app image, joined to the app container's network: the sidecar-style use of the image.
func TestProbeImageRunsStandaloneInTheAppsNetworkNamespace(t *testing.T) {
	f := setup(t)
	app := f.startApp(t, "standalone")

	assert.Equal(t, imagespec.User, docker(t, "image", "inspect", "-f", "{{.Config.User}}", f.probeImage))

	for _, tc := range []probeCase{
		{name: "healthy", args: withMTLS(healthyURL), want: 0},
		{name: "503", args: withMTLS("https://localhost:8443/fail"), want: 1},
		{name: "nothing listens", args: withMTLS("-timeout", "3s", "https://localhost:9/healthz"), want: 3},
		{name: "original flags", args: []string{"-statusPort", "8080", "-path", "healthz"}, want: 0},
		{name: "missing key file", args: []string{"-cert", certsDir + "/client.crt", "-key", certsDir + "/nope.key", healthyURL}, want: 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// No --user: the image's own user (65532) applies.
			args := []string{
				"run", "--rm", "--network", "container:" + app, "--read-only", "--cap-drop", "ALL",
				"--label", runLabel + "=" + f.runID, "-v", f.certs.Dir + ":" + certsDir + ":ro", f.probeImage,
			}
			checkProbeResult(t, tc.want, dockerCmd(t, append(args, tc.args...)...))
		})
	}

	t.Run("-version prints the stamped version", func(t *testing.T) {
		r := dockerCmd(t, "run", "--rm", "--label", runLabel+"="+f.runID, f.probeImage, "-version")
		assert.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stdout, probeVersion)
	})
}
