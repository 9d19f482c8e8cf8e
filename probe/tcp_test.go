package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
)

// startTLSListener accepts TLS connections with config and completes their handshakes, reading
// until the client goes away.
func startTLSListener(t *testing.T, config *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", config)
	require.NoError(t, err)
	serveConns(t, ln, func(conn net.Conn) {
		_, _ = io.Copy(io.Discard, conn)
	})
	return ln.Addr().String()
}

func TestTCPAndTLSChecks(t *testing.T) {
	p := newPKI(t, testutil.ECDSAP256)
	mTLS13 := startTLSListener(t, p.MTLSConfig(p.Server))
	mTLS12config := p.MTLSConfig(p.Server)
	mTLS12config.MaxVersion = tls.VersionTLS12
	mTLS12 := startTLSListener(t, mTLS12config)
	serverOnly := startTLSListener(t, &tls.Config{Certificates: []tls.Certificate{p.Server.TLS}})
	plainTCP := blackHole(t)
	expired, err := p.CA.ExpiredServer("server", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	expiredAddr := startTLSListener(t, &tls.Config{Certificates: []tls.Certificate{expired.TLS}})
	_, mTLS13Port, _ := net.SplitHostPort(mTLS13)

	tests := []struct {
		name      string
		url       string
		configure func(c *Config)
		want      Result
		inLine    string
	}{
		{name: "tcp open", url: "tcp://" + plainTCP, want: Healthy},
		{name: "tcp closed", url: "tcp://" + closedPort(t), want: Unreachable, inLine: "connection refused"},
		{name: "tls with client certificate, TLS 1.3", url: "tls://" + mTLS13, want: Healthy},
		{name: "tls with client certificate, TLS 1.2", url: "tls://" + mTLS12, want: Healthy},
		{name: "tls by name", url: "tls://localhost:" + mTLS13Port, want: Healthy},
		{name: "tls 1.3 server rejects a missing client certificate", url: "tls://" + mTLS13, want: Unreachable,
			configure: func(c *Config) { c.TLS.Cert, c.TLS.Key = "", "" }, inLine: "certificate required"},
		{name: "tls 1.3 server rejects a foreign client certificate", url: "tls://" + mTLS13, want: Unreachable,
			configure: func(c *Config) { c.TLS.Cert, c.TLS.Key = p.OtherClientCert, p.OtherClientKey },
			inLine:    "server rejected the client certificate"},
		{name: "tls 1.2 server rejects a missing client certificate", url: "tls://" + mTLS12, want: Unreachable,
			configure: func(c *Config) { c.TLS.Cert, c.TLS.Key = "", "" }},
		{name: "tls without client authentication", url: "tls://" + serverOnly, want: Healthy,
			configure: func(c *Config) { c.TLS.Cert, c.TLS.Key = "", "" }},
		{name: "tls with the wrong CA", url: "tls://" + mTLS13, want: Unreachable,
			configure: func(c *Config) { c.TLS.CACert = p.OtherCAFile }, inLine: "unknown authority"},
		{name: "tls to an expired certificate", url: "tls://" + expiredAddr, want: Unreachable, inLine: "expired"},
		{name: "tls to a plain TCP server that never answers", url: "tls://" + plainTCP, want: Unreachable,
			configure: func(c *Config) { c.Timeout = 200 * time.Millisecond }, inLine: "no answer within -timeout 200ms"},
		{name: "tls server name override", url: "tls://" + mTLS13, want: Healthy,
			configure: func(c *Config) { c.TLS.ServerName = "api.internal" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(t, tt.url)
			if c.Target.Scheme == "tls" {
				c.TLS = clientTLS(p)
			}
			if tt.configure != nil {
				tt.configure(c)
			}
			report := run(c)
			assert.Equal(t, tt.want, report.Result, report.Line())
			assert.Contains(t, report.Line(), tt.inLine)
		})
	}
}

// TestTLS13TicketIsTheVerdict: a TLS 1.3 server that accepts the client certificate sends its session
// tickets after checking it; tls:// takes the first one as the server's word, not the silence of a
// waiting time, and says so in -v, with or without a session cache of its own.
func TestTLS13TicketIsTheVerdict(t *testing.T) {
	p := newPKI(t, testutil.ECDSAP256)
	withTickets := startTLSListener(t, p.MTLSConfig(p.Server))
	noTickets := p.MTLSConfig(p.Server)
	noTickets.SessionTicketsDisabled = true
	silent := startTLSListener(t, noTickets)

	c := testConfig(t, "tls://"+withTickets)
	c.TLS = clientTLS(p)
	var verbose bytes.Buffer
	report := Run(context.Background(), c, &verbose)
	require.Equal(t, Healthy, report.Result, report.Line())
	assert.Contains(t, verbose.String(), "the server accepted the client certificate", "the ticket was the verdict")

	session := NewSession(*c)
	defer session.Close()
	report = session.Check(context.Background())
	require.Equal(t, Healthy, report.Result, report.Line())

	c = testConfig(t, "tls://"+silent)
	c.TLS = clientTLS(p)
	verbose.Reset()
	report = Run(context.Background(), c, &verbose)
	require.Equal(t, Healthy, report.Result, report.Line())
	assert.NotContains(t, verbose.String(), "session ticket", "no ticket: the waiting time's silence is the verdict")
}
