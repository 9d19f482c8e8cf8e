// Command app is the example application: an HTTP server with a health endpoint, which the probe
// in the same image checks (`/health-check http://localhost:8080/healthz`).
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
)

// version is the application's own, stamped by `bazel build --config=release` (BUILD.bazel x_defs);
// the probe beside it keeps the version of the health_check_proxy module.
var version = "dev"

func main() {
	printVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *printVersion {
		fmt.Printf("app %s\n", version)
		return
	}
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	log.Fatal(http.ListenAndServe(":8080", nil))
}
