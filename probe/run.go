package probe

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/health-check-proxy/health-check-proxy/probe/internal/http1"
)

// Report is what a run found: the verdict of its last attempt, why, and how long it took.
type Report struct {
	Result   Result
	Checked  string // what was checked, e.g. "GET https://localhost:8443/healthz"
	Detail   string // why it failed, or what the healthy answer was
	Attempts int
	Elapsed  time.Duration
	// Insecure says that the server's certificate was not verified (-insecure); the line says so too.
	Insecure bool
	// Note ends the line, where it is never cut: a Session's word that new TLS files on disk are bad
	// and the last good ones are still in use.
	Note string
}

// insecureNote ends the line of a run with -insecure, where it is never cut.
const insecureNote = " (-insecure: the server's certificate was not verified)"

// Line is the one line a person reads in `kubectl describe pod` or `docker inspect`, sanitized and
// bounded: "unhealthy: GET https://localhost:8443/healthz: 503 Service Unavailable after 2 attempts".
func (r Report) Line() string {
	suffix := ""
	if r.Attempts > 1 {
		suffix = fmt.Sprintf(" after %d attempts", r.Attempts)
	}
	if r.Insecure {
		suffix += insecureNote
	}
	if r.Note != "" {
		suffix += " (" + r.Note + ")"
	}
	return oneLine(r.Result.String()+": ", r.Checked, r.Detail, suffix)
}

// Run checks c.Target: up to 1+c.Retries attempts, all within c.Timeout. verbose, when not nil,
// receives -v lines: phases with their timings, the TLS session, the answer.
func Run(ctx context.Context, c *Config, verbose io.Writer) Report {
	return runChecks(ctx, c, verbose, oneShot{})
}

// runChecks is a run of c's check, with its connections and TLS material from conns: Run's own, new at
// every run, or a Session's.
func runChecks(ctx context.Context, c *Config, verbose io.Writer, conns connSource) Report {
	start := time.Now()
	var s *scheme
	if c.Target != nil {
		s = lookupScheme(c.Target.Scheme) // the run's one look-up: the checker gets the row
	}
	report := Report{Checked: c.describe(s)}
	finish := func(o outcome, attempts int) Report {
		report.Result, report.Detail, report.Attempts = o.result, o.detail, attempts
		report.Elapsed = time.Since(start)
		return report
	}
	if err := c.Validate(); err != nil { // it knows the scheme, too
		return finish(outcome{Usage, err.Error()}, 0)
	}
	a := &attempt{config: c, scheme: s, conns: conns, log: verboseLog(verbose, start)}
	// An HTTP check drops the connection's own headers (Validate refuses them on gRPC): say so.
	for _, name := range c.HopByHopHeaders() {
		a.log("-header %s is not sent: the connection is the probe's own (a hop-by-hop header)", name)
	}
	if s.tls {
		var err error
		if report.Note, err = a.loadTLS(verbose != nil); err != nil {
			return finish(outcome{Usage, err.Error()}, 0)
		}
		report.Insecure = c.TLS.Insecure
	}
	last, attempts := a.repeat(ctx, start.Add(c.Timeout), report.Checked, verbose != nil)
	return finish(last, attempts)
}

// verboseLog is the -v log of a run that started at start, or a no-op without verbose.
func verboseLog(verbose io.Writer, start time.Time) logf {
	if verbose == nil {
		return func(string, ...any) {}
	}
	return func(format string, args ...any) {
		fmt.Fprintf(verbose, "%7.2fms  %s\n", float64(time.Since(start).Microseconds())/1000, fmt.Sprintf(format, args...))
	}
}

// loadTLS gives the attempts the TLS configuration from the files, and returns the note for the line
// when new files on disk are bad and the last good ones are still in use.
func (a *attempt) loadTLS(verbose bool) (note string, err error) {
	if a.tlsConfig, note, err = a.conns.tlsConfig(a.config); err != nil {
		return "", err
	}
	if a.config.TLS.Insecure {
		a.log("-insecure: the server's certificate is not verified")
	}
	if verbose {
		logClientCertificate(a.tlsConfig, a.log)
	}
	return note, nil
}

