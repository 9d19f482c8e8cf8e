package probe

import (
	"cmp"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/net/http2/hpack"

	"github.com/health-check-proxy/health-check-proxy/probe/internal/grpcwire"
	"github.com/health-check-proxy/health-check-proxy/probe/internal/h2"
	"github.com/health-check-proxy/health-check-proxy/probe/internal/workloadapi"
)

// The SPIFFE Workload API (https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Workload_API.md)
// over our own HTTP/2 client: at every run, the first message of SpiffeWorkloadAPI/FetchX509SVID gives
// the client certificate and the trust bundle, so an SVID that the agent rotated is used from the next
// run on, as rotated files are. A Session keeps the stream open instead (svidwatch.go).

// workloadAPIConfig fetches an X.509-SVID from the Workload API and returns base with it as the client
// certificate, and with its trust bundle (and the federated ones) verifying the server unless -cacert
// gave the CAs. Every failure is an error of this attempt, unreachable: the agent, not the target, is
// what could not be reached.
func (f TLSOptions) workloadAPIConfig(ctx context.Context, base *tls.Config, userAgent string, log logf) (*tls.Config, error) {
	start := time.Now()
	resp, err := fetchX509SVID(ctx, f.WorkloadAPI, userAgent)
	if err != nil {
		return nil, fmt.Errorf("the Workload API at %s: %w", f.WorkloadAPI, err)
	}
	svid, err := defaultSVID(f.WorkloadAPI, resp)
	if err != nil {
		return nil, err
	}
	log("Workload API %s: SVID %s in %s (%d SVIDs, %d federated bundles)", f.WorkloadAPI, svid.id, since(start), svid.answered, svid.federated)
	return f.withSVID(base, svid)
}

// clientSVID is the default SVID of a Workload API answer, checked: the client certificate, its
// SPIFFE ID, and the trust bundles by trust domain.
type clientSVID struct {
	id      string
	pair    tls.Certificate
	bundles trustBundles
	// answered and federated count the answer's SVIDs and federated bundles, for -v.
	answered, federated int
}

// defaultSVID checks the default SVID of the agent at addr's answer: the first, as the standard says.
func defaultSVID(addr string, resp *workloadapi.X509SVIDResponse) (*clientSVID, error) {
	if len(resp.SVIDs) == 0 {
		return nil, fmt.Errorf("the Workload API at %s returned no SVID", addr)
	}
	svid := resp.SVIDs[0]
	pair, bundles, err := svidMaterial(svid, resp.FederatedBundles)
	if err != nil {
		return nil, fmt.Errorf("the Workload API at %s: SVID %q: %w", addr, svid.SPIFFEID, err)
	}
	return &clientSVID{id: svid.SPIFFEID, pair: pair, bundles: bundles,
		answered: len(resp.SVIDs), federated: len(resp.FederatedBundles)}, nil
}

// withSVID is base with the SVID as the client certificate, and with its trust bundle (and the
// federated ones) verifying the server unless -cacert gave the CAs.
func (f TLSOptions) withSVID(base *tls.Config, svid *clientSVID) (*tls.Config, error) {
	config := base.Clone()
	pair := svid.pair
	config.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	if f.CACert != "" {
		return config, nil // -cacert wins: Load verifies the server with it already
	}
	config.RootCAs = svid.bundles.byDomain[parseCheckedSPIFFEID(svid.id).trustDomain]
	if len(f.SPIFFEIDs) > 0 {
		if err := verifyBySPIFFEID(config, f.SPIFFEIDs, svid.bundles); err != nil {
			return nil, err
		}
	}
	return config, nil
}

// parseCheckedSPIFFEID parses an ID that svidMaterial has checked already, so it cannot fail.
func parseCheckedSPIFFEID(s string) spiffeID {
	id, _ := parseSPIFFEID(s)
	return id
}

// svidMaterial turns an SVID into a client certificate, and its bundle and the federated ones into
// trust bundles by trust domain.
func svidMaterial(svid workloadapi.X509SVID, federated map[string][]byte) (tls.Certificate, trustBundles, error) {
	id, err := parseSPIFFEID(svid.SPIFFEID)
	if err != nil {
		return tls.Certificate{}, trustBundles{}, fmt.Errorf("bad SPIFFE ID: %v", err)
	}
	chain, err := x509.ParseCertificates(svid.Certificates)
	if err != nil || len(chain) == 0 {
		return tls.Certificate{}, trustBundles{}, fmt.Errorf("bad x509_svid: %v", cmp.Or(err, errors.New("no certificate")))
	}
	key, err := x509.ParsePKCS8PrivateKey(svid.Key)
	if err != nil {
		return tls.Certificate{}, trustBundles{}, fmt.Errorf("bad x509_svid_key: %v", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok || !publicKeysEqual(signer.Public(), chain[0].PublicKey) {
		return tls.Certificate{}, trustBundles{}, errors.New("x509_svid_key does not match the certificate")
	}
	pair := tls.Certificate{PrivateKey: signer, Leaf: chain[0]}
	for _, cert := range chain {
		pair.Certificate = append(pair.Certificate, cert.Raw)
	}
	bundles := trustBundles{byDomain: map[string]*x509.CertPool{}}
	if bundles.byDomain[id.trustDomain], err = certPool(svid.Bundle); err != nil {
		return tls.Certificate{}, trustBundles{}, fmt.Errorf("bad bundle: %v", err)
	}
	for domainID, der := range federated {
		domain, err := parseSPIFFEID(domainID)
		if err != nil || domain.path != "" || domain.trustDomain == id.trustDomain {
			continue // not a foreign trust domain's ID: nothing we could verify with it
		}
		if pool, err := certPool(der); err == nil {
			bundles.byDomain[domain.trustDomain] = pool
		}
	}
	return pair, bundles, nil
}

// certPool parses concatenated DER certificates into a pool.
func certPool(der []byte) (*x509.CertPool, error) {
	certs, err := x509.ParseCertificates(der)
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificate")
	}
	pool := x509.NewCertPool()
	for _, cert := range certs {
		pool.AddCert(cert)
	}
	return pool, nil
}

// publicKeysEqual compares two public keys of the standard library's types.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	key, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && key.Equal(b)
}

