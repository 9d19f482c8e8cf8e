package probe

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
)

const (
	probeID  = "spiffe://example.org/ns/prod/sa/probe"
	serverID = "spiffe://example.org/ns/prod/sa/api"
)

// TestWorkloadAPIDecodesWhatGoSPIFFEDoes: what we read from a real Workload API server is what
// go-spiffe's own client reads from it: the SVID's ID, chain and key, its bundle, the federated ones.
func TestWorkloadAPIDecodesWhatGoSPIFFEDoes(t *testing.T) {
	f := newSPIFFEFixture(t)
	agent := testutil.StartWorkloadAPI(t)
	agent.SetSVID(probeID, f.svid(t, time.Hour, probeID), f.pki.CA, map[string]*testutil.CA{"spiffe://example.com": f.pki.OtherCA})

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	ours, err := fetchX509SVID(ctx, agent.Addr, "health-check/test")
	require.NoError(t, err)
	theirs, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr(agent.Addr))
	require.NoError(t, err)

	require.Len(t, ours.SVIDs, len(theirs.SVIDs))
	svid, want := ours.SVIDs[0], theirs.DefaultSVID()
	assert.Equal(t, want.ID.String(), svid.SPIFFEID)
	assert.Equal(t, want.Hint, svid.Hint)
	chain, err := x509.ParseCertificates(svid.Certificates)
	require.NoError(t, err)
	require.Len(t, chain, len(want.Certificates))
	for i := range chain {
		assert.True(t, chain[i].Equal(want.Certificates[i]))
	}
	key, err := x509.ParsePKCS8PrivateKey(svid.Key)
	require.NoError(t, err)
	assert.True(t, publicKeysEqual(want.PrivateKey.Public(), key.(crypto.Signer).Public()), "the same key")

	ownBundle, err := theirs.Bundles.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("example.org"))
	require.NoError(t, err)
	assertSameCertificates(t, ownBundle.X509Authorities(), svid.Bundle)
	federated, err := theirs.Bundles.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("example.com"))
	require.NoError(t, err)
	require.Contains(t, ours.FederatedBundles, "spiffe://example.com")
	assertSameCertificates(t, federated.X509Authorities(), ours.FederatedBundles["spiffe://example.com"])
}

// TestWorkloadAPILargeResponse: a response larger than HTTP/2's default windows (64 KiB for the
// connection, 16 KiB for our stream) arrives whole: we open both windows wide enough beforehand.
func TestWorkloadAPILargeResponse(t *testing.T) {
	f := newSPIFFEFixture(t)
	agent := testutil.StartWorkloadAPI(t)
	svid := f.svid(t, time.Hour, probeID)
	big := bytes.Repeat(f.pki.OtherCA.Cert.Raw, 300)
	require.Greater(t, len(big), 100<<10)
	agent.SetResponse(&workload.X509SVIDResponse{
		Svids:            []*workload.X509SVID{{SpiffeId: probeID, X509Svid: svid.Cert.Raw, X509SvidKey: svid.KeyPKCS8, Bundle: f.pki.CA.Cert.Raw}},
		FederatedBundles: map[string][]byte{"spiffe://example.com": big},
	})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, err := fetchX509SVID(ctx, agent.Addr, "health-check/test")
	require.NoError(t, err)
	assert.Equal(t, big, resp.FederatedBundles["spiffe://example.com"])
}

func assertSameCertificates(t *testing.T, want []*x509.Certificate, der []byte) {
	t.Helper()
	got, err := x509.ParseCertificates(der)
	require.NoError(t, err)
	require.Len(t, got, len(want))
	for i := range got {
		assert.True(t, got[i].Equal(want[i]))
	}
}

// clientIDRecorder is a server TLS configuration for an SVID that requires a client certificate of
// ca, and records the URI SAN of each client certificate it accepted.
type clientIDRecorder struct {
	mu      sync.Mutex
	ids     []string
	serials []string
}

func (r *clientIDRecorder) config(server *testutil.Leaf, clientCAs *x509.CertPool) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{server.TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCAs,
		VerifyConnection: func(state tls.ConnectionState) error {
			leaf := state.PeerCertificates[0]
			r.mu.Lock()
			defer r.mu.Unlock()
			if len(leaf.URIs) == 1 {
				r.ids = append(r.ids, leaf.URIs[0].String())
			}
			r.serials = append(r.serials, leaf.SerialNumber.String())
			return nil
		},
	}
}

