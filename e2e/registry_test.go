package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/health-check-proxy/health-check-proxy/internal/imagebuild"
	"github.com/health-check-proxy/health-check-proxy/internal/imagespec"
	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
)

// TestImageTravelsThroughARegistry follows the image the way users get it: pushed to a registry as
// the multi-arch index, pulled by the engine by digest, and named in a Dockerfile's
// `FROM ... AS probe` so that `COPY --from=probe` puts the probe into a scratch application image,
// whose exec-form HEALTHCHECK must then turn healthy. The other container tests load their images
// with `docker load`, which skips everything a registry does: the index, platform selection, media
// types and digests as the engine sees them.
func TestImageTravelsThroughARegistry(t *testing.T) {
	arch := testutil.RequireDocker(t)
	skopeo := testutil.RequireCommand(t, "skopeo", "apt-get install -y skopeo")
	f := setup(t)

	registryHost := startRegistry(t)
	repository := registryHost + "/health-check"
	tag := "e2e-" + f.runID
	// A version of this run alone: the probe's layer is then new to the engine, so the pull below
	// must download it from the registry; no image of the fixture or of an earlier run can stand in.
	version := probeVersion + "-registry-" + f.runID
	index := pushImage(t, skopeo, repository, tag, version)

	t.Run("the engine pulls the index by digest and runs its own platform", func(t *testing.T) {
		pinned := repository + "@" + index
		t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", pinned).Run() })

		start := time.Now()
		pull := dockerCmd(t, "pull", pinned)
		// Plain HTTP works only because the engine's insecure registries include 127.0.0.0/8, which
		// is the default (see `docker info`, "Insecure Registries").
		require.Equal(t, 0, pull.code, "docker pull %s over plain HTTP: %s", pinned, pull.stderr)
		assert.Contains(t, pull.stdout, "Downloaded newer image", "the layer came from the registry")
		t.Logf("docker pull took %s", time.Since(start).Round(time.Millisecond))

		var image struct {
			Os, Architecture string
			RepoDigests      []string
			Config           struct {
				User       string
				Entrypoint []string
			}
		}
		require.NoError(t, json.Unmarshal([]byte(docker(t, "image", "inspect", "-f", "{{json .}}", pinned)), &image))
		assert.Equal(t, imagespec.OS, image.Os)
		assert.Equal(t, arch, image.Architecture, "the engine picks its own platform out of the index")
		assert.Contains(t, image.RepoDigests, pinned)
		assert.Equal(t, imagespec.User, image.Config.User)
		assert.Equal(t, imagespec.Entrypoint, image.Config.Entrypoint)

		run := dockerCmd(t, "run", "--rm", "--label", runLabel+"="+f.runID, pinned, "-version")
		assert.Equal(t, 0, run.code, run.stderr)
		assert.Equal(t, "health-check "+version+"\n", run.stdout)
	})

	// Every platform of the index, pulled and run by the engine: natively for its own, through a
	// qemu-user binfmt_misc handler for the others when the host has one (Debian: qemu-user-static,
	// whose handlers carry the F flag, so they work inside containers).
	for _, other := range imagespec.Architectures {
		platform := imagespec.Platform(other)
		t.Run(platform+" runs from the index", func(t *testing.T) {
			pinned := repository + "@" + index
			t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", pinned).Run() })
			pull := dockerCmd(t, "pull", "--platform", platform, pinned)
			require.Equal(t, 0, pull.code, "docker pull --platform %s %s: %s", platform, pinned, pull.stderr)
			var image struct{ Os, Architecture, Variant string }
			require.NoError(t, json.Unmarshal([]byte(docker(t, "image", "inspect", "-f", "{{json .}}", pinned)), &image))
			assert.Equal(t, imagespec.OS, image.Os)
			assert.Equal(t, other, image.Architecture)
			assert.Equal(t, imagespec.Variants[other], image.Variant)

			run := dockerCmd(t, "run", "--rm", "--platform", platform, "--label", runLabel+"="+f.runID, pinned, "-version")
			if other != arch && run.code != 0 && strings.Contains(run.stderr, "exec format error") {
				t.Skipf("the engine cannot run %s images: no binfmt_misc handler for it on this host "+
					"(Debian: apt-get install qemu-user-static, with /proc/sys/fs/binfmt_misc mounted); "+
					"cmd/build-image's tests still run this platform's probe under qemu-user when installed: %s",
					platform, strings.TrimSpace(run.stderr))
			}
			assert.Equal(t, 0, run.code, run.stderr)
			assert.Equal(t, "health-check "+version+"\n", run.stdout)
		})
	}

	t.Run("the README's Dockerfile copies the probe from the registry and turns healthy", func(t *testing.T) {
		buildContext := t.TempDir()
		dockerfile := readmeDockerfile(t, repository+":"+tag)
		require.NoError(t, os.WriteFile(filepath.Join(buildContext, "Dockerfile"), []byte(dockerfile), 0o644))
		server, err := os.ReadFile(f.serverBinary)
		require.NoError(t, err)
		// The README's application is my-app; ours is the test server, whose default flags are the
		// README's port and certificate paths.
		require.NoError(t, os.WriteFile(filepath.Join(buildContext, "my-app"), server, 0o755))

		appImage := "health-check-e2e-registry-app:" + f.runID
		t.Cleanup(func() {
			// The built image, and the tag the builder pulled for FROM.
			_ = exec.Command("docker", "rmi", "-f", appImage, repository+":"+tag).Run()
		})
		start := time.Now()
		build := exec.Command("docker", "build", "--pull", "--label", runLabel+"="+f.runID, "-t", appImage, buildContext)
		// The engine's own (legacy) builder: it resolves FROM with the engine's pull, in the engine's
		// network namespace, where 127.0.0.1 is this test's registry and plain HTTP is allowed as for
		// `docker pull` above. It is also the only builder Debian's docker.io has: BuildKit needs the
		// buildx plugin, which Debian bookworm does not package, and with DOCKER_BUILDKIT=1 set and no
		// buildx, `docker build` refuses to run. (A BuildKit builder in a container, buildx's
		// docker-container driver, would not see the host's loopback for FROM at all: `--network host`
		// changes only RUN steps.)
		build.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
		out, err := build.CombinedOutput()
		require.NoError(t, err, "docker build:\n%s\nDockerfile:\n%s", out, dockerfile)
		t.Logf("docker build took %s", time.Since(start).Round(time.Millisecond))

		// Run locked down with the certificates bind-mounted, as every app container of this suite.
		start = time.Now()
		app := f.startContainer(t, appImage, "registry")
		h := waitForHealth(t, app, "healthy")
		require.NotEmpty(t, h.Log)
		assert.Equal(t, 0, h.Log[len(h.Log)-1].ExitCode)
		t.Logf("healthy %s after docker run", time.Since(start).Round(time.Millisecond))
	})
}

