package probe

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
)

// discardLog quiets the servers' logs of failed handshakes, which these tests cause on purpose.
var discardLog = log.New(io.Discard, "", 0)

func TestParseSPIFFEID(t *testing.T) {
	valid := map[string]spiffeID{
		"spiffe://example.org":                      {trustDomain: "example.org"},
		"spiffe://example.org/ns/default/sa/api":    {trustDomain: "example.org", path: "/ns/default/sa/api"},
		"spiffe://cluster.local/ns/a-b/sa/c_d.e":    {trustDomain: "cluster.local", path: "/ns/a-b/sa/c_d.e"},
		"spiffe://td_1-2.x/UPPER/case/in/path/ok-9": {trustDomain: "td_1-2.x", path: "/UPPER/case/in/path/ok-9"},
	}
	for raw, want := range valid {
		got, err := parseSPIFFEID(raw)
		require.NoError(t, err, raw)
		assert.Equal(t, want, got)
		assert.Equal(t, raw, got.String())
	}
	invalid := map[string]string{
		"":                               "not a SPIFFE ID",
		"https://example.org/x":          "not a SPIFFE ID",
		"SPIFFE://example.org/x":         "not a SPIFFE ID",
		"spiffe://":                      "no trust domain",
		"spiffe:///path":                 "no trust domain",
		"spiffe://Example.org/x":         "lowercase",
		"spiffe://example.org:8443/x":    "no port",
		"spiffe://user@example.org/x":    "no user information",
		"spiffe://example.org/x?q=1":     "no query or fragment",
		"spiffe://example.org/x#frag":    "no query or fragment",
		"spiffe://example.org/":          "empty path segment",
		"spiffe://example.org/a//b":      "empty path segment",
		"spiffe://example.org/a/../b":    `segment ".."`,
		"spiffe://example.org/./b":       `segment "."`,
		"spiffe://example.org/a%20b":     `'%' is not allowed in a path`,
		"spiffe://exa mple.org/x":        `' ' is not allowed in a trust domain`,
		"spiffe://example.org/caf\u00e9": `'é' is not allowed in a path`,
	}
	for raw, want := range invalid {
		_, err := parseSPIFFEID(raw)
		if assert.Error(t, err, raw) {
			assert.Contains(t, err.Error(), want, raw)
		}
	}
}

// spiffeFixture is a SPIFFE trust domain for a test: its CA, written to a file, and a client
// certificate it issued.
type spiffeFixture struct {
	pki *testutil.PKI
}

func newSPIFFEFixture(t *testing.T) spiffeFixture {
	return spiffeFixture{pki: newPKI(t, testutil.ECDSAP256)}
}

// svid issues an X.509-SVID for ids from the fixture's CA.
func (f spiffeFixture) svid(t *testing.T, validFor time.Duration, ids ...string) *testutil.Leaf {
	t.Helper()
	leaf, err := f.pki.CA.SVID(ids, validFor)
	require.NoError(t, err)
	return leaf
}

// serverOptions is the TLS side of the probe against the fixture's servers: the fixture's CA and a
// client certificate, and ids to verify.
func (f spiffeFixture) options(ids ...string) TLSOptions {
	return TLSOptions{CACert: f.pki.CAFile, Cert: f.pki.ClientCert, Key: f.pki.ClientKey, SPIFFEIDs: ids}
}

// startTLSTarget serves a healthy endpoint of scheme (https, grpcs or tls) with serverCert, requiring
// a client certificate of the fixture's CA, and returns its URL on "localhost" (so that SNI is sent)
// and a function that says which SNI the last handshake carried.
func (f spiffeFixture) startTLSTarget(t *testing.T, scheme string, serverCert *testutil.Leaf) (target string, lastSNI func() string) {
	t.Helper()
	var mu sync.Mutex
	sni := ""
	config := f.pki.MTLSConfig(serverCert)
	config.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		mu.Lock()
		sni = hello.ServerName
		mu.Unlock()
		return nil, nil
	}
	lastSNI = func() string {
		mu.Lock()
		defer mu.Unlock()
		return sni
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	_, port, _ := net.SplitHostPort(lis.Addr().String())
	switch scheme {
	case "grpcs":
		testutil.StartGRPC(t, lis, testutil.GRPCOptions{TLS: config})
	default:
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		srv.Listener.Close()
		srv.Listener = lis
		srv.TLS = config
		srv.Config.ErrorLog = discardLog
		srv.StartTLS()
		t.Cleanup(srv.Close)
	}
	return scheme + "://localhost:" + port, lastSNI
}

