// Package serve is the server of `health-check serve`: it answers a kubelet's plain httpGet probes
// (GET /NAME) by running checks configured at start — over mutual TLS, gRPC health, whatever the
// probe package speaks — so that a pod gets mTLS health checks without an exec, and so without a
// process, per check.
//
// It is a small, hardened HTTP/1.1 server of its own rather than net/http: the server shares the
// probe's binary, and net/http would cost every exec probe its start-up (see cmd/health-check's
// TestNoHeavyPackages). It reads no request body, bounds the head's size and the time it may take,
// the connections it holds and the upstream checks in flight; concurrent probes of one check share
// one upstream call. The target of a check never comes from a request: the server is no proxy.
//
// Nothing here runs before New: no package-level state with work in it, no init.
package serve

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/health-check-proxy/health-check-proxy/internal/rawconn"
	"github.com/health-check-proxy/health-check-proxy/probe"
)

// Defaults of Options, each a bound against a client that would hold the server's resources.
const (
	// DefaultReadHeaderTimeout cuts off a client that sends its request head slowly (slowloris):
	// a kubelet sends its few hundred bytes at once.
	DefaultReadHeaderTimeout = 5 * time.Second
	// DefaultIdleTimeout closes a kept-alive connection that sends no next request.
	DefaultIdleTimeout = 30 * time.Second
	// DefaultWriteTimeout bounds writing one answer, a few hundred bytes, to a client that does not read.
	DefaultWriteTimeout = 5 * time.Second
	// DefaultMaxHeaderBytes bounds a request line and its header fields: a kubelet's are about 150
	// bytes; net/http's servers allow 1 MiB, far more than a probe needs.
	DefaultMaxHeaderBytes = 8 << 10
	// DefaultMaxConnections bounds the client connections held at once: each probe of a kubelet is
	// one connection, closed after the answer, so a pod's probes need a handful. At the bound a new
	// connection does not wait and is not refused: the one that has waited longest on its client is
	// cut off instead (see makeRoom). The bound is high because a flood beyond it costs probes
	// time: every client cut off comes back, and a probe's connection is accepted after those ahead
	// of it (up to a second with 870 of them, on a busy 2-core VM); a flood within it costs none. A
	// connection held costs about 6 KiB (TestServeProcessFlood: 14.7 MiB resident with 1,000).
	DefaultMaxConnections = 1024
	// DefaultMaxUpstream bounds the upstream checks in flight across all checks. Concurrent probes of
	// one check share one call, so it matters only with many checks.
	DefaultMaxUpstream = 32
)

// lingerTimeout is how long a connection closed after a refused request keeps reading what the
// client still sends, so that the client reads our answer before the close (closing a socket with
// unread data sends a reset, which can overtake the answer).
const lingerTimeout = 250 * time.Millisecond

// Options configure a Server. Zero limits take their defaults.
type Options struct {
	Checks []Check
	// Metrics serves /metrics in the Prometheus text format.
	Metrics bool
	// Log receives one line per event: a check's result changed, an accept failed. Nil discards.
	Log io.Writer

	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	WriteTimeout      time.Duration
	MaxHeaderBytes    int
	MaxConnections    int
	MaxUpstream       int
}

// ValidName reports whether name can name a check: 1 to 63 lowercase letters, digits and '-', so
// that it is a path segment, a metrics label and a word in a log line as it is.
func ValidName(name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("check name %q: want 1 to 63 characters", name)
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("check name %q: want lowercase letters, digits and '-'", name)
		}
	}
	return nil
}

// Server answers probes on the listeners given to Serve until Shutdown.
type Server struct {
	opts   Options
	checks map[string]*check
	sorted []*check // in the order given, for /metrics

	// ctx is the context of upstream checks and of the probes that wait for them; cancel ends both
	// when Shutdown's time runs out.
	ctx    context.Context
	cancel context.CancelFunc

	mu           sync.Mutex
	shuttingDown bool
	listeners    map[net.Listener]struct{}
	conns        map[*conn]struct{} // the connections held, which MaxConnections bounds
	// waiting are the connections held that wait on their client — for a request head, for it to
	// take an answer, for it to stop sending after a refusal — the one that has waited longest first:
	// all but those whose check is running. At MaxConnections, a new connection cuts off the first.
	waiting  connList
	connWait sync.WaitGroup // one per connection goroutine
	cutOff   atomic.Uint64  // connections cut off to make room for a new one

	logMu sync.Mutex
}