// startRegistry serves an in-memory OCI registry (go-containerregistry's pkg/registry, a complete
// implementation of the distribution API) over plain HTTP on an ephemeral port of 127.0.0.1, stops it
// when the test ends, and returns its host:port. Loopback and plain HTTP are what the engine accepts
// without any configuration. The registry's request log is shown when the test fails.
func startRegistry(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	// log.Logger serializes its writes, and Close below waits for every request, so the buffer
	// needs no lock of its own.
	var requests bytes.Buffer
	server := httptest.NewUnstartedServer(registry.New(registry.Logger(log.New(&requests, "", log.Lmicroseconds))))
	server.Listener.Close()
	server.Listener = listener
	server.Start()
	t.Cleanup(func() {
		server.Close()
		if t.Failed() {
			t.Logf("registry log:\n%s", requests.String())
		}
	})
	return listener.Addr().String()
}

// pushImage builds the multi-arch image as cmd/build-image does (every platform, one index, the
// probe stamped with version), writes it as an OCI layout and copies it to repository:tag with
// `skopeo copy --all`, as a release pushes it. It returns the index digest, after checking that the
// registry holds the index we built, byte for byte.
func pushImage(t *testing.T, skopeo, repository, tag, version string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	epoch, err := imagebuild.EpochFromEnv("")
	require.NoError(t, err)
	res, err := imagebuild.Build(ctx, imagebuild.Options{Version: version, Epoch: epoch})
	require.NoError(t, err)
	require.ElementsMatch(t, imagespec.Architectures, res.Architectures)
	index, err := res.Index.Digest()
	require.NoError(t, err)
	layout := filepath.Join(t.TempDir(), "layout")
	require.NoError(t, imagebuild.WriteLayout(layout, res.Index, tag))
	t.Logf("built %d platforms in %s", len(res.Architectures), time.Since(start).Round(time.Millisecond))

	start = time.Now()
	digestFile := filepath.Join(t.TempDir(), "digest")
	// --insecure-policy: skopeo's signature policy (/etc/containers/policy.json) is about trusting
	// what is pulled; what we copy is our own build of a moment ago. --dest-tls-verify=false lets it
	// speak plain HTTP. --preserve-digests makes skopeo fail rather than rewrite a manifest.
	skopeoCopy := exec.CommandContext(ctx, skopeo, "--insecure-policy", "copy", "--all", "--preserve-digests",
		"--dest-tls-verify=false", "--digestfile", digestFile, "oci:"+layout+":"+tag, "docker://"+repository+":"+tag)
	out, err := skopeoCopy.CombinedOutput()
	require.NoError(t, err, "skopeo copy: %s", out)
	pushed, err := os.ReadFile(digestFile)
	require.NoError(t, err)
	require.Equal(t, index.String(), strings.TrimSpace(string(pushed)), "the registry's digest of the index")
	t.Logf("skopeo copy took %s", time.Since(start).Round(time.Millisecond))
	return index.String()
}

// readmeDockerfile returns the README's Dockerfile for copying the probe into an application image,
// its FROM pointed at image and its HEALTHCHECK interval cut to one second so that the test waits
// seconds, not tens of seconds: what the README tells users to write is what this suite builds.
func readmeDockerfile(t *testing.T, image string) string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	var dockerfile string
	for _, block := range regexp.MustCompile("(?s)```dockerfile\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		if strings.Contains(block[1], "COPY --from=probe ") {
			dockerfile = block[1]
		}
	}
	require.NotEmpty(t, dockerfile, "README.md has a dockerfile block with COPY --from=probe")

	for _, edit := range []struct {
		pattern, replacement string
	}{
		{`(?m)^FROM \S+ AS probe$`, "FROM " + image + " AS probe"},
		{`--interval=\S+`, "--interval=1s"},
	} {
		re := regexp.MustCompile(edit.pattern)
		require.Len(t, re.FindAllString(dockerfile, -1), 1, "README's Dockerfile has one match of %s:\n%s", edit.pattern, dockerfile)
		dockerfile = re.ReplaceAllLiteralString(dockerfile, edit.replacement)
	}
	return dockerfile
}
