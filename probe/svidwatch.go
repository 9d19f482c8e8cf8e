package probe

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/health-check-proxy/health-check-proxy/probe/internal/grpcwire"
)

// A Session keeps the Workload API's FetchX509SVID stream open, as go-spiffe's X509Source does: the
// agent sends every rotated SVID on it, so a check costs the agent nothing, and a new SVID is in use
// as soon as the agent has it. Run, the exec path, never starts one: it asks once per run
// (workloadAPIConfig).

// The delays between two calls of FetchX509SVID after the stream ended or failed: the first, doubled
// at every failure in a row up to the last. An agent that restarts is back within the first few; one
// that is down for long is asked every few seconds, not in a tight loop.
const (
	svidRetryFirst = 100 * time.Millisecond
	svidRetryMax   = 5 * time.Second
)

// svidWatcher keeps one FetchX509SVID stream open, on its own goroutine, and holds the last good SVID
// it carried. When the stream ends or fails (the agent restarts, resets it, sends a bad message), it
// calls again after a delay, and the last good SVID stays in use meanwhile.
type svidWatcher struct {
	addr, userAgent string
	stop            context.CancelFunc
	done            chan struct{} // closed when the goroutine has returned

	mu       sync.Mutex
	svid     *clientSVID   // the last good one; nil until the first came
	received uint64        // counts the good SVIDs: a new count is a new SVID
	err      error         // why the stream last ended or failed, or its last message was bad
	news     chan struct{} // closed and replaced whenever svid or err changes
}

// startSVIDWatcher calls FetchX509SVID at the Workload API addr and keeps reading its stream until
// Close.
func startSVIDWatcher(addr, userAgent string) *svidWatcher {
	ctx, stop := context.WithCancel(context.Background())
	w := &svidWatcher{addr: addr, userAgent: userAgent, stop: stop, done: make(chan struct{}), news: make(chan struct{})}
	go w.run(ctx)
	return w
}

// Close ends the stream (RST_STREAM CANCEL, as a client that goes away) and waits for the goroutine.
func (w *svidWatcher) Close() {
	w.stop()
	<-w.done
}

// latest returns the last good SVID and its count. Without one, it waits within ctx for the first,
// and then returns the stream's latest error; unless patient, it waits only while the stream has not
// failed yet. The first check of a session is patient: an agent that is starting, or has not attested
// the workload yet, may answer within the check's timeout, and the stream calls again meanwhile.
func (w *svidWatcher) latest(ctx context.Context, patient bool) (*clientSVID, uint64, error) {
	for {
		w.mu.Lock()
		svid, received, err, news := w.svid, w.received, w.err, w.news
		w.mu.Unlock()
		switch {
		case svid != nil:
			return svid, received, nil
		case err != nil && !patient:
			return nil, 0, err
		}
		select {
		case <-news:
		case <-w.done:
			return nil, 0, fmt.Errorf("the Workload API at %s: the session is closed", w.addr)
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("the Workload API at %s sent no SVID yet", w.addr)
			}
			return nil, 0, err
		}
	}
}

// run calls FetchX509SVID again and again until Close, with a growing delay after each stream that
// brought no good SVID.
func (w *svidWatcher) run(ctx context.Context) {
	defer close(w.done)
	delay := svidRetryFirst
	for {
		if w.watch(ctx) {
			delay = svidRetryFirst
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		delay = min(2*delay, svidRetryMax)
	}
}

// watch calls FetchX509SVID and reads its stream until it ends, fails, or Close; every good SVID
// replaces the last. It reports whether one came.
func (w *svidWatcher) watch(ctx context.Context) (gotOne bool) {
	err := w.stream(ctx, func(svid *clientSVID) {
		gotOne = true
		w.mu.Lock()
		defer w.mu.Unlock()
		w.svid, w.err = svid, nil
		w.received++
		close(w.news)
		w.news = make(chan struct{})
	})
	if ctx.Err() == nil {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.err = err
		close(w.news)
		w.news = make(chan struct{})
	}
	return gotOne
}

// stream is one FetchX509SVID call: it hands every good SVID of the stream to got, and returns why
// the stream is over, in the words of the exec path's fetch ("the Workload API at ADDR: ...").
func (w *svidWatcher) stream(ctx context.Context, got func(*clientSVID)) error {
	conn, err := dialWorkloadAPI(ctx, w.addr)
	if err != nil {
		return fmt.Errorf("the Workload API at %s: %w", w.addr, err)
	}
	defer conn.Close()
	// The stream has no deadline, since it is meant to last: Close wakes its read.
	wake := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer wake()
	client, resp, err := startX509SVIDStream(ctx, conn, w.userAgent)
	if err != nil {
		return fmt.Errorf("the Workload API at %s: %w", w.addr, err)
	}
	defer func() {
		if !resp.EndStream {
			_ = client.Cancel() // Close, or a bad message: the agent stops sending to us
		}
	}()
	for {
		answer, err := decodeWorkloadAPIAnswer(resp)
		if err != nil {
			return fmt.Errorf("the Workload API at %s: %w", w.addr, err)
		}
		svid, err := defaultSVID(w.addr, answer)
		if err != nil {
			return err
		}
		got(svid)
		if resp.EndStream {
			return fmt.Errorf("the Workload API at %s ended the stream", w.addr)
		}
		// The agent sends the next message at the next rotation.
		if err := client.ReadMore(resp, grpcwire.MessageBytes(resp.Body), maxStreamBody, grpcwire.MessageComplete); err != nil {
			return fmt.Errorf("the Workload API at %s: %w", w.addr, err)
		}
	}
}
