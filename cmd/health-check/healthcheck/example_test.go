package healthcheck_test

import (
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/health-check-proxy/health-check-proxy/cmd/health-check/healthcheck"
	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
)

// myappMain is an application's main that carries the probe: its "health-check" subcommand is the
// whole health-check command. A real main passes os.Args and ends in os.Exit(code).
func myappMain(args []string) int {
	if len(args) > 1 && args[1] == "health-check" {
		return healthcheck.Main(args[2:])
	}
	// … the application itself …
	return 0
}

// The application's exec probe is `myapp health-check -cacert ca.crt -url https://…/healthz`: the
// same flags, environment variables and exit codes as the health-check binary.
func Example() {
	app := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	defer app.Close()
	dir, err := os.MkdirTemp("", "myapp")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	caFile := filepath.Join(dir, "ca.crt")
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: app.Certificate().Raw})
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		panic(err)
	}

	code := myappMain([]string{"myapp", "health-check", "-cacert", caFile, "-url", app.URL + "/healthz"})
	fmt.Println("exit code", code)
	// Output: exit code 0
}

// TestEmbeddingAddsOnlyXNet: an application that imports this package gets nothing from it but the
// standard library, golang.org/x/net and this module's own packages.
func TestEmbeddingAddsOnlyXNet(t *testing.T) {
	testutil.NeedsGoTree(t)
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	require.NoError(t, err)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/health-check-proxy/health-check-proxy/cmd/health-check/healthcheck")
	for _, dep := range deps {
		ours := strings.HasPrefix(dep, "github.com/health-check-proxy/health-check-proxy/")
		assert.True(t, ours || strings.HasPrefix(dep, "golang.org/x/net/"), "an application that embeds the probe also gets %s", dep)
	}
}
