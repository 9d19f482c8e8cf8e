package testutil

import (
	"crypto/tls"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// GRPCServer is a real grpc-go server started for one test, stopped when the test ends.
type GRPCServer struct {
	// Addr is the listener's address: host:port, or the socket path of a unix listener.
	Addr string
	// Health is the standard grpc.health.v1 service, or nil when the server was started without it.
	// Its overall status ("") starts as SERVING.
	Health *health.Server
}

// GRPCOptions shape a GRPCServer.
type GRPCOptions struct {
	// NoHealth leaves the health service out: Check then answers UNIMPLEMENTED.
	NoHealth bool
	// TLS, when set, makes the server speak TLS with this configuration (set ClientAuth and
	// ClientCAs for mutual TLS); without it the server speaks h2c, as grpc:// targets expect.
	TLS *tls.Config
	// Options are passed to grpc.NewServer after the credentials.
	Options []grpc.ServerOption
}

// StartGRPC serves a grpc-go server on lis until the test ends.
func StartGRPC(t testing.TB, lis net.Listener, opts GRPCOptions) *GRPCServer {
	t.Helper()
	var serverOptions []grpc.ServerOption
	if opts.TLS != nil {
		serverOptions = append(serverOptions, grpc.Creds(credentials.NewTLS(opts.TLS)))
	}
	server := grpc.NewServer(append(serverOptions, opts.Options...)...)
	s := &GRPCServer{Addr: lis.Addr().String()}
	if !opts.NoHealth {
		s.Health = health.NewServer()
		healthpb.RegisterHealthServer(server, s.Health)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = server.Serve(lis) // returns when Stop closes the listener
	}()
	t.Cleanup(func() {
		server.Stop()
		<-done
	})
	return s
}

// BlackHole listens on 127.0.0.1 and accepts connections that it never reads from nor writes to,
// until the test ends: the peer of a probe that must give up on its own.
func BlackHole(t testing.TB) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			conns = append(conns, conn)
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		<-done
	})
	return lis
}
