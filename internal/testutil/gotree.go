package testutil

import (
	"os"
	"testing"
)

// NeedsGoTree skips a test under Bazel, whose test sandbox has neither the go command nor the source
// tree (README, examples, go.mod) that the test uses; `go test ./...`, which CI runs, has both.
func NeedsGoTree(t testing.TB) {
	t.Helper()
	if os.Getenv("TEST_SRCDIR") != "" {
		t.Skip("needs the go command and the source tree: run it with go test")
	}
}
