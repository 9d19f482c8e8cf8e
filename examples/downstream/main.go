// Command app is the example application: an HTTP server with a health endpoint, which the probe
// in the same image checks (`/health-check http://localhost:8080/healthz`).
package main

import (
	"log"
	"net/http"
)

func main() {
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	log.Fatal(http.ListenAndServe(":8080", nil))
}
