// Command embedded is the benchmark's stand-in for an application built FROM scratch that serves
// HTTPS with net/http and crypto/tls. Built plainly it is the application alone; built with
// -tags embedprobe it carries the probe too, as the healthcheck package's documentation shows, and
// `embedded health-check [flags] URL` is then the exec probe. The benchmark (go run ./bench
// -embedded) compares the two builds' sizes, and one probe run through the application with one run
// of health-check itself: the application's package initialisers run before every probe.
//
//	embedded -listen :8443 -cert server.crt -key server.key
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// healthCheck runs `embedded health-check ...`; nil unless built with -tags embedprobe.
var healthCheck func(args []string) int

func main() {
	if len(os.Args) > 1 && os.Args[1] == "health-check" && healthCheck != nil {
		os.Exit(healthCheck(os.Args[2:]))
	}
	listen := flag.String("listen", ":8443", "address to serve HTTPS on")
	cert := flag.String("cert", "server.crt", "server certificate (PEM)")
	key := flag.String("key", "server.key", "server key (PEM)")
	flag.Parse()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	server := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if err := server.ListenAndServeTLS(*cert, *key); err != nil {
		fmt.Fprintln(os.Stderr, "embedded:", err)
		os.Exit(1)
	}
}
