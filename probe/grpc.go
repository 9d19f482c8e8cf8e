package probe

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2/hpack"

	"github.com/health-check-proxy/health-check-proxy/internal/httpsyntax"
	"github.com/health-check-proxy/health-check-proxy/probe/internal/grpchealth"
	"github.com/health-check-proxy/health-check-proxy/probe/internal/grpcwire"
	"github.com/health-check-proxy/health-check-proxy/probe/internal/h2"
)

// The gRPC health protocol (grpc.health.v1) over our own HTTP/2 client: internal/h2 speaks HTTP/2,
// internal/grpchealth encodes the messages, and this file judges the answer.

// checkGRPC calls grpc.health.v1.Health/Check for c.GRPCService: healthy when the answer is SERVING.
// A gRPC error status (NOT_FOUND for an unknown service, UNIMPLEMENTED without a health service) is an
// answer, so it is unhealthy; a server that does not speak gRPC at all is unhealthy when it answers
// HTTP/2 and unreachable when it cannot.
//
// It speaks HTTP/2 itself (internal/h2), on one connection and on the calling goroutine: grpc:// is h2c
// with prior knowledge, as gRPC does, grpcs:// is TLS with ALPN h2. Every wait ends at ctx's deadline.
// The connection is one of a.conns: with a Session, the one kept from the last check when it can take
// another stream, and it is kept for the next check when the call ended cleanly. A call on a kept
// connection that the server did not process (it closed the connection, said GOAWAY or refused the
// stream) is made once more on a new connection.
func checkGRPC(ctx context.Context, a *attempt) outcome {
	request := grpchealth.EncodeRequest(a.config.GRPCService) // Validate keeps it within one HTTP/2 window
	conn := a.conns.takeGRPC(len(request), a.log)
	var resp *h2.Response
	var err error
	var start time.Time
	for {
		if conn == nil {
			tlsConn, tcpConn, err := dialGRPC(ctx, a)
			if err != nil {
				return failed(err)
			}
			conn = &grpcConn{conn: tlsConn, tcp: tcpConn, client: h2.NewClient(tlsConn)}
			a.conns.opened(&conn.keptState)
		} else if deadline, ok := ctx.Deadline(); ok {
			_ = conn.tcp.SetDeadline(deadline)
		}
		start = time.Now()
		resp, err = callHealthCheck(ctx, a, conn.conn, conn.client, request)
		if err == nil || !conn.reused || !conn.client.Unprocessed() || isTimeout(err) || ctx.Err() != nil {
			break
		}
		a.log("the kept HTTP/2 connection did not take the call (%v): calling on a new one", err)
		conn.tcp.Close()
		conn = nil
	}
	a.conns.releaseGRPC(conn, err == nil && conn.client.Reusable(len(request)))
	if err != nil {
		var reset *h2.ResetError
		if errors.As(err, &reset) && pastDeadline(ctx) {
			return unreachable(context.DeadlineExceeded) // -timeout ran out; the server's reset only echoes it
		}
		if errors.As(err, &reset) {
			// The server took the call and refused it (REFUSED_STREAM) or gave up on it
			// (INTERNAL_ERROR, CANCEL): an answer, like a gRPC error status, so unhealthy.
			return unhealthy("the server reset the call: %s", h2.ErrorName(reset.Code))
		}
		return unreachable(explainTLSAlert(explainNotHTTP2(err)))
	}
	grpcStatus := h2.Get(resp.Header, "grpc-status")
	if grpcStatus == "" {
		grpcStatus = h2.Get(resp.Trailer, "grpc-status")
	}
	a.log("answer :status %s, grpc-status %s in %s", h2.Get(resp.Header, ":status"), cmp.Or(grpcStatus, "none"), since(start))
	if grpcStatus == grpcDeadlineExceeded && pastDeadline(ctx) {
		return unreachable(context.DeadlineExceeded)
	}
	return judgeGRPC(resp)
}

