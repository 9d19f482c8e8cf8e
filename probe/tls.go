package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// describeConnection is the -v line about a TLS session: version, cipher, and the peer's leaf.
func describeConnection(state tls.ConnectionState) string {
	text := fmt.Sprintf("%s %s", tls.VersionName(state.Version), tls.CipherSuiteName(state.CipherSuite))
	if state.CurveID != 0 {
		text += " " + state.CurveID.String()
	}
	if len(state.PeerCertificates) > 0 {
		leaf := state.PeerCertificates[0]
		text += fmt.Sprintf(", server certificate %s issued by %q, %s",
			certificateName(leaf), leaf.Issuer.String(), describeValidity(leaf))
	}
	if state.NegotiatedProtocol != "" {
		text += ", ALPN " + state.NegotiatedProtocol
	}
	return text
}

// connectionText describes a TLS session only when a -v line prints it: a run without -v never
// formats the certificate's names and dates.
type connectionText struct{ state *tls.ConnectionState }

func (c connectionText) String() string { return describeConnection(*c.state) }

// certificateName names a certificate for a message: its SPIFFE ID when it has one URI SAN, else its
// subject, else its first DNS name.
func certificateName(cert *x509.Certificate) string {
	switch {
	case len(cert.URIs) == 1 && cert.URIs[0].Scheme == "spiffe":
		return "SPIFFE ID " + cert.URIs[0].String()
	case len(cert.Subject.String()) > 0:
		return strconv.Quote(cert.Subject.String())
	case len(cert.DNSNames) > 0:
		return "for " + strconv.Quote(cert.DNSNames[0])
	}
	return "without a name"
}

// describeValidity is when a certificate expires and how long that is from now, for -v lines.
func describeValidity(cert *x509.Certificate) string {
	left := time.Until(cert.NotAfter)
	if left < 0 {
		return "expired " + cert.NotAfter.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("expires %s (valid for %s more)", cert.NotAfter.UTC().Format(time.RFC3339), left.Round(time.Second))
}

// expiresTooSoonError is a server certificate that expires within -min-validity: an answer, and an
// unhealthy one, as monitoring-plugins' check_http -C sees it.
type expiresTooSoonError struct {
	cert        *x509.Certificate
	minValidity time.Duration
}

func (e *expiresTooSoonError) Error() string {
	return fmt.Sprintf("the server's certificate %s expires %s, in %s, sooner than -min-validity %s",
		certificateName(e.cert), e.cert.NotAfter.UTC().Format(time.RFC3339), time.Until(e.cert.NotAfter).Round(time.Second), e.minValidity)
}

// checkValidity is an expiresTooSoonError when the server's certificate expires within minValidity.
func checkValidity(state tls.ConnectionState, minValidity time.Duration) error {
	if minValidity <= 0 || len(state.PeerCertificates) == 0 {
		return nil
	}
	if leaf := state.PeerCertificates[0]; time.Until(leaf.NotAfter) < minValidity {
		return &expiresTooSoonError{cert: leaf, minValidity: minValidity}
	}
	return nil
}

// failed is the outcome of an attempt that ended in err: unreachable, except for a server certificate
// that expires too soon, which is an answer, and unhealthy.
func failed(err error) outcome {
	var tooSoon *expiresTooSoonError
	if errors.As(err, &tooSoon) {
		return outcome{Unhealthy, err.Error()}
	}
	return unreachable(err)
}

// logClientCertificate prints, for -v, which client certificate config presents and how long it is valid.
func logClientCertificate(config *tls.Config, log logf) {
	if config == nil || config.GetClientCertificate == nil {
		return
	}
	cert, err := config.GetClientCertificate(&tls.CertificateRequestInfo{})
	if err != nil || cert == nil || len(cert.Certificate) == 0 {
		return
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return
		}
	}
	log("client certificate %s issued by %q, %s", certificateName(leaf), leaf.Issuer.String(), describeValidity(leaf))
}

// minConfirmWait is the least time checkTLS waits for a TLS 1.3 server to reject our certificate.
const minConfirmWait = 10 * time.Millisecond

