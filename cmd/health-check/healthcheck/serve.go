package healthcheck

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/health-check-proxy/health-check-proxy/cmd/health-check/internal/serve"
	"github.com/health-check-proxy/health-check-proxy/probe"
)

// `health-check serve` is the long-running mode: it answers a kubelet's httpGet probes on plain
// HTTP by running the checks configured here (see internal/serve). Nothing of it runs, nor is
// initialised, unless "serve" is the first argument.

// defaultListen is the port the README's sidecar examples use.
const defaultListen = ":8086"

// checkFlagPrefix starts the per-check form of every check flag: -check-service ready=my.v1.API.
const checkFlagPrefix = "check-"

// serveGCPercent is serve's GOGC: see runServe.
const serveGCPercent = 25

// exitServeFailed is serve's exit code when it cannot listen: the command ran, and failed.
const exitServeFailed = 1

const serveHelpHeader = `health-check serve answers HTTP probes (GET /NAME) by running the checks configured here:
a kubelet's httpGet probe of a sidecar gets mutual TLS, gRPC health and the rest, without an exec.

Usage: health-check serve [flags] -check NAME=URL [-check NAME=URL ...]

GET or HEAD /NAME answers 200 when check NAME is healthy, 503 with the one line that says why when
it is not (or does not answer within its -timeout); /-/alive is 200 while serve runs. The check
flags below are shared by all checks, and must fit each; -check-FLAG NAME=VALUE sets FLAG for check
NAME only: -check-service ready=my.v1.API, -check-expect-status live=200-204, -check-timeout
ready=2s (-check-header adds to -header, -check-spiffe-id to -spiffe-id; a bool flag takes NAME, or
NAME=false).
SIGTERM or SIGINT: stop listening, finish the answers in flight, exit 0.

Flags (the environment variable in brackets sets what the command line leaves unset):
`

const serveHelpFooter = `
Exit codes: 0 stopped by SIGTERM or SIGINT, 1 could not listen, 64 usage.

Example (a native sidecar; the app's probes: httpGet port 8086, paths /live and /ready):
  health-check serve -cacert /certs/ca.crt -cert /certs/tls.crt -key /certs/tls.key \
      -check live=https://localhost:8443/livez -check ready=grpcs://localhost:9443 -check-service ready=my.v1.API
`

// serveFlags are serve's command line: its own flags, the shared check flags, and the checks.
type serveFlags struct {
	*flag.FlagSet
	listen  string
	metrics bool
	shared  checkFlags
	checks  checkTargets
	// overrides are the -check-FLAG NAME=VALUE flags, in the order given.
	overrides []checkOverride
}

// checkTargets collects -check NAME=URL, in the order given.
type checkTargets [][2]string

func (c *checkTargets) String() string { return "" }
func (c *checkTargets) Set(v string) error {
	name, target, ok := strings.Cut(v, "=")
	if !ok {
		return errors.New("want NAME=URL")
	}
	if err := serve.ValidName(name); err != nil {
		return err
	}
	*c = append(*c, [2]string{name, target})
	return nil
}

// checkOverride is one -check-FLAG NAME=VALUE.
type checkOverride struct{ check, flag, value string }

// overrideFlag is the flag.Value of -check-FLAG.
type overrideFlag struct {
	flag   string
	isBool bool
	into   *[]checkOverride
}

func (o *overrideFlag) String() string { return "" }
func (o *overrideFlag) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok && !o.isBool {
		return errors.New("want NAME=VALUE")
	}
	if !ok {
		value = "true"
	}
	*o.into = append(*o.into, checkOverride{check: name, flag: o.flag, value: value})
	return nil
}

