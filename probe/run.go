package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"
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

// outcome is one attempt's verdict, as each checker returns it.
type outcome struct {
	result Result
	detail string
}

func healthy(detail string) outcome { return outcome{Healthy, detail} }
func unhealthy(format string, args ...any) outcome {
	return outcome{Unhealthy, fmt.Sprintf(format, args...)}
}
func unreachable(err error) outcome { return outcome{Unreachable, errorText(err)} }

// checker runs one attempt. It must return when ctx is done.
type checker func(ctx context.Context, c *Config, tlsConfig *tls.Config, log logf) outcome

// logf prints a -v line; it is a no-op without -v.
type logf func(format string, args ...any)

// Run checks c.Target: up to 1+c.Retries attempts, all within c.Timeout. verbose, when not nil,
// receives -v lines: phases with their timings, the TLS session, the answer.
func Run(ctx context.Context, c *Config, verbose io.Writer) Report {
	return runChecks(ctx, c, verbose, nil)
}

// runChecks is Run, with its connections and TLS material kept in session when that is not nil.
func runChecks(ctx context.Context, c *Config, verbose io.Writer, session *Session) Report {
	start := time.Now()
	report := Report{Checked: c.describe()}
	finish := func(o outcome, attempts int) Report {
		report.Result, report.Detail, report.Attempts = o.result, o.detail, attempts
		report.Elapsed = time.Since(start)
		return report
	}
	if err := c.Validate(); err != nil {
		return finish(outcome{Usage, err.Error()}, 0)
	}
	log := func(string, ...any) {}
	if verbose != nil {
		log = func(format string, args ...any) {
			fmt.Fprintf(verbose, "%7.2fms  %s\n", float64(time.Since(start).Microseconds())/1000, fmt.Sprintf(format, args...))
		}
	}
	scheme := lookupScheme(c.Target.Scheme) // Validate knows it
	// An HTTP check drops the connection's own headers (Validate refuses them on gRPC): say so.
	for _, name := range c.HopByHopHeaders() {
		log("-header %s is not sent: the connection is the probe's own (a hop-by-hop header)", name)
	}
	var tlsConfig *tls.Config
	if scheme.tls {
		var err error
		if session != nil {
			// The session re-reads the files when they change on disk, and keeps the last good ones.
			tlsConfig, report.Note, err = session.tlsConfig()
		} else {
			// Read the files at every run: a rotated certificate is used from the next run on.
			tlsConfig, err = c.TLS.Load()
		}
		if err != nil {
			return finish(outcome{Usage, err.Error()}, 0)
		}
		if c.TLS.Insecure {
			report.Insecure = true
			log("-insecure: the server's certificate is not verified")
		}
		if verbose != nil {
			logClientCertificate(tlsConfig, log)
		}
	}
	// With -workload-api, the TLS material comes from the agent, at the first attempt that reaches it.
	fromFiles := tlsConfig
	needSVID := scheme.tls && c.TLS.WorkloadAPI != ""

	deadline := start.Add(c.Timeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	check := scheme.check
	if session != nil {
		check = session.checker(scheme)
	}
	var last outcome
	attempts := 0
	for attempts <= c.Retries {
		attempts++
		log("attempt %d: %s", attempts, report.Checked)
		if needSVID {
			var config *tls.Config
			var err error
			if session != nil {
				config, err = session.svidConfig(ctx, fromFiles, log) // from the stream it keeps open
			} else {
				config, err = c.TLS.workloadAPIConfig(ctx, fromFiles, c.UserAgent, log) // one call per run
			}
			if err != nil {
				last = unreachable(err)
			} else {
				tlsConfig, needSVID = config, false
				if verbose != nil {
					logClientCertificate(tlsConfig, log)
				}
			}
		}
		if !needSVID {
			last = check(ctx, c, tlsConfig, log)
		}
		// The connection's deadline is the context's, and may fire a moment before the context's own
		// timer: the clock, not ctx.Err, says whether the time is up.
		timeUp := !time.Now().Before(deadline)
		if last.result == Unreachable && timeUp {
			last.detail = fmt.Sprintf("no answer within -timeout %s (%s)", c.Timeout, last.detail)
		}
		log("attempt %d: %s: %s", attempts, last.result, last.detail)
		if last.result == Healthy || last.result == Usage || attempts > c.Retries || timeUp {
			break
		}
		if !sleep(ctx, c.RetryDelay) {
			break // the delay would outlast the timeout: report the attempt we have
		}
	}
	return finish(last, attempts)
}

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

// describe says what a run checks, for the failure line.
func (c *Config) describe() string {
	if c.Target == nil {
		return ""
	}
	via := ""
	if c.UnixSocket != "" {
		via = " via unix:" + c.UnixSocket
	}
	kind := kindConnection
	if s := lookupScheme(c.Target.Scheme); s != nil {
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

// redacted prints a URL without its user information and query, which may carry a password or a token.
func redacted(u *url.URL) string {
	short := *u
	if short.RawQuery != "" {
		short.RawQuery = "…"
	}
	short.Fragment, short.RawFragment = "", ""
	if at := strings.LastIndex(short.Opaque, "@"); at >= 0 {
		short.Opaque = "…" + short.Opaque[at:] // "http:user:pw@host" parses as opaque
	}
	if short.User == nil {
		return short.String()
	}
	short.User = nil
	text := short.String()
	if i := strings.Index(text, "//"); i >= 0 {
		return text[:i+2] + "…@" + text[i+2:]
	}
	return text
}

// RedactURL is a URL as typed, for a message: without its user information, query and fragment, like
// every URL this package prints, and otherwise as typed, whether or not it parses.
func RedactURL(raw string) string {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		if raw[i] == '?' {
			raw = raw[:i] + "?…"
		} else {
			raw = raw[:i]
		}
	}
	// The authority follows "scheme://", or "scheme:" in a URL such as "http:user:pw@host".
	start := strings.Index(raw, "//") + 2
	if start < 2 {
		start = strings.Index(raw, ":") + 1
	}
	authority := raw[start:]
	if slash := strings.Index(authority, "/"); slash >= 0 {
		authority = authority[:slash]
	}
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		raw = raw[:start] + "…" + raw[start+at:]
	}
	return raw
}

// errorText is an error's message for the failure line; a deadline running out reads as "timed out",
// which Run completes with the -timeout that ran out.
func errorText(err error) string {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return "timed out"
	}
	return err.Error()
}
