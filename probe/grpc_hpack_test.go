package probe_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/health-check-proxy/health-check-proxy/probe"
)

// xnetGRPC serves a gRPC health answer (SERVING) with x/net's own HTTP/2 server, over h2c with prior
// knowledge, as server configures it; it counts the connections it accepts.
func xnetGRPC(t *testing.T, server *http2.Server) (addr string, conns *atomic.Int32) {
	t.Helper()
	lis := listen(t)
	t.Cleanup(func() { lis.Close() })
	serving := frame(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1))
	handler := fakeGRPC(serving, map[string]string{"grpc-status": "0"})
	conns = &atomic.Int32{}
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go server.ServeConn(conn, &http2.ServeConnOpts{Handler: handler})
		}
	}()
	return lis.Addr().String(), conns
}

// TestGRPCSessionKeepsItsConnectionWithASmallHeaderTable: x/net's server announces its decoder's
// HPACK table size (SETTINGS_HEADER_TABLE_SIZE) and decodes with that table from the start; a client
// that goes on using the default 4096 bytes refers to entries the server never kept, and each reuse of
// the connection ends in COMPRESSION_ERROR and a new connection. Four checks of a session take one
// connection, whatever the table size, metadata included.
func TestGRPCSessionKeepsItsConnectionWithASmallHeaderTable(t *testing.T) {
	for _, size := range []uint32{1, 64, 100, 200, 4096, 1 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			addr, conns := xnetGRPC(t, &http2.Server{MaxDecoderHeaderTableSize: size})
			config := grpcConfig(t, "grpc://"+addr)
			config.Header = map[string][]string{"X-Tenant": {"blue"}, "Authorization": {"Bearer secret-token"}}
			session := probe.NewSession(*config)
			defer session.Close()
			for i := range 4 {
				assertReport(t, session.Check(context.Background()), probe.Healthy)
				require.EqualValues(t, 1, conns.Load(), "check %d opened a new connection", i)
			}
			opened, reused := session.UpstreamConnections()
			assert.EqualValues(t, 1, opened)
			assert.EqualValues(t, 3, reused)
		})
	}
}
