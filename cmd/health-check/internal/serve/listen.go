package serve

import (
	"context"
	"net"

	"github.com/health-check-proxy/health-check-proxy/internal/rawconn"
)

// Listen opens the TCP listener for address that a server of probes wants, where each connection
// carries one request (the kubelet's probes do not keep connections alive):
//   - no TCP keep-alive on the connections: setting it up costs four system calls per probe, for
//     connections that live a few milliseconds;
//   - on Linux, TCP_DEFER_ACCEPT: a connection is accepted once its request has arrived, so the
//     server wakes once per probe instead of twice (to accept, then to read). Measured with
//     `go run ./bench -serve-cpu -baseline`: 13 % less of serve's CPU per probe, and the client's and
//     the application's shares fell too. A client that connects and sends nothing is accepted after a
//     second or so all the same, and then meets the read-header timeout;
//   - on Linux, accepts and closes made with raw system calls (rawconn.WrapListener), and a
//     connection that joins the netpoller only when it must wait: the kubelet's probe, read and
//     answered without waiting, no longer wakes the runtime's system monitor (see internal/rawconn).
func Listen(address string) (net.Listener, error) {
	config := net.ListenConfig{KeepAlive: -1, Control: deferAccept}
	l, err := config.Listen(context.Background(), "tcp", address)
	if err != nil {
		return nil, err
	}
	return rawconn.WrapListener(l), nil
}
