package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"
)

// TLSOptions is the TLS side of a check: its material as file paths — read at every run, so rotated
// certificates are picked up without restarting anything — and how the server is verified.
type TLSOptions struct {
	CACert     string // PEM bundle of CAs that verify the server; empty means the system's
	Cert       string // PEM client certificate (chain), presented when the server asks
	Key        string // PEM private key of Cert: PKCS #1, SEC 1 or PKCS #8
	ServerName string // SNI and the name verified in the server's certificate
	Insecure   bool   // skip verification of the server's certificate
	// PostQuantum offers Go's default key exchange, the hybrid X25519MLKEM768, instead of X25519.
	// It is off by default: the hybrid share doubles the CPU of a check, and health status sent
	// over loopback or a pod network is rarely a secret worth protecting from future quantum attacks.
	PostQuantum bool

	// SPIFFEIDs verify the server by its SPIFFE ID instead of a DNS name: its certificate must be an
	// X.509-SVID whose one URI SAN is one of these IDs, or in one of these trust domains
	// (spiffe://example.org). ServerName is then only the SNI.
	SPIFFEIDs []string
	// WorkloadAPI is the address of a SPIFFE Workload API (unix:///run/spire/sockets/agent.sock): at
	// every run, the client certificate is its X.509-SVID, and its trust bundle verifies the server
	// unless CACert is given, which then wins.
	WorkloadAPI string
	// MinValidity makes a server certificate that expires sooner than this an unhealthy answer.
	MinValidity time.Duration
}

// classicCurves is the key exchange offered without -post-quantum: X25519 first (the only key share
// sent), P-256 and P-384 for servers that support nothing else (a HelloRetryRequest finds them).
var classicCurves = []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384}

// firstSet names the first TLS flag that is set, for errors about TLS flags on a plain target.
func (f TLSOptions) firstSet() string {
	switch {
	case f.CACert != "":
		return "-cacert"
	case f.Cert != "":
		return "-cert"
	case f.Key != "":
		return "-key"
	case f.ServerName != "":
		return "-server-name"
	case f.Insecure:
		return "-insecure"
	case f.PostQuantum:
		return "-post-quantum"
	case len(f.SPIFFEIDs) > 0:
		return "-spiffe-id"
	case f.WorkloadAPI != "":
		return "-workload-api"
	case f.MinValidity != 0:
		return "-min-validity"
	}
	return ""
}

func (f TLSOptions) validate() error {
	switch {
	case f.Cert != "" && f.Key == "":
		return usageErrorf("-cert %s needs -key", f.Cert)
	case f.Key != "" && f.Cert == "":
		return usageErrorf("-key %s needs -cert", f.Key)
	case f.MinValidity < 0:
		return usageErrorf("-min-validity must be 0 or more")
	case f.WorkloadAPI != "" && f.Cert != "":
		return usageErrorf("-workload-api and -cert both give the client certificate: choose one")
	}
	if f.WorkloadAPI != "" {
		if _, err := workloadAPISocket(f.WorkloadAPI); err != nil {
			return err
		}
	}
	if len(f.SPIFFEIDs) == 0 {
		return nil
	}
	switch {
	case f.Insecure:
		return usageErrorf("-spiffe-id verifies the server, -insecure does not: choose one")
	case f.CACert == "" && f.WorkloadAPI == "":
		return usageErrorf("-spiffe-id needs the trust bundle that verifies the server: -cacert or -workload-api")
	}
	_, err := parseSPIFFEIDs(f.SPIFFEIDs)
	return err
}

// Load reads the files and returns the client's TLS configuration. Any file that is missing,
// unreadable, not PEM, or a key that does not match its certificate is a usageError.
func (f TLSOptions) Load() (*tls.Config, error) {
	config := &tls.Config{
		ServerName:         f.ServerName,
		InsecureSkipVerify: f.Insecure,
		MinVersion:         tls.VersionTLS12,
	}
	if !f.PostQuantum {
		config.CurvePreferences = classicCurves
	}
	if f.CACert != "" {
		pem, err := os.ReadFile(f.CACert)
		if err != nil {
			return nil, usageErrorf("read CA file: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usageErrorf("CA file %s holds no PEM certificate", f.CACert)
		}
		config.RootCAs = pool
		if len(f.SPIFFEIDs) > 0 {
			if err := verifyBySPIFFEID(config, f.SPIFFEIDs, trustBundles{all: pool}); err != nil {
				return nil, err
			}
		}
	}
	if f.Cert != "" {
		pair, err := loadKeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, err
		}
		// Present the certificate whatever the server asks for: a server that names CAs we do not
		// recognise would otherwise get no certificate, and fail with a less helpful alert.
		config.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &pair, nil
		}
	}
	return config, nil
}

