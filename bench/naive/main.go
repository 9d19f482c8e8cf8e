// Command naive is the benchmark's baseline for `health-check serve`: the sidecar a Go programmer
// would write in an afternoon. net/http's server answers GET /NAME by asking the check's URL with a
// net/http client whose Transport keeps its mutual-TLS connections alive between probes; 200 when
// the answer's status is 2xx or 3xx, 503 otherwise. Go's defaults everywhere else (GOMAXPROCS, GC).
//
// Usage:
//
//	naive LISTEN CA_FILE CERT_FILE KEY_FILE NAME=URL...
//
// `go run ./bench -serve-cpu` runs it in a container beside serve and measures both in one run.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 6 {
		log.Fatal("usage: naive LISTEN CA_FILE CERT_FILE KEY_FILE NAME=URL...")
	}
	listen, caFile, certFile, keyFile := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		log.Fatalf("no certificate in %s", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		log.Fatal(err)
	}
	client := &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}}},
		Timeout:   1500 * time.Millisecond,
	}
	for _, check := range os.Args[5:] {
		name, url, ok := strings.Cut(check, "=")
		if !ok {
			log.Fatalf("want NAME=URL, got %q", check)
		}
		http.HandleFunc("GET /"+name, func(w http.ResponseWriter, r *http.Request) {
			resp, err := client.Get(url)
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 200 || resp.StatusCode > 399 {
				http.Error(w, url+": "+resp.Status, http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})
	}
	log.Fatal(http.ListenAndServe(listen, nil))
}
