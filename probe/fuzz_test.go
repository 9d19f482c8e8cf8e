package probe

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"
)

// The fuzz targets below run their seeds (f.Add and testdata/fuzz/<name>/) as ordinary tests with
// `go test`; `go test -run '^$' -fuzz '^FuzzName$' -fuzztime 10s ./probe` searches further.

func FuzzParseTarget(f *testing.F) {
	for _, seed := range []string{
		"http://localhost:8080/healthz", "https://[::1]:8443/ready?full=1#x", "grpc://localhost:9090",
		"grpcs://api.internal/", "tcp://db:5432", "tls://db:5432", "HTTP://LOCALHOST", "http://host:/",
		"http://user@host/", "tcp://db", "http://[fe80::1%25eth0]:80/", "http://host:0", "//host:1",
		"http://h\x00st/", "http://%41:80/", "grpc://h:1/svc", "tls://h:99999", "http://[::1]x/",
		"http://u:hunter2@host/h?token=SECRET", "http:user:pw@host", "http://[::%25\xc0]",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := ParseTarget(raw)
		if err != nil {
			if !isUsage(err) {
				t.Fatalf("ParseTarget(%q): error %v is not a usage error", raw, err)
			}
			if u != nil {
				t.Fatalf("ParseTarget(%q): an error and a URL", raw)
			}
			return
		}
		checkTarget(t, raw, u.Scheme, u.Hostname(), u.Port(), u.User != nil)
		// The checkers dial and request u.String(): it must name the same endpoint.
		again, err := ParseTarget(u.String())
		if err != nil {
			t.Fatalf("ParseTarget(%q) = %q, which does not parse again: %v", raw, u.String(), err)
		}
		if again.String() != u.String() || again.Host != u.Host || again.Path != u.Path || again.RawQuery != u.RawQuery {
			t.Fatalf("ParseTarget(%q) = %q, which parses again as %q (host %q, path %q)", raw, u.String(), again.String(), again.Host, again.Path)
		}
	})
}

func checkTarget(t *testing.T, raw, scheme, host, port string, hasUser bool) {
	t.Helper()
	if lookupScheme(scheme) == nil {
		t.Fatalf("ParseTarget(%q): unknown scheme %q accepted", raw, scheme)
	}
	if host == "" {
		t.Fatalf("ParseTarget(%q): no host, accepted", raw)
	}
	if hasUser {
		t.Fatalf("ParseTarget(%q): user information accepted", raw)
	}
	if (scheme == "tcp" || scheme == "tls") && port == "" {
		t.Fatalf("ParseTarget(%q): %s:// without a port accepted", raw, scheme)
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			t.Fatalf("ParseTarget(%q): port %q accepted", raw, port)
		}
	}
}

func FuzzParseStatusSet(f *testing.F) {
	for _, seed := range []string{
		"200-399", "200", "200,204,300-399", " 200 , 418 ", "100-599", "", "2xx", "99", "600", "0200",
		"+200", "200,", "399-200", "200-", "200-300-400", "200 - 204", "-200", "２００", "200,,204",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		set, err := ParseStatusSet(text)
		if err != nil {
			if !isUsage(err) {
				t.Fatalf("ParseStatusSet(%q): error %v is not a usage error", text, err)
			}
			return
		}
		if len(set) == 0 {
			t.Fatalf("ParseStatusSet(%q): accepted an empty set", text)
		}
		if set.Contains(99) || set.Contains(600) || set.Contains(0) || set.Contains(-1) {
			t.Fatalf("ParseStatusSet(%q) = %s holds a code outside 100-599", text, set)
		}
		again, err := ParseStatusSet(set.String())
		if err != nil {
			t.Fatalf("ParseStatusSet(%q).String() = %q does not parse again: %v", text, set.String(), err)
		}
		if !slices.Equal(set, again) || again.String() != set.String() {
			t.Fatalf("ParseStatusSet(%q) = %s parses again as %s", text, set, again)
		}
		for code := 100; code <= 599; code++ {
			if set.Contains(code) != again.Contains(code) {
				t.Fatalf("ParseStatusSet(%q): %d is in one and not in its re-parse", text, code)
			}
		}
	})
}

func FuzzParseHeader(f *testing.F) {
	for _, seed := range []string{
		"Authorization: Bearer x", "x-probe:yes", "Host: app.internal", "X-Empty:", "X-Time: 12:30",
		"no colon", ": value", "Bad Name: v", "X: a\r\nInjected: b", "X: a\x00b", "X: a\x7fb", "X: a\x1bb",
		"Naïve: v", "X(y): v", "X: \tv\t", "Host: a b", "Host: a/b",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		name, value, err := ParseHeader(line)
		if err != nil {
			if !isUsage(err) {
				t.Fatalf("ParseHeader(%q): error %v is not a usage error", line, err)
			}
			return
		}
		// Accepted: net/http sends it as it is, instead of failing the request at run time (which
		// would report a configuration mistake as an unreachable endpoint).
		if !httpguts.ValidHeaderFieldName(name) {
			t.Fatalf("ParseHeader(%q): name %q is not an HTTP token", line, name)
		}
		if name != http.CanonicalHeaderKey(name) {
			t.Fatalf("ParseHeader(%q): name %q is not canonical", line, name)
		}
		if !httpguts.ValidHeaderFieldValue(value) {
			t.Fatalf("ParseHeader(%q): value %q is not a valid header value", line, value)
		}
		if value != strings.TrimSpace(value) {
			t.Fatalf("ParseHeader(%q): value %q is not trimmed", line, value)
		}
		if name == "Host" && !httpguts.ValidHostHeader(value) {
			t.Fatalf("ParseHeader(%q): %q is not a valid Host", line, value)
		}
	})
}
