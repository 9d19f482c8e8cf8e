package testutil

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// WorkloadAPI is a real SPIFFE Workload API server for one test: grpc-go serving go-spiffe's generated
// SpiffeWorkloadAPI service on a unix socket, stopped when the test ends. Like SPIRE's agent, it
// refuses calls without the workload.spiffe.io: true metadata, answers FetchX509SVID with the current
// response, sends every new response (a rotation) on the streams still open, and keeps each stream
// open until the client goes away.
type WorkloadAPI struct {
	// Addr is the socket's address as SPIFFE_ENDPOINT_SOCKET writes it: unix:///path.
	Addr string

	t         testing.TB
	socket    string
	lifecycle sync.Mutex   // Start and Stop
	server    *grpc.Server // nil while stopped
	served    chan struct{}

	mu       sync.Mutex
	response *workload.X509SVIDResponse
	err      error
	calls    int
	ended    []error // why each call's stream ended: the client's cancellation, for a well-behaved one
	open     map[*openStream]struct{}
}

// openStream is a FetchX509SVID call in progress: rotations and endings are sent to it.
type openStream struct {
	rotated chan struct{} // the response changed (buffered: one pending notice is enough)
	end     chan error    // end the stream with this error
	done    chan struct{} // closed when the stream has ended
}

type workloadAPIService struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	w *WorkloadAPI
}

// StartWorkloadAPI serves a Workload API on a socket in a temporary directory of t.
func StartWorkloadAPI(t testing.TB) *WorkloadAPI {
	t.Helper()
	w := NewWorkloadAPI(t)
	w.Start()
	return w
}

// NewWorkloadAPI is a Workload API whose socket is not served yet, as an agent that starts after the
// workload: Start serves it.
func NewWorkloadAPI(t testing.TB) *WorkloadAPI {
	socket := filepath.Join(t.TempDir(), "agent.sock")
	w := &WorkloadAPI{Addr: "unix://" + socket, t: t, socket: socket, open: map[*openStream]struct{}{}}
	t.Cleanup(w.Stop)
	return w
}

// Start serves the socket, with the responses and counts it had before. Call it on the test's
// goroutine: it fails the test when it cannot listen.
func (w *WorkloadAPI) Start() {
	w.t.Helper()
	w.lifecycle.Lock()
	defer w.lifecycle.Unlock()
	lis, err := net.Listen("unix", w.socket)
	if err != nil {
		w.t.Fatalf("listen on %s: %v", w.socket, err)
	}
	server := grpc.NewServer(grpc.StreamInterceptor(requireSecurityHeader))
	workload.RegisterSpiffeWorkloadAPIServer(server, &workloadAPIService{w: w})
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = server.Serve(lis)
	}()
	w.server, w.served = server, served
}

// GracefulStop stops serving as an agent that shuts down cleanly does: it says GOAWAY on every
// connection, and waits for the streams to end. It reports whether they did within the time given;
// if not, it stops as Stop does.
func (w *WorkloadAPI) GracefulStop(within time.Duration) bool {
	w.lifecycle.Lock()
	defer w.lifecycle.Unlock()
	if w.server == nil {
		return true
	}
	defer func() { w.server = nil }()
	timer := time.AfterFunc(within, w.server.Stop)
	w.server.GracefulStop()
	<-w.served
	return timer.Stop()
}

// Stop stops serving as an agent that goes away does: its connections close and its socket is gone.
// Start serves it again.
func (w *WorkloadAPI) Stop() {
	w.lifecycle.Lock()
	defer w.lifecycle.Unlock()
	if w.server == nil {
		return
	}
	w.server.Stop()
	<-w.served
	w.server = nil
}

// requireSecurityHeader refuses a call without workload.spiffe.io: true, with SPIRE's own answer.
func requireSecurityHeader(srv any, stream grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	if values := md.Get("workload.spiffe.io"); len(values) != 1 || values[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	return handler(srv, stream)
}

// SetResponse makes the next calls answer resp.
func (w *WorkloadAPI) SetResponse(resp *workload.X509SVIDResponse) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.response, w.err = resp, nil
	for stream := range w.open {
		select {
		case stream.rotated <- struct{}{}:
		default: // a notice is pending already: the stream sends the newest response
		}
	}
}

// EndStreams ends every FetchX509SVID stream still open with err (a status.Error), as an agent does
// when it drops its subscribers, and waits until they ended; the server goes on serving new calls.
func (w *WorkloadAPI) EndStreams(err error) {
	w.mu.Lock()
	streams := make([]*openStream, 0, len(w.open))
	for stream := range w.open {
		streams = append(streams, stream)
	}
	w.mu.Unlock()
	for _, stream := range streams {
		select {
		case stream.end <- err:
		case <-stream.done: // it ended meanwhile
		}
		<-stream.done
	}
}

// OpenStreams is how many FetchX509SVID streams are open.
func (w *WorkloadAPI) OpenStreams() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.open)
}

// SetError makes the next calls fail with err (a status.Error), as an agent that has no identity for
// the caller answers PermissionDenied.
func (w *WorkloadAPI) SetError(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.err = err
}

// SetSVID makes the next calls answer one SVID: id, leaf's certificate and key, and the CA's bundle,
// and the federated bundles, keyed by trust domain ID (spiffe://example.com).
func (w *WorkloadAPI) SetSVID(id string, leaf *Leaf, bundle *CA, federated map[string]*CA) {
	resp := &workload.X509SVIDResponse{Svids: []*workload.X509SVID{{
		SpiffeId:    id,
		X509Svid:    leaf.TLS.Certificate[0],
		X509SvidKey: leaf.KeyPKCS8,
		Bundle:      bundle.Cert.Raw,
		Hint:        "default",
	}}}
	for domain, ca := range federated {
		if resp.FederatedBundles == nil {
			resp.FederatedBundles = map[string][]byte{}
		}
		resp.FederatedBundles[domain] = ca.Cert.Raw
	}
	w.SetResponse(resp)
}

// Calls is how many FetchX509SVID calls were answered, and why each call's stream ended (nil while
// one is still open).
func (w *WorkloadAPI) Calls() (int, []error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.calls, append([]error(nil), w.ended...)
}

func (s *workloadAPIService) FetchX509SVID(_ *workload.X509SVIDRequest, stream workload.SpiffeWorkloadAPI_FetchX509SVIDServer) error {
	w := s.w
	open := &openStream{rotated: make(chan struct{}, 1), end: make(chan error), done: make(chan struct{})}
	defer close(open.done)
	w.mu.Lock()
	resp, err := w.response, w.err
	w.calls++
	if err == nil && resp != nil {
		w.open[open] = struct{}{}
	}
	w.mu.Unlock()
	if err != nil {
		return err
	}
	if resp == nil {
		return status.Error(codes.PermissionDenied, "no identity issued")
	}
	ended := func(cause error) {
		w.mu.Lock()
		delete(w.open, open)
		w.ended = append(w.ended, cause)
		w.mu.Unlock()
	}
	// The agent streams every rotation until the client cancels.
	for {
		if err := stream.Send(resp); err != nil {
			<-stream.Context().Done()
			ended(context.Cause(stream.Context()))
			return err
		}
		select {
		case <-open.rotated:
			w.mu.Lock()
			resp = w.response
			w.mu.Unlock()
		case err := <-open.end:
			ended(err)
			return err
		case <-stream.Context().Done():
			ended(context.Cause(stream.Context()))
			return nil
		}
	}
}
