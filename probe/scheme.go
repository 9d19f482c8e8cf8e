package probe

import "strings"

// targetKind is what a scheme's checker looks at: it decides which flags apply and how a run is described.
type targetKind int

const (
	kindHTTP       targetKind = iota // one HTTP request, judged by status and body
	kindGRPC                         // a grpc.health.v1.Health/Check call
	kindConnection                   // a connection, and for tls:// its handshake
)

// scheme is what a target URL's scheme selects. A new scheme is one more row in schemes.
type scheme struct {
	name        string
	kind        targetKind
	tls         bool   // the checker speaks TLS: -cacert, -cert and the other TLS flags apply
	defaultPort string // "" when the URL must name its port
	check       checker
}

// schemes are the target schemes, in the order messages list them. The table is filled by init: its
// checkers look a scheme up themselves (address), which a variable's own initializer may not do.
var schemes []scheme

func init() {
	schemes = []scheme{
		{name: "http", kind: kindHTTP, defaultPort: "80", check: checkHTTP},
		{name: "https", kind: kindHTTP, tls: true, defaultPort: "443", check: checkHTTP},
		{name: "grpc", kind: kindGRPC, defaultPort: "80", check: checkGRPC},
		{name: "grpcs", kind: kindGRPC, tls: true, defaultPort: "443", check: checkGRPC},
		{name: "tcp", kind: kindConnection, check: checkTCP},
		{name: "tls", kind: kindConnection, tls: true, check: checkTLS},
	}
}

// lookupScheme returns the row of a (lowercase) scheme, or nil for one the probe does not know.
func lookupScheme(name string) *scheme {
	for i := range schemes {
		if schemes[i].name == name {
			return &schemes[i]
		}
	}
	return nil
}

// schemeList names the known schemes for a message: "http, https, grpc, grpcs, tcp, tls".
func schemeList() string {
	names := make([]string, len(schemes))
	for i, s := range schemes {
		names[i] = s.name
	}
	return strings.Join(names, ", ")
}
