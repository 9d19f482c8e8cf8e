package testutil

import (
	"fmt"
	"net"
	"os"
)

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

// WriteMTLSFiles makes a fresh CA, a server certificate for dnsNames and ips, and a client
// certificate, and writes them to dir.
//
// keysReadableByAll makes the directory 0755 and the key files 0644 instead of 0600: a container
// that bind-mounts dir and runs as another user (65532 in our images) can read them only then.
// The keys are throwaway test keys, so that is safe here and nowhere else.
func WriteMTLSFiles(dir string, dnsNames []string, ips []net.IP, keysReadableByAll bool) (*MTLSFiles, error) {
	ca, err := NewCA("health-check test CA", ECDSAP256)
	if err != nil {
		return nil, err
	}
	other, err := NewCA("some other CA", ECDSAP256)
	if err != nil {
		return nil, err
	}
	server, err := ca.Server("health-check test server", dnsNames, ips)
	if err != nil {
		return nil, err
	}
	client, err := ca.Client("health-check test client")
	if err != nil {
		return nil, err
	}
	files := &MTLSFiles{Dir: dir}
	if files.CACert, err = ca.WriteFile(dir, "ca"); err != nil {
		return nil, err
	}
	if files.OtherCACert, err = other.WriteFile(dir, "other-ca"); err != nil {
		return nil, err
	}
	if files.ServerCert, files.ServerKey, err = server.WriteFiles(dir, "server"); err != nil {
		return nil, err
	}
	if files.ClientCert, files.ClientKey, err = client.WriteFiles(dir, "client"); err != nil {
		return nil, err
	}
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
