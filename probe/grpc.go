package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The gRPC health protocol (grpc.health.v1) spoken over net/http's HTTP/2 client. Its request and
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
func checkGRPC(ctx context.Context, c *Config, tlsConfig *tls.Config, log logf) outcome {
	// The connection of the call, to explain a failure that net/http's HTTP/2 client reports
	// without its cause.
	var raw atomic.Pointer[recordingConn]
	var tlsConn atomic.Pointer[tls.Conn]
	var protocols http.Protocols
	scheme := "https"
	if c.Target.Scheme == "grpc" {
		protocols.SetUnencryptedHTTP2(true) // h2c with prior knowledge, as gRPC does
		scheme = "http"
	} else {
		protocols.SetHTTP2(true)
	}
	transport := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			conn, err := dial(ctx, c, addr, log)
			if err != nil {
				return nil, err
			}
			recorder := &recordingConn{Conn: conn}
			raw.Store(recorder)
			return recorder, nil
		},
		// The TLS connection, which the transport handshakes, is ours to keep: see explainCallError.
		DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			conn, err := dial(ctx, c, addr, log)
			if err != nil {
				return nil, err
			}
			recorder := &recordingConn{Conn: conn}
			raw.Store(recorder)
			config := tlsConfig.Clone()
			if config == nil {
				config = &tls.Config{}
			}
			if config.ServerName == "" {
				config.ServerName, _, _ = net.SplitHostPort(addr)
			}
			config.NextProtos = []string{"h2"}
			client := tls.Client(recorder, config)
			tlsConn.Store(client)
			return client, nil
		},
		Protocols:              &protocols,
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
	}
	defer transport.CloseIdleConnections()

	target := &url.URL{Scheme: scheme, Host: c.Target.Host, Path: grpcHealthCheckPath}
	req, err := http.NewRequestWithContext(withTrace(ctx, log), http.MethodPost, target.String(),
		bytes.NewReader(EncodeHealthCheckRequest(c.GRPCService)))
	if err != nil {
		return outcome{Usage, err.Error()}
	}
	req.Header = http.Header{
		"Content-Type": {"application/grpc"},
		"Te":           {"trailers"},
		"User-Agent":   {c.UserAgent},
	}
	if deadline, ok := ctx.Deadline(); ok {
		req.Header.Set("Grpc-Timeout", grpcTimeout(time.Until(deadline)))
	}

	resp, err := transport.RoundTrip(req)
	if err != nil {
		return unreachable(explainCallError(ctx, err, raw.Load(), tlsConn.Load()))
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 { // a TLS server that ignores ALPN gets HTTP/1.1
		return unreachable(fmt.Errorf("not a gRPC server: it answered %q, not HTTP/2", resp.Proto+" "+resp.Status))
	}
	if resp.StatusCode != http.StatusOK {
		return unhealthy("not a gRPC server: HTTP %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !isGRPCContentType(ct) {
		return unhealthy("not a gRPC server: content-type %q", ct)
	}
	// A "trailers-only" answer carries grpc-status in its headers and has no body.
	if code := resp.Header.Get("Grpc-Status"); code != "" {
		return grpcStatusOutcome(code, resp.Header.Get("Grpc-Message"))
	}
	body, err := readUpTo(resp.Body, maxGRPCMessageBytes+5)
	if err != nil {
		return unreachable(fmt.Errorf("reading answer: %w", err))
	}
	if code := resp.Trailer.Get("Grpc-Status"); code != "0" {
		return grpcStatusOutcome(code, resp.Trailer.Get("Grpc-Message"))
	}
	status, err := DecodeHealthCheckResponse(body)
	if err != nil {
		return unhealthy("bad answer: %v", err)
	}
	if status != StatusServing {
		return unhealthy("status %s", status)
	}
	return healthy("status SERVING")
}

// recordingConn keeps the first bytes a server sends, and what it sent before it closed a connection
// that we were still writing to, which the HTTP/2 client, failing on the write, never reads.
type recordingConn struct {
	net.Conn
	mu          sync.Mutex
	first       []byte // the start of the server's answer
	pending     []byte // read at Close after a failed write; Read returns it first
	writeFailed bool
	closed      bool
}

// recordedBytes is how much of a server's answer recordingConn keeps: a TLS alert, an HTTP/1 status line.
const recordedBytes = 64

func (c *recordingConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	n, err := c.Conn.Read(p)
	c.record(p[:n])
	return n, err
}

func (c *recordingConn) record(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := recordedBytes - len(c.first); room > 0 {
		c.first = append(c.first, b[:min(len(b), room)]...)
	}
}

func (c *recordingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.mu.Lock()
		c.writeFailed = true
		c.mu.Unlock()
	}
	return n, err
}

// Close first keeps what a server sent before it closed, when a write failed: the peer is gone, so
// its last words are already here, and the read does not wait.
func (c *recordingConn) Close() error {
	c.mu.Lock()
	keep := c.writeFailed && !c.closed
	c.closed = true
	c.mu.Unlock()
	if keep {
		_ = c.Conn.SetReadDeadline(time.Now().Add(alertWait))
		buf := make([]byte, 4<<10)
		n, _ := io.ReadFull(c.Conn, buf)
		c.record(buf[:n])
		c.mu.Lock()
		c.pending = append(c.pending, buf[:n]...)
		c.mu.Unlock()
	}
	return c.Conn.Close()
}

func (c *recordingConn) firstBytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.first
}

// alertWait bounds how long explainCallError waits for a TLS alert that is on its way.
const alertWait = 50 * time.Millisecond

// explainCallError finds the cause of a failed call. net/http's HTTP/2 client reports a connection that
// broke before the call started as "http2: client conn could not be established" (or a write error),
// whatever broke it: a server that rejected our client certificate, which in TLS 1.3 it says in an
// alert after the handshake, or a server that answered HTTP/1 to the HTTP/2 preface.
func explainCallError(ctx context.Context, err error, raw *recordingConn, tlsConn *tls.Conn) error {
	if ctx.Err() != nil || raw == nil {
		return err
	}
	if tlsConn != nil {
		// A tls.Conn keeps the alert that ended it; read it, or the alert still on its way.
		wait := alertWait
		if deadline, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(deadline))
		}
		_ = tlsConn.SetReadDeadline(time.Now().Add(wait))
		var one [1]byte
		var opErr *net.OpError
		if _, readErr := tlsConn.Read(one[:]); errors.As(readErr, &opErr) && opErr.Op == "remote error" {
			if strings.HasSuffix(readErr.Error(), "no application protocol") {
				return fmt.Errorf("not a gRPC server: it does not speak HTTP/2 over TLS (ALPN h2): %w", readErr)
			}
			return fmt.Errorf("the server closed the connection: %w", readErr)
		}
		return err
	}
	if first := raw.firstBytes(); bytes.HasPrefix(first, []byte("HTTP/")) {
		statusLine, _, _ := bytes.Cut(first, []byte("\r\n"))
		return fmt.Errorf("not a gRPC server: it answered %q, not HTTP/2", statusLine)
	}
	return err
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
