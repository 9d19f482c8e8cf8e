// Package healthcheck is the health-check command: flags and environment → probe config → check →
// exit code, and the `serve` subcommand. cmd/health-check is this package's Main and nothing more; an
// application built FROM scratch can carry the same probe in its own binary instead of a second
// file, by handing its "health-check" subcommand to Main:
//
//	func main() {
//		if len(os.Args) > 1 && os.Args[1] == "health-check" {
//			os.Exit(healthcheck.Main(os.Args[2:]))
//		}
//		// … the application …
//	}
//
// and its exec probe is then `myapp health-check -url https://localhost:8443/healthz`. What that
// costs the application's size and each probe run, against the /health-check file, is measured in
// bench/README.md. The package adds nothing to an application but the standard library and
// golang.org/x/net.
//
// Exit codes: 0 healthy, 1 unhealthy, 3 unreachable, 64 usage. Run `health-check -h` for the flags.
package healthcheck

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/health-check-proxy/health-check-proxy/probe"
)

// Version is what -version prints and what the probe's User-Agent carries (health-check/Version).
// cmd/health-check sets it from its own stamp (-ldflags "-X main.version=v1.2.3"; Bazel: x_defs)
// before it calls Main; an application that embeds the command may set its own.
var Version = "dev"

// watchdogMargin is how long past -timeout the process may live before it exits on its own. Every wait
// in the probe is bounded by -timeout already; this is the belt to those braces, so that a kubelet,
// which does not kill an exec probe that outlives its timeoutSeconds, never waits on us.
const watchdogMargin = 200 * time.Millisecond

// Main runs the command with args, the arguments after the command's name (os.Args[1:] for the
// health-check binary; os.Args[2:] for `myapp health-check ...`), and returns its exit code. It reads
// the environment (HEALTH_CHECK_*) and writes to os.Stdout and os.Stderr; if the check outlives
// -timeout by the watchdog's margin, it exits the process itself with code 3. So it belongs in a
// process's main, as its last act, never in a server's request path.
func Main(args []string) int {
	if len(args) > 0 && args[0] == "serve" {
		return runServe(args[1:], os.Getenv, os.Stdout, os.Stderr)
	}
	return run(args, os.Getenv, os.Stdout, os.Stderr)
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
		fmt.Fprintf(stdout, "health-check %s\n", Version)
		return probe.ExitHealthy
	}
	config := opts.config
	config.UserAgent = "health-check/" + Version

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
