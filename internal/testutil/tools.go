package testutil

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Strict reports whether a missing tool or Docker engine must fail a test instead of skipping it:
// in CI (REQUIRE_DOCKER=1, which .ci/run sets, or CI set to anything but false) nothing may be
// silently skipped; on a developer's machine the test says what is missing and skips.
func Strict() bool {
	if os.Getenv("REQUIRE_DOCKER") == "1" {
		return true
	}
	ci := os.Getenv("CI")
	return ci != "" && ci != "0" && !strings.EqualFold(ci, "false")
}

// skipOrFail skips the test with why, or fails it when Strict.
func skipOrFail(t testing.TB, why string) {
	t.Helper()
	if Strict() {
		t.Fatalf("%s (REQUIRE_DOCKER=1 or CI is set, so this fails instead of skipping)", why)
	}
	t.Skip(why + " (set REQUIRE_DOCKER=1 to make this a failure)")
}

// RequireCommand returns the path of the named program, or skips (fails when Strict) the test
// when it is not installed. hint says how to get it, e.g. "apt-get install -y skopeo".
func RequireCommand(t testing.TB, name, hint string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		skipOrFail(t, name+" is not installed; "+hint)
	}
	return path
}

// RequireDocker skips (fails when Strict) the test unless a Docker engine answers, and returns
// the engine's architecture (amd64, arm64) as Go names it.
func RequireDocker(t testing.TB) string {
	t.Helper()
	RequireCommand(t, "docker", "install docker.io (Debian) or Docker Engine")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Arch}}").CombinedOutput()
	if err != nil {
		skipOrFail(t, "no Docker engine answers: docker version: "+strings.TrimSpace(string(out)))
	}
	arch := strings.TrimSpace(string(out))
	switch arch {
	case "x86_64":
		arch = "amd64"
	case "aarch64":
		arch = "arm64"
	}
	return arch
}
