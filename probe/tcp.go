package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
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

// minConfirmWait is the least time checkTLS waits for a TLS 1.3 server to reject our certificate.
const minConfirmWait = 10 * time.Millisecond

// checkTLS is healthy when a TLS handshake, with the client certificate when the server asks for one,
// succeeds and the server's certificate verifies.
//
// In TLS 1.3 the client's side of the handshake ends before the server has checked the client's
// certificate: a server that rejects it says so in an alert one round trip later. So when the server
// asked for a certificate, we wait for that alert for as long as the handshake took (at least
// minConfirmWait): about one round trip and one signature check. Silence in that time means accepted.
func checkTLS(ctx context.Context, c *Config, tlsConfig *tls.Config, log logf) outcome {
	conn, err := dial(ctx, c, address(c.Target), log)
	if err != nil {
		return unreachable(err)
	}
	defer conn.Close()

	config := tlsConfig.Clone()
	certificateRequested := false
	presented := config.GetClientCertificate
	config.GetClientCertificate = func(info *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		certificateRequested = true
		if presented == nil {
			return &tls.Certificate{}, nil // none to give: the server decides whether that is fine
		}
		return presented(info)
	}
	start := time.Now()
	tlsConn, err := handshake(ctx, conn, config, c.Target.Hostname(), "", log)
	if err != nil {
		return unreachable(err)
	}
	handshakeTime := time.Since(start)
	state := tlsConn.ConnectionState()

	if certificateRequested && state.Version == tls.VersionTLS13 {
		wait := max(handshakeTime, minConfirmWait)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			wait = time.Until(deadline)
		}
		_ = tlsConn.SetReadDeadline(time.Now().Add(wait))
		var one [1]byte
		if _, err := tlsConn.Read(one[:]); err != nil && !isTimeout(err) && !errors.Is(err, io.EOF) {
			return unreachable(fmt.Errorf("server rejected the client certificate: %w", err))
		}
	}
	return healthy(describeConnection(state))
}
