package healthcheck

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/health-check-proxy/health-check-proxy/probe"
)

// spiffeEndpointSocket is the SPIFFE Workload API's standard variable for its address.
const spiffeEndpointSocket = "SPIFFE_ENDPOINT_SOCKET"

// envPrefix starts the environment variable of every flag: -statusPort is HEALTH_CHECK_STATUS_PORT.
const envPrefix = "HEALTH_CHECK_"

var errHelp = errors.New("help requested")

// options are the parsed command line: the probe's config and the command's own switches.
type options struct {
	config       probe.Config
	verbose      bool
	printVersion bool
}

// repeatedFlag collects the values of a flag given more than once: -header, -spiffe-id.
type repeatedFlag []string

func (h *repeatedFlag) String() string { return strings.Join(*h, ", ") }
func (h *repeatedFlag) Set(v string) error {
	*h = append(*h, v)
	return nil
}

// flagSet declares every flag in one place; help, environment and parsing all read it.
type flagSet struct {
	*flag.FlagSet
	url, scheme, host, statusPort, path string
	checkFlags
	verbose, printVersion bool
}

// checkFlags are the flags that say how to check a target: the command's one check has them, and so
// has each check of `health-check serve`, which registers them too.
type checkFlags struct {
	method, expectStatus, expectBody, service string
	headers, spiffeIDs                        repeatedFlag
	tls                                       probe.TLSOptions
	unixSocket                                string
	timeout, retryDelay                       time.Duration
	retries                                   int
}

func newFlagSet() *flagSet {
	f := &flagSet{FlagSet: flag.NewFlagSet("health-check", flag.ContinueOnError)}
	f.SetOutput(io.Discard) // errors become one line of ours; -h is written by writeHelp
	f.StringVar(&f.url, "url", "", "target `URL` (or give it as the argument): http, https, grpc, grpcs, tcp or tls")
	f.StringVar(&f.scheme, "scheme", "http", "without a URL: the target's `scheme`")
	f.StringVar(&f.host, "host", "localhost", "without a URL: the target's `host`")
	f.StringVar(&f.statusPort, "statusPort", "", "without a URL: the target's `port`")
	f.StringVar(&f.path, "path", "", "without a URL: the target's `path`, with or without a leading /")
	f.checkFlags.register(f.FlagSet)
	f.BoolVar(&f.verbose, "v", false, "print each phase with its timing, the TLS session and the answer")
	f.BoolVar(&f.printVersion, "version", false, "print the version and exit")
	return f
}

// clone is a deep copy of f. Each check of serve starts from a copy of the shared flags and appends
// its own -check-header and -check-spiffe-id values: a slice copied by value shares its spare
// capacity, and one check's append would overwrite what another check appended there, so that check a
// would verify its server against check b's SPIFFE ID. Every slice and map is copied; a test walks
// every field, so that a field added later cannot be shared by mistake.
func (f checkFlags) clone() checkFlags {
	f.headers = slices.Clone(f.headers)
	f.spiffeIDs = slices.Clone(f.spiffeIDs)
	f.tls.SPIFFEIDs = slices.Clone(f.tls.SPIFFEIDs)
	return f
}

