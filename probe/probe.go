// Package probe checks one health endpoint — HTTP(S), gRPC health, TCP or TLS, with client
// certificates when the endpoint demands them — and says whether it is healthy, unhealthy or
// unreachable. It is the library behind cmd/health-check: no flag parsing and no os.Exit here, so
// every behaviour is testable without a process.
package probe

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/health-check-proxy/health-check-proxy/probe/internal/printable"
)

// Result is the verdict of a check, from best to worst.
type Result int

const (
	// Healthy: the endpoint answered, and the answer is healthy.
	Healthy Result = iota
	// Unhealthy: the endpoint answered, and the answer is not healthy.
	Unhealthy
	// Unreachable: no answer — DNS, connect, TLS handshake or verification failed, or time ran out —
	// or none that could be read: malformed HTTP/1.1, HTTP/2 or gRPC framing is not an answer to judge,
	// and is more often the wrong port or protocol than an unhealthy endpoint.
	Unreachable
	// Usage: the check could not be attempted because its configuration is wrong.
	Usage
)

// Exit codes of the health-check command, one per Result. 2 is never used: Docker reserves it.
const (
	ExitHealthy     = 0
	ExitUnhealthy   = 1
	ExitUnreachable = 3
	ExitUsage       = 64 // EX_USAGE from sysexits.h
)

// ExitCode is the process exit code that reports r.
func (r Result) ExitCode() int {
	switch r {
	case Healthy:
		return ExitHealthy
	case Unhealthy:
		return ExitUnhealthy
	case Unreachable:
		return ExitUnreachable
	default:
		return ExitUsage
	}
}

// String is the word that starts the failure line.
func (r Result) String() string {
	switch r {
	case Healthy:
		return "healthy"
	case Unhealthy:
		return "unhealthy"
	case Unreachable:
		return "unreachable"
	default:
		return "usage"
	}
}

// usageError is a configuration the check cannot start with: a bad flag, URL or value, or a
// certificate or key file that is missing, unreadable or does not match.
type usageError struct{ Err error }

func (e *usageError) Error() string { return e.Err.Error() }
func (e *usageError) Unwrap() error { return e.Err }

// usageErrorf builds a usageError the way fmt.Errorf builds an error.
func usageErrorf(format string, args ...any) error {
	return &usageError{Err: fmt.Errorf(format, args...)}
}

// isUsage reports whether err is (or wraps) a usageError.
func isUsage(err error) bool {
	var usage *usageError
	return errors.As(err, &usage)
}

// maxLineBytes bounds the one failure line. The kubelet keeps 10 KiB of an exec probe's output and
// Docker 4 KiB of a health check's; a line a person reads in `kubectl describe` is far shorter.
const maxLineBytes = 512

// sanitize makes text from a server safe for the one output line, and at most max bytes.
func sanitize(s string, max int) string { return printable.Sanitize(s, max) }

// oneLine joins a line's parts — "unhealthy: ", what was checked, why, " after 2 attempts" — into the
// one output line: sanitized, and at most maxLineBytes. When it is too long, what was checked is cut
// first; the reason is cut only when it alone is too long; prefix and suffix are kept whole.
func oneLine(prefix, checked, reason, suffix string) string {
	prefix, suffix = sanitize(prefix, maxLineBytes), sanitize(suffix, maxLineBytes)
	room := maxLineBytes - len(prefix) - len(suffix)
	reason = sanitize(reason, room)
	if checked == "" {
		return prefix + reason + suffix
	}
	// A cut "checked" keeps at least a few words, or goes entirely.
	const separator, shortest = ": ", 16
	if room -= len(reason) + len(separator); room < shortest {
		return prefix + reason + suffix
	}
	return prefix + sanitize(checked, room) + separator + reason + suffix
}

// UsageLine is the one line that reports a usage error, under the rules of every other line: control
// characters replaced, at most maxLineBytes, the error's reason cut before the hint is. The errors of
// this package quote a target URL only redacted (RedactURL); the caller's own errors must too.
func UsageLine(err error, hint string) string {
	if hint != "" {
		hint = " " + hint
	}
	return oneLine(Usage.String()+": ", "", err.Error(), hint)
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

// logf prints a -v line; it is a no-op without -v.
type logf func(format string, args ...any)

// errorText is an error's message for the failure line; a deadline running out reads as "timed out",
// which Run completes with the -timeout that ran out.
func errorText(err error) string {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return "timed out"
	}
	return err.Error()
}

// since is the time since t for a -v line, rounded to 10 µs.
func since(t time.Time) string {
	return time.Since(t).Round(10 * time.Microsecond).String()
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
