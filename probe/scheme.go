package probe

import (
	"net"
	"net/url"
	"strings"

	"github.com/health-check-proxy/health-check-proxy/probe/internal/grpchealth"
	"github.com/health-check-proxy/health-check-proxy/probe/internal/h2"
)

// schemes are the target schemes, in the order messages list them: what each one checks, whether it
// speaks TLS, its default port and its checker. A new scheme is one more row. A run looks its row up
// once (runChecks) and hands it to the checker; the checks of a target and a config below are the
// only other readers.
var schemes = []scheme{
	{name: "http", kind: kindHTTP, defaultPort: "80", check: checkHTTP},
	{name: "https", kind: kindHTTP, tls: true, defaultPort: "443", check: checkHTTP},
	{name: "grpc", kind: kindGRPC, defaultPort: "80", check: checkGRPC},
	{name: "grpcs", kind: kindGRPC, tls: true, defaultPort: "443", check: checkGRPC},
	{name: "tcp", kind: kindConnection, check: checkTCP},
	{name: "tls", kind: kindConnection, tls: true, check: checkTLS},
}

// lookupScheme returns the row of a (lowercase) scheme, or nil for one the probe does not know.
func lookupScheme(name string) *scheme {
	for i := range schemes {
		if schemes[i].name == name {
			return &schemes[i]
		}
	}
	return nil
}

// schemeList names the known schemes for a message: "http, https, grpc, grpcs, tcp, tls".
func schemeList() string {
	names := make([]string, len(schemes))
	for i, s := range schemes {
		names[i] = s.name
	}
	return strings.Join(names, ", ")
}

// ParseTarget parses and checks a target URL: a known scheme, a host, and for tcp:// and tls:// a
// port and nothing after it.
func ParseTarget(raw string) (*url.URL, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, usageErrorf("empty URL")
	}
	// Only a message quotes the URL, redacted: never a password or a token, and no work when it is good.
	bad := func(format string, args ...any) error {
		return usageErrorf("bad URL %q: "+format, append([]any{RedactURL(raw)}, args...)...)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, bad("%v", unwrapURLError(err))
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Scheme == "" {
		return nil, bad("no scheme (want one of %s)", schemeList())
	}
	s := lookupScheme(u.Scheme)
	if s == nil {
		return nil, bad("unknown scheme %q (want one of %s)", u.Scheme, schemeList())
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return nil, bad("no host")
	}
	if u.User != nil {
		return nil, bad("user information is not supported (use -header 'Authorization: ...')")
	}
	if port := u.Port(); port != "" {
		if _, err := parsePort(port); err != nil {
			return nil, bad("%v", err)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return nil, bad("empty port")
	}
	if s.defaultPort == "" && u.Port() == "" {
		return nil, bad("%s:// needs a port", u.Scheme)
	}
	// The checkers dial and request u.String(): a host that does not parse back the same (an IPv6
	// zone with bytes that are not UTF-8, written back as an escape the parser refuses) names no
	// endpoint the probe could reach.
	if again, err := url.Parse(u.String()); err != nil || again.Host != u.Host {
		return nil, bad("the host cannot be written back as a URL (bytes that are not UTF-8?)")
	}
	switch s.kind {
	case kindConnection:
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return nil, bad("%s:// takes only host and port", u.Scheme)
		}
	case kindGRPC:
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return nil, bad("%s:// takes only host and port (the service is -service)", u.Scheme)
		}
	}
	return u, nil
}

// LegacyTarget builds the target from the original tool's flags: -scheme, -host, -statusPort and
// -path (with or without a leading slash).
func LegacyTarget(scheme, host, port, path string) (*url.URL, error) {
	scheme = strings.ToLower(scheme)
	s := lookupScheme(scheme)
	if s == nil {
		return nil, usageErrorf("bad -scheme %q (want one of %s)", scheme, schemeList())
	}
	if host == "" {
		return nil, usageErrorf("empty -host")
	}
	if strings.ContainsAny(host, "/?#@ ") {
		if at := strings.LastIndex(host, "@"); at >= 0 {
			host = "…" + host[at:] // user information, perhaps a password
		}
		return nil, usageErrorf("bad -host %q", host)
	}
	if port == "" {
		return nil, usageErrorf("no target: give a URL, or -statusPort (with -host, -path, -scheme)")
	}
	if _, err := parsePort(port); err != nil {
		return nil, usageErrorf("bad -statusPort: %v", err)
	}
	raw := scheme + "://" + net.JoinHostPort(strings.Trim(host, "[]"), port)
	if path != "" && s.kind == kindHTTP {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		raw += path
	} else if path != "" {
		return nil, usageErrorf("-path applies to http and https, not %s", scheme)
	}
	return ParseTarget(raw)
}

// Validate checks that the options fit the target's scheme and each other, before any I/O.
func (c *Config) Validate() error {
	if c.Target == nil {
		return usageErrorf("no target")
	}
	scheme := c.Target.Scheme
	s := lookupScheme(scheme)
	if s == nil {
		return usageErrorf("unknown scheme %q (want one of %s)", scheme, schemeList())
	}
	if c.Timeout <= 0 {
		return usageErrorf("-timeout must be positive")
	}
	if c.Timeout > MaxTimeout {
		return usageErrorf("-timeout %s is longer than the maximum, %s", c.Timeout, MaxTimeout)
	}
	if c.Retries < 0 {
		return usageErrorf("-retry must be 0 or more")
	}
	if c.RetryDelay < 0 {
		return usageErrorf("-retry-delay must be 0 or more")
	}
	if s.kind != kindHTTP {
		switch {
		case c.Method != "" && c.Method != methodGet:
			return usageErrorf("-method applies to http and https, not %s", scheme)
		case s.kind == kindConnection && (len(c.Header) > 0 || c.Host != ""):
			return usageErrorf("-header applies to http, https, grpc and grpcs, not %s", scheme)
		case c.ExpectBody != "":
			return usageErrorf("-expect-body applies to http and https, not %s", scheme)
		case c.ExpectStatus != nil && c.ExpectStatus.String() != DefaultExpectStatus:
			return usageErrorf("-expect-status applies to http and https, not %s", scheme)
		}
	}
	if c.Method != "" && c.Method != methodGet && c.Method != methodHead {
		return usageErrorf("bad -method %q: want GET or HEAD", c.Method)
	}
	if s.kind == kindGRPC {
		if err := validateMetadata(c.Header); err != nil {
			return err
		}
	}
	if c.GRPCService != "" && s.kind != kindGRPC {
		return usageErrorf("-service applies to grpc and grpcs, not %s", scheme)
	}
	// The request goes out whole, before the server could grant more than HTTP/2's initial window.
	// (Metadata goes in the header block, which has its own bound: the server's, checked by the server.)
	if n := len(grpchealth.EncodeRequest(c.GRPCService)); n > h2.InitialSendWindow {
		return usageErrorf("-service of %d bytes is too long (the request is %d bytes, HTTP/2 allows %d)", len(c.GRPCService), n, h2.InitialSendWindow)
	}
	if !s.tls {
		if flag := c.TLS.firstSet(); flag != "" {
			return usageErrorf("%s needs a TLS scheme (https, grpcs or tls), not %s", flag, scheme)
		}
	}
	return c.TLS.validate()
}
