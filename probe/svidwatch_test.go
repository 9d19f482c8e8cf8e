package probe

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
)

// svidSession is a Session with -workload-api agent and -spiffe-id serverID against target.
func svidSession(t *testing.T, target, agent string) *Session {
	c := testConfig(t, target)
	c.TLS = TLSOptions{WorkloadAPI: agent, SPIFFEIDs: []string{serverID}}
	session := NewSession(*c)
	t.Cleanup(session.Close)
	return session
}

// waitFor calls condition on the test's goroutine, so that it may use require, until it holds, or
// fails the test after within.
func waitFor(t *testing.T, within time.Duration, condition func() bool, why string) {
	t.Helper()
	for deadline := time.Now().Add(within); !condition(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, why)
		}
	}
}

// requireHealthy runs a check of session that must be healthy, with no note on its line.
func requireHealthy(t *testing.T, session *Session, why string) {
	t.Helper()
	report := session.Check(t.Context())
	require.Equal(t, Healthy, report.Result, "%s: %s", why, report.Line())
	require.Empty(t, report.Note, why)
}

// TestSessionKeepsTheSVIDStreamOpen: a session asks the agent once, however many checks it runs; a
// rotation that the agent pushes on the stream is presented from the next check on, on a new
// connection with a full handshake, without another call.
func TestSessionKeepsTheSVIDStreamOpen(t *testing.T) {
	f := newSPIFFEFixture(t)
	for _, scheme := range []string{"https", "grpcs"} {
		t.Run(scheme, func(t *testing.T) {
			agent := testutil.StartWorkloadAPI(t)
			first := f.svid(t, time.Hour, probeID)
			agent.SetSVID(probeID, first, f.pki.CA, nil)
			var recorder clientIDRecorder
			target := startMTLSTarget(t, scheme, recorder.config(f.svid(t, time.Hour, serverID), f.pki.CA.Pool()))
			session := svidSession(t, target, agent.Addr)

			for range 5 {
				requireHealthy(t, session, "with the first SVID")
			}
			calls, _ := agent.Calls()
			assert.Equal(t, 1, calls, "one FetchX509SVID for all checks")
			assert.Equal(t, 1, agent.OpenStreams(), "and its stream stays open")
			id, serial := recorder.last()
			assert.Equal(t, probeID, id)
			assert.Equal(t, first.Cert.SerialNumber.String(), serial)
			opened, reused := session.UpstreamConnections()
			assert.Equal(t, [2]uint64{1, 4}, [2]uint64{opened, reused})

			rotated := f.svid(t, time.Hour, probeID)
			agent.SetSVID(probeID, rotated, f.pki.CA, nil)
			waitFor(t, 5*time.Second, func() bool {
				requireHealthy(t, session, "across the rotation")
				_, serial := recorder.last()
				return serial == rotated.Cert.SerialNumber.String()
			}, "the server sees the rotated SVID")
			for range 3 {
				requireHealthy(t, session, "with the rotated SVID")
			}
			calls, _ = agent.Calls()
			assert.Equal(t, 1, calls, "the rotation came on the open stream")
			opened, _ = session.UpstreamConnections()
			assert.EqualValues(t, 2, opened, "one new connection for the new SVID, kept from then on")
			recorder.mu.Lock()
			defer recorder.mu.Unlock()
			assert.Len(t, recorder.serials, 2, "two handshakes, the second one full: no resumption of the first SVID's session")
		})
	}
}