// fetchX509SVID calls FetchX509SVID on the agent's socket, reads the stream's first message and
// cancels the stream.
func fetchX509SVID(ctx context.Context, addr, userAgent string) (*workloadapi.X509SVIDResponse, error) {
	conn, err := dialWorkloadAPI(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	client, resp, err := startX509SVIDStream(ctx, conn, userAgent)
	if err != nil {
		return nil, err
	}
	if !resp.EndStream {
		_ = client.Cancel() // the stream goes on with every rotation; we have what we came for
	}
	return decodeWorkloadAPIAnswer(resp)
}

// dialWorkloadAPI connects to the agent's socket at the Workload API address addr.
func dialWorkloadAPI(ctx context.Context, addr string) (net.Conn, error) {
	path, err := workloadAPISocket(addr)
	if err != nil {
		return nil, err
	}
	return (&net.Dialer{}).DialContext(ctx, "unix", path)
}

// maxStreamBody is the most of the stream's body we hold at a time: one message, prefix included.
const maxStreamBody = workloadapi.MaxMessageBytes + grpcwire.PrefixBytes

// startX509SVIDStream calls FetchX509SVID on conn, a new connection to the agent, and reads the
// stream's answer up to its first message, which resp.Body then starts with (unless the answer is an
// error). The stream is open unless resp.EndStream: the agent sends every rotation on it.
func startX509SVIDStream(ctx context.Context, conn net.Conn, userAgent string) (*h2.Client, *h2.Response, error) {
	fields := []hpack.HeaderField{
		{Name: ":method", Value: "POST"},
		{Name: ":scheme", Value: "http"},
		{Name: ":path", Value: workloadapi.FetchX509SVIDPath},
		{Name: ":authority", Value: "localhost"}, // what grpc-go sends on a unix socket
		{Name: "content-type", Value: "application/grpc"},
		{Name: "te", Value: "trailers"},
		{Name: workloadapi.SecurityHeader, Value: "true"},
	}
	if userAgent != "" {
		fields = append(fields, hpack.HeaderField{Name: "user-agent", Value: userAgent})
	}
	if deadline, ok := ctx.Deadline(); ok {
		fields = append(fields, hpack.HeaderField{Name: "grpc-timeout", Value: grpcwire.Timeout(time.Until(deadline))})
	}
	client := h2.NewClient(conn)
	client.ReceiveWindow = maxStreamBody
	writeErr := client.WriteRequest(fields, workloadapi.Request)
	if writeErr != nil {
		awaitClosingReason(ctx, conn) // what answered and closed said why, perhaps: read it briefly
	}
	resp, err := client.ReadResponseUntil(maxStreamBody, grpcwire.MessageComplete)
	if err != nil {
		if writeErr != nil && !informative(err) {
			err = writeErr
		}
		return nil, nil, explainNotHTTP2(err)
	}
	return client, resp, nil
}

// decodeWorkloadAPIAnswer judges the agent's answer: an error status (PermissionDenied when it has no
// identity for us) with its message, or the X509SVIDResponse that resp.Body starts with.
func decodeWorkloadAPIAnswer(resp *h2.Response) (*workloadapi.X509SVIDResponse, error) {
	if status := h2.Get(resp.Header, ":status"); status != "200" {
		return nil, fmt.Errorf("not a gRPC server: HTTP %s", httpStatus(status))
	}
	if ct := h2.Get(resp.Header, "content-type"); !grpcwire.IsContentType(ct) {
		return nil, fmt.Errorf("not a gRPC server: content-type %q", ct)
	}
	code, message := h2.Get(resp.Header, "grpc-status"), h2.Get(resp.Header, "grpc-message")
	if code == "" && !grpcwire.MessageComplete(resp.Body) {
		code, message = h2.Get(resp.Trailer, "grpc-status"), h2.Get(resp.Trailer, "grpc-message")
		if code == "" || code == "0" {
			return nil, errors.New("the stream ended without a message")
		}
	}
	if code != "" && code != "0" {
		return nil, errors.New("the agent answered " + grpcStatusOutcome(code, message).detail)
	}
	decoded, err := workloadapi.DecodeResponse(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("bad answer: %w", err)
	}
	return decoded, nil
}