// checkTLS is healthy when a TLS handshake, with the client certificate when the server asks for one,
// succeeds and the server's certificate verifies.
//
// In TLS 1.3 the client's side of the handshake ends before the server has checked the client's
// certificate: a server that rejects it says so in an alert one round trip later, and one that
// accepts it sends its session tickets then (crypto/tls, OpenSSL and BoringSSL do by default, after
// the certificate's checks). So when the server asked for a certificate, we wait for either: a ticket
// is the server's word that it accepted ours, and ends the wait. A server that sends neither gets as
// long as the handshake took (at least minConfirmWait): about one round trip and one signature
// check. Silence in that time means accepted.
func checkTLS(ctx context.Context, a *attempt) outcome {
	c := a.config
	conn, err := dial(ctx, c, a.scheme.address(c.Target), a.log)
	if err != nil {
		return unreachable(err)
	}
	defer conn.Close()

	config := a.tlsConfig.Clone()
	certificateRequested := false
	presented := config.GetClientCertificate
	config.GetClientCertificate = func(info *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		certificateRequested = true
		if presented == nil {
			return &tls.Certificate{}, nil // none to give: the server decides whether that is fine
		}
		return presented(info)
	}
	ticket := &ticketWatch{ClientSessionCache: config.ClientSessionCache, conn: conn}
	config.ClientSessionCache = ticket
	start := time.Now()
	tlsConn, err := handshake(ctx, c, conn, config, c.Target.Hostname(), "", a.log)
	if err != nil {
		return failed(err)
	}
	handshakeTime := time.Since(start)
	state := tlsConn.ConnectionState()

	if certificateRequested && state.Version == tls.VersionTLS13 {
		if err := awaitVerdict(ctx, tlsConn, ticket, max(handshakeTime, minConfirmWait)); err != nil {
			return unreachable(fmt.Errorf("server rejected the client certificate: %w", err))
		}
		if ticket.received {
			a.log("session ticket in %s: the server accepted the client certificate", since(start))
		}
	}
	return healthy(describeConnection(state))
}

// awaitVerdict reads what a TLS 1.3 server says after the handshake, for wait at most and never past
// ctx's deadline, until a session ticket arrives; it returns the server's alert, if it sent one.
func awaitVerdict(ctx context.Context, conn *tls.Conn, ticket *ticketWatch, wait time.Duration) error {
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
		wait = time.Until(deadline)
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	var one [1]byte
	_, err := conn.Read(one[:])
	if err != nil && !isTimeout(err) && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// ticketWatch is a session cache that notes the arrival of a session ticket and ends the read that
// waits for it: crypto/tls hands a ticket to the cache inside that read, and says nothing otherwise.
// The cache it wraps, when there is one, still gets the ticket.
type ticketWatch struct {
	tls.ClientSessionCache // nil: no cache, tickets are only noted
	conn                   net.Conn
	received               bool
}

func (w *ticketWatch) Get(key string) (*tls.ClientSessionState, bool) {
	if w.ClientSessionCache == nil {
		return nil, false
	}
	return w.ClientSessionCache.Get(key)
}

func (w *ticketWatch) Put(key string, state *tls.ClientSessionState) {
	if w.ClientSessionCache != nil {
		w.ClientSessionCache.Put(key, state)
	}
	w.received = true
	_ = w.conn.SetReadDeadline(time.Now()) // the read waiting for the verdict ends: we have it
}

// handshake runs the client side of a TLS handshake on conn, verifying serverName unless the
// configuration names another, and offering one ALPN protocol when alpn is not empty. A server
// certificate that expires within -min-validity is an expiresTooSoonError, after the handshake.
func handshake(ctx context.Context, c *Config, conn net.Conn, tlsConfig *tls.Config, serverName, alpn string, log logf) (*tls.Conn, error) {
	config := tlsConfig.Clone()
	if config.ServerName == "" {
		config.ServerName = serverName
	}
	if alpn != "" {
		config.NextProtos = []string{alpn}
	}
	tlsConn := tls.Client(conn, config)
	start := time.Now()
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	state := tlsConn.ConnectionState()
	log("TLS handshake in %s: %s", since(start), connectionText{&state})
	if err := checkValidity(state, c.TLS.MinValidity); err != nil {
		return nil, err
	}
	return tlsConn, nil
}

// isTimeout reports whether err is a deadline running out.
func isTimeout(err error) bool {
	var netErr net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout())
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

// explainTLSAlert words a TLS alert from the server, which ends the connection: in the handshake, or
// after it in TLS 1.3, where a server rejects our client certificate only once the handshake is over.
// What an alert says of the protocol we offered is the caller's to word (explainH2Refused).
func explainTLSAlert(err error) error {
	var opErr *net.OpError
	if !errors.As(err, &opErr) || opErr.Op != "remote error" {
		return err
	}
	return fmt.Errorf("the server closed the connection: %w", opErr)
}
