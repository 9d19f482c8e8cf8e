package bazelcheck

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
)

// goTool builds NAME, a tool line of go.mod, and runs it with ARGS in the repository root. The
// tool is built first, on its own, so that what the go command says while it builds (`go:
// downloading ...` on a cold module cache) is never taken for what the tool reports.
func goTool(t *testing.T, name string, args ...string) (output string, exitCode int) {
	t.Helper()
	binary := filepath.Join(t.TempDir(), name)
	build := exec.Command("go", "build", "-o", binary, toolPackage(t, name))
	build.Dir = repoRoot(t)
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build the %s tool: %s", name, out)

	cmd := exec.Command(binary, args...)
	cmd.Dir = repoRoot(t)
	out, err = cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return string(out), exit.ExitCode()
	}
	require.NoError(t, err, "%s: %s", name, out)
	return string(out), 0
}

// toolPackage is the package of go.mod's tool line whose last element is name, as `go tool`
// finds it.
func toolPackage(t *testing.T, name string) string {
	t.Helper()
	for _, tool := range goModFile(t).Tool {
		if path.Base(tool.Path) == name {
			return tool.Path
		}
	}
	require.FailNow(t, "go.mod has no tool line for "+name)
	return ""
}

// TestBuildifier: every BUILD, .bzl, MODULE.bazel and WORKSPACE file (examples/downstream's too) is
// formatted, and buildifier's lint finds nothing. Fix with `go tool buildifier -lint=fix -r .`.
func TestBuildifier(t *testing.T) {
	out, code := goTool(t, "buildifier", "-mode=check", "-lint=warn", "-r", ".")
	assert.Equal(t, 0, code, "go tool buildifier -mode=check -lint=warn -r . reports:\n%s", out)
}

// TestActionlint: the GitHub Actions workflows pass actionlint (syntax, expressions, action inputs,
// and the run: scripts through shellcheck when it is installed). This is the only check the
// workflows get: nothing here runs them. Fix what `go tool actionlint` reports.
func TestActionlint(t *testing.T) {
	if _, err := exec.LookPath("shellcheck"); err != nil {
		if testutil.Strict() {
			require.FailNow(t, "shellcheck is not installed, so actionlint would not check the run: scripts (apt-get install -y shellcheck)")
		}
		t.Log("shellcheck is not installed: actionlint checks the workflows without their run: scripts")
	}
	// The files by name, not found by actionlint itself: it looks for them only in a git checkout.
	workflows, err := filepath.Glob(filepath.Join(repoRoot(t), ".github", "workflows", "*.y*ml"))
	require.NoError(t, err)
	for _, name := range []string{"bazel.yml", "ci.yml", "release.yml"} {
		require.Contains(t, workflows, filepath.Join(repoRoot(t), ".github", "workflows", name))
	}
	// -pyflakes= : no workflow runs Python, so there is nothing for pyflakes to check.
	out, code := goTool(t, "actionlint", append([]string{"-color=false", "-pyflakes="}, workflows...)...)
	assert.Equal(t, 0, code, "go tool actionlint reports:\n%s", out)
	assert.Empty(t, out)
}

// TestGazelleUpToDate: the Go packages' BUILD files are what gazelle generates from the sources
// and the root BUILD.bazel's directives. Fix with `go tool gazelle`.
func TestGazelleUpToDate(t *testing.T) {
	out, code := goTool(t, "gazelle", "-mode=diff", "-repo_config="+goRepositoryConfig(t))
	assert.Equal(t, 0, code, "go tool gazelle -mode=diff wants these changes (run `go tool gazelle`):\n%s", out)
	assert.Empty(t, out)
}

// goRepositoryConfig writes, for gazelle's -repo_config, one go_repository per module go.mod
// requires, named as go_deps names them. Gazelle then resolves imports from other modules without
// asking the network which module an import path belongs to (`go get` for every import: tens of
// seconds, and a CI that fails when the proxy does); `bazel run //:gazelle` gets the same from
// go_deps.
func goRepositoryConfig(t *testing.T) string {
	t.Helper()
	var config strings.Builder
	for _, path := range sortedKeys(goModRequirements(t)) {
		fmt.Fprintf(&config, "go_repository(name = %q, importpath = %q)\n", goRepoName(path), path)
	}
	file := filepath.Join(t.TempDir(), "WORKSPACE")
	require.NoError(t, os.WriteFile(file, []byte(config.String()), 0o644))
	return file
}