// awaitClient waits until the server accepted a client certificate. A check is healthy once the
// server accepted ours, but a tls:// check learns that from a TLS 1.3 server's session ticket, or from
// its silence while the check waits: a loaded server may record the certificate a moment later.
func (r *clientIDRecorder) awaitClient(t *testing.T) {
	assert.Eventually(t, func() bool {
		_, serial := r.last()
		return serial != ""
	}, time.Second, time.Millisecond)
}

func (r *clientIDRecorder) last() (id, serial string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.serials) == 0 {
		return "", ""
	}
	if len(r.ids) > 0 {
		id = r.ids[len(r.ids)-1]
	}
	return id, r.serials[len(r.serials)-1]
}

// startMTLSTarget serves a healthy endpoint of scheme with config, on localhost.
func startMTLSTarget(t *testing.T, scheme string, config *tls.Config) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	_, port, _ := net.SplitHostPort(lis.Addr().String())
	if scheme == "grpcs" {
		testutil.StartGRPC(t, lis, testutil.GRPCOptions{TLS: config})
	} else {
		srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), TLSConfig: config, ErrorLog: discardLog}
		go func() { _ = srv.ServeTLS(lis, "", "") }()
		t.Cleanup(func() { srv.Close() })
	}
	return scheme + "://localhost:" + port
}

// TestWorkloadAPIMutualTLS: with -workload-api, the agent's SVID is the client certificate and its
// bundle verifies the server's SVID, on https, grpcs and tls; the next run uses a rotated SVID.
func TestWorkloadAPIMutualTLS(t *testing.T) {
	f := newSPIFFEFixture(t)
	agent := testutil.StartWorkloadAPI(t)
	first := f.svid(t, time.Hour, probeID)
	agent.SetSVID(probeID, first, f.pki.CA, nil)
	for _, scheme := range []string{"https", "grpcs", "tls"} {
		t.Run(scheme, func(t *testing.T) {
			var recorder clientIDRecorder
			target := startMTLSTarget(t, scheme, recorder.config(f.svid(t, time.Hour, serverID), f.pki.CA.Pool()))
			c := testConfig(t, target)
			c.TLS = TLSOptions{WorkloadAPI: agent.Addr, SPIFFEIDs: []string{serverID}}
			report := run(c)
			require.Equal(t, Healthy, report.Result, report.Line())
			recorder.awaitClient(t)
			id, serial := recorder.last()
			assert.Equal(t, probeID, id, "the server saw our SVID")
			assert.Equal(t, first.Cert.SerialNumber.String(), serial)

			c.TLS.SPIFFEIDs = []string{"spiffe://example.org/ns/prod/sa/other"}
			report = run(c)
			assert.Equal(t, Unreachable, report.Result)
			assert.Contains(t, report.Line(), "the server's SPIFFE ID is "+serverID+", want spiffe://example.org/ns/prod/sa/other")
		})
	}

	t.Run("rotation", func(t *testing.T) {
		var recorder clientIDRecorder
		target := startMTLSTarget(t, "https", recorder.config(f.svid(t, time.Hour, serverID), f.pki.CA.Pool()))
		c := testConfig(t, target)
		c.TLS = TLSOptions{WorkloadAPI: agent.Addr, SPIFFEIDs: []string{"spiffe://example.org"}}
		require.Equal(t, Healthy, run(c).Result)
		_, serial := recorder.last()
		assert.Equal(t, first.Cert.SerialNumber.String(), serial)

		rotated := f.svid(t, time.Hour, probeID)
		agent.SetSVID(probeID, rotated, f.pki.CA, nil)
		t.Cleanup(func() { agent.SetSVID(probeID, first, f.pki.CA, nil) })
		require.Equal(t, Healthy, run(c).Result)
		_, serial = recorder.last()
		assert.Equal(t, rotated.Cert.SerialNumber.String(), serial, "the next run presents the rotated SVID")
	})

	t.Run("the stream is cancelled, not left open", func(t *testing.T) {
		calls, _ := agent.Calls()
		require.NotZero(t, calls)
		assert.Eventually(t, func() bool {
			_, ended := agent.Calls()
			return len(ended) == calls
		}, 2*time.Second, 10*time.Millisecond, "every call's stream ends when the probe is done")
		_, ended := agent.Calls()
		for _, err := range ended {
			assert.ErrorIs(t, err, context.Canceled)
		}
	})

	t.Run("a federated trust domain", func(t *testing.T) {
		const foreignID = "spiffe://example.com/api"
		foreign, err := f.pki.OtherCA.SVID([]string{foreignID}, time.Hour)
		require.NoError(t, err)
		target := startMTLSTarget(t, "tls", (&clientIDRecorder{}).config(foreign, f.pki.CA.Pool()))
		c := testConfig(t, target)
		c.TLS = TLSOptions{WorkloadAPI: agent.Addr, SPIFFEIDs: []string{foreignID}}
		report := run(c)
		assert.Equal(t, Unreachable, report.Result)
		assert.Contains(t, report.Line(), "the server's SPIFFE ID "+foreignID+" is in a trust domain we have no bundle for")

		agent.SetSVID(probeID, first, f.pki.CA, map[string]*testutil.CA{"spiffe://example.com": f.pki.OtherCA})
		t.Cleanup(func() { agent.SetSVID(probeID, first, f.pki.CA, nil) })
		report = run(c)
		assert.Equal(t, Healthy, report.Result, report.Line())
	})

	t.Run("-cacert wins over the bundle", func(t *testing.T) {
		// The server has a DNS-named certificate of another CA than the trust domain's.
		other := testutil.TestPKI(t, testutil.ECDSAP256)
		target := startMTLSTarget(t, "https", (&clientIDRecorder{}).config(other.Server, f.pki.CA.Pool()))
		c := testConfig(t, target)
		c.TLS = TLSOptions{WorkloadAPI: agent.Addr}
		assert.Equal(t, Unreachable, run(c).Result, "the trust bundle does not verify it")
		c.TLS.CACert = other.CAFile
		report := run(c)
		assert.Equal(t, Healthy, report.Result, report.Line())
	})
}

