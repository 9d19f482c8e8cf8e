package probe

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
)

// newPKI is the test PKI (testutil.TestPKI): a CA, a server certificate for localhost, 127.0.0.1 and
// ::1, a client certificate, and a client certificate from another CA, all written to files.
func newPKI(t *testing.T, keyType testutil.KeyType) *testutil.PKI {
	return testutil.TestPKI(t, keyType)
}

// clientTLS is the probe's TLS options with the test CA and client certificate.
func clientTLS(p *testutil.PKI) TLSOptions {
	return TLSOptions{CACert: p.CAFile, Cert: p.ClientCert, Key: p.ClientKey}
}

// startMTLS serves handler over TLS that requires the test CA's client certificates.
func startMTLS(t *testing.T, p *testutil.PKI, handler http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(handler)
	srv.TLS = p.MTLSConfig(p.Server)
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
