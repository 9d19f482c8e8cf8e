package healthcheck

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

const helpHeader = `health-check checks one health endpoint and exits 0 when it is healthy.

Usage: health-check [flags] URL
       health-check [flags] -statusPort PORT [-scheme http] [-host localhost] [-path /healthz]
       health-check serve [flags] -check NAME=URL ...   (answers HTTP probes: see health-check serve -h)

Targets (the URL's scheme picks the check):
  http://, https://   one request; healthy when the status is in -expect-status (and the body has -expect-body)
  grpc://, grpcs://   grpc.health.v1.Health/Check for -service; healthy when SERVING (grpc:// is h2c)
  tcp://host:port     healthy when a TCP connection opens
  tls://host:port     healthy when the TLS handshake and verification succeed

Flags (each can also be set by the environment variable in brackets; a flag on the command line wins.
The target's form on the command line wins: a URL ignores every target variable; the original flags
ignore HEALTH_CHECK_URL and take the parts they leave out from their variables, so a shared env: block
can hold HEALTH_CHECK_STATUS_PORT while each probe gives -path; with neither form on the command line,
HEALTH_CHECK_URL and the other target variables together are a usage error):
`

const helpFooter = `
Exit codes: 0 healthy, 1 unhealthy (the endpoint answered, not healthily), 3 unreachable (DNS, connect,
TLS, an answer that could not be read, or -timeout ran out), 64 usage (bad flag, URL or value;
certificate or key file missing, unreadable or mismatched). On failure, one line on stderr says what
was checked and why.

Examples:
  # Kubernetes exec probe against an HTTPS endpoint that requires a client certificate:
  health-check -cacert /certs/ca.crt -cert /certs/tls.crt -key /certs/tls.key https://localhost:8443/healthz

  # gRPC health over mutual TLS, for one service, with the name the server's certificate carries:
  health-check -cacert /certs/ca.crt -cert /certs/tls.crt -key /certs/tls.key \
      -server-name api.internal -service my.v1.API grpcs://localhost:9443

  # SPIRE: the client SVID from the Workload API, the server verified by its SPIFFE ID (no DNS name):
  health-check -workload-api unix:///run/spire/sockets/agent.sock -spiffe-id spiffe://example.org/ns/prod/sa/api \
      grpcs://localhost:9443

  # Docker (scratch images have no shell: use the exec form):
  HEALTHCHECK --interval=10s --timeout=2s CMD ["/health-check", "-timeout", "1500ms", "http://localhost:8080/healthz"]
`

// writeHelp prints -h: every flag with its default and environment variable, then examples.
func writeHelp(w io.Writer) {
	fmt.Fprint(w, helpHeader)
	writeFlags(w, newFlagSet().FlagSet, nil)
	fmt.Fprint(w, helpFooter)
}

// writeFlags lists fs's flags, but those skip names, with their defaults and variables.
func writeFlags(w io.Writer, fs *flag.FlagSet, skip func(name string) bool) {
	fs.VisitAll(func(fl *flag.Flag) {
		if skip != nil && skip(fl.Name) {
			return
		}
		name, usage := flag.UnquoteUsage(fl)
		line := "  -" + fl.Name
		if name != "" {
			line += " " + name
		}
		if fl.DefValue != "" && fl.DefValue != "false" && fl.DefValue != "0" {
			usage += fmt.Sprintf(" (default %s)", fl.DefValue)
		}
		if !noEnv[fl.Name] {
			usage += " [" + envName(fl.Name) + "]"
		}
		fmt.Fprintf(w, "%s\n      %s\n", line, strings.ReplaceAll(usage, "\n", "\n      "))
	})
}
