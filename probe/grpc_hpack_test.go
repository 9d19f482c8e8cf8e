package probe_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/health-check-proxy/health-check-proxy/probe"
)

// smallTableGRPC serves a gRPC health answer (SERVING) with net/http's HTTP/2 server (x/net/http2's,
// bundled), over h2c with prior knowledge, with an HPACK decoder table of tableSize bytes; it counts
// the connections it accepts.
func smallTableGRPC(t *testing.T, tableSize uint32) (addr string, conns *atomic.Int32) {
	t.Helper()
	serving := frame(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1))
	s := httptest.NewUnstartedServer(fakeGRPC(serving, map[string]string{"grpc-status": "0"}))
	s.Config.Protocols = new(http.Protocols)
	s.Config.Protocols.SetUnencryptedHTTP2(true)
	s.Config.HTTP2 = &http.HTTP2Config{MaxDecoderHeaderTableSize: int(tableSize)}
	conns = &atomic.Int32{}
	s.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s.Listener.Addr().String(), conns
}

// TestGRPCSessionKeepsItsConnectionWithASmallHeaderTable: Go's HTTP/2 server announces its decoder's
// HPACK table size (SETTINGS_HEADER_TABLE_SIZE) and decodes with that table from the start; a client
// that goes on using the default 4096 bytes refers to entries the server never kept, and each reuse of
// the connection ends in COMPRESSION_ERROR and a new connection. Four checks of a session take one
// connection, whatever the table size, metadata included; the first check too, though its header
// block goes before the server's SETTINGS and repeats a field.
func TestGRPCSessionKeepsItsConnectionWithASmallHeaderTable(t *testing.T) {
	for _, size := range []uint32{1, 64, 100, 200, 4096, 1 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			addr, conns := smallTableGRPC(t, size)
			config := grpcConfig(t, "grpc://"+addr)
			config.Header = map[string][]string{"X-Tenant": {"blue", "blue"}, "Authorization": {"Bearer secret-token"}}
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