func newServeFlags() *serveFlags {
	f := &serveFlags{FlagSet: flag.NewFlagSet("health-check serve", flag.ContinueOnError)}
	f.SetOutput(io.Discard)
	f.StringVar(&f.listen, "listen", defaultListen, "`address` to answer probes on, host:port (plain HTTP)")
	f.BoolVar(&f.metrics, "metrics", false, "serve /metrics in the Prometheus text format")
	f.Var(&f.checks, "check", "`NAME=URL`, repeatable: GET /NAME checks URL (NAME: a-z, 0-9 and -)")
	f.shared.register(f.FlagSet)
	var scratch checkFlags
	perCheck := flag.NewFlagSet("", flag.ContinueOnError)
	scratch.register(perCheck)
	perCheck.VisitAll(func(fl *flag.Flag) {
		boolFlag, _ := fl.Value.(interface{ IsBoolFlag() bool })
		f.Var(&overrideFlag{flag: fl.Name, isBool: boolFlag != nil && boolFlag.IsBoolFlag(), into: &f.overrides},
			checkFlagPrefix+fl.Name, "`NAME=VALUE`: -"+fl.Name+" for check NAME only")
	})
	return f
}

// isPerCheckFlag reports whether a flag of serve's is a per-check form, which has no variable: a
// variable for it would hold several checks' values.
func isPerCheckFlag(name string) bool { return strings.HasPrefix(name, checkFlagPrefix) }

// serveOptions are serve's parsed command line: where to listen, and the server with its checks.
type serveOptions struct {
	listen string
	server serve.Options
	// notes are start-up lines for stderr: the -header values that a check drops.
	notes []string
}

// parseServeOptions reads serve's command line, then the environment, and builds every check's
// config. It does no I/O beyond getenv.
func parseServeOptions(args []string, getenv func(string) string) (*serveOptions, error) {
	f := newServeFlags()
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, err
	}
	if f.NArg() > 0 {
		return nil, fmt.Errorf("serve takes no arguments, got %q (a check is -check NAME=URL)", probe.RedactURL(f.Arg(0)))
	}
	set := map[string]bool{}
	f.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	ignore := map[string]bool{}
	f.VisitAll(func(fl *flag.Flag) {
		if isPerCheckFlag(fl.Name) {
			ignore[fl.Name] = true
		}
	})
	if err := setFromEnvironment(f.FlagSet, set, ignore, getenv); err != nil {
		return nil, err
	}
	if _, _, err := net.SplitHostPort(f.listen); err != nil {
		return nil, fmt.Errorf("bad -listen %q: want host:port or :port", f.listen)
	}
	if len(f.checks) == 0 {
		return nil, errors.New("serve needs a check: -check NAME=URL")
	}

	names := map[string]bool{}
	for _, c := range f.checks {
		if names[c[0]] {
			return nil, fmt.Errorf("-check %s given twice", c[0])
		}
		names[c[0]] = true
	}
	for _, o := range f.overrides {
		if !names[o.check] {
			return nil, fmt.Errorf("-%s%s %s: no -check named %q", checkFlagPrefix, o.flag, o.check, o.check)
		}
	}

	opts := &serveOptions{listen: f.listen, server: serve.Options{Metrics: f.metrics}}
	for _, c := range f.checks {
		name, rawURL := c[0], c[1]
		config, err := f.checkConfig(name, rawURL)
		if err != nil {
			return nil, fmt.Errorf("check %s: %w", name, err)
		}
		config.UserAgent = "health-check/" + Version
		for _, header := range config.HopByHopHeaders() {
			opts.notes = append(opts.notes, fmt.Sprintf("check %s: -header %s is not sent: the connection is the probe's own (a hop-by-hop header)", name, header))
		}
		opts.server.Checks = append(opts.server.Checks, serve.Check{Name: name, Timeout: config.Timeout, Checker: probe.NewSession(config)})
	}
	if err := opts.server.Validate(); err != nil { // the checks' names against the server's own paths
		return nil, err
	}
	return opts, nil
}

// checkConfig is the config of one check: the shared flags, then the check's own -check-FLAG values
// set through the same flag definitions, so that they parse and validate alike.
func (f *serveFlags) checkConfig(name, rawURL string) (probe.Config, error) {
	target, err := probe.ParseTarget(rawURL)
	if err != nil {
		return probe.Config{}, err
	}
	var own checkFlags
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	own.register(fs)
	own = f.shared.clone() // the registered flags point into own: they now set the check's copy
	for _, o := range f.overrides {
		if o.check != name {
			continue
		}
		if err := fs.Set(o.flag, o.value); err != nil {
			return probe.Config{}, fmt.Errorf("invalid value %q for -%s%s: %v", o.value, checkFlagPrefix, o.flag, err)
		}
	}
	return own.config(target)
}