// TestSessionSVIDStreamReconnects: when the agent ends the stream, sends a bad SVID, or goes away, the
// checks go on with the SVID the session holds, and the session calls again until the agent answers.
func TestSessionSVIDStreamReconnects(t *testing.T) {
	f := newSPIFFEFixture(t)
	agent := testutil.StartWorkloadAPI(t)
	good := f.svid(t, time.Hour, probeID)
	agent.SetSVID(probeID, good, f.pki.CA, nil)
	var recorder clientIDRecorder
	target := startMTLSTarget(t, "https", recorder.config(f.svid(t, time.Hour, serverID), f.pki.CA.Pool()))
	session := svidSession(t, target, agent.Addr)
	requireHealthy(t, session, "at first")
	callsNow := func() int {
		calls, _ := agent.Calls()
		return calls
	}
	reconnected := func(calls int) func() bool {
		return func() bool {
			requireHealthy(t, session, "with the SVID held")
			return callsNow() == calls && agent.OpenStreams() == 1
		}
	}

	t.Run("the agent ends the stream", func(t *testing.T) {
		agent.EndStreams(status.Error(codes.Unavailable, "agent is restarting"))
		requireHealthy(t, session, "right after")
		waitFor(t, 5*time.Second, reconnected(2), "a second call")
	})

	t.Run("a bad SVID on the stream", func(t *testing.T) {
		bad := *f.svid(t, time.Hour, probeID)
		bad.KeyPKCS8 = f.svid(t, time.Hour, probeID).KeyPKCS8 // a key that is not the certificate's
		agent.SetSVID(probeID, &bad, f.pki.CA, nil)
		waitFor(t, 5*time.Second, func() bool {
			requireHealthy(t, session, "with the last good SVID")
			return callsNow() >= 4 // the bad message ends the stream, and the next call gets it too
		}, "calls again after a bad message")
		agent.SetSVID(probeID, good, f.pki.CA, nil)
		calls := callsNow()
		waitFor(t, 10*time.Second, func() bool {
			requireHealthy(t, session, "with the last good SVID")
			return callsNow() > calls && agent.OpenStreams() == 1
		}, "a good SVID keeps the stream open again")
	})

	t.Run("the agent shuts down cleanly and comes back", func(t *testing.T) {
		calls := callsNow()
		assert.True(t, agent.GracefulStop(5*time.Second), "our stream ended at the agent's GOAWAY, and let it stop")
		requireHealthy(t, session, "while the agent is away")
		agent.Start()
		waitFor(t, 10*time.Second, reconnected(calls+1), "one call to the agent back")
	})

	t.Run("the agent goes away and comes back", func(t *testing.T) {
		calls := callsNow()
		agent.Stop()
		for range 5 {
			requireHealthy(t, session, "while the agent is away")
			time.Sleep(50 * time.Millisecond)
		}
		agent.Start()
		waitFor(t, 10*time.Second, reconnected(calls+1), "one call to the agent back")
	})
	_, serial := recorder.last()
	assert.Equal(t, good.Cert.SerialNumber.String(), serial, "the server only ever saw the good SVID")
}

// TestSessionWaitsForTheAgent: without an SVID, the first check waits for one within its timeout and
// is then unreachable with the agent's error; later checks report the latest error at once, until the
// agent answers.
func TestSessionWaitsForTheAgent(t *testing.T) {
	f := newSPIFFEFixture(t)
	target := startMTLSTarget(t, "https", (&clientIDRecorder{}).config(f.svid(t, time.Hour, serverID), f.pki.CA.Pool()))
	newSession := func(t *testing.T, agent string, timeout time.Duration) *Session {
		c := testConfig(t, target)
		c.Timeout = timeout
		c.TLS = TLSOptions{WorkloadAPI: agent, SPIFFEIDs: []string{serverID}}
		session := NewSession(*c)
		t.Cleanup(session.Close)
		return session
	}

	t.Run("no agent yet", func(t *testing.T) {
		agent := testutil.NewWorkloadAPI(t)
		agent.SetSVID(probeID, f.svid(t, time.Hour, probeID), f.pki.CA, nil)
		session := newSession(t, agent.Addr, 300*time.Millisecond)
		start := time.Now()
		report := session.Check(t.Context())
		assert.Equal(t, Unreachable, report.Result)
		assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "the first check waits for the agent")
		assert.Contains(t, report.Line(), "no answer within -timeout 300ms (the Workload API at "+agent.Addr+": dial unix")
		assert.Contains(t, report.Line(), "no such file or directory")

		start = time.Now()
		report = session.Check(t.Context())
		assert.Equal(t, Unreachable, report.Result)
		assert.Less(t, time.Since(start), 250*time.Millisecond, "a later check does not wait")
		assert.Contains(t, report.Line(), "the Workload API at "+agent.Addr+": dial unix")

		agent.Start()
		waitFor(t, 10*time.Second, func() bool { return session.Check(t.Context()).Result == Healthy },
			"healthy once the agent is there")
	})

	t.Run("no identity yet", func(t *testing.T) {
		agent := testutil.StartWorkloadAPI(t)
		session := newSession(t, agent.Addr, 300*time.Millisecond)
		report := session.Check(t.Context())
		assert.Equal(t, Unreachable, report.Result)
		assert.Contains(t, report.Line(), "the Workload API at "+agent.Addr+": the agent answered grpc-status PERMISSION_DENIED: no identity issued")
		calls, _ := agent.Calls()
		assert.Greater(t, calls, 1, "the first check asked again while it waited")

		agent.SetSVID(probeID, f.svid(t, time.Hour, probeID), f.pki.CA, nil)
		waitFor(t, 10*time.Second, func() bool { return session.Check(t.Context()).Result == Healthy },
			"healthy once the agent has an identity")
	})

	t.Run("an SVID within the first check's timeout", func(t *testing.T) {
		agent := testutil.NewWorkloadAPI(t)
		agent.SetSVID(probeID, f.svid(t, time.Hour, probeID), f.pki.CA, nil)
		session := newSession(t, agent.Addr, 5*time.Second)
		reports := make(chan Report)
		go func() { reports <- session.Check(t.Context()) }()
		time.Sleep(150 * time.Millisecond)
		agent.Start()
		report := <-reports
		assert.Equal(t, Healthy, report.Result, "the first check waits for the agent that starts: %s", report.Line())
	})
}