// register declares the check's flags on fs.
func (f *checkFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.method, "method", "GET", "HTTP `method`: GET or HEAD")
	fs.Var(&f.headers, "header", "HTTP request header or gRPC metadata `'Name: value'` (repeatable; 'Host: name' sets the Host).\n"+
		"An empty value removes a header the probe sends by default: User-Agent, Accept: */* (HTTP).\n"+
		"HTTP drops Connection, Keep-Alive, Proxy-Connection, TE and Upgrade (the connection is the probe's own;\n"+
		"-v says so) and refuses Content-Length, Transfer-Encoding and Trailer (a GET or HEAD has no body).\n"+
		"gRPC refuses those eight (HTTP/2 forbids them), content-type and grpc-*; -bin values in base64.")
	fs.StringVar(&f.expectStatus, "expect-status", probe.DefaultExpectStatus, "healthy HTTP status `codes`: list and ranges, e.g. 200,204,300-399")
	fs.StringVar(&f.expectBody, "expect-body", "", "healthy HTTP body contains this `text` (first 10 KiB)")
	fs.StringVar(&f.service, "service", "", "gRPC health `service` name (empty: the whole server)")
	fs.StringVar(&f.tls.CACert, "cacert", "", "PEM `file` of CA certificates that verify the server (default: the system's)")
	fs.StringVar(&f.tls.Cert, "cert", "", "PEM `file` of the client certificate, for mutual TLS")
	fs.StringVar(&f.tls.Key, "key", "", "PEM `file` of the client certificate's private key")
	fs.StringVar(&f.tls.ServerName, "server-name", "", "`name` sent as SNI and verified in the server's certificate (default: the URL's host)")
	fs.BoolVar(&f.tls.Insecure, "insecure", false, "do not verify the server's certificate (the failure line and -v say so)")
	fs.BoolVar(&f.tls.PostQuantum, "post-quantum", false, "offer Go's default hybrid post-quantum key exchange, X25519MLKEM768 (about 2x the CPU)")
	fs.Var(&f.spiffeIDs, "spiffe-id", "verify the server by this SPIFFE `ID` (URI SAN) instead of a DNS name; spiffe://trust.domain\naccepts any ID in it (repeatable; needs -cacert or -workload-api)")
	fs.StringVar(&f.tls.WorkloadAPI, "workload-api", "", "SPIFFE Workload API `address` (unix:///path): client SVID and trust bundle, at every run (serve keeps a stream open)\n(default: $SPIFFE_ENDPOINT_SOCKET when -spiffe-id is given without -cert)")
	fs.DurationVar(&f.tls.MinValidity, "min-validity", 0, "unhealthy when the server's certificate expires within this `duration`, e.g. 168h")
	fs.StringVar(&f.unixSocket, "unix-socket", "", "connect to this unix socket `path` instead of the URL's host and port")
	fs.DurationVar(&f.timeout, "timeout", probe.DefaultTimeout, "bound on the whole run, all attempts included")
	fs.IntVar(&f.retries, "retry", probe.DefaultRetries, "`retries` after a failed first attempt, within -timeout")
	fs.DurationVar(&f.retryDelay, "retry-delay", probe.DefaultRetryDelay, "pause between attempts")
}

// envName is the environment variable of a flag: "statusPort" → HEALTH_CHECK_STATUS_PORT,
// "expect-status" → HEALTH_CHECK_EXPECT_STATUS.
func envName(flagName string) string {
	var b strings.Builder
	b.WriteString(envPrefix)
	for i, r := range flagName {
		switch {
		case r == '-':
			b.WriteByte('_')
		case unicode.IsUpper(r) && i > 0:
			b.WriteByte('_')
			b.WriteRune(r)
		default:
			b.WriteRune(unicode.ToUpper(r))
		}
	}
	return b.String()
}

// noEnv are the flags that only make sense typed by a person, and serve's -check, which says one
// check per flag.
var noEnv = map[string]bool{"version": true, "check": true}

// parseOptions reads the command line, then the environment for every flag the command line left
// unset, and builds the probe's config. It does no I/O beyond getenv.
func parseOptions(args []string, getenv func(string) string) (*options, error) {
	f := newFlagSet()
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, err
	}
	set := map[string]bool{}
	f.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	onCommandLine := maps.Clone(set)
	ignored := f.targetVariablesIgnored(set)
	urlIgnored := ignored["url"] && !set["url"] && f.NArg() == 0 && getenv(envName("url")) != ""
	if err := setFromEnvironment(f.FlagSet, set, ignored, getenv); err != nil {
		return nil, err
	}
	// SPIFFE_ENDPOINT_SOCKET is the Workload API's standard variable, set for every process of a
	// workload: it fills in -workload-api only where the probe asks for SPIFFE and no other client
	// certificate, so that it never changes a probe that does not.
	if socket := getenv(spiffeEndpointSocket); socket != "" && !set["workload-api"] && set["spiffe-id"] && !set["cert"] {
		f.tls.WorkloadAPI = socket
	}
	opts := &options{verbose: f.verbose, printVersion: f.printVersion}
	if opts.printVersion {
		return opts, nil
	}
	target, err := f.target(set, onCommandLine, urlIgnored)
	if err != nil {
		return nil, err
	}
	if opts.config, err = f.checkFlags.config(target); err != nil {
		return nil, err
	}
	return opts, nil
}

// setFromEnvironment sets every flag of fs that set (the flags given on the command line) does not
// hold, nor ignore, from its environment variable when that is not empty, and adds it to set.
// HEALTH_CHECK_HEADER holds one header a line.
func setFromEnvironment(fs *flag.FlagSet, set, ignore map[string]bool, getenv func(string) string) error {
	var envErr error
	fs.VisitAll(func(fl *flag.Flag) {
		name := envName(fl.Name)
		value := getenv(name)
		if set[fl.Name] || noEnv[fl.Name] || ignore[fl.Name] || value == "" || envErr != nil {
			return
		}
		values := []string{value}
		if fl.Name == "header" || fl.Name == "spiffe-id" {
			values = strings.Split(strings.TrimRight(value, "\n"), "\n") // one a line
		}
		for _, v := range values {
			if err := fs.Set(fl.Name, v); err != nil {
				envErr = fmt.Errorf("invalid value %q for %s: %v", value, name, err)
				return
			}
		}
		set[fl.Name] = true
	})
	return envErr
}