// verifyBySPIFFEID makes config verify the server's certificate as an X.509-SVID with one of ids,
// against bundles, instead of by name. crypto/tls verifies a chain only together with a DNS name, so
// its own verification is off (InsecureSkipVerify) and VerifyConnection does all of it; a failure
// ends the handshake with a bad_certificate alert, as crypto/tls's own would.
func verifyBySPIFFEID(config *tls.Config, ids []string, bundles trustBundles) error {
	want, err := parseSPIFFEIDs(ids)
	if err != nil {
		return err
	}
	config.InsecureSkipVerify = true
	config.VerifyConnection = func(state tls.ConnectionState) error {
		return verifySVID(state.PeerCertificates, want, bundles)
	}
	return nil
}

func loadKeyPair(certPath, keyPath string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return tls.Certificate{}, usageErrorf("read client certificate: %v", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return tls.Certificate{}, usageErrorf("read client key: %v", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, usageErrorf("client certificate %s and key %s: %v", certPath, keyPath, err)
	}
	return pair, nil
}

// describeConnection is the -v line about a TLS session: version, cipher, and the peer's leaf.
func describeConnection(state tls.ConnectionState) string {
	text := fmt.Sprintf("%s %s", tls.VersionName(state.Version), tls.CipherSuiteName(state.CipherSuite))
	if state.CurveID != 0 {
		text += " " + state.CurveID.String()
	}
	if len(state.PeerCertificates) > 0 {
		leaf := state.PeerCertificates[0]
		text += fmt.Sprintf(", server certificate %s issued by %q, %s",
			certificateName(leaf), leaf.Issuer.String(), describeValidity(leaf))
	}
	if state.NegotiatedProtocol != "" {
		text += ", ALPN " + state.NegotiatedProtocol
	}
	return text
}

// connectionText describes a TLS session only when a -v line prints it: a run without -v never
// formats the certificate's names and dates.
type connectionText struct{ state *tls.ConnectionState }

func (c connectionText) String() string { return describeConnection(*c.state) }

// certificateName names a certificate for a message: its SPIFFE ID when it has one URI SAN, else its
// subject, else its first DNS name.
func certificateName(cert *x509.Certificate) string {
	switch {
	case len(cert.URIs) == 1 && cert.URIs[0].Scheme == "spiffe":
		return "SPIFFE ID " + cert.URIs[0].String()
	case len(cert.Subject.String()) > 0:
		return strconv.Quote(cert.Subject.String())
	case len(cert.DNSNames) > 0:
		return "for " + strconv.Quote(cert.DNSNames[0])
	}
	return "without a name"
}

// describeValidity is when a certificate expires and how long that is from now, for -v lines.
func describeValidity(cert *x509.Certificate) string {
	left := time.Until(cert.NotAfter)
	if left < 0 {
		return "expired " + cert.NotAfter.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("expires %s (valid for %s more)", cert.NotAfter.UTC().Format(time.RFC3339), left.Round(time.Second))
}

// expiresTooSoonError is a server certificate that expires within -min-validity: an answer, and an
// unhealthy one, as monitoring-plugins' check_http -C sees it.
type expiresTooSoonError struct {
	cert        *x509.Certificate
	minValidity time.Duration
}

func (e *expiresTooSoonError) Error() string {
	return fmt.Sprintf("the server's certificate %s expires %s, in %s, sooner than -min-validity %s",
		certificateName(e.cert), e.cert.NotAfter.UTC().Format(time.RFC3339), time.Until(e.cert.NotAfter).Round(time.Second), e.minValidity)
}

// checkValidity is an expiresTooSoonError when the server's certificate expires within minValidity.
func checkValidity(state tls.ConnectionState, minValidity time.Duration) error {
	if minValidity <= 0 || len(state.PeerCertificates) == 0 {
		return nil
	}
	if leaf := state.PeerCertificates[0]; time.Until(leaf.NotAfter) < minValidity {
		return &expiresTooSoonError{cert: leaf, minValidity: minValidity}
	}
	return nil
}

// failed is the outcome of an attempt that ended in err: unreachable, except for a server certificate
// that expires too soon, which is an answer, and unhealthy.
func failed(err error) outcome {
	var tooSoon *expiresTooSoonError
	if errors.As(err, &tooSoon) {
		return outcome{Unhealthy, err.Error()}
	}
	return unreachable(err)
}

// logClientCertificate prints, for -v, which client certificate config presents and how long it is valid.
func logClientCertificate(config *tls.Config, log logf) {
	if config == nil || config.GetClientCertificate == nil {
		return
	}
	cert, err := config.GetClientCertificate(&tls.CertificateRequestInfo{})
	if err != nil || cert == nil || len(cert.Certificate) == 0 {
		return
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return
		}
	}
	log("client certificate %s issued by %q, %s", certificateName(leaf), leaf.Issuer.String(), describeValidity(leaf))
}

// minConfirmWait is the least time checkTLS waits for a TLS 1.3 server to reject our certificate.
const minConfirmWait = 10 * time.Millisecond

// checkTLS is healthy when a TLS handshake, with the client certificate when the server asks for one,
// succeeds and the server's certificate verifies.
//
// In TLS 1.3 the client's side of the handshake ends before the server has checked the client's
// certificate: a server that rejects it says so in an alert one round trip later. So when the server
// asked for a certificate, we wait for that alert for as long as the handshake took (at least
// minConfirmWait): about one round trip and one signature check. Silence in that time means accepted.
func checkTLS(ctx context.Context, c *Config, tlsConfig *tls.Config, log logf) outcome {
	conn, err := dial(ctx, c, address(c.Target), log)
	if err != nil {
		return unreachable(err)
	}
	defer conn.Close()

	config := tlsConfig.Clone()
	certificateRequested := false
	presented := config.GetClientCertificate
	config.GetClientCertificate = func(info *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		certificateRequested = true
		if presented == nil {
			return &tls.Certificate{}, nil // none to give: the server decides whether that is fine
		}
		return presented(info)
	}
	start := time.Now()
	tlsConn, err := handshake(ctx, c, conn, config, c.Target.Hostname(), "", log)
	if err != nil {
		return failed(err)
	}
	handshakeTime := time.Since(start)
	state := tlsConn.ConnectionState()

	if certificateRequested && state.Version == tls.VersionTLS13 {
		wait := max(handshakeTime, minConfirmWait)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			wait = time.Until(deadline)
		}
		_ = tlsConn.SetReadDeadline(time.Now().Add(wait))
		var one [1]byte
		if _, err := tlsConn.Read(one[:]); err != nil && !isTimeout(err) && !errors.Is(err, io.EOF) {
			return unreachable(fmt.Errorf("server rejected the client certificate: %w", err))
		}
	}
	return healthy(describeConnection(state))
}

