package probe

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// TLSFiles is the TLS material of a check, as file paths: they are read at every run, so rotated
// certificates are picked up without restarting anything.
type TLSFiles struct {
	CACert     string // PEM bundle of CAs that verify the server; empty means the system's
	Cert       string // PEM client certificate (chain), presented when the server asks
	Key        string // PEM private key of Cert: PKCS #1, SEC 1 or PKCS #8
	ServerName string // SNI and the name verified in the server's certificate
	Insecure   bool   // skip verification of the server's certificate
	// PostQuantum offers Go's default key exchange, the hybrid X25519MLKEM768, instead of X25519.
	// It is off by default: the hybrid share doubles the CPU of a check, and health status sent
	// over loopback or a pod network is rarely a secret worth protecting from future quantum attacks.
	PostQuantum bool
}

// classicCurves is the key exchange offered without -post-quantum: X25519 first (the only key share
// sent), P-256 and P-384 for servers that support nothing else (a HelloRetryRequest finds them).
var classicCurves = []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384}

// firstSet names the first TLS flag that is set, for errors about TLS flags on a plain target.
func (f TLSFiles) firstSet() string {
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
	}
	return ""
}

func (f TLSFiles) validate() error {
	switch {
	case f.Cert != "" && f.Key == "":
		return usageErrorf("-cert %s needs -key", f.Cert)
	case f.Key != "" && f.Cert == "":
		return usageErrorf("-key %s needs -cert", f.Key)
	}
	return nil
}

// Load reads the files and returns the client's TLS configuration. Any file that is missing,
// unreadable, not PEM, or a key that does not match its certificate is a usageError.
func (f TLSFiles) Load() (*tls.Config, error) {
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
		text += fmt.Sprintf(", server certificate %q issued by %q, expires %s",
			leaf.Subject.String(), leaf.Issuer.String(), leaf.NotAfter.UTC().Format("2006-01-02T15:04:05Z"))
	}
	if state.NegotiatedProtocol != "" {
		text += ", ALPN " + state.NegotiatedProtocol
	}
	return text
}
