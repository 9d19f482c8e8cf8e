package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/require"

	"github.com/health-check-proxy/health-check-proxy/internal/imagebuild"
	"github.com/health-check-proxy/health-check-proxy/internal/imagespec"
	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
)

const (
	// certsDir is where containers see the certificates.
	certsDir = "/certs"
	// serverPath is the test server's path in the app image.
	serverPath        = "/testserver"
	testServerPackage = "github.com/health-check-proxy/health-check-proxy/e2e/testserver"
	// probeVersion is stamped into the probe these tests build.
	probeVersion = "e2e-test"
	// runLabel marks every container the tests create, so that a crashed run can be cleaned up by
	// hand: docker rm -f $(docker ps -aq --filter label=health-check-proxy-e2e).
	runLabel = "health-check-proxy-e2e"
)

// healthyURL is the app's mTLS health endpoint, from inside its network namespace.
const healthyURL = "https://localhost:8443/healthz"

// mtlsArgs are the probe's flags for the app's certificates as the container sees them.
var mtlsArgs = []string{
	"-cacert", certsDir + "/ca.crt", "-cert", certsDir + "/client.crt", "-key", certsDir + "/client.key",
}

// fixture is what every container test shares: two images loaded into the engine and the
// certificates they mount. It is built once per test binary.
type fixture struct {
	runID string
	// appImage is the probe's layer plus the test server, with a HEALTHCHECK in exec form.
	appImage string
	// probeImage is the product image: the probe's layer alone.
	probeImage string
	// serverBinary is the test server for the engine's architecture, static like the probe.
	serverBinary string
	certs        *testutil.MTLSFiles
	tmp          string
}

var (
	fixtureOnce sync.Once
	theFixture  *fixture
	fixtureErr  error
)

// setup skips the test when no Docker engine answers (fails under REQUIRE_DOCKER=1) and returns
// the shared fixture, building it on first use.
func setup(t *testing.T) *fixture {
	t.Helper()
	arch := testutil.RequireDocker(t)
	fixtureOnce.Do(func() {
		start := time.Now()
		theFixture, fixtureErr = buildFixture(arch)
		if fixtureErr == nil {
			fmt.Fprintf(os.Stderr, "e2e: images %s and %s built and loaded in %s\n",
				theFixture.appImage, theFixture.probeImage, time.Since(start).Round(time.Millisecond))
		}
	})
	require.NoError(t, fixtureErr)
	return theFixture
}

func TestMain(m *testing.M) {
	code := m.Run()
	if theFixture != nil {
		theFixture.remove()
	}
	os.Exit(code)
}

func buildFixture(arch string) (*fixture, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	id := make([]byte, 4)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "health-check-e2e-")
	if err != nil {
		return nil, err
	}
	f := &fixture{
		runID:      hex.EncodeToString(id),
		tmp:        tmp,
		appImage:   "health-check-e2e-app:" + hex.EncodeToString(id),
		probeImage: "health-check-e2e-probe:" + hex.EncodeToString(id),
	}
	if err := f.build(ctx, arch); err != nil {
		f.remove()
		return nil, err
	}
	return f, nil
}