// handshake runs the client side of a TLS handshake on conn, verifying serverName unless the
// configuration names another, and offering one ALPN protocol when alpn is not empty. A server
// certificate that expires within -min-validity is an expiresTooSoonError, after the handshake.
func handshake(ctx context.Context, c *Config, conn net.Conn, tlsConfig *tls.Config, serverName, alpn string, log logf) (*tls.Conn, error) {
	config := tlsConfig.Clone()
	if config.ServerName == "" {
		config.ServerName = serverName
	}
	if alpn != "" {
		config.NextProtos = []string{alpn}
	}
	tlsConn := tls.Client(conn, config)
	start := time.Now()
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	state := tlsConn.ConnectionState()
	log("TLS handshake in %s: %s", since(start), connectionText{&state})
	if err := checkValidity(state, c.TLS.MinValidity); err != nil {
		return nil, err
	}
	return tlsConn, nil
}

// isTimeout reports whether err is a deadline running out.
func isTimeout(err error) bool {
	var netErr net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout())
}

// alertWait bounds how long a check waits, after a failed write, for the reason the server closed.
const alertWait = 50 * time.Millisecond

// awaitClosingReason lets the next read on conn wait alertWait at most, and never past ctx's deadline:
// after a failed write, the server's reason for closing (a TLS alert, an HTTP/1 answer) is either
// already there or not coming.
func awaitClosingReason(ctx context.Context, conn net.Conn) {
	wait := time.Now().Add(alertWait)
	if deadline, ok := ctx.Deadline(); ok && deadline.Before(wait) {
		wait = deadline
	}
	_ = conn.SetReadDeadline(wait)
}

// explainTLSAlert words a TLS alert from the server, which ends the connection: in the handshake, or
// after it in TLS 1.3, where a server rejects our client certificate only once the handshake is over.
// What an alert says of the protocol we offered is the caller's to word (explainH2Refused).
func explainTLSAlert(err error) error {
	var opErr *net.OpError
	if !errors.As(err, &opErr) || opErr.Op != "remote error" {
		return err
	}
	return fmt.Errorf("the server closed the connection: %w", opErr)
}
