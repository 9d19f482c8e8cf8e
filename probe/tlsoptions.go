package probe

import (
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"os"
	"strings"
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

// workloadAPISocket is the socket path of a -workload-api address: unix:///path or unix:/path, as
// SPIFFE_ENDPOINT_SOCKET is written. The standard also allows tcp://, which agents rarely offer and a
// probe in the workload's own pod never needs.
func workloadAPISocket(addr string) (string, error) {
	u, err := url.Parse(addr)
	if err != nil || u.Scheme != "unix" || u.Host != "" || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") ||
		u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", usageErrorf("bad -workload-api %q: want unix:///path/to/agent.sock", addr)
	}
	return u.Path, nil
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
