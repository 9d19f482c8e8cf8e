package testutil

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"testing"
)

// PKI is the TLS material of a test, in memory and written to files in Dir: a CA, a server
// certificate and a client certificate it issued, and another CA with a client certificate of its
// own (to make verification fail on purpose). It is the one test PKI of the repository: the probe's
// tests, the command's and the container tests all build theirs here.
type PKI struct {
	CA, OtherCA                     *CA
	Server, Client, OtherClient     *Leaf
	Dir                             string
	CAFile, OtherCAFile             string // ca.crt, other-ca.crt
	ServerCert, ServerKey           string // server.crt, server.key
	ClientCert, ClientKey           string // client.crt, client.key
	OtherClientCert, OtherClientKey string // other-client.crt, other-client.key
}

// NewPKI makes a fresh PKI with keys of keyType, a server certificate for dnsNames and ips, and
// writes it to dir.
func NewPKI(dir string, keyType KeyType, dnsNames []string, ips []net.IP) (*PKI, error) {
	p := &PKI{Dir: dir}
	var err error
	if p.CA, err = NewCA("health-check test CA", keyType); err != nil {
		return nil, err
	}
	if p.OtherCA, err = NewCA("some other CA", keyType); err != nil {
		return nil, err
	}
	if p.Server, err = p.CA.Server("health-check test server", dnsNames, ips); err != nil {
		return nil, err
	}
	if p.Client, err = p.CA.Client("health-check test client"); err != nil {
		return nil, err
	}
	if p.OtherClient, err = p.OtherCA.Client("intruder"); err != nil {
		return nil, err
	}
	if p.CAFile, err = p.CA.WriteFile(dir, "ca"); err != nil {
		return nil, err
	}
	if p.OtherCAFile, err = p.OtherCA.WriteFile(dir, "other-ca"); err != nil {
		return nil, err
	}
	if p.ServerCert, p.ServerKey, err = p.Server.WriteFiles(dir, "server"); err != nil {
		return nil, err
	}
	if p.ClientCert, p.ClientKey, err = p.Client.WriteFiles(dir, "client"); err != nil {
		return nil, err
	}
	if p.OtherClientCert, p.OtherClientKey, err = p.OtherClient.WriteFiles(dir, "other-client"); err != nil {
		return nil, err
	}
	return p, nil
}

// TestPKI is a PKI in a temporary directory of t, for a server on localhost, 127.0.0.1 and ::1 (and
// the names api.internal and grpc.test, for tests that set a server name).
func TestPKI(t testing.TB, keyType KeyType) *PKI {
	t.Helper()
	p, err := NewPKI(t.TempDir(), keyType, []string{"localhost", "api.internal", "grpc.test"},
		[]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback})
	if err != nil {
		t.Fatalf("test PKI: %v", err)
	}
	return p
}

// MTLSConfig is a server TLS configuration with server's certificate that requires and verifies a
// client certificate from the CA.
func (p *PKI) MTLSConfig(server *Leaf) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{server.TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.CA.Pool(),
	}
}

// MTLSFiles are the PEM files of a mutual-TLS setup, written to one directory: a CA, a server
// certificate it issued, a client certificate it issued, and the certificate of another CA that
// issued neither (to make verification fail on purpose).
type MTLSFiles struct {
	Dir                   string
	CACert                string
	ServerCert, ServerKey string
	ClientCert, ClientKey string
	OtherCACert           string
}

// WriteMTLSFiles makes a fresh ECDSA PKI with a server certificate for dnsNames and ips, and writes
// it to dir.
//
// keysReadableByAll makes the directory 0755 and the key files 0644 instead of 0600: a container
// that bind-mounts dir and runs as another user (65532 in our images) can read them only then.
// The keys are throwaway test keys, so that is safe here and nowhere else.
func WriteMTLSFiles(dir string, dnsNames []string, ips []net.IP, keysReadableByAll bool) (*MTLSFiles, error) {
	p, err := NewPKI(dir, ECDSAP256, dnsNames, ips)
	if err != nil {
		return nil, err
	}
	files := &MTLSFiles{Dir: dir, CACert: p.CAFile, OtherCACert: p.OtherCAFile,
		ServerCert: p.ServerCert, ServerKey: p.ServerKey, ClientCert: p.ClientCert, ClientKey: p.ClientKey}
	if keysReadableByAll {
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, err
		}
		for _, key := range []string{files.ServerKey, files.ClientKey} {
			if err := os.Chmod(key, 0o644); err != nil {
				return nil, fmt.Errorf("make %s readable: %w", key, err)
			}
		}
	}
	return files, nil
}
