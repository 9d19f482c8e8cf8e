package testutil

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// WorkloadAPI is a real SPIFFE Workload API server for one test: grpc-go serving go-spiffe's generated
// SpiffeWorkloadAPI service on a unix socket, stopped when the test ends. Like SPIRE's agent, it
// refuses calls without the workload.spiffe.io: true metadata, answers FetchX509SVID with the current
// response, and keeps the stream open until the client goes away.
type WorkloadAPI struct {
	// Addr is the socket's address as SPIFFE_ENDPOINT_SOCKET writes it: unix:///path.
	Addr string

	mu       sync.Mutex
	response *workload.X509SVIDResponse
	err      error
	calls    int
	ended    []error // why each call's stream ended: the client's cancellation, for a well-behaved one
}

type workloadAPIService struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	w *WorkloadAPI
}

// StartWorkloadAPI serves a Workload API on a socket in a temporary directory of t.
func StartWorkloadAPI(t testing.TB) *WorkloadAPI {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "agent.sock")
	lis, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatalf("listen on %s: %v", socket, err)
	}
	w := &WorkloadAPI{Addr: "unix://" + socket}
	server := grpc.NewServer(grpc.StreamInterceptor(requireSecurityHeader))
	workload.RegisterSpiffeWorkloadAPIServer(server, &workloadAPIService{w: w})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = server.Serve(lis)
	}()
	t.Cleanup(func() {
		server.Stop()
		<-done
	})
	return w
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
	w.mu.Lock()
	resp, err := w.response, w.err
	w.calls++
	w.mu.Unlock()
	if err != nil {
		return err
	}
	if resp == nil {
		return status.Error(codes.PermissionDenied, "no identity issued")
	}
	if err := stream.Send(resp); err != nil {
		return err
	}
	<-stream.Context().Done() // the agent streams every rotation until the client cancels
	w.mu.Lock()
	w.ended = append(w.ended, context.Cause(stream.Context()))
	w.mu.Unlock()
	return nil
}