// config is the probe's configuration of a check of target with these flags, checked before any
// network I/O.
func (f *checkFlags) config(target *url.URL) (probe.Config, error) {
	expect, err := probe.ParseStatusSet(f.expectStatus)
	if err != nil {
		return probe.Config{}, err
	}
	f.tls.SPIFFEIDs = f.spiffeIDs
	config := probe.Config{
		Target:       target,
		UnixSocket:   f.unixSocket,
		Method:       strings.ToUpper(f.method),
		ExpectStatus: expect,
		ExpectBody:   f.expectBody,
		GRPCService:  f.service,
		TLS:          f.tls,
		Timeout:      f.timeout,
		Retries:      f.retries,
		RetryDelay:   f.retryDelay,
	}
	if config.Host, config.Header, err = parseHeaders(f.headers); err != nil {
		return probe.Config{}, err
	}
	if err := config.Validate(); err != nil {
		return probe.Config{}, err
	}
	return config, nil
}

// parseHeaders parses -header lines: a Host header sets the host, the others are request headers.
func parseHeaders(lines []string) (host string, header map[string][]string, err error) {
	for _, line := range lines {
		name, value, err := probe.ParseHeader(line)
		if err != nil {
			return "", nil, err
		}
		if name == "Host" {
			host = value
			continue
		}
		if header == nil {
			header = map[string][]string{}
		}
		header[name] = append(header[name], value)
	}
	return host, header, nil
}

// legacyFlags build the target when no URL is given, as in the original tool.
var legacyFlags = []string{"scheme", "host", "statusPort", "path"}

// targetVariablesIgnored are the target variables that the command line's own form of the target makes
// the probe ignore (docs/behaviour.md): a URL on the command line (the argument or -url) ignores them
// all; the original tool's flags on the command line ignore HEALTH_CHECK_URL and take each part they
// leave out from its own variable, so that a shared env: block can hold HEALTH_CHECK_STATUS_PORT while
// each probe gives its own -path, as the original tool's users write them.
func (f *flagSet) targetVariablesIgnored(set map[string]bool) map[string]bool {
	if f.NArg() > 0 || set["url"] {
		ignored := map[string]bool{"url": true}
		for _, name := range legacyFlags {
			ignored[name] = true
		}
		return ignored
	}
	for _, name := range legacyFlags {
		if set[name] {
			return map[string]bool{"url": true}
		}
	}
	return nil
}

// target is the URL to check: the URL, or the one the original tool's flags build. set holds the
// flags given on the command line or by a variable, onCommandLine those of the command line only;
// urlIgnored says that the original flags there made the probe ignore a HEALTH_CHECK_URL.
func (f *flagSet) target(set, onCommandLine map[string]bool, urlIgnored bool) (*url.URL, error) {
	rawURL := f.url
	switch f.NArg() {
	case 0:
	case 1:
		if set["url"] && f.url != f.Arg(0) {
			return nil, fmt.Errorf("two targets: -url %s and %s", probe.RedactURL(f.url), probe.RedactURL(f.Arg(0)))
		}
		rawURL = f.Arg(0)
	default:
		return nil, fmt.Errorf("one target URL at most, got %d arguments", f.NArg())
	}
	if rawURL == "" && f.statusPort == "" && urlIgnored {
		// Said in full: a probe that worked with the variable alone stops working when -path is added.
		given := legacyFlags[slices.IndexFunc(legacyFlags, func(name string) bool { return onCommandLine[name] })]
		return nil, fmt.Errorf("no port: -%s on the command line builds the target and ignores %s; give -statusPort or %s",
			given, envName("url"), envName("statusPort"))
	}
	if rawURL == "" {
		return probe.LegacyTarget(f.scheme, f.host, f.statusPort, f.path)
	}
	for _, name := range legacyFlags {
		switch {
		case onCommandLine[name]:
			return nil, fmt.Errorf("-%s builds a URL: give either it or a URL, not both", name)
		case set[name]: // neither form on the command line, and both in the environment
			return nil, fmt.Errorf("%s builds a URL and %s is one: set either, not both", envName(name), envName("url"))
		}
	}
	return probe.ParseTarget(rawURL)
}
