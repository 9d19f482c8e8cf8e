package probe

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2/hpack"
)

// The gRPC health protocol (grpc.health.v1), spoken over our own HTTP/2 client (h2.go). Its request and
// response have one field each, so they are encoded here by hand instead of linking grpc-go and
// protobuf into a binary that runs in every pod every few seconds.

const grpcHealthCheckPath = "/grpc.health.v1.Health/Check"

// maxGRPCMessageBytes bounds the answer we read: a HealthCheckResponse is 2 bytes.
const maxGRPCMessageBytes = 4 << 10

// ServingStatus is grpc.health.v1.HealthCheckResponse.ServingStatus.
type ServingStatus int

// The values of ServingStatus, as health.proto numbers them.
const (
	StatusUnknown        ServingStatus = 0
	StatusServing        ServingStatus = 1
	StatusNotServing     ServingStatus = 2
	StatusServiceUnknown ServingStatus = 3
)

func (s ServingStatus) String() string {
	switch s {
	case StatusUnknown:
		return "UNKNOWN"
	case StatusServing:
		return "SERVING"
	case StatusNotServing:
		return "NOT_SERVING"
	case StatusServiceUnknown:
		return "SERVICE_UNKNOWN"
	}
	return "ServingStatus(" + strconv.Itoa(int(s)) + ")"
}

// grpcCodeNames are the canonical names of gRPC status codes, for the failure line.
var grpcCodeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
	"OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

// checkGRPC calls grpc.health.v1.Health/Check for c.GRPCService: healthy when the answer is SERVING.
// A gRPC error status (NOT_FOUND for an unknown service, UNIMPLEMENTED without a health service) is an
// answer, so it is unhealthy; a server that does not speak gRPC at all is unhealthy when it answers
// HTTP/2 and unreachable when it cannot.
//
// It speaks HTTP/2 itself (h2.go), on one connection and on the calling goroutine: grpc:// is h2c with
// prior knowledge, as gRPC does, grpcs:// is TLS with ALPN h2. Every wait ends at ctx's deadline.
func checkGRPC(ctx context.Context, c *Config, tlsConfig *tls.Config, log logf) outcome {
	request := EncodeHealthCheckRequest(c.GRPCService) // Validate keeps it within one HTTP/2 window
	conn, err := dial(ctx, c, address(c.Target), log)
	if err != nil {
		return unreachable(err)
	}
	defer conn.Close()
	deadline, hasDeadline := ctx.Deadline()
	if hasDeadline {
		_ = conn.SetDeadline(deadline)
	}
	scheme := "http"
	if c.Target.Scheme == "grpcs" {
		scheme = "https"
		if tlsConfig == nil {
			tlsConfig = &tls.Config{}
		}
		tlsConn, err := handshake(ctx, conn, tlsConfig, c.Target.Hostname(), "h2", log)
		if err != nil {
			return unreachable(explainTLSAlert(err))
		}
		if protocol := tlsConn.ConnectionState().NegotiatedProtocol; protocol != "h2" {
			why := "it selected no protocol"
			if protocol != "" {
				why = fmt.Sprintf("it chose %q", protocol)
			}
			return unreachable(fmt.Errorf("not a gRPC server: it does not speak HTTP/2 over TLS (ALPN h2): %s", why))
		}
		conn = tlsConn // closing the TCP connection, deferred above, is enough: no close_notify
	}

	fields := []hpack.HeaderField{
		{Name: ":method", Value: "POST"},
		{Name: ":scheme", Value: scheme},
		{Name: ":path", Value: grpcHealthCheckPath},
		{Name: ":authority", Value: c.Target.Host},
		{Name: "content-type", Value: "application/grpc"},
		{Name: "te", Value: "trailers"},
	}
	if c.UserAgent != "" {
		fields = append(fields, hpack.HeaderField{Name: "user-agent", Value: c.UserAgent})
	}
	if hasDeadline {
		fields = append(fields, hpack.HeaderField{Name: "grpc-timeout", Value: grpcTimeout(time.Until(deadline))})
	}
	start := time.Now()
	client := newH2Client(conn)
	writeErr := client.writeRequest(fields, request)
	if writeErr != nil {
		// A server that refused us — a TLS alert after a TLS 1.3 handshake, an HTTP/1 error — said why
		// before it closed the connection: read that, briefly, instead of reporting a broken pipe.
		awaitClosingReason(ctx, conn)
	}
	resp, err := client.readResponse(maxGRPCMessageBytes + 5)
	if err != nil {
		if writeErr != nil && !informative(err) {
			err = writeErr
		}
		var reset *h2ResetError
		if errors.As(err, &reset) {
			// The server took the call and refused it (REFUSED_STREAM) or gave up on it
			// (INTERNAL_ERROR, CANCEL): an answer, like a gRPC error status, so unhealthy.
			return unhealthy("%v", err)
		}
		return unreachable(explainTLSAlert(err))
	}

	status := h2Get(resp.header, ":status")
	grpcStatus := h2Get(resp.header, "grpc-status")
	if grpcStatus == "" {
		grpcStatus = h2Get(resp.trailer, "grpc-status")
	}
	log("answer :status %s, grpc-status %s in %s", status, cmp.Or(grpcStatus, "none"), since(start))
	if status != "200" {
		return unhealthy("not a gRPC server: HTTP %s", httpStatus(status))
	}
	if ct := h2Get(resp.header, "content-type"); !isGRPCContentType(ct) {
		return unhealthy("not a gRPC server: content-type %q", ct)
	}
	// A "trailers-only" answer carries grpc-status in its headers and has no body.
	if code := h2Get(resp.header, "grpc-status"); code != "" {
		return grpcStatusOutcome(code, h2Get(resp.header, "grpc-message"))
	}
	if resp.truncated {
		if _, err := DecodeHealthCheckResponse(resp.body); err != nil {
			return unhealthy("bad answer: %v", err)
		}
		return unhealthy("bad answer: more than one message")
	}
	if code := h2Get(resp.trailer, "grpc-status"); code != "0" {
		return grpcStatusOutcome(code, h2Get(resp.trailer, "grpc-message"))
	}
	serving, err := DecodeHealthCheckResponse(resp.body)
	if err != nil {
		return unhealthy("bad answer: %v", err)
	}
	if serving != StatusServing {
		return unhealthy("status %s", serving)
	}
	return healthy("status SERVING")
}