// TestSPIFFEID: -spiffe-id verifies a server's X.509-SVID — chained to the CA bundle, its one URI SAN
// one of the IDs or in one of the trust domains — instead of a DNS name, on https, grpcs and tls.
func TestSPIFFEID(t *testing.T) {
	f := newSPIFFEFixture(t)
	const id = "spiffe://example.org/ns/prod/sa/api"
	good := f.svid(t, time.Hour, id)
	untrusted, err := f.pki.OtherCA.SVID([]string{id}, time.Hour)
	require.NoError(t, err)
	tests := []struct {
		name   string
		server *testutil.Leaf
		ids    []string
		want   Result
		inLine []string
	}{
		{name: "the exact ID", server: good, ids: []string{id}, want: Healthy},
		{name: "one of several IDs", server: good, ids: []string{"spiffe://example.org/other", id}, want: Healthy},
		{name: "the trust domain", server: good, ids: []string{"spiffe://example.org"}, want: Healthy},
		{name: "another ID", server: good, ids: []string{"spiffe://example.org/ns/prod/sa/web"}, want: Unreachable,
			inLine: []string{"the server's SPIFFE ID is " + id + ", want spiffe://example.org/ns/prod/sa/web"}},
		{name: "another trust domain", server: good, ids: []string{"spiffe://example.com", "spiffe://example.com/x"}, want: Unreachable,
			inLine: []string{"the server's SPIFFE ID is " + id + ", want any ID in spiffe://example.com or spiffe://example.com/x"}},
		{name: "a path prefix is not a trust domain", server: good, ids: []string{"spiffe://example.org/ns/prod"}, want: Unreachable,
			inLine: []string{"want spiffe://example.org/ns/prod"}},
		{name: "an SVID of another CA", server: untrusted, ids: []string{id}, want: Unreachable,
			inLine: []string{"SPIFFE ID " + id, "certificate signed by unknown authority"}},
		{name: "several URI SANs", server: f.svid(t, time.Hour, id, "spiffe://example.org/also"), ids: []string{id}, want: Unreachable,
			inLine: []string{"2 URI SANs, and an X.509-SVID has exactly one"}},
		{name: "no URI SAN", server: f.pki.Server, ids: []string{"spiffe://example.org"}, want: Unreachable,
			inLine: []string{"no SPIFFE ID (no URI SAN)"}},
		{name: "a URI SAN that is no SPIFFE ID", server: f.svid(t, time.Hour, "https://example.org/api"), ids: []string{"spiffe://example.org"}, want: Unreachable,
			inLine: []string{`URI SAN "https://example.org/api" is not a SPIFFE ID`}},
	}
	for _, scheme := range []string{"https", "grpcs", "tls"} {
		for _, tt := range tests {
			t.Run(scheme+"/"+tt.name, func(t *testing.T) {
				target, _ := f.startTLSTarget(t, scheme, tt.server)
				c := testConfig(t, target)
				c.TLS = f.options(tt.ids...)
				report := run(c)
				assert.Equal(t, tt.want, report.Result, report.Line())
				for _, s := range tt.inLine {
					assert.Contains(t, report.Line(), s)
				}
			})
		}
	}

	t.Run("without -spiffe-id an SVID fails name verification", func(t *testing.T) {
		target, _ := f.startTLSTarget(t, "https", good)
		c := testConfig(t, target)
		c.TLS = f.options()
		assert.Equal(t, Unreachable, run(c).Result)
	})
	t.Run("SNI follows the URL, or -server-name", func(t *testing.T) {
		for _, scheme := range []string{"https", "grpcs", "tls"} {
			target, lastSNI := f.startTLSTarget(t, scheme, good)
			c := testConfig(t, target)
			c.TLS = f.options(id)
			require.Equal(t, Healthy, run(c).Result)
			assert.Equal(t, "localhost", lastSNI(), scheme)
			c.TLS.ServerName = "api.prod.svc"
			require.Equal(t, Healthy, run(c).Result, "-server-name is not verified with -spiffe-id")
			assert.Equal(t, "api.prod.svc", lastSNI(), scheme)
		}
	})
}

