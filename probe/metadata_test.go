package probe_test

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
	"github.com/health-check-proxy/health-check-proxy/probe"
)

// headerConfig is a gRPC check of target with -header lines, parsed as the command parses them.
func headerConfig(t *testing.T, target string, lines ...string) *probe.Config {
	t.Helper()
	c := grpcConfig(t, target)
	for _, line := range lines {
		name, value, err := probe.ParseHeader(line)
		require.NoError(t, err, line)
		if name == "Host" {
			c.Host = value
			continue
		}
		if c.Header == nil {
			c.Header = http.Header{}
		}
		c.Header[name] = append(c.Header[name], value)
	}
	return c
}

// TestGRPCMetadata: -header on grpc:// and grpcs:// is the call's metadata, as grpc-go's interceptors
// see it: lowercase names, -bin values decoded from base64, User-Agent replacing ours, Host as
// :authority.
func TestGRPCMetadata(t *testing.T) {
	var mu sync.Mutex
	var seen metadata.MD
	record := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		mu.Lock()
		seen = md
		mu.Unlock()
		return handler(ctx, req)
	}
	interceptor := grpc.UnaryInterceptor(record)
	plain := testutil.StartGRPC(t, listen(t), testutil.GRPCOptions{Options: []grpc.ServerOption{interceptor}})
	p := testutil.TestPKI(t, testutil.ECDSAP256)
	secure := testutil.StartGRPC(t, listen(t), testutil.GRPCOptions{TLS: p.MTLSConfig(p.Server), Options: []grpc.ServerOption{interceptor}})

	for _, target := range []string{"grpc://" + plain.Addr, "grpcs://" + secure.Addr} {
		t.Run(target[:5], func(t *testing.T) {
			c := headerConfig(t, target,
				"Authorization: Bearer t0ken",
				"X-Tenant: acme",
				"x-tenant: second value",
				"X-Trace-Bin: AAEC/w==", // padded
				"X-Other-Bin: AAEC/w",   // unpadded
				"User-Agent: kubelet-exec/1.0",
				"Host: api.internal",
			)
			c.TLS = probe.TLSOptions{CACert: p.CAFile, Cert: p.ClientCert, Key: p.ClientKey, ServerName: "api.internal"}
			if target[:5] == "grpc:" {
				c.TLS = probe.TLSOptions{}
			}
			report := probe.Run(context.Background(), c, nil)
			require.Equal(t, probe.Healthy, report.Result, report.Line())
			mu.Lock()
			md := seen
			mu.Unlock()
			assert.Equal(t, []string{"Bearer t0ken"}, md["authorization"])
			assert.Equal(t, []string{"acme", "second value"}, md["x-tenant"])
			assert.Equal(t, []string{"\x00\x01\x02\xff"}, md["x-trace-bin"], "binary metadata arrives as its bytes")
			assert.Equal(t, []string{"\x00\x01\x02\xff"}, md["x-other-bin"])
			require.Len(t, md["user-agent"], 1)
			assert.Regexp(t, `^kubelet-exec/1\.0( grpc-go/.*)?$`, md["user-agent"][0], "a User-Agent replaces ours")
			assert.Equal(t, []string{"api.internal"}, md[":authority"])
		})
	}
	t.Run("an empty User-Agent removes ours", func(t *testing.T) {
		report := probe.Run(context.Background(), headerConfig(t, "grpc://"+plain.Addr, "User-Agent:"), nil)
		require.Equal(t, probe.Healthy, report.Result, report.Line())
		mu.Lock()
		md := seen
		mu.Unlock()
		assert.Empty(t, md["user-agent"])
	})
}

func TestGRPCMetadataUsageErrors(t *testing.T) {
	tests := []struct {
		name   string
		target string
		header string
		want   string
	}{
		{name: "a reserved grpc- name", target: "grpc://localhost:1", header: "grpc-timeout: 1S", want: "grpc-timeout is the probe's to write"},
		{name: "a reserved grpc- name in another case", target: "grpcs://localhost:1", header: "Grpc-Status: 0", want: "grpc-status is the probe's to write"},
		{name: "content-type", target: "grpc://localhost:1", header: "Content-Type: application/json", want: "content-type is the probe's to write"},
		{name: "a name gRPC does not allow", target: "grpc://localhost:1", header: "X-Odd!: 1", want: "metadata names are letters, digits"},
		{name: "a value that is not ASCII", target: "grpc://localhost:1", header: "X-Who: café", want: "metadata values are printable ASCII"},
		{name: "a -bin value that is not base64", target: "grpc://localhost:1", header: "X-Trace-Bin: not base64!", want: "a -bin value is base64"},
		{name: "a header on tls://", target: "tls://localhost:1", header: "X-A: b", want: "-header applies to http, https, grpc and grpcs, not tls"},
		{name: "te", target: "grpc://localhost:1", header: "TE: trailers", want: "te is the probe's to write"},
		{name: "a connection header, which HTTP/2 forbids", target: "grpc://localhost:1", header: "Connection: Keep-Alive",
			want: `bad -header "Connection" for gRPC: connection is about the connection, which HTTP/2 forbids in a request`},
		{name: "keep-alive", target: "grpcs://localhost:1", header: "Keep-Alive: timeout=5", want: "keep-alive is about the connection"},
		{name: "upgrade", target: "grpc://localhost:1", header: "Upgrade: h2c", want: "upgrade is about the connection"},
		{name: "proxy-connection", target: "grpc://localhost:1", header: "Proxy-Connection: keep-alive", want: "proxy-connection is about the connection"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			report := probe.Run(context.Background(), headerConfig(t, tt.target, tt.header), nil)
			assert.Equal(t, probe.Usage, report.Result, report.Line())
			assert.Contains(t, report.Line(), tt.want)
		})
	}
	for _, line := range []string{"Content-Length: 0", "Transfer-Encoding: chunked", "Trailer: X", ":path: /x"} {
		_, _, err := probe.ParseHeader(line)
		assert.Error(t, err, "%q is refused for every target", line)
	}
}
