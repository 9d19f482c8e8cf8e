package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
)

// Names of the files every command reads, relative to a certRow's dir (the commands run there, so
// the command lines in the report stay short and free of temporary paths).
const (
	caFile         = "ca.crt"
	clientCertFile = "client.crt"
	clientKeyFile  = "client.key"
)

// A certRow is one row of the results: a certificate type, the files a client needs for it, and the
// two servers that demand a client certificate of that type.
type certRow struct {
	name      string // e.g. "ECDSA P-256"
	dir       string // holds caFile, clientCertFile, clientKeyFile
	httpsAddr string // host:port of the HTTPS server; GET /healthz answers 200
	grpcAddr  string // host:port of the gRPC health server; "" is SERVING
	stop      func()
}

// startCertRow generates a CA, a server and a client certificate of keyType under dir/<slug>, and
// starts an HTTPS server and a grpc-go health server on loopback, both requiring a client
// certificate issued by that CA.
func startCertRow(dir, name, slug string, keyType testutil.KeyType) (*certRow, error) {
	rowDir := filepath.Join(dir, slug)
	if err := os.MkdirAll(rowDir, 0o755); err != nil {
		return nil, err
	}
	ca, err := testutil.NewCA("bench CA "+slug, keyType)
	if err != nil {
		return nil, err
	}
	server, err := ca.Server("bench server", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	client, err := ca.Client("bench client")
	if err != nil {
		return nil, err
	}
	if _, err := ca.WriteFile(rowDir, "ca"); err != nil {
		return nil, fmt.Errorf("write CA certificate: %w", err)
	}
	if _, _, err := client.WriteFiles(rowDir, "client"); err != nil {
		return nil, fmt.Errorf("write client certificate: %w", err)
	}

	// Go's defaults apart from what mutual TLS needs: the servers negotiate what a real
	// Go service would (TLS 1.3, X25519MLKEM768 when the client offers it).
	tlsConfig := &tls.Config{
		Certificates: []tls.Certificate{server.TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
	}
	httpsAddr, stopHTTPS, err := startHTTPS(tlsConfig, slug)
	if err != nil {
		return nil, err
	}
	grpcAddr, stopGRPC, err := startGRPCHealth(tlsConfig)
	if err != nil {
		stopHTTPS()
		return nil, err
	}
	return &certRow{
		name:      name,
		dir:       rowDir,
		httpsAddr: httpsAddr,
		grpcAddr:  grpcAddr,
		stop:      func() { stopHTTPS(); stopGRPC() },
	}, nil
}

func startHTTPS(tlsConfig *tls.Config, slug string) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	srv := &http.Server{
		Handler:   mux,
		TLSConfig: tlsConfig.Clone(),
		ErrorLog:  log.New(os.Stderr, "bench: https server "+slug+": ", 0),
	}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			log.Printf("https server %s: %v", slug, err)
		}
	}()
	return ln.Addr().String(), func() { srv.Close() }, nil
}

func startGRPCHealth(tlsConfig *tls.Config) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsConfig.Clone())))
	healthpb.RegisterHealthServer(srv, health.NewServer()) // the overall service "" starts SERVING
	go srv.Serve(ln)
	return ln.Addr().String(), srv.Stop, nil
}
