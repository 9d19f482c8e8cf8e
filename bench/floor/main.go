// Command floor is the benchmark's lower bound for one mutual-TLS HTTPS health check: the least a Go
// program can do for it. It uses crypto/tls with Go's default configuration (only the trusted roots,
// the client certificate and — through tls.Dial — the server name are set, so Go's default key shares,
// X25519MLKEM768 included, are offered), writes the request line by hand and compares the status line
// by hand. No net/http, no flag parsing, no fmt.
//
// Usage:
//
//	floor CA_FILE CERT_FILE KEY_FILE HOST:PORT
//
// It sends GET /healthz over HTTP/1.1 and exits 0 when the answer is 200, 1 otherwise.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"os"
)

func main() {
	if len(os.Args) != 5 {
		os.Stderr.WriteString("usage: floor CA_FILE CERT_FILE KEY_FILE HOST:PORT\n")
		os.Exit(64)
	}
	caPEM, err := os.ReadFile(os.Args[1])
	check(err)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		fail("no certificate in " + os.Args[1])
	}
	cert, err := tls.LoadX509KeyPair(os.Args[2], os.Args[3])
	check(err)

	addr := os.Args[4]
	// tls.Dial takes the server name from addr.
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}})
	check(err)
	_, err = io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\nConnection: close\r\n\r\n")
	check(err)
	var status [len("HTTP/1.1 200")]byte
	_, err = io.ReadFull(conn, status[:])
	check(err)
	if string(status[:]) != "HTTP/1.1 200" {
		fail("status line " + string(status[:]))
	}
}

func check(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	os.Stderr.WriteString("floor: " + msg + "\n")
	os.Exit(1)
}
