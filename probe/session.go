package probe

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/health-check-proxy/health-check-proxy/internal/rawconn"
	"github.com/health-check-proxy/health-check-proxy/probe/internal/http1"
)

// Session runs one check again and again, as `health-check serve` does, at a fraction of what a run
// from scratch costs: the upstream connection stays open between checks (HTTP/1.1 keep-alive, one
// HTTP/2 connection for gRPC), a connection that must be redialed resumes its TLS session, and the
// TLS files are read again only when they change on disk. tcp:// and tls:// checks have nothing to
// keep: a new connection is what they check.
//
// Run, the exec path, shares the checkers and none of this: it opens one connection, sends one
// request with "Connection: close", and reads the TLS files at every run. A Session is the checkers'
// connSource (attempt.go) for its checks, as oneShot (run.go) is for Run's.
type Session struct {
	config Config

	mu       sync.Mutex // one check at a time: the kept connection carries one request at a time
	files    *tlsFiles  // read only for a TLS target
	svid     sessionSVID
	idleHTTP *httpConn
	idleGRPC *grpcConn

	openedCount, reusedCount atomic.Uint64
}

// NewSession is a session for config; an invalid config is reported by each Check, as Run reports it.
func NewSession(config Config) *Session {
	return &Session{config: config, files: &tlsFiles{options: config.TLS}}
}

// Check runs the check once, within the config's Timeout and with its retries, like Run.
func (s *Session) Check(ctx context.Context) Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return runChecks(ctx, &s.config, nil, s)
}

// Config is the session's check, as NewSession got it.
func (s *Session) Config() Config { return s.config }

// UpstreamConnections counts the upstream requests that opened a new connection and those that reused
// a kept one.
func (s *Session) UpstreamConnections() (opened, reused uint64) {
	return s.openedCount.Load(), s.reusedCount.Load()
}

// Close closes the kept connections, and the Workload API's stream.
func (s *Session) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeIdle()
	s.svid.close()
}

func (s *Session) closeIdle() {
	if s.idleHTTP != nil {
		s.idleHTTP.Close()
		s.idleHTTP = nil
	}
	if s.idleGRPC != nil {
		s.idleGRPC.tcp.Close()
		s.idleGRPC = nil
	}
}

// tlsConfig is the TLS configuration of the next connection, and the note for the line when new files
// on disk are bad. When the files changed, the kept connections go: they were opened with the old ones.
func (s *Session) tlsConfig(*Config) (*tls.Config, string, error) {
	config, changed, note, err := s.files.current()
	if changed {
		s.closeIdle()
	}
	return config, note, err
}

// generation is that of the TLS material new connections are opened with.
func (s *Session) generation() uint64 {
	return s.files.generation + s.svid.generation // both only grow: the sum changes with either
}

// opened counts a new connection and stamps it with the TLS material's generation.
func (s *Session) opened(conn *keptState) {
	s.openedCount.Add(1)
	conn.generation = s.generation()
}

// keepsAlive is true: the next check's request goes on the same connection.
func (s *Session) keepsAlive() bool { return true }

// dial opens a connection as dial does. A session's connections read and write with raw system calls
// (see internal/rawconn): serve waits for the upstream at every check, and each wait would otherwise
// wake the Go runtime's system monitor at the next read or write. Run's connections are left alone.
func (s *Session) dial(ctx context.Context, c *Config, addr string, log logf) (net.Conn, error) {
	conn, err := dial(ctx, c, addr, log)
	if err != nil {
		return conn, err
	}
	return rawconn.Wrap(conn), nil
}

// takeHTTP returns the kept HTTP/1.1 connection when it is still open and quiet, or nil.
func (s *Session) takeHTTP(log logf) *httpConn {
	if s.idleHTTP == nil {
		return nil
	}
	conn := s.idleHTTP
	s.idleHTTP = nil
	if conn.generation != s.generation() || !quiet(conn.Conn) {
		log("the kept connection is closed or stale: opening a new one")
		conn.Close()
		return nil
	}
	s.reusedCount.Add(1)
	conn.reused = true
	return conn
}

// takeGRPC returns the kept HTTP/2 connection when it can take a call with a body of bodyLen bytes,
// or nil.
func (s *Session) takeGRPC(bodyLen int, log logf) *grpcConn {
	if s.idleGRPC == nil {
		return nil
	}
	conn := s.idleGRPC
	s.idleGRPC = nil
	if conn.generation != s.generation() || !conn.client.Reusable(bodyLen) {
		log("the kept HTTP/2 connection cannot take another call: opening a new one")
		conn.tcp.Close()
		return nil
	}
	s.reusedCount.Add(1)
	conn.reused = true
	return conn
}

// releaseGRPC ends the use of conn: it is kept for the next check when reusable, and closed otherwise.
// Closing the TCP connection is enough: no close_notify.
func (s *Session) releaseGRPC(conn *grpcConn, reusable bool) {
	if !reusable {
		conn.tcp.Close()
		return
	}
	s.idleGRPC = conn
}

