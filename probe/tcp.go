package probe

import "context"

// checkTCP is healthy when a connection opens, like the kubelet's tcpSocket probe.
func checkTCP(ctx context.Context, a *attempt) outcome {
	conn, err := dial(ctx, a.config, a.scheme.address(a.config.Target), a.log)
	if err != nil {
		return unreachable(err)
	}
	conn.Close()
	return healthy("connected")
}