// New checks the options (Validate) and builds a Server. It listens to nothing yet.
func New(opts Options) (*Server, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	defaults := []struct {
		value *time.Duration
		def   time.Duration
	}{{&opts.ReadHeaderTimeout, DefaultReadHeaderTimeout}, {&opts.IdleTimeout, DefaultIdleTimeout}, {&opts.WriteTimeout, DefaultWriteTimeout}}
	for _, d := range defaults {
		if *d.value <= 0 {
			*d.value = d.def
		}
	}
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = DefaultMaxConnections
	}
	if limit := openFileLimit(); limit > 0 {
		// A connection is a file: past the limit, accept fails and no probe gets in. Leave room for
		// the listener, each check's upstream connections and Workload API stream, and the
		// certificate files they read. (Go raises the soft limit to the hard one at start.)
		reserve := 16 + 8*len(opts.Checks)
		opts.MaxConnections = max(1, min(opts.MaxConnections, int(min(limit, 1<<20))-reserve))
	}
	if opts.MaxUpstream <= 0 {
		opts.MaxUpstream = DefaultMaxUpstream
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	s := &Server{opts: opts, checks: map[string]*check{}, listeners: map[net.Listener]struct{}{}, conns: map[*conn]struct{}{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	upstream := newSemaphore(opts.MaxUpstream)
	for _, c := range opts.Checks {
		entry := &check{Check: c, upstream: upstream, log: s.logf}
		s.checks[c.Name] = entry
		s.sorted = append(s.sorted, entry)
	}
	return s, nil
}

// Validate checks the options as New does, and builds nothing: checks to serve, each with a name of its
// own that is not one of the server's paths, a Checker and a positive Timeout.
func (opts Options) Validate() error {
	if len(opts.Checks) == 0 {
		return errors.New("no checks")
	}
	names := map[string]bool{}
	for _, c := range opts.Checks {
		if err := ValidName(c.Name); err != nil {
			return err
		}
		if names[c.Name] {
			return fmt.Errorf("check name %q: given twice", c.Name)
		}
		names[c.Name] = true
		if c.Name == "metrics" && opts.Metrics {
			return errors.New(`check name "metrics": /metrics serves the metrics`)
		}
		if c.Checker == nil || c.Timeout <= 0 {
			return fmt.Errorf("check %s: needs a Checker and a positive Timeout", c.Name)
		}
	}
	return nil
}

// DrainTime is how long Shutdown should be given: the longest check's Timeout, which bounds every
// answer in flight, and a margin to write it.
func (s *Server) DrainTime() time.Duration {
	longest := time.Duration(0)
	for _, c := range s.sorted {
		longest = max(longest, c.Timeout)
	}
	return longest + answerMargin + time.Second
}

func (s *Server) logf(format string, args ...any) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	fmt.Fprintf(s.opts.Log, format+"\n", args...)
}

// Serve accepts connections on l until Shutdown, which makes it return nil; any other accept
// failure that persists is retried with a growing pause, as an exhausted file table heals.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.shuttingDown {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()

	pause := time.Duration(0)
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.shuttingDown
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return nil
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			s.logf("accept: %v; retrying in %s", err, pause)
			time.Sleep(pause)
			continue
		}
		pause = 0
		s.track(nc)
	}
}

// track starts serving a new connection, or refuses it with a 503 when the server is shutting down
// or every connection it holds is waiting for its check.
func (s *Server) track(nc net.Conn) {
	s.mu.Lock()
	victim, ok := s.makeRoom()
	if !ok {
		s.mu.Unlock()
		resp := &response{status: 503, body: "busy: too many connections\n", close: true}
		nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		nc.Write(appendResponse(nil, resp, false, time.Now()))
		nc.Close()
		return
	}
	c := &conn{nc: rawconn.Wrap(nc)}
	s.conns[c] = struct{}{}
	s.waiting.pushBack(c)
	s.connWait.Add(1)
	s.mu.Unlock()
	if victim != nil {
		victim.nc.Close() // its goroutine wakes, finds the connection closed, and ends
		s.cutOff.Add(1)
	}
	go s.serveConn(c)
}

