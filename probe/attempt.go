package probe

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"net"
	"net/url"
	"time"

	"github.com/health-check-proxy/health-check-proxy/probe/internal/h2"
	"github.com/health-check-proxy/health-check-proxy/probe/internal/http1"
)

// What one attempt of a check works with: its scheme's row, its TLS configuration, and where its
// connections come from.

// targetKind is what a scheme's checker looks at: it decides which flags apply and how a run is described.
type targetKind int

const (
	kindHTTP       targetKind = iota // one HTTP request, judged by status and body
	kindGRPC                         // a grpc.health.v1.Health/Check call
	kindConnection                   // a connection, and for tls:// its handshake
)

// scheme is what a target URL's scheme selects: one row of the table in scheme.go.
type scheme struct {
	name        string
	kind        targetKind
	tls         bool   // the checker speaks TLS: -cacert, -cert and the other TLS flags apply
	defaultPort string // "" when the URL must name its port
	check       attemptFunc
}

// address is the host:port of u to dial, with the scheme's default port.
func (s *scheme) address(u *url.URL) string {
	port := cmp.Or(u.Port(), s.defaultPort, "80")
	return net.JoinHostPort(u.Hostname(), port)
}

// attempt is what one attempt of a check works with: the config, its target's scheme (looked up once,
// when the run starts), the TLS configuration of its connections, where those connections come from,
// and the -v log.
type attempt struct {
	config    *Config
	scheme    *scheme
	tlsConfig *tls.Config // nil for a plain target
	conns     connSource
	log       logf
}

// attemptFunc is a scheme's checker: it runs one attempt, and must return when ctx is done.
type attemptFunc func(ctx context.Context, a *attempt) outcome

// connSource is where a run's connections and their TLS material come from: the seam between the
// two ways the checkers run. Run's source (oneShot, run.go) opens a new connection for every request
// and reads the TLS files at every run; a Session (session.go) keeps its connections open between
// checks, and reads the files again only when they change. The checkers ask, and do not know which.
type connSource interface {
	// tlsConfig is the TLS configuration from c's files, and a note for the line when new files on
	// disk are bad and the last good ones are still in use.
	tlsConfig(c *Config) (config *tls.Config, note string, err error)
	// svidConfig is base with the Workload API's X.509-SVID as the client certificate.
	svidConfig(ctx context.Context, c *Config, base *tls.Config, log logf) (*tls.Config, error)

	// dial opens a new connection for an HTTP or gRPC check to addr, as dial does.
	dial(ctx context.Context, c *Config, addr string, log logf) (net.Conn, error)
	// opened counts a new connection and stamps it with the generation of its TLS material.
	opened(conn *keptState)
	// keepsAlive says whether a request may leave its connection open for the next one.
	keepsAlive() bool
	// takeHTTP is a kept HTTP/1.1 connection still open and quiet, or nil; releaseHTTP ends the use
	// of conn for resp, and keeps or closes it.
	takeHTTP(log logf) *httpConn
	releaseHTTP(conn *httpConn, resp *http1.Response)
	// takeGRPC is a kept HTTP/2 connection that can take a call with a body of bodyLen bytes, or nil;
	// releaseGRPC ends the use of conn, and keeps it when it is reusable.
	takeGRPC(bodyLen int, log logf) *grpcConn
	releaseGRPC(conn *grpcConn, reusable bool)
}

// keptState is what a Session knows of a connection it may keep.
type keptState struct {
	reused     bool   // kept from an earlier check
	generation uint64 // of the session's TLS material it was opened with
}

// httpConn is a connection that carries HTTP/1.1 requests, with the reader of its answers.
type httpConn struct {
	net.Conn
	budget *http1.Budget // the reader's limit: one for the head, then one for the body
	reader *bufio.Reader
	keptState
}

// grpcConn is an HTTP/2 connection for health calls: the connection (TLS or not), the TCP
// connection under it, and its client side.
type grpcConn struct {
	conn, tcp net.Conn
	client    *h2.Client
	keptState
}

// dial opens the connection of one attempt: the unix socket when one is configured, else TCP to addr.
//
// Unlike the kubelet's probe dialer, it sets no SO_LINGER. The kubelet's probes all leave their
// sockets in the node's network namespace, thousands a minute; ours run inside the pod, one connection
// a period. And with a linger time, Close waits for the server to acknowledge our FIN — up to a
// delayed ACK, about 12 ms measured against grpc-go — in a process that is about to exit anyway.
func dial(ctx context.Context, c *Config, addr string, log logf) (net.Conn, error) {
	network := "tcp"
	if c.UnixSocket != "" {
		network, addr = "unix", c.UnixSocket
	}
	start := time.Now()
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	log("connected to %s %s in %s", network, conn.RemoteAddr(), since(start))
	return conn, nil
}