// repeat runs the scheme's checker until an attempt is healthy or a usage error, or the retries or the
// time run out, and returns the last attempt's outcome and how many ran.
func (a *attempt) repeat(ctx context.Context, deadline time.Time, checked string, verbose bool) (last outcome, attempts int) {
	c := a.config
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	// With -workload-api, the TLS material comes from the agent, at the first attempt that reaches it.
	fromFiles := a.tlsConfig
	needSVID := a.scheme.tls && c.TLS.WorkloadAPI != ""
	for attempts <= c.Retries {
		attempts++
		a.log("attempt %d: %s", attempts, checked)
		if needSVID {
			last, needSVID = a.useSVID(ctx, fromFiles, verbose)
		}
		if !needSVID {
			last = a.scheme.check(ctx, a)
		}
		// The connection's deadline is the context's, and may fire a moment before the context's own
		// timer: the clock, not ctx.Err, says whether the time is up.
		timeUp := !time.Now().Before(deadline)
		if last.result == Unreachable && timeUp {
			last.detail = fmt.Sprintf("no answer within -timeout %s (%s)", c.Timeout, last.detail)
		}
		a.log("attempt %d: %s: %s", attempts, last.result, last.detail)
		if last.result == Healthy || last.result == Usage || attempts > c.Retries || timeUp {
			break
		}
		if !sleep(ctx, c.RetryDelay) {
			break // the delay would outlast the timeout: report the attempt we have
		}
	}
	return last, attempts
}

// useSVID gives the attempts base with the Workload API's SVID as the client certificate. When the
// agent gives none, the attempt is unreachable, and the SVID is still needed.
func (a *attempt) useSVID(ctx context.Context, base *tls.Config, verbose bool) (failure outcome, stillNeeded bool) {
	config, err := a.conns.svidConfig(ctx, a.config, base, a.log)
	if err != nil {
		return unreachable(err), true
	}
	a.tlsConfig = config
	if verbose {
		logClientCertificate(config, a.log)
	}
	return outcome{}, false
}

// oneShot is Run's connSource: every request on a new connection that it closes ("Connection:
// close"), the TLS files read at every run (a rotated certificate is used from the next run on), and
// one Workload API call per run.
type oneShot struct{}

func (oneShot) tlsConfig(c *Config) (*tls.Config, string, error) {
	config, err := c.TLS.Load()
	return config, "", err
}

func (oneShot) svidConfig(ctx context.Context, c *Config, base *tls.Config, log logf) (*tls.Config, error) {
	return c.TLS.workloadAPIConfig(ctx, base, c.UserAgent, log)
}

func (oneShot) dial(ctx context.Context, c *Config, addr string, log logf) (net.Conn, error) {
	return dial(ctx, c, addr, log) // and no rawconn: see Session.dial
}

func (oneShot) opened(*keptState)                          {}
func (oneShot) keepsAlive() bool                           { return false }
func (oneShot) takeHTTP(logf) *httpConn                    { return nil }
func (oneShot) releaseHTTP(c *httpConn, _ *http1.Response) { c.Close() }
func (oneShot) takeGRPC(int, logf) *grpcConn               { return nil }

// releaseGRPC closes the TCP connection: no close_notify, in a process about to exit.
func (oneShot) releaseGRPC(c *grpcConn, _ bool) { c.tcp.Close() }

// sleep waits d unless ctx ends first; it reports whether the full delay passed with time to spare.
func sleep(ctx context.Context, d time.Duration) bool {
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= d {
		return false
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// describe says what a run checks, for the failure line; s is the target's scheme, or nil.
func (c *Config) describe(s *scheme) string {
	if c.Target == nil {
		return ""
	}
	via := ""
	if c.UnixSocket != "" {
		via = " via unix:" + c.UnixSocket
	}
	kind := kindConnection
	if s != nil {
		kind = s.kind
	}
	switch kind {
	case kindHTTP:
		method := c.Method
		if method == "" {
			method = "GET"
		}
		return method + " " + redacted(c.Target) + via
	case kindGRPC:
		return fmt.Sprintf("grpc.health.v1.Health/Check(%q) %s%s", c.GRPCService, redacted(c.Target), via)
	default:
		return redacted(c.Target) + via
	}
}
