package probe

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
)

// pki is the TLS material of one test: a CA, a server certificate for localhost, 127.0.0.1 and ::1,
// a client certificate, a client certificate from a foreign CA, all written to files.
type pki struct {
	ca, foreignCA                       *testutil.CA
	server, client, foreign             *testutil.Leaf
	dir                                 string
	caFile, foreignCAFile               string
	clientCert, clientKey               string
	foreignClientCert, foreignClientKey string
}

func newPKI(t *testing.T, keyType testutil.KeyType) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	var err error
	p.ca, err = testutil.NewCA("test CA", keyType)
	require.NoError(t, err)
	p.foreignCA, err = testutil.NewCA("foreign CA", keyType)
	require.NoError(t, err)
	p.server, err = p.ca.Server("server", []string{"localhost", "api.internal"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback})
	require.NoError(t, err)
	p.client, err = p.ca.Client("client")
	require.NoError(t, err)
	p.foreign, err = p.foreignCA.Client("intruder")
	require.NoError(t, err)
	p.caFile, err = p.ca.WriteFile(p.dir, "ca")
	require.NoError(t, err)
	p.foreignCAFile, err = p.foreignCA.WriteFile(p.dir, "foreign-ca")
	require.NoError(t, err)
	p.clientCert, p.clientKey, err = p.client.WriteFiles(p.dir, "client")
	require.NoError(t, err)
	p.foreignClientCert, p.foreignClientKey, err = p.foreign.WriteFiles(p.dir, "foreign")
	require.NoError(t, err)
	return p
}

// mTLSConfig is a server TLS config that requires a client certificate from the test CA.
func (p *pki) mTLSConfig(server *testutil.Leaf) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{server.TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.ca.Pool(),
	}
}

// clientFiles is the probe's TLS configuration with the test CA and client certificate.
func (p *pki) clientFiles() TLSOptions {
	return TLSOptions{CACert: p.caFile, Cert: p.clientCert, Key: p.clientKey}
}

// startMTLS serves handler over TLS that requires the test CA's client certificates.
func startMTLS(t *testing.T, p *pki, handler http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(handler)
	srv.TLS = p.mTLSConfig(p.server)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// blackHole is the address of a listener that accepts connections and never answers.
func blackHole(t *testing.T) string {
	return testutil.BlackHole(t).Addr().String()
}

// serveConns hands every connection ln accepts to handle, on its own goroutine, until the test ends.
func serveConns(t *testing.T, ln net.Listener, handle func(net.Conn)) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				handle(conn)
			}()
		}
	}()
}

// closedPort is a loopback port with nothing listening on it.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := ParseTarget(raw)
	require.NoError(t, err)
	return u
}

// testConfig is a config with the command's defaults, for target.
func testConfig(t *testing.T, target string) *Config {
	t.Helper()
	expect, err := ParseStatusSet(DefaultExpectStatus)
	require.NoError(t, err)
	return &Config{
		Target:       mustURL(t, target),
		ExpectStatus: expect,
		Timeout:      2 * time.Second,
		Retries:      0,
		RetryDelay:   10 * time.Millisecond,
		UserAgent:    "health-check/test",
	}
}

// timeoutMargin is how long past -timeout a run may end in these tests. On an idle machine a run ends
// within a few milliseconds of it; the rest is room for CI, where other packages compile meanwhile.
const timeoutMargin = 250 * time.Millisecond

func run(c *Config) Report {
	return Run(context.Background(), c, nil)
}
