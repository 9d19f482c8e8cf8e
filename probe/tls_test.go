package probe

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
)

// TestKeyFormats: EC (SEC 1), RSA (PKCS #1) and PKCS #8 keys all work as client keys.
func TestKeyFormats(t *testing.T) {
	for _, tt := range []struct {
		name    string
		keyType testutil.KeyType
	}{
		{"ECDSA P-256, SEC 1", testutil.ECDSAP256},
		{"RSA 2048, PKCS #1", testutil.RSA2048},
		{"ECDSA P-256, PKCS #8", testutil.ECDSAP256PKCS8},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newPKI(t, tt.keyType)
			srv := startMTLS(t, p, healthHandler())
			c := testConfig(t, srv.URL+"/healthz")
			c.TLS = clientTLS(p)
			report := run(c)
			assert.Equal(t, Healthy, report.Result, report.Line())
		})
	}
}

// TestTLSFileErrors: every bad file is a usage error, found before any network I/O, with one line
// that names the file.
func TestTLSFileErrors(t *testing.T) {
	p := newPKI(t, testutil.ECDSAP256)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	require.NoError(t, os.WriteFile(garbage, []byte("not a certificate\n"), 0o644))
	unreadable := filepath.Join(dir, "unreadable.pem")
	require.NoError(t, os.Mkdir(unreadable, 0o755)) // a directory cannot be read as a file, even by root
	missing := filepath.Join(dir, "missing.pem")
	other, err := p.CA.Client("other")
	require.NoError(t, err)
	_, otherKey, err := other.WriteFiles(dir, "other")
	require.NoError(t, err)

	// Nothing listens here: a usage error must come before any attempt to connect.
	target := "https://" + closedPort(t) + "/healthz"
	tests := []struct {
		name   string
		files  TLSOptions
		inLine []string
	}{
		{name: "missing CA file", files: TLSOptions{CACert: missing}, inLine: []string{"read CA file", missing, "no such file"}},
		{name: "CA file that is a directory", files: TLSOptions{CACert: unreadable}, inLine: []string{"read CA file", unreadable}},
		{name: "garbage CA file", files: TLSOptions{CACert: garbage}, inLine: []string{"CA file " + garbage + " holds no PEM certificate"}},
		{name: "missing client certificate", files: TLSOptions{Cert: missing, Key: p.ClientKey}, inLine: []string{"read client certificate", missing}},
		{name: "missing client key", files: TLSOptions{Cert: p.ClientCert, Key: missing}, inLine: []string{"read client key", missing}},
		{name: "garbage client certificate", files: TLSOptions{Cert: garbage, Key: p.ClientKey}, inLine: []string{garbage}},
		{name: "key that does not match the certificate", files: TLSOptions{Cert: p.ClientCert, Key: otherKey},
			inLine: []string{p.ClientCert, otherKey, "does not match"}},
		{name: "certificate without a key", files: TLSOptions{Cert: p.ClientCert}, inLine: []string{"-cert " + p.ClientCert + " needs -key"}},
		{name: "key without a certificate", files: TLSOptions{Key: p.ClientKey}, inLine: []string{"-key " + p.ClientKey + " needs -cert"}},
		{name: "certificate given as the key", files: TLSOptions{Cert: p.ClientCert, Key: p.ClientCert}, inLine: []string{p.ClientCert}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(t, target)
			c.TLS = tt.files
			report := run(c)
			assert.Equal(t, Usage, report.Result, report.Line())
			assert.Equal(t, ExitUsage, report.Result.ExitCode())
			assert.Equal(t, 0, report.Attempts, "no attempt is made with bad TLS files")
			for _, s := range tt.inLine {
				assert.Contains(t, report.Line(), s)
			}
			assert.NotContains(t, report.Line(), "PRIVATE KEY", "no key material in the output")
		})
	}
}

func TestTLSFlagsNeedATLSScheme(t *testing.T) {
	p := newPKI(t, testutil.ECDSAP256)
	for _, target := range []string{"http://localhost:8080", "grpc://localhost:9090", "tcp://localhost:5432"} {
		c := testConfig(t, target)
		c.TLS = clientTLS(p)
		report := run(c)
		assert.Equal(t, Usage, report.Result)
		assert.Contains(t, report.Line(), "-cacert needs a TLS scheme")
	}
	c := testConfig(t, "http://localhost:8080")
	c.TLS.Insecure = true
	assert.Contains(t, run(c).Line(), "-insecure needs a TLS scheme")
	c = testConfig(t, "tcp://localhost:8080")
	c.Header = http.Header{"X": {"y"}}
	assert.Contains(t, run(c).Line(), "-header applies to http, https, grpc and grpcs, not tcp")
}