// releaseHTTP ends the use of conn for resp: it keeps conn for the next check when the rest of the
// answer could be read and leaves the connection reusable, and closes it otherwise.
func (s *Session) releaseHTTP(conn *httpConn, resp *http1.Response) {
	if !http1.Drain(conn.reader, resp) {
		conn.Close()
		return
	}
	if s.idleHTTP != nil { // the first hop of a redirect on another connection: keep the newest
		s.idleHTTP.Close()
	}
	s.idleHTTP = conn
}

// sessionSVID is a Session's side of the Workload API: the watcher, started at the first check that
// needs it, and the TLS configuration made with its latest SVID.
type sessionSVID struct {
	watcher  *svidWatcher
	base     *tls.Config // the configuration from the files that config was made from
	received uint64      // the watcher's count of the SVID config holds
	config   *tls.Config
	// generation counts the configurations made: a kept connection opened with an older one, and so
	// with an older SVID, is closed.
	generation uint64
}

// svidConfig is base with the Workload API's latest SVID, for the next connection. The session's
// first check starts the stream and waits within ctx for the first SVID; later ones take the latest
// without waiting, and get the stream's latest error only when none has come yet.
func (s *Session) svidConfig(ctx context.Context, _ *Config, base *tls.Config, log logf) (*tls.Config, error) {
	v := &s.svid
	first := v.watcher == nil
	if first {
		v.watcher = startSVIDWatcher(s.config.TLS.WorkloadAPI, s.config.UserAgent)
	}
	svid, received, err := v.watcher.latest(ctx, first)
	if err != nil {
		return nil, err
	}
	if v.config != nil && base == v.base && received == v.received {
		return v.config, nil
	}
	config, err := s.config.TLS.withSVID(base, svid)
	if err != nil {
		return nil, err
	}
	// A new SVID starts a new cache of TLS sessions: a resumed session would skip presenting it.
	config.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	v.base, v.received, v.config = base, received, config
	v.generation++
	s.closeIdle() // opened with the last SVID
	log("Workload API %s: SVID %s from the stream kept open (%d SVIDs, %d federated bundles)", s.config.TLS.WorkloadAPI, svid.id, svid.answered, svid.federated)
	return config, nil
}

// close stops the stream; a later check starts a new one.
func (v *sessionSVID) close() {
	if v.watcher != nil {
		v.watcher.Close()
	}
	*v = sessionSVID{generation: v.generation}
}

// quiet reports whether a kept connection is still open with nothing to read: a server that closed it
// while it was idle, or sent something unasked, makes it unusable. It peeks at the socket under any
// TLS; a connection it cannot peek at is taken as quiet, and the redial on a failed first read covers
// it.
func quiet(conn net.Conn) bool {
	if tlsConn, ok := conn.(*tls.Conn); ok {
		conn = tlsConn.NetConn()
	}
	return rawconn.Quiet(conn)
}

// tlsFiles is a session's TLS material: loaded from the files, and loaded again when one of them
// changes on disk (a rotated Kubernetes Secret swaps a symlink: the file it points to changes).
type tlsFiles struct {
	options TLSOptions
	stamps  [3]fileStamp // of CACert, Cert and Key when config was loaded, or when loading last failed
	config  *tls.Config  // the last good configuration, with the session cache of its connections
	// generation counts the configurations loaded: a kept connection of an older one is closed.
	generation uint64
	problem    error  // the files on disk now are bad; config is the last good one
	note       string // for the line, while problem lasts
}

// fileStamp is what says that a file changed: its identity, size and modification time.
type fileStamp struct {
	inode, device uint64
	size          int64
	modified      time.Time
	err           string
}

func stampOf(path string) fileStamp {
	if path == "" {
		return fileStamp{}
	}
	stamp, err := statStamp(path)
	if err != nil {
		return fileStamp{err: err.Error()}
	}
	return stamp
}

// current returns the configuration to use: loaded again when the files changed since the last look.
// changed: a new configuration replaced the last one. note: the files changed into something that does
// not load, and the last good configuration is still in use.
func (f *tlsFiles) current() (config *tls.Config, changed bool, note string, err error) {
	stamps := [3]fileStamp{stampOf(f.options.CACert), stampOf(f.options.Cert), stampOf(f.options.Key)}
	if f.config != nil && stamps == f.stamps && f.problem == nil {
		return f.config, false, "", nil
	}
	if stamps != f.stamps || f.config == nil && f.problem == nil {
		f.stamps = stamps
		loaded, err := f.options.Load()
		if err == nil {
			// Every connection of this configuration resumes the TLS sessions of the others; a new
			// configuration starts a new cache, so that a new client certificate is presented in a
			// full handshake rather than skipped by a resumption.
			loaded.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			f.config, f.problem = loaded, nil
			f.generation++
			return f.config, true, "", nil
		}
		f.problem, f.note = err, ""
	}
	if f.config == nil {
		return nil, false, "", f.problem
	}
	if f.note == "" {
		f.note = f.keepingNote()
	}
	return f.config, false, f.note, nil
}

// keepingNote says which file is bad and that the last good material is still in use.
func (f *tlsFiles) keepingNote() string {
	if _, err := (TLSOptions{CACert: f.options.CACert}).Load(); err != nil {
		return fmt.Sprintf("-cacert: keeping the last good CA certificates: %v", err)
	}
	return fmt.Sprintf("-cert: keeping the last good certificate: %v", f.problem)
}
