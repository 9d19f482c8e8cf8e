// Command health-check checks one health endpoint — HTTP(S), gRPC health, TCP or TLS, with client
// certificates when the endpoint demands them — and exits 0 when it is healthy. Kubernetes exec
// probes and Docker HEALTHCHECKs run it inside the application's own (scratch) container.
//
// Exit codes: 0 healthy, 1 unhealthy, 3 unreachable, 64 usage. Run `health-check -h` for the flags.
package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/health-check-proxy/health-check-proxy/probe"
)

// version is stamped at build time: -ldflags "-X main.version=v1.2.3" (Bazel: x_defs).
var version = "dev"

// watchdogMargin is how long past -timeout the process may live before it exits on its own. Every wait
// in the probe is bounded by -timeout already; this is the belt to those braces, so that a kubelet,
// which does not kill an exec probe that outlives its timeoutSeconds, never waits on us.
const watchdogMargin = 200 * time.Millisecond

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		os.Exit(runServe(os.Args[2:], os.Getenv, os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is the whole command: flags and environment → config → check → exit code.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	opts, err := parseOptions(args, getenv)
	switch {
	case err == errHelp:
		writeHelp(stdout)
		return probe.ExitHealthy
	case err != nil:
		fmt.Fprintln(stderr, probe.UsageLine(err, "(see health-check -h)"))
		return probe.ExitUsage
	case opts.printVersion:
		fmt.Fprintf(stdout, "health-check %s\n", version)
		return probe.ExitHealthy
	}
	config := opts.config
	config.UserAgent = "health-check/" + version

	watchdog := time.AfterFunc(watchdogDelay(config.Timeout), func() {
		fmt.Fprintf(stderr, "unreachable: no answer within -timeout %s (watchdog)\n", config.Timeout)
		os.Exit(probe.ExitUnreachable)
	})
	defer watchdog.Stop()

	var verbose io.Writer
	if opts.verbose {
		verbose = stderr
	}
	report := probe.Run(context.Background(), &config, verbose)
	if report.Result != probe.Healthy || opts.verbose {
		line := report.Line()
		if opts.verbose {
			line += fmt.Sprintf(" (%s)", report.Elapsed.Round(10*time.Microsecond))
		}
		fmt.Fprintln(stderr, line)
	}
	return report.Result.ExitCode()
}

// watchdogDelay is -timeout plus the watchdog's margin, saturated: -timeout is bounded by
// probe.MaxTimeout, but an overflow here would fire the watchdog at once, so it must never wrap.
func watchdogDelay(timeout time.Duration) time.Duration {
	if timeout > math.MaxInt64-watchdogMargin {
		return math.MaxInt64
	}
	return timeout + watchdogMargin
}
