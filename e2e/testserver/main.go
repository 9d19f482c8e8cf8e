// Command testserver is the application of the container tests: a small HTTPS server that demands
// a client certificate, plus a plain HTTP listener for the original tool's -statusPort flags. It
// runs in a scratch container next to the probe, so it is static and needs nothing but its flags.
//
//	/healthz  200 "ok", or 503 while failing
//	/fail     always 503
//
// SIGUSR1 makes /healthz fail, SIGUSR2 makes it healthy again: a test flips it with
// `docker kill -s USR1 CONTAINER`, the one control a read-only, shell-less container leaves.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	httpsAddr := flag.String("https", ":8443", "mTLS listen address")
	httpAddr := flag.String("http", ":8080", "plain HTTP listen address (\"\" for none)")
	certFile := flag.String("cert", "/certs/server.crt", "server certificate")
	keyFile := flag.String("key", "/certs/server.key", "server key")
	clientCAFile := flag.String("client-ca", "/certs/ca.crt", "CA that client certificates must chain to")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("testserver: ")

	if err := run(*httpsAddr, *httpAddr, *certFile, *keyFile, *clientCAFile); err != nil {
		log.Fatal(err)
	}
}

func run(httpsAddr, httpAddr, certFile, keyFile, clientCAFile string) error {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	caPEM, err := os.ReadFile(clientCAFile)
	if err != nil {
		return fmt.Errorf("client CA: %w", err)
	}
	clientCAs := x509.NewCertPool()
	if !clientCAs.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("client CA %s: no certificate", clientCAFile)
	}

	var failing atomic.Bool
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		for s := range signals {
			failing.Store(s == syscall.SIGUSR1)
			log.Printf("failing=%v", failing.Load())
		}
	}()

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			http.Error(w, "failing on purpose", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "always failing", http.StatusServiceUnavailable)
	})

	errs := make(chan error, 2)
	tlsListener, err := tls.Listen("tcp", httpsAddr, &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    clientCAs,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		return err
	}
	go func() { errs <- serve(tlsListener, mux) }()
	if httpAddr != "" {
		plain, err := net.Listen("tcp", httpAddr)
		if err != nil {
			return err
		}
		go func() { errs <- serve(plain, mux) }()
	}
	// Tests wait for this line before they probe.
	log.Printf("listening on %s (mTLS) and %q (plain)", httpsAddr, httpAddr)
	return <-errs
}

func serve(l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(discard{}, "", 0)}
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// discard drops the server's per-connection errors: the tests make failing handshakes on purpose.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