// grpcTimeoutMargin is how much longer than the run's time left the grpc-timeout sent to the server
// is. A server acts on its deadline — grpc-go resets the call (CANCEL), others answer
// DEADLINE_EXCEEDED — and what it says then must never arrive before the probe's own deadline, or a
// run would say "unhealthy" (exit 1) where -timeout ran out (exit 3), by the race of two timers. The
// server's clock starts when our request arrives, after we measured the time left, so the margin only
// needs to cover the encoding's truncation to whole milliseconds; and a reset or DEADLINE_EXCEEDED that
// arrives after our deadline counts as our timeout in any case (pastDeadline).
const grpcTimeoutMargin = 10 * time.Millisecond

// grpcDeadlineExceeded is the grpc-status DEADLINE_EXCEEDED.
const grpcDeadlineExceeded = "4"

// pastDeadline reports whether ctx's deadline has passed: then an answer that only says the call ran
// out of time is the run's own -timeout running out.
func pastDeadline(ctx context.Context) bool {
	deadline, ok := ctx.Deadline()
	return ok && !time.Now().Before(deadline)
}

// dialGRPC opens the connection of a gRPC check, with its deadline: for grpcs://, a TLS connection that
// selected HTTP/2 by ALPN. tcpConn is the connection under it, for the caller to close.
func dialGRPC(ctx context.Context, a *attempt) (conn, tcpConn net.Conn, err error) {
	c := a.config
	tcpConn, err = a.conns.dial(ctx, c, a.scheme.address(c.Target), a.log)
	if err != nil {
		return nil, nil, err
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = tcpConn.SetDeadline(deadline)
	}
	if !a.scheme.tls {
		return tcpConn, tcpConn, nil
	}
	tlsConfig := a.tlsConfig
	if tlsConfig == nil {
		tlsConfig = &tls.Config{}
	}
	tlsConn, err := handshake(ctx, c, tcpConn, tlsConfig, c.Target.Hostname(), "h2", a.log)
	if err != nil {
		tcpConn.Close()
		return nil, nil, explainH2Refused(err)
	}
	if protocol := tlsConn.ConnectionState().NegotiatedProtocol; protocol != "h2" {
		tcpConn.Close()
		why := "it selected no protocol"
		if protocol != "" {
			why = fmt.Sprintf("it chose %q", protocol)
		}
		return nil, nil, fmt.Errorf("not a gRPC server: it does not speak HTTP/2 over TLS (ALPN h2): %s", why)
	}
	return tlsConn, tcpConn, nil
}

// callHealthCheck sends the Check request on conn with client and reads the answer. When the request
// could not be written, the error is the server's reason for closing, if it gave one in time.
func callHealthCheck(ctx context.Context, a *attempt, conn net.Conn, client *h2.Client, request []byte) (*h2.Response, error) {
	c := a.config
	scheme := "http"
	if a.scheme.tls {
		scheme = "https"
	}
	fields := []hpack.HeaderField{
		{Name: ":method", Value: "POST"},
		{Name: ":scheme", Value: scheme},
		{Name: ":path", Value: grpchealth.CheckPath},
		{Name: ":authority", Value: cmp.Or(c.Host, c.Target.Host)},
		{Name: "content-type", Value: "application/grpc"},
		{Name: "te", Value: "trailers"},
	}
	if _, replaced := c.Header["User-Agent"]; !replaced && c.UserAgent != "" { // an empty -header removes it
		fields = append(fields, hpack.HeaderField{Name: "user-agent", Value: c.UserAgent})
	}
	if len(c.Header) > 0 {
		fields = appendMetadata(fields, c.Header)
	}
	if deadline, ok := ctx.Deadline(); ok {
		fields = append(fields, hpack.HeaderField{Name: "grpc-timeout", Value: grpcwire.Timeout(time.Until(deadline) + grpcTimeoutMargin)})
	}
	writeErr := client.WriteRequest(fields, request)
	if writeErr != nil {
		// A server that refused us — a TLS alert after a TLS 1.3 handshake, an HTTP/1 error — said why
		// before it closed the connection: read that, briefly, instead of reporting a broken pipe.
		awaitClosingReason(ctx, conn)
	}
	resp, err := client.ReadResponse(grpchealth.MaxMessageBytes + grpcwire.PrefixBytes)
	if err != nil && writeErr != nil && !informative(err) {
		err = writeErr
	}
	return resp, err
}

