package probe

import (
	"fmt"
	"net/textproto"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/health-check-proxy/health-check-proxy/internal/httpsyntax"
)

// Defaults of the health-check command, kept here so that the command, its help and the tests agree.
const (
	// DefaultTimeout bounds a whole run. The kubelet's default timeoutSeconds is 1: a run that ends in
	// 800 ms leaves time to start the process and print the failure line before that second is up.
	DefaultTimeout = 800 * time.Millisecond
	// DefaultRetries is the original tool's -retry default: one retry after the first attempt.
	DefaultRetries = 1
	// DefaultRetryDelay is short: probes run every few seconds, and a retry is for a blip.
	DefaultRetryDelay = 100 * time.Millisecond
	// DefaultExpectStatus is the kubelet's rule for httpGet probes.
	DefaultExpectStatus = "200-399"
	// MaxTimeout bounds -timeout. A probe that may take a day is a mistake, not a probe; and a bound
	// keeps every deadline the run derives from it (the command's watchdog adds a margin) far from
	// time.Duration's overflow at about 292 years.
	MaxTimeout = 24 * time.Hour
)

// Config is one check: what to check, how, and within which time.
type Config struct {
	// Target is the endpoint; its scheme picks the checker (see schemes, in scheme.go).
	Target *url.URL
	// UnixSocket, when set, is dialled instead of the target's host and port.
	UnixSocket string

	// HTTP only, but for Header and Host, which gRPC sends as metadata and :authority.
	Method       string              // GET or HEAD
	Header       map[string][]string // extra request headers, by canonical name
	Host         string              // Host header (gRPC: :authority); empty means the target's host
	ExpectStatus StatusSet
	ExpectBody   string

	// GRPCService is the service name sent in grpc.health.v1.HealthCheckRequest ("" is the server).
	GRPCService string

	TLS TLSOptions

	Timeout    time.Duration // the whole run, all attempts included
	Retries    int           // attempts after the first
	RetryDelay time.Duration
	UserAgent  string
}

// The HTTP methods a check may use: it reads, and never changes, what it checks.
const (
	methodGet  = "GET"
	methodHead = "HEAD"
)

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return n, nil
}

// unwrapURLError drops url.Error's repetition of the whole URL.
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// StatusSet is a set of HTTP status codes, written as a list of codes and ranges: "200,204,300-399".
type StatusSet []statusRange

type statusRange struct{ lo, hi int }

// ParseStatusSet parses "200,204,300-399". Codes are 100 to 599.
func ParseStatusSet(s string) (StatusSet, error) {
	if strings.TrimSpace(s) == "" {
		return nil, usageErrorf("empty -expect-status")
	}
	var set StatusSet
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		loText, hiText, isRange := strings.Cut(part, "-")
		lo, err := parseStatus(loText)
		if err != nil {
			return nil, usageErrorf("bad -expect-status %q: %v", s, err)
		}
		hi := lo
		if isRange {
			if hi, err = parseStatus(hiText); err != nil {
				return nil, usageErrorf("bad -expect-status %q: %v", s, err)
			}
			if hi < lo {
				return nil, usageErrorf("bad -expect-status %q: range %d-%d is backwards", s, lo, hi)
			}
		}
		set = append(set, statusRange{lo, hi})
	}
	return set, nil
}

func parseStatus(s string) (int, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.Atoi(s)
	if err != nil || len(s) != 3 || n < 100 || n > 599 {
		return 0, fmt.Errorf("%q is not a status code from 100 to 599", s)
	}
	return n, nil
}

// Contains reports whether code is in the set.
func (set StatusSet) Contains(code int) bool {
	for _, r := range set {
		if code >= r.lo && code <= r.hi {
			return true
		}
	}
	return false
}

// String writes the set back in its flag syntax.
func (set StatusSet) String() string {
	parts := make([]string, len(set))
	for i, r := range set {
		if r.lo == r.hi {
			parts[i] = strconv.Itoa(r.lo)
		} else {
			parts[i] = fmt.Sprintf("%d-%d", r.lo, r.hi)
		}
	}
	return strings.Join(parts, ",")
}

// ParseHeader parses one "Name: value" header line. It accepts only what net/http sends as it is,
// so that a bad header is a usage error now and not a failed request at run time.
func ParseHeader(line string) (name, value string, err error) {
	name, value, ok := strings.Cut(line, ":")
	name = strings.TrimSpace(name)
	if !ok || !httpsyntax.IsToken(name) {
		return "", "", usageErrorf("bad -header %q: want 'Name: value'", line)
	}
	value = strings.TrimSpace(value)
	if !httpsyntax.IsFieldValue(value) {
		return "", "", usageErrorf("bad -header %q: control characters in value", line)
	}
	name = textproto.CanonicalMIMEHeaderKey(name)
	if framingHeaders[name] {
		return "", "", usageErrorf("bad -header %q: %s would frame a body that the probe's GET or HEAD does not have", line, name)
	}
	if name == "Host" && strings.ContainsFunc(value, func(r rune) bool { return !isHostChar(r) }) {
		return "", "", usageErrorf("bad -header %q: want 'Host: host[:port]' (IDNs as punycode)", line)
	}
	return name, value, nil
}

// framingHeaders frame a request's body. The probe sends a GET or HEAD without one: a -header of these
// could only make the server wait for a body that never comes, or read our next request as one. They
// are refused (exit 64) for every target, since a request sent with them is corrupt.
var framingHeaders = map[string]bool{"Content-Length": true, "Trailer": true, "Transfer-Encoding": true}

// hopByHopHeaders are about the connection, not the request (RFC 9110 section 7.6.1), and the
// connection is the probe's own: it opens it, says "Connection: close" on it (serve keeps it alive),
// and never upgrades it. A kubelet's httpGet probe sends what its httpHeaders say, these included,
// so that a probe moved from httpGet to exec keeps working, an HTTP check drops them, with a -v line
// (HopByHopHeaders), instead of refusing them. On gRPC they are refused: HTTP/2 forbids them in a
// request (RFC 9113 section 8.2.2), and no httpGet probe's headers are copied to a gRPC check.
var hopByHopHeaders = map[string]bool{"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true, "Upgrade": true}

// defaultHeaders are the HTTP headers the probe sends unless a -header names them: a -header of that
// name replaces the default, and an empty value removes it, as the kubelet does (curl's -H 'Name:'
// too). A User-Agent on gRPC is the same. Any other header's empty value is sent, empty, as the
// kubelet sends it.
var defaultHeaders = map[string]bool{"User-Agent": true, "Accept": true}

// acceptAny is the default Accept, the kubelet's and curl's: a framework that negotiates the content
// type answers a probe without an Accept, or with one it cannot meet, with 406.
const acceptAny = "*/*"

// HopByHopHeaders are the names of c's headers that an HTTP check does not send, sorted: the
// connection's own, which the probe writes itself (see hopByHopHeaders). A gRPC check refuses them.
func (c *Config) HopByHopHeaders() []string {
	var names []string
	for name := range c.Header {
		if hopByHopHeaders[name] {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// isHostChar reports whether r may be in a Host header: a host name, an IP literal and a port.
func isHostChar(r rune) bool {
	return r < 0x80 && (r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' ||
		strings.ContainsRune("!$%&'()*+,-.:;=[]_~", r))
}