func TestSPIFFEIDUsageErrors(t *testing.T) {
	f := newSPIFFEFixture(t)
	tests := []struct {
		name      string
		target    string
		configure func(*TLSOptions)
		want      string
	}{
		{name: "a bad ID", target: "https://localhost:1", configure: func(o *TLSOptions) { o.SPIFFEIDs = []string{"spiffe://example.org/a?b"} },
			want: `bad -spiffe-id "spiffe://example.org/a?b": a SPIFFE ID has no query or fragment`},
		{name: "an HTTPS URL as ID", target: "https://localhost:1", configure: func(o *TLSOptions) { o.SPIFFEIDs = []string{"https://example.org"} },
			want: `bad -spiffe-id "https://example.org": not a SPIFFE ID`},
		{name: "no bundle", target: "https://localhost:1", configure: func(o *TLSOptions) { o.CACert = ""; o.SPIFFEIDs = []string{"spiffe://example.org"} },
			want: "-spiffe-id needs the trust bundle that verifies the server: -cacert or -workload-api"},
		{name: "with -insecure", target: "https://localhost:1", configure: func(o *TLSOptions) { o.Insecure = true; o.SPIFFEIDs = []string{"spiffe://example.org"} },
			want: "-spiffe-id verifies the server, -insecure does not"},
		{name: "a plain scheme", target: "grpc://localhost:1", configure: func(o *TLSOptions) { *o = TLSOptions{SPIFFEIDs: []string{"spiffe://example.org"}} },
			want: "-spiffe-id needs a TLS scheme"},
		{name: "a negative -min-validity", target: "tls://localhost:1", configure: func(o *TLSOptions) { o.MinValidity = -time.Hour },
			want: "-min-validity must be 0 or more"},
		{name: "-min-validity on tcp", target: "tcp://localhost:1", configure: func(o *TLSOptions) { *o = TLSOptions{MinValidity: time.Hour} },
			want: "-min-validity needs a TLS scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(t, tt.target)
			c.TLS = f.options()
			tt.configure(&c.TLS)
			report := run(c)
			assert.Equal(t, Usage, report.Result, report.Line())
			assert.Contains(t, report.Line(), tt.want)
			assert.Equal(t, 0, report.Attempts)
		})
	}
}

// TestMinValidity: a server certificate that expires within -min-validity is unhealthy, and the line
// names it (its subject, or its SPIFFE ID) and its expiry; -v gives the remaining validity of the
// server's certificate and of our own.
func TestMinValidity(t *testing.T) {
	f := newSPIFFEFixture(t)
	const id = "spiffe://example.org/api"
	svid := f.svid(t, 6*time.Hour, id)
	expiry := func(leaf *testutil.Leaf) string { return leaf.Cert.NotAfter.UTC().Format(time.RFC3339) }
	for _, scheme := range []string{"https", "grpcs", "tls"} {
		t.Run(scheme, func(t *testing.T) {
			target, _ := f.startTLSTarget(t, scheme, f.pki.Server) // valid for 12 hours
			c := testConfig(t, target)
			c.TLS = f.options()
			c.TLS.MinValidity = 11 * time.Hour
			assert.Equal(t, Healthy, run(c).Result)

			c.TLS.MinValidity = 13 * time.Hour
			report := run(c)
			assert.Equal(t, Unhealthy, report.Result, report.Line())
			assert.Equal(t, ExitUnhealthy, report.Result.ExitCode())
			assert.Contains(t, report.Line(), `the server's certificate "CN=health-check test server" expires `+expiry(f.pki.Server)+", in 1")
			assert.Contains(t, report.Line(), "sooner than -min-validity 13h0m0s")

			svidTarget, _ := f.startTLSTarget(t, scheme, svid)
			c = testConfig(t, svidTarget)
			c.TLS = f.options(id)
			c.TLS.MinValidity = 7 * 24 * time.Hour
			report = run(c)
			assert.Equal(t, Unhealthy, report.Result, report.Line())
			assert.Contains(t, report.Line(), "the server's certificate SPIFFE ID "+id+" expires "+expiry(svid))
		})
	}

	t.Run("-v shows both certificates' validity", func(t *testing.T) {
		target, _ := f.startTLSTarget(t, "https", svid)
		c := testConfig(t, target)
		c.TLS = f.options(id)
		var verbose strings.Builder
		report := Run(t.Context(), c, &verbose)
		require.Equal(t, Healthy, report.Result, report.Line())
		assert.Contains(t, verbose.String(), `client certificate "CN=health-check test client" issued by "CN=health-check test CA", expires `)
		assert.Regexp(t, `server certificate SPIFFE ID `+id+` issued by "CN=health-check test CA", expires `+expiry(svid)+` \(valid for (5h59m\d+s|6h0m0s) more\)`, verbose.String())
	})
}
