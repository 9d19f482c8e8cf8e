package serve

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/health-check-proxy/health-check-proxy/probe"
)

// Checker runs one configured check against its upstream and reports what it found. It must return
// when ctx is done. It is the seam between the server, which knows nothing of the wire, and the
// probe, which knows nothing of the server. The server owns its Checkers: Shutdown closes them.
type Checker interface {
	Check(ctx context.Context) probe.Report
	// Close ends what the Checker keeps between checks (upstream connections, a Workload API
	// stream), as a client that leaves: the agent sees the stream cancelled, not the connection cut.
	Close()
}

// ConnectionReporter is implemented by a Checker that keeps its upstream connections open between
// checks: /metrics shows how many checks opened a new connection and how many reused one. A Checker
// without it shows zero for both.
type ConnectionReporter interface {
	UpstreamConnections() (opened, reused uint64)
}

// Check is one route of the server: GET /Name runs Checker, whose answer is bounded by Timeout.
type Check struct {
	// Name is the path of the check: lowercase letters, digits and '-' (see ValidName).
	Name    string
	Checker Checker
	// Timeout bounds each answer: past it the probe gets 503 with an "unreachable" line, whether or
	// not the Checker has returned. It is the check's -timeout.
	Timeout time.Duration
}

// answerMargin is how long past its Timeout an answer may wait for the Checker's own report, which
// is bounded by the same timeout, before the server reports the timeout itself. probe.Run ends a few
// milliseconds after its deadline at most; the margin is for a loaded machine.
const answerMargin = 100 * time.Millisecond

// A check is a Check with what the server keeps for it: the call in flight that concurrent probes
// share, the last result (to log changes), and its counters.
type check struct {
	Check
	upstream *semaphore
	log      func(format string, args ...any)

	mu       sync.Mutex
	inFlight *call
	calls    chan *call // to work, the check's goroutine, started at the first probe
	last     probe.Result
	seen     bool // last is set

	counters checkCounters
}

// call is one upstream check that every probe arriving while it runs waits for.
type call struct {
	done   chan struct{}
	report probe.Report
}

// answer returns the report for one probe: that of the upstream call in flight, or of a new one. It
// waits at most Timeout plus a margin, and less when ctx, the server's, ends first.
func (c *check) answer(ctx context.Context) probe.Report {
	c.counters.probes.Add(1)
	c.mu.Lock()
	current := c.inFlight
	if current == nil {
		current = &call{done: make(chan struct{})}
		c.inFlight = current
		if c.calls == nil {
			c.calls = make(chan *call, 1) // one call in flight at a time: a send never waits
			go c.work(ctx)
		}
		c.calls <- current
	}
	c.mu.Unlock()

	timer := time.NewTimer(c.Timeout + answerMargin)
	defer timer.Stop()
	select {
	case <-current.done:
		return current.report
	case <-timer.C:
		return c.notChecked(fmt.Sprintf("no answer within -timeout %s", c.Timeout))
	case <-ctx.Done():
		return c.notChecked("the server is shutting down")
	}
}

// work runs the check's upstream calls, one at a time, until ctx ends. The calls run on a goroutine
// of their own, not on the first waiting probe's: the probes that join a call must not lose their
// answer when the first one goes away. And on one goroutine for the check's life, not one per call:
// a new goroutine grows a new stack through TLS and the socket calls at every call, 6 % of serve's
// CPU per probe in a profile (perf record).
func (c *check) work(ctx context.Context) {
	for {
		select {
		case current := <-c.calls:
			c.run(ctx, current)
		case <-ctx.Done():
			return // a call still queued has waiters, who see ctx end too
		}
	}
}

// run makes the upstream call, unless the server's limit of concurrent upstream calls is reached:
// then every probe waiting on it gets a quick 503 rather than a place in a queue that might only
// grow.
func (c *check) run(ctx context.Context, current *call) {
	defer func() {
		c.mu.Lock()
		c.inFlight = nil
		c.mu.Unlock()
		close(current.done)
	}()
	if !c.upstream.tryAcquire() {
		current.report = c.notChecked(fmt.Sprintf("busy: %d upstream checks already in flight", c.upstream.size()))
		c.counters.busy.Add(1)
		return
	}
	defer c.upstream.release()
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	current.report = c.Checker.Check(ctx)
	c.counters.record(current.report)
	c.logChange(current.report)
}

// notChecked is the report of a probe that got no upstream answer: the line names the check, whose
// target a Checker's own report would name.
func (c *check) notChecked(why string) probe.Report {
	return probe.Report{Result: probe.Unreachable, Checked: "check " + c.Name, Detail: why}
}

// logChange logs the report when its result differs from the last one, so that the sidecar's log
// tells why a probe started failing: the kubelet's event for an httpGet probe shows only the status.
func (c *check) logChange(report probe.Report) {
	c.mu.Lock()
	changed := !c.seen || c.last != report.Result
	c.last, c.seen = report.Result, true
	c.mu.Unlock()
	if changed {
		c.log("check %s: %s", c.Name, report.Line())
	}
}

// semaphore bounds the upstream calls in flight across all checks.
type semaphore struct{ slots chan struct{} }

func newSemaphore(n int) *semaphore { return &semaphore{slots: make(chan struct{}, n)} }

func (s *semaphore) tryAcquire() bool {
	select {
	case s.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s *semaphore) release()  { <-s.slots }
func (s *semaphore) size() int { return cap(s.slots) }

// latencyBuckets are the upper bounds, in seconds, of the upstream latency histogram: from a
// loopback check (about a millisecond) to the longest useful probe timeout.
var latencyBuckets = [...]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// checkCounters are a check's metrics. They are atomics: probes and scrapes run concurrently.
type checkCounters struct {
	probes  atomic.Uint64                  // probes answered, upstream calls shared or not
	results [probe.Usage + 1]atomic.Uint64 // upstream calls by result
	busy    atomic.Uint64                  // calls not made: the upstream limit was reached
	// latency: upstream calls by the first bucket that holds their duration (the last one: +Inf).
	latency      [len(latencyBuckets) + 1]atomic.Uint64
	latencyNanos atomic.Uint64
}

func (c *checkCounters) record(report probe.Report) {
	if report.Result >= 0 && int(report.Result) < len(c.results) {
		c.results[report.Result].Add(1)
	}
	seconds := report.Elapsed.Seconds()
	bucket := len(latencyBuckets)
	for i, bound := range latencyBuckets {
		if seconds <= bound {
			bucket = i
			break
		}
	}
	c.latency[bucket].Add(1)
	if report.Elapsed > 0 {
		c.latencyNanos.Add(uint64(report.Elapsed))
	}
}