// alertWait bounds how long a check waits, after a failed write, for the reason the server closed.
const alertWait = 50 * time.Millisecond

// awaitClosingReason lets the next read on conn wait alertWait at most, and never past ctx's deadline:
// after a failed write, the server's reason for closing (a TLS alert, an HTTP/1 answer) is either
// already there or not coming.
func awaitClosingReason(ctx context.Context, conn net.Conn) {
	wait := time.Now().Add(alertWait)
	if deadline, ok := ctx.Deadline(); ok && deadline.Before(wait) {
		wait = deadline
	}
	_ = conn.SetReadDeadline(wait)
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

// explainTLSAlert words a TLS alert from the server, which ends the connection: in the handshake, or
// after it in TLS 1.3, where a server rejects our client certificate only once the handshake is over.
func explainTLSAlert(err error) error {
	var opErr *net.OpError
	if !errors.As(err, &opErr) || opErr.Op != "remote error" {
		return err
	}
	if strings.HasSuffix(opErr.Error(), "no application protocol") {
		return fmt.Errorf("not a gRPC server: it does not speak HTTP/2 over TLS (ALPN h2): %w", opErr)
	}
	return fmt.Errorf("the server closed the connection: %w", opErr)
}

// httpStatus is an HTTP/2 :status with the reason phrase that HTTP/2 no longer sends, for the statuses
// that a gRPC path may meet on a server or proxy that is not gRPC.
func httpStatus(status string) string {
	if status == "" {
		return "answer without :status"
	}
	reason := ""
	switch status {
	case "204":
		reason = "No Content"
	case "301":
		reason = "Moved Permanently"
	case "302":
		reason = "Found"
	case "304":
		reason = "Not Modified"
	case "307":
		reason = "Temporary Redirect"
	case "308":
		reason = "Permanent Redirect"
	case "400":
		reason = "Bad Request"
	case "401":
		reason = "Unauthorized"
	case "403":
		reason = "Forbidden"
	case "404":
		reason = "Not Found"
	case "405":
		reason = "Method Not Allowed"
	case "408":
		reason = "Request Timeout"
	case "413":
		reason = "Content Too Large"
	case "415":
		reason = "Unsupported Media Type"
	case "421":
		reason = "Misdirected Request"
	case "429":
		reason = "Too Many Requests"
	case "431":
		reason = "Request Header Fields Too Large"
	case "500":
		reason = "Internal Server Error"
	case "501":
		reason = "Not Implemented"
	case "502":
		reason = "Bad Gateway"
	case "503":
		reason = "Service Unavailable"
	case "504":
		reason = "Gateway Timeout"
	case "505":
		reason = "HTTP Version Not Supported"
	default:
		return status
	}
	return status + " " + reason
}

func isGRPCContentType(ct string) bool {
	return ct == "application/grpc" || (len(ct) > 16 && ct[:16] == "application/grpc" && (ct[16] == '+' || ct[16] == ';'))
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
	name := "code " + code
	if n < len(grpcCodeNames) {
		name = grpcCodeNames[n]
	}
	if message, err = url.PathUnescape(message); err != nil || message == "" {
		return unhealthy("grpc-status %s", name)
	}
	return unhealthy("grpc-status %s: %s", name, message)
}

// grpcTimeout encodes d as a grpc-timeout header value: at most 8 digits and a unit.
func grpcTimeout(d time.Duration) string {
	if d <= 0 {
		return "1n"
	}
	if ms := d.Milliseconds(); ms < 1e8 {
		return strconv.FormatInt(max(ms, 1), 10) + "m"
	}
	return strconv.FormatInt(min(int64(d/time.Second), 1e8-1), 10) + "S"
}

// EncodeHealthCheckRequest is the length-prefixed gRPC message of HealthCheckRequest{service}:
// field 1, a string, omitted when empty as proto3 does.
func EncodeHealthCheckRequest(service string) []byte {
	var message []byte
	if service != "" {
		message = append(message, 0x0a) // field 1, wire type 2 (length-delimited)
		message = binary.AppendUvarint(message, uint64(len(service)))
		message = append(message, service...)
	}
	frame := make([]byte, 5, 5+len(message))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(message))) // frame[0] = 0: not compressed
	return append(frame, message...)
}