// runServe is `health-check serve`: flags and environment → checks → answer probes until SIGTERM or
// SIGINT, then finish the answers in flight and exit 0.
func runServe(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	opts, err := parseServeOptions(args, getenv)
	switch {
	case err == errHelp:
		writeServeHelp(stdout)
		return probe.ExitHealthy
	case err != nil:
		fmt.Fprintln(stderr, probe.UsageLine(err, "(see health-check serve -h)"))
		return probe.ExitUsage
	}
	opts.server.Log = stderr
	tuneRuntime(getenv)
	server, err := serve.New(opts.server)
	if err != nil {
		fmt.Fprintln(stderr, probe.UsageLine(err, "(see health-check serve -h)"))
		return probe.ExitUsage
	}
	// Signals first: a SIGTERM that arrives while the listener opens still drains and exits 0.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	listener, err := serve.Listen(opts.listen)
	if err != nil {
		fmt.Fprintf(stderr, "serve: %v\n", err)
		return exitServeFailed
	}
	announce(stderr, listener.Addr(), opts)

	served := make(chan error, 1)
	go func() { served <- server.Serve(listener) }()
	select {
	case <-ctx.Done():
	case err := <-served: // only when the listener fails for good
		fmt.Fprintf(stderr, "serve: %v\n", err)
		return exitServeFailed
	}
	stop() // a second signal ends the process at once
	return drain(server, served, stderr)
}

// announce logs where serve listens, for which checks, and the notes of their configuration.
func announce(stderr io.Writer, addr net.Addr, opts *serveOptions) {
	names := make([]string, len(opts.server.Checks))
	for i, c := range opts.server.Checks {
		names[i] = "/" + c.Name
	}
	fmt.Fprintf(stderr, "health-check %s serve: listening on %s for %s\n", Version, addr, strings.Join(names, ", "))
	for _, note := range opts.notes {
		fmt.Fprintln(stderr, "health-check serve: "+note)
	}
}

// drain shuts the server down once a signal came: the answers in flight finish within its DrainTime,
// and the checks' kept connections and Workload API streams close (Shutdown closes the Checkers).
func drain(server *serve.Server, served <-chan error, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), server.DrainTime())
	defer cancel()
	if err := server.Shutdown(ctx); err != nil {
		fmt.Fprintf(stderr, "health-check serve: stopped; answers still in flight after %s were cut off\n", server.DrainTime())
		return probe.ExitHealthy
	}
	<-served
	fmt.Fprintln(stderr, "health-check serve: stopped")
	return probe.ExitHealthy
}

// tuneRuntime sets what serve's runtime defaults to, unless the environment sets it.
func tuneRuntime(getenv func(string) string) {
	// One P unless GOMAXPROCS says otherwise: a probe costs serve microseconds of work between long
	// idle gaps, and with more Ps every wake-up also wakes threads that spin looking for work. Measured
	// with `go run ./bench -serve-cpu` (quiet 2-core machine): serve's CPU per probe 0.56 ms with the
	// default, 0.39 ms with one P. Probes wait on I/O, so one P serves many at once.
	if getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	// GOGC 25 unless GOGC says otherwise: serve's live heap is well under a MiB, but Go's default lets
	// the heap grow to 4 MiB of garbage between collections, and those pages stay resident. Measured
	// (bench/README.md, two mTLS checks, 10,000 probes): 6.2 MiB of anonymous memory with the
	// default, 3.2 MiB with 25; the collections it adds cost microseconds per probe.
	if getenv("GOGC") == "" {
		debug.SetGCPercent(serveGCPercent)
	}
}

// writeServeHelp prints serve -h: its flags and the shared check flags, then an example. The
// per-check forms are described once, in the header.
func writeServeHelp(w io.Writer) {
	fmt.Fprint(w, serveHelpHeader)
	writeFlags(w, newServeFlags().FlagSet, func(name string) bool { return strings.HasPrefix(name, checkFlagPrefix) })
	fmt.Fprint(w, serveHelpFooter)
}