// judgeGRPC is the verdict on an HTTP/2 answer to the Check call: HTTP status, content-type,
// grpc-status, then the message.
func judgeGRPC(resp *h2.Response) outcome {
	if status := h2.Get(resp.Header, ":status"); status != "200" {
		return unhealthy("not a gRPC server: HTTP %s", httpStatus(status))
	}
	if ct := h2.Get(resp.Header, "content-type"); !grpcwire.IsContentType(ct) {
		return unhealthy("not a gRPC server: content-type %q", ct)
	}
	// A "trailers-only" answer carries grpc-status in its headers and has no body.
	if code := h2.Get(resp.Header, "grpc-status"); code != "" {
		return grpcStatusOutcome(code, h2.Get(resp.Header, "grpc-message"))
	}
	if resp.Truncated {
		if _, err := grpchealth.DecodeResponse(resp.Body); err != nil {
			return unhealthy("bad answer: %v", err)
		}
		return unhealthy("bad answer: more than one message")
	}
	if code := h2.Get(resp.Trailer, "grpc-status"); code != "0" {
		return grpcStatusOutcome(code, h2.Get(resp.Trailer, "grpc-message"))
	}
	serving, err := grpchealth.DecodeResponse(resp.Body)
	if err != nil {
		return unhealthy("bad answer: %v", err)
	}
	if serving != grpchealth.Serving {
		return unhealthy("status %s", serving)
	}
	return healthy("status SERVING")
}

// informative reports whether err, read after a write failed, says more than the write's error: a TLS
// alert, an answer that is not HTTP/2, a GOAWAY, a closed connection. A reset or a timeout does not.
func informative(err error) bool {
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return opErr.Op == "remote error"
	}
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

// explainNotHTTP2 words an answer that is not HTTP/2 for a gRPC target.
func explainNotHTTP2(err error) error {
	var notHTTP2 *h2.NotHTTP2Error
	switch {
	case !errors.As(err, &notHTTP2):
		return err
	case notHTTP2.TLS:
		return errors.New("the server speaks TLS, not h2c (use grpcs://)")
	}
	return errors.New("not a gRPC server: " + notHTTP2.Reason)
}

// explainH2Refused words a failed handshake of a gRPC target: a server that refused the one protocol
// we offered, ALPN h2, with an alert is no gRPC server; any other alert is explainTLSAlert's.
func explainH2Refused(err error) error {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "remote error" && strings.HasSuffix(opErr.Error(), "no application protocol") {
		return fmt.Errorf("not a gRPC server: it does not speak HTTP/2 over TLS (ALPN h2): %w", opErr)
	}
	return explainTLSAlert(err)
}

// httpStatus is an HTTP/2 :status with the reason phrase that HTTP/2 no longer sends, for the statuses
// that a gRPC path may meet on a server or proxy that is not gRPC.
func httpStatus(status string) string {
	if status == "" {
		return "answer without :status"
	}
	code, err := strconv.Atoi(status)
	if reason := httpsyntax.StatusText(code); err == nil && len(status) == 3 && reason != "" {
		return status + " " + reason
	}
	return status
}

// grpcStatusOutcome judges a non-OK grpc-status (or a missing one).
func grpcStatusOutcome(code, message string) outcome {
	if code == "" {
		return unhealthy("answer without grpc-status")
	}
	n, err := strconv.Atoi(code)
	if err != nil || n < 0 {
		return unhealthy("bad grpc-status %q", code)
	}
	if n == 0 {
		return unhealthy("grpc-status OK without a message")
	}
	name := grpcwire.CodeName(n)
	if name == "" {
		name = "code " + code
	}
	if message, err = url.PathUnescape(message); err != nil || message == "" {
		return unhealthy("grpc-status %s", name)
	}
	return unhealthy("grpc-status %s: %s", name, message)
}
