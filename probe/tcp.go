package probe

import (
	"context"
	"crypto/tls"
	"net"
	"time"
)

// checkTCP is healthy when a connection opens, like the kubelet's tcpSocket probe.
func checkTCP(ctx context.Context, c *Config, _ *tls.Config, log logf) outcome {
	conn, err := dial(ctx, c, address(c.Target), log)
	if err != nil {
		return unreachable(err)
	}
	conn.Close()
	return healthy("connected")
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

// since is the time since t for a -v line, rounded to 10 µs.
func since(t time.Time) string {
	return time.Since(t).Round(10 * time.Microsecond).String()
}
