// Package testutil holds helpers shared by the tests: certificates generated per test run, so no key
// material is ever checked in. It is imported only from _test.go files and test programs.
package testutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// KeyType selects the algorithm and PEM encoding of a generated private key.
type KeyType int

const (
	// ECDSAP256 keys are written as SEC 1 "EC PRIVATE KEY" blocks.
	ECDSAP256 KeyType = iota
	// RSA2048 keys are written as PKCS #1 "RSA PRIVATE KEY" blocks.
	RSA2048
	// ECDSAP256PKCS8 keys are written as PKCS #8 "PRIVATE KEY" blocks.
	ECDSAP256PKCS8
)

// CA is a certificate authority that issues leaf certificates for tests.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     crypto.Signer
	keyType KeyType
}

// Leaf is an issued certificate with its key, in PEM and parsed forms.
type Leaf struct {
	CertPEM  []byte
	KeyPEM   []byte
	TLS      tls.Certificate
	Cert     *x509.Certificate
	KeyPKCS8 []byte // the key as PKCS #8 DER, as the SPIFFE Workload API hands it out
}

// serial makes serial numbers unique within a test process, also when tests run in parallel.
var serial atomic.Int64

func nextSerial() *big.Int {
	return big.NewInt(time.Now().UnixNano() + serial.Add(1))
}

// NewCA makes a self-signed CA whose keys and leaves use keyType.
func NewCA(commonName string, keyType KeyType) (*CA, error) {
	key, err := newKey(keyType)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, CertPEM: pemBlock("CERTIFICATE", der), key: key, keyType: keyType}, nil
}

// Pool returns a certificate pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool
}

// Server issues a server certificate valid for the given DNS names and IP addresses.
func (ca *CA) Server(commonName string, dnsNames []string, ips []net.IP) (*Leaf, error) {
	return ca.issue(commonName, dnsNames, ips, x509.ExtKeyUsageServerAuth, time.Now().Add(12*time.Hour))
}

// Client issues a client certificate.
func (ca *CA) Client(commonName string) (*Leaf, error) {
	return ca.issue(commonName, nil, nil, x509.ExtKeyUsageClientAuth, time.Now().Add(12*time.Hour))
}

// ExpiredServer issues a server certificate that expired an hour ago.
func (ca *CA) ExpiredServer(commonName string, dnsNames []string, ips []net.IP) (*Leaf, error) {
	return ca.issue(commonName, dnsNames, ips, x509.ExtKeyUsageServerAuth, time.Now().Add(-time.Hour))
}

// SVID issues an X.509-SVID as SPIRE and Istio do: the SPIFFE IDs as URI SANs (exactly one for a
// valid SVID; tests give none or several on purpose), no DNS name, no subject but a serial number,
// usable as server and client certificate, valid for validFor from now.
func (ca *CA) SVID(ids []string, validFor time.Duration) (*Leaf, error) {
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(validFor),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, id := range ids {
		uri, err := url.Parse(id)
		if err != nil {
			return nil, err
		}
		tmpl.URIs = append(tmpl.URIs, uri)
	}
	return ca.issueTemplate(tmpl)
}

func (ca *CA) issue(commonName string, dnsNames []string, ips []net.IP, usage x509.ExtKeyUsage, notAfter time.Time) (*Leaf, error) {
	return ca.issueTemplate(&x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: commonName},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
		NotBefore:    time.Now().Add(-2 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	})
}

// issueTemplate signs a certificate from tmpl for a new key.
func (ca *CA) issueTemplate(tmpl *x509.Certificate) (*Leaf, error) {
	key, err := newKey(ca.keyType)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("issue certificate for %s%v: %w", tmpl.Subject.CommonName, tmpl.URIs, err)
	}
	keyPEM, err := encodeKey(key, ca.keyType)
	if err != nil {
		return nil, err
	}
	certPEM := pemBlock("CERTIFICATE", der)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &Leaf{CertPEM: certPEM, KeyPEM: keyPEM, TLS: pair, Cert: leaf, KeyPKCS8: pkcs8}, nil
}

// WriteFiles writes the leaf's certificate and key as dir/name.crt and dir/name.key and returns
// their paths. The key file is 0600, as a real one would be.
func (l *Leaf) WriteFiles(dir, name string) (certPath, keyPath string, err error) {
	certPath = filepath.Join(dir, name+".crt")
	keyPath = filepath.Join(dir, name+".key")
	if err := os.WriteFile(certPath, l.CertPEM, 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyPath, l.KeyPEM, 0o600); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

// WriteFile writes the CA certificate as dir/name.crt and returns its path.
func (ca *CA) WriteFile(dir, name string) (string, error) {
	path := filepath.Join(dir, name+".crt")
	return path, os.WriteFile(path, ca.CertPEM, 0o644)
}

func newKey(keyType KeyType) (crypto.Signer, error) {
	switch keyType {
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	default:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
}

func encodeKey(key crypto.Signer, keyType KeyType) ([]byte, error) {
	switch keyType {
	case RSA2048:
		return pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))), nil
	case ECDSAP256PKCS8:
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		return pemBlock("PRIVATE KEY", der), nil
	default:
		der, err := x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
		if err != nil {
			return nil, err
		}
		return pemBlock("EC PRIVATE KEY", der), nil
	}
}

func pemBlock(blockType string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
}