// TestWorkloadAPIFailures: whatever goes wrong with the agent is unreachable (3), with the agent's
// own message when it gave one.
func TestWorkloadAPIFailures(t *testing.T) {
	f := newSPIFFEFixture(t)
	target := startMTLSTarget(t, "https", (&clientIDRecorder{}).config(f.svid(t, time.Hour, serverID), f.pki.CA.Pool()))
	check := func(t *testing.T, addr string) Report {
		c := testConfig(t, target)
		c.TLS = TLSOptions{WorkloadAPI: addr, SPIFFEIDs: []string{serverID}}
		return run(c)
	}

	t.Run("no socket", func(t *testing.T) {
		missing := "unix://" + filepath.Join(t.TempDir(), "agent.sock")
		report := check(t, missing)
		assert.Equal(t, Unreachable, report.Result)
		assert.Contains(t, report.Line(), "the Workload API at "+missing+": dial unix")
		assert.Contains(t, report.Line(), "no such file or directory")
	})
	t.Run("PermissionDenied", func(t *testing.T) {
		agent := testutil.StartWorkloadAPI(t)
		report := check(t, agent.Addr)
		assert.Equal(t, Unreachable, report.Result)
		assert.Contains(t, report.Line(), "the agent answered grpc-status PERMISSION_DENIED: no identity issued")
	})
	t.Run("another error, after retries", func(t *testing.T) {
		agent := testutil.StartWorkloadAPI(t)
		agent.SetError(status.Error(codes.Unavailable, "agent is starting"))
		c := testConfig(t, target)
		c.TLS = TLSOptions{WorkloadAPI: agent.Addr, SPIFFEIDs: []string{serverID}}
		c.Retries = 2
		report := run(c)
		assert.Equal(t, Unreachable, report.Result)
		assert.Equal(t, 3, report.Attempts, "each attempt asks the agent again")
		assert.Contains(t, report.Line(), "grpc-status UNAVAILABLE: agent is starting after 3 attempts")
	})
	t.Run("no SVID", func(t *testing.T) {
		agent := testutil.StartWorkloadAPI(t)
		agent.SetResponse(&workload.X509SVIDResponse{})
		report := check(t, agent.Addr)
		assert.Equal(t, Unreachable, report.Result)
		assert.Contains(t, report.Line(), "returned no SVID")
	})
	t.Run("an SVID whose key is not its certificate's", func(t *testing.T) {
		agent := testutil.StartWorkloadAPI(t)
		svid, other := f.svid(t, time.Hour, probeID), f.svid(t, time.Hour, probeID)
		agent.SetSVID(probeID, svid, f.pki.CA, nil)
		svid.KeyPKCS8 = other.KeyPKCS8
		agent.SetSVID(probeID, svid, f.pki.CA, nil)
		report := check(t, agent.Addr)
		assert.Equal(t, Unreachable, report.Result)
		assert.Contains(t, report.Line(), "x509_svid_key does not match the certificate")
	})
	t.Run("garbage", func(t *testing.T) {
		socket := filepath.Join(t.TempDir(), "agent.sock")
		lis, err := net.Listen("unix", socket)
		require.NoError(t, err)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/grpc")
			_, _ = w.Write([]byte{0, 0, 0, 0, 3, 0x0a, 0x05, 0x01}) // svids: a field cut short
		})}
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetUnencryptedHTTP2(true)
		go func() { _ = srv.Serve(lis) }()
		t.Cleanup(func() { srv.Close() })
		report := check(t, "unix://"+socket)
		assert.Equal(t, Unreachable, report.Result)
		assert.Contains(t, report.Line(), "bad answer: malformed protobuf")
	})
	t.Run("not HTTP/2", func(t *testing.T) {
		socket := filepath.Join(t.TempDir(), "agent.sock")
		lis, err := net.Listen("unix", socket)
		require.NoError(t, err)
		serveConns(t, lis, func(conn net.Conn) { _, _ = conn.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n")) })
		report := check(t, "unix://"+socket)
		assert.Equal(t, Unreachable, report.Result)
		assert.Contains(t, report.Line(), "not a gRPC server")
	})
	t.Run("the agent refuses a call without the security header", func(t *testing.T) {
		agent := testutil.StartWorkloadAPI(t)
		agent.SetSVID(probeID, f.svid(t, time.Hour, probeID), f.pki.CA, nil)
		conn, err := grpc.NewClient(agent.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		defer conn.Close()
		stream, err := workload.NewSpiffeWorkloadAPIClient(conn).FetchX509SVID(t.Context(), &workload.X509SVIDRequest{})
		require.NoError(t, err)
		_, err = stream.Recv()
		assert.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
		assert.Contains(t, status.Convert(err).Message(), "security header missing")
		// And our probe sends it:
		assert.Equal(t, Healthy, check(t, agent.Addr).Result)
	})
}

func TestWorkloadAPIUsageErrors(t *testing.T) {
	tests := []struct {
		name   string
		target string
		tls    TLSOptions
		want   string
	}{
		{name: "a path without unix://", target: "https://localhost:1", tls: TLSOptions{WorkloadAPI: "/run/spire/agent.sock"}, want: `bad -workload-api "/run/spire/agent.sock": want unix:///path`},
		{name: "tcp", target: "https://localhost:1", tls: TLSOptions{WorkloadAPI: "tcp://127.0.0.1:8081"}, want: "want unix:///path"},
		{name: "a host", target: "https://localhost:1", tls: TLSOptions{WorkloadAPI: "unix://agent.sock"}, want: "want unix:///path"},
		{name: "with -cert", target: "https://localhost:1", tls: TLSOptions{WorkloadAPI: "unix:///a.sock", Cert: "c", Key: "k"}, want: "-workload-api and -cert both give the client certificate"},
		{name: "on http", target: "http://localhost:1", tls: TLSOptions{WorkloadAPI: "unix:///a.sock"}, want: "-workload-api needs a TLS scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(t, tt.target)
			c.TLS = tt.tls
			report := run(c)
			assert.Equal(t, Usage, report.Result, report.Line())
			assert.Contains(t, report.Line(), tt.want)
		})
	}
	_, err := workloadAPISocket("unix:/run/spire/agent.sock")
	assert.NoError(t, err, "unix:/path is a form SPIFFE_ENDPOINT_SOCKET takes too")
}