// makeRoom reports, under s.mu, whether the server may hold one more connection. At
// MaxConnections it cuts off the connection that has waited longest on its client, and returns it
// to be closed once s.mu is released. A probe's request arrives with its connection (Listen) and is
// read at once, so a client that holds a connection without finishing a request — half a head, a
// byte at a time, nothing at all — is always the first to go: a flood of them, however large, keeps
// no probe out. Refusing the new connection instead, as the server once did, let anyone who can
// reach the port fail the kubelet's liveness probe, and so restart the pod.
func (s *Server) makeRoom() (victim *conn, ok bool) {
	for tries := 0; ; tries++ {
		if s.shuttingDown {
			return nil, false
		}
		if len(s.conns) < s.opts.MaxConnections {
			return nil, true
		}
		first := s.waiting.head
		if first != nil && first.started.Load() {
			s.waiting.remove(first)
			delete(s.conns, first)
			first.cutOff = true
			return first, true
		}
		if first == nil || tries == 3 {
			// Every connection waits for its check, and is answered within its -timeout; or, after
			// three turns given, the others have still not run.
			return nil, false
		}
		// The longest waiting has not had its turn to read yet: with one P, the accept loop can take
		// a backlog of hundreds before any of their goroutines runs. They go first.
		s.mu.Unlock()
		runtime.Gosched()
		s.mu.Lock()
	}
}

// conn is one client connection.
type conn struct {
	nc net.Conn
	r  *bufio.Reader
	// started: its goroutine has begun to read what the client sent with the connection; with one
	// P, it reads all of it before another goroutine runs.
	started atomic.Bool

	// Under Server.mu:
	prev, next *conn // in Server.waiting
	listed     bool  // in Server.waiting
	reading    bool  // waits for a request head: Shutdown cuts it off
	cutOff     bool  // closed to make room for a new connection: its goroutine only ends
}

// connList links connections through their prev and next, so that a probe allocates nothing to be
// listed, and any connection leaves the list at once.
type connList struct{ head, tail *conn }

func (l *connList) pushBack(c *conn) {
	c.prev, c.next, c.listed = l.tail, nil, true
	if l.tail != nil {
		l.tail.next = c
	} else {
		l.head = c
	}
	l.tail = c
}

func (l *connList) remove(c *conn) {
	if !c.listed {
		return
	}
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		l.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		l.tail = c.prev
	}
	c.prev, c.next, c.listed = nil, nil, false
}

// await makes c wait for a request head until deadline, among the connections that wait on their
// client (where it stays if it is there already), unless the server is shutting down or has cut c
// off: then it returns false, and c closes instead of waiting for a request it would not answer.
func (s *Server) await(c *conn, deadline time.Time) bool {
	// Under s.mu, so that Shutdown's cut-off cannot fall between the check and the new deadline.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shuttingDown || c.cutOff {
		return false
	}
	if !c.listed {
		s.waiting.pushBack(c)
	}
	c.reading = true
	c.nc.SetReadDeadline(deadline)
	return true
}

// answering takes c off the waiting list while its check runs, so that it is not cut off: false
// when it was cut off already.
func (s *Server) answering(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.cutOff {
		return false
	}
	s.waiting.remove(c)
	c.reading = false
	return true
}

// answered puts c back on the waiting list, at its end, to write its answer: a client that does not
// take it waits on itself. It reports whether the server is shutting down.
func (s *Server) answered(c *conn) (shuttingDown bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waiting.pushBack(c)
	return s.shuttingDown
}

func (s *Server) serveConn(c *conn) {
	c.started.Store(true)
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.waiting.remove(c)
		s.mu.Unlock()
		s.connWait.Done()
	}()
	c.r = bufio.NewReaderSize(c.nc, 1024)
	buf := make([]byte, 0, 512)
	for first := true; ; first = false {
		// The first request has ReadHeaderTimeout from the accept; a next one, IdleTimeout to begin
		// and then ReadHeaderTimeout to arrive whole.
		if !first {
			if !s.await(c, time.Now().Add(s.opts.IdleTimeout)) {
				c.nc.Close()
				return
			}
			if _, err := c.r.Peek(1); err != nil {
				c.nc.Close()
				return
			}
		}
		if !s.await(c, time.Now().Add(s.opts.ReadHeaderTimeout)) {
			c.nc.Close()
			return
		}
		req, err := readRequest(c.r, s.opts.MaxHeaderBytes)
		if err != nil {
			s.refuse(c, err, buf) // still waiting on its client: it may be cut off while it lingers
			return
		}
		if !s.answering(c) {
			c.nc.Close()
			return
		}
		resp := s.route(req)
		resp.close = s.answered(c) || resp.close || !req.keepAlive
		buf = appendResponse(buf[:0], resp, req.method == "HEAD", time.Now())
		c.nc.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
		if resp.close {
			writeLast(c.nc, buf)
			s.close(c)
			return
		}
		if _, err := c.nc.Write(buf); err != nil {
			s.close(c)
			return
		}
	}
}

