// Command health-check checks one health endpoint — HTTP(S), gRPC health, TCP or TLS, with client
// certificates when the endpoint demands them — and exits 0 when it is healthy. Kubernetes exec
// probes and Docker HEALTHCHECKs run it inside the application's own (scratch) container.
//
// The command is package healthcheck; an application can carry it in its own binary instead (see
// that package). Exit codes: 0 healthy, 1 unhealthy, 3 unreachable, 64 usage. Run `health-check -h`
// for the flags.
package main

import (
	"os"

	"github.com/health-check-proxy/health-check-proxy/cmd/health-check/healthcheck"
)

// version is stamped at build time: -ldflags "-X main.version=v1.2.3" (Bazel: x_defs).
var version = "dev"

func main() {
	healthcheck.Version = version
	os.Exit(healthcheck.Main(os.Args[1:]))
}