func (f *fixture) build(ctx context.Context, arch string) error {
	certs := filepath.Join(f.tmp, "certs")
	if err := os.Mkdir(certs, 0o755); err != nil {
		return err
	}
	var err error
	f.certs, err = testutil.WriteMTLSFiles(certs, []string{"localhost", "app.internal"},
		[]net.IP{net.ParseIP("127.0.0.1")}, true)
	if err != nil {
		return err
	}
	// A key only its owner may read: the container's user 65532 cannot, so the probe must say
	// "usage" (exit 64), as for a missing file.
	if err := os.WriteFile(filepath.Join(certs, "locked.key"), []byte("not for you\n"), 0o600); err != nil {
		return err
	}

	probe := filepath.Join(f.tmp, "health-check")
	if err := imagebuild.BuildBinary(ctx, imagebuild.BinaryOptions{Arch: arch, Version: probeVersion}, probe); err != nil {
		return err
	}
	server := filepath.Join(f.tmp, "testserver")
	if err := imagebuild.BuildBinary(ctx, imagebuild.BinaryOptions{Arch: arch, Package: testServerPackage}, server); err != nil {
		return err
	}
	f.serverBinary = server
	probeBytes, err := os.ReadFile(probe)
	if err != nil {
		return err
	}
	serverBytes, err := os.ReadFile(server)
	if err != nil {
		return err
	}

	epoch, err := imagebuild.EpochFromEnv("")
	if err != nil {
		return err
	}
	probeLayer, err := imagebuild.ProbeLayer(probeBytes, epoch)
	if err != nil {
		return err
	}
	serverLayer, err := imagebuild.Layer([]imagebuild.File{{Path: serverPath, Mode: 0o755, Content: serverBytes}}, epoch)
	if err != nil {
		return err
	}

	probeImage, err := imagebuild.Image(arch, epoch, []v1.Layer{probeLayer}, nil)
	if err != nil {
		return err
	}
	appImage, err := imagebuild.Image(arch, epoch, []v1.Layer{probeLayer, serverLayer}, func(c *v1.Config) {
		c.Entrypoint = []string{serverPath}
		// The exec form, as `HEALTHCHECK CMD ["/health-check", ...]` writes it: a scratch image has
		// no /bin/sh for the shell form.
		c.Healthcheck = &v1.HealthConfig{
			Test:     append(append([]string{"CMD", imagespec.BinaryPath}, mtlsArgs...), "-timeout", "2s", healthyURL),
			Interval: time.Second,
			Timeout:  5 * time.Second,
			Retries:  2,
		}
	})
	if err != nil {
		return err
	}

	for tag, img := range map[string]v1.Image{f.appImage: appImage, f.probeImage: probeImage} {
		archive := filepath.Join(f.tmp, strings.NewReplacer(":", "-").Replace(tag)+".tar")
		if err := imagebuild.WriteDockerArchive(archive, img, tag); err != nil {
			return err
		}
		if out, err := exec.CommandContext(ctx, "docker", "load", "-i", archive).CombinedOutput(); err != nil {
			return fmt.Errorf("docker load %s: %w: %s", archive, err, out)
		}
	}
	return nil
}

// remove deletes the images and the temporary files; containers go with their tests.
func (f *fixture) remove() {
	for _, image := range []string{f.appImage, f.probeImage} {
		_ = exec.Command("docker", "rmi", "-f", image).Run()
	}
	_ = os.RemoveAll(f.tmp)
}

// result is how a docker command ended.
type result struct {
	code           int
	stdout, stderr string
}

// dockerCmd runs docker with args and returns its exit code and output; only a failure to start
// docker at all fails the test.
func dockerCmd(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		require.NoError(t, err, "docker %s", strings.Join(args, " "))
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

// docker runs docker with args and requires it to succeed; it returns the trimmed stdout.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	r := dockerCmd(t, args...)
	require.Equal(t, 0, r.code, "docker %s: %s", strings.Join(args, " "), r.stderr)
	return strings.TrimSpace(r.stdout)
}

// hardened are the docker run flags of a locked-down container, as the README recommends.
func (f *fixture) hardened() []string {
	return []string{
		"--read-only", "--cap-drop", "ALL", "--user", "65532",
		"--label", runLabel + "=" + f.runID,
		"-v", f.certs.Dir + ":" + certsDir + ":ro",
	}
}

// startApp runs the app image detached under a unique name, removes it when the test ends, and
// waits until the server listens. extra flags go before the image.
func (f *fixture) startApp(t *testing.T, purpose string, extra ...string) string {
	t.Helper()
	return f.startContainer(t, f.appImage, purpose, extra...)
}

// startContainer is startApp for any image whose entrypoint is the test server.
func (f *fixture) startContainer(t *testing.T, image, purpose string, extra ...string) string {
	t.Helper()
	name := fmt.Sprintf("health-check-e2e-%s-%s", f.runID, purpose)
	args := append([]string{"run", "-d", "--name", name}, f.hardened()...)
	args = append(append(args, extra...), image)
	docker(t, args...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs of %s:\n%s", name, dockerCmd(t, "logs", name).stderr)
		}
		_ = exec.Command("docker", "rm", "-f", name).Run()
	})
	waitFor(t, 30*time.Second, "the test server in "+name+" to listen", func() (bool, string) {
		logs := dockerCmd(t, "logs", name)
		state := dockerCmd(t, "inspect", "-f", "{{.State.Status}}", name)
		if strings.TrimSpace(state.stdout) == "exited" {
			require.FailNow(t, "the app container exited", "logs: %s", logs.stderr)
		}
		return strings.Contains(logs.stderr, "listening on"), logs.stderr
	})
	return name
}

// waitFor polls cond every 200ms until it holds or timeout passes; cond's string says what it saw.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			require.FailNow(t, "timed out waiting for "+what, "last seen: %s", seen)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