// refuse answers a request head that was refused, and closes the connection. A client that went
// away, or did not send its head in time, gets no answer: like net/http, the server just closes.
func (s *Server) refuse(c *conn, err error, buf []byte) {
	var refused *httpError
	if !errors.As(err, &refused) {
		c.nc.Close()
		return
	}
	resp := &response{status: refused.status, body: refused.reason + "\n", close: true}
	c.nc.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
	writeLast(c.nc, appendResponse(buf[:0], resp, false, time.Now()))
	s.lingeringClose(c)
}

// writeLast writes the last answer of a connection and, where the connection can
// (rawconn.FDConn.WriteLast), its end with it: the answer and the FIN in one segment, a packet less
// for the kernel to send through both ends' network stacks at every probe of a kubelet, whose
// every connection carries one request.
func writeLast(nc net.Conn, answer []byte) {
	if last, ok := nc.(interface{ WriteLast([]byte) (int, error) }); ok {
		last.WriteLast(answer)
		return
	}
	nc.Write(answer)
}

// close ends a connection after an answer. When the client sent more than the server read (a
// request pipelined behind the last), it closes as after a refusal.
func (s *Server) close(c *conn) {
	if c.r.Buffered() > 0 {
		s.lingeringClose(c)
		return
	}
	c.nc.Close()
}

// lingeringClose stops writing, then reads what the client still sends for a moment before it
// closes: closing a socket with unread data sends a reset, which can overtake the answer.
func (s *Server) lingeringClose(c *conn) {
	if half, ok := c.nc.(interface{ CloseWrite() error }); ok {
		half.CloseWrite()
		c.nc.SetReadDeadline(time.Now().Add(lingerTimeout))
		io.Copy(io.Discard, io.LimitReader(c.nc, 256<<10))
	}
	c.nc.Close()
}

// Shutdown stops accepting, closes the connections that wait for a request, and waits for the
// answers in flight until ctx ends; then it closes what is left and returns ctx's error. Either way it
// closes the checks' Checkers.
func (s *Server) Shutdown(ctx context.Context) error {
	defer s.closeCheckers()
	s.mu.Lock()
	s.shuttingDown = true
	for l := range s.listeners {
		l.Close()
	}
	for c := s.waiting.head; c != nil; c = c.next {
		if c.reading {
			c.nc.SetReadDeadline(time.Now()) // wakes the read; the loop then closes the connection
		}
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.connWait.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
	}
	s.cancel() // the answers still waiting report that the server is shutting down
	s.mu.Lock()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// closeCheckers closes every check's Checker, once the answers that use them are over or cut off. A
// check still running past the cut-off was cancelled with s.ctx: its Checker returns at once.
func (s *Server) closeCheckers() {
	for _, c := range s.sorted {
		c.Checker.Close()
	}
}

// route answers one request. Only configured names reach a check; nothing of the request but its
// method and path is used.
func (s *Server) route(req *request) *response {
	readOnly := req.method == "GET" || req.method == "HEAD"
	notAllowed := &response{status: 405, body: "method not allowed: want GET or HEAD\n", allow: "GET, HEAD"}
	switch {
	case req.path == "/-/alive":
		if !readOnly {
			return notAllowed
		}
		return &response{status: 200, body: "alive\n"}
	case req.path == "/metrics" && s.opts.Metrics:
		if !readOnly {
			return notAllowed
		}
		var b strings.Builder
		writeMetrics(&b, s.sorted, s.cutOff.Load())
		return &response{status: 200, contentType: metricsContentType, body: b.String()}
	}
	c := s.checks[req.path[1:]]
	if c == nil {
		return &response{status: 404, body: "no such check\n"}
	}
	if !readOnly {
		return notAllowed
	}
	report := c.answer(s.ctx)
	status := 200
	if report.Result != probe.Healthy {
		status = 503
	}
	return &response{status: status, body: report.Line() + "\n"}
}