// TestSessionCloseStopsTheSVIDStream: the stream's goroutine starts at the first check that needs it,
// and Close ends it, cancelling the stream as a client that goes away does.
func TestSessionCloseStopsTheSVIDStream(t *testing.T) {
	f := newSPIFFEFixture(t)
	agent := testutil.StartWorkloadAPI(t)
	agent.SetSVID(probeID, f.svid(t, time.Hour, probeID), f.pki.CA, nil)
	target := startMTLSTarget(t, "https", (&clientIDRecorder{}).config(f.svid(t, time.Hour, serverID), f.pki.CA.Pool()))
	session := svidSession(t, target, agent.Addr)
	assert.Nil(t, session.svid.watcher, "no stream before the first check")

	requireHealthy(t, session, "")
	require.NotNil(t, session.svid.watcher)
	done := session.svid.watcher.done
	session.Close()
	select {
	case <-done:
	default:
		t.Fatal("Close returned before the stream's goroutine")
	}
	waitFor(t, 2*time.Second, func() bool { return agent.OpenStreams() == 0 }, "the agent saw the stream end")
	_, ended := agent.Calls()
	require.Len(t, ended, 1)
	assert.ErrorIs(t, ended[0], context.Canceled, "the stream was cancelled")

	// A check after Close starts a new stream, which the next Close ends.
	requireHealthy(t, session, "after Close")
	calls, _ := agent.Calls()
	assert.Equal(t, 2, calls)
	done = session.svid.watcher.done
	session.Close()
	<-done
}

// TestSessionSVIDWithCACert: -cacert still verifies the server instead of the agent's bundle.
func TestSessionSVIDWithCACert(t *testing.T) {
	f := newSPIFFEFixture(t)
	agent := testutil.StartWorkloadAPI(t)
	agent.SetSVID(probeID, f.svid(t, time.Hour, probeID), f.pki.CA, nil)
	other := testutil.TestPKI(t, testutil.ECDSAP256)
	target := startMTLSTarget(t, "https", (&clientIDRecorder{}).config(other.Server, f.pki.CA.Pool()))
	c := testConfig(t, target)
	c.TLS = TLSOptions{WorkloadAPI: agent.Addr}
	session := NewSession(*c)
	defer session.Close()
	assert.Equal(t, Unreachable, session.Check(t.Context()).Result, "the trust bundle does not verify it")
	c.TLS.CACert = other.CAFile
	withCACert := NewSession(*c)
	defer withCACert.Close()
	requireHealthy(t, withCACert, "-cacert verifies the server")
}