// DecodeHealthCheckResponse reads one length-prefixed gRPC message holding a HealthCheckResponse and
// returns its status (field 1, an enum). Unknown fields are skipped, as proto3 requires.
func DecodeHealthCheckResponse(frame []byte) (ServingStatus, error) {
	if len(frame) < 5 {
		return 0, errors.New("message shorter than its 5-byte prefix")
	}
	if frame[0] != 0 {
		return 0, errors.New("compressed message (none was asked for)")
	}
	length := binary.BigEndian.Uint32(frame[1:5])
	if length > maxGRPCMessageBytes {
		return 0, fmt.Errorf("message of %d bytes is too long for a health answer", length)
	}
	message := frame[5:]
	if uint32(len(message)) != length {
		return 0, fmt.Errorf("message is %d bytes, its prefix says %d", len(message), length)
	}
	status := StatusUnknown
	for len(message) > 0 {
		key, n := binary.Uvarint(message)
		if n <= 0 {
			return 0, errors.New("bad field key")
		}
		message = message[n:]
		field, wireType := key>>3, key&7
		if field == 0 || field > 1<<29-1 { // protobuf's range of field numbers
			return 0, fmt.Errorf("field number %d", field)
		}
		var value uint64
		switch wireType {
		case 0: // varint
			value, n = binary.Uvarint(message)
			if n <= 0 {
				return 0, errors.New("bad varint")
			}
		case 1: // 64-bit
			n = 8
		case 2: // length-delimited
			var size uint64
			size, n = binary.Uvarint(message)
			if n <= 0 || size > uint64(len(message)-n) {
				return 0, errors.New("bad length")
			}
			n += int(size)
		case 5: // 32-bit
			n = 4
		default:
			return 0, fmt.Errorf("unsupported wire type %d", wireType)
		}
		if n > len(message) {
			return 0, errors.New("truncated field")
		}
		message = message[n:]
		if field == 1 {
			if wireType != 0 {
				return 0, fmt.Errorf("status has wire type %d, want 0", wireType)
			}
			status = ServingStatus(int32(value))
		}
	}
	return status, nil
}
