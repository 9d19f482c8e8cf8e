package probe

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// keepAliveServer answers HTTP/1.1 requests on each connection as script says for the connection's
// n-th request (counting from 0): "ok" answers 200 and keeps the connection, "drop" closes it without
// an answer, "cut" sends half a status line and closes.
func keepAliveServer(t *testing.T, script func(conn, request int) string) (addr string, conns *atomic.Int32) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	conns = &atomic.Int32{}
	serveConns(t, ln, func(conn net.Conn) {
		id := int(conns.Add(1)) - 1
		reader := bufio.NewReader(conn)
		for request := 0; ; request++ {
			req, err := http.ReadRequest(reader)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			switch script(id, request) {
			case "drop":
				return
			case "cut":
				_, _ = conn.Write([]byte("HTTP/1.1 20"))
				return
			}
			_, _ = conn.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
		}
	})
	return ln.Addr().String(), conns
}

func TestSessionKeepsTheConnection(t *testing.T) {
	addr, conns := keepAliveServer(t, func(int, int) string { return "ok" })
	session := NewSession(*testConfig(t, "http://"+addr+"/healthz"))
	defer session.Close()
	for i := 0; i < 5; i++ {
		report := session.Check(context.Background())
		require.Equal(t, Healthy, report.Result, report.Line())
	}
	assert.EqualValues(t, 1, conns.Load())
	opened, reused := session.UpstreamConnections()
	assert.EqualValues(t, 1, opened)
	assert.EqualValues(t, 4, reused)
}

func TestSessionRedialsAConnectionThatFailsBeforeTheAnswer(t *testing.T) {
	// The first connection takes one request, then closes on the second, as a server whose idle
	// timeout fires as the request arrives: the request goes again, on a new connection.
	addr, conns := keepAliveServer(t, func(conn, request int) string {
		if conn == 0 && request == 1 {
			return "drop"
		}
		return "ok"
	})
	session := NewSession(*testConfig(t, "http://"+addr+"/healthz"))
	defer session.Close()
	for i := 0; i < 3; i++ {
		report := session.Check(context.Background())
		require.Equal(t, Healthy, report.Result, report.Line())
		require.Equal(t, 1, report.Attempts)
	}
	assert.EqualValues(t, 2, conns.Load())
}

func TestSessionNeverResendsAfterPartOfTheAnswer(t *testing.T) {
	addr, conns := keepAliveServer(t, func(conn, request int) string {
		if conn == 0 && request == 1 {
			return "cut"
		}
		return "ok"
	})
	session := NewSession(*testConfig(t, "http://"+addr+"/healthz"))
	defer session.Close()
	require.Equal(t, Healthy, session.Check(context.Background()).Result)
	report := session.Check(context.Background())
	assert.Equal(t, Unreachable, report.Result)
	assert.Contains(t, report.Line(), "status line")
	assert.EqualValues(t, 1, conns.Load(), "the cut answer was not asked for again")
	require.Equal(t, Healthy, session.Check(context.Background()).Result, "the next check opens a new connection")
}

func TestSessionRequestLeavesTheConnectionOpen(t *testing.T) {
	c := testConfig(t, "http://localhost:8080/healthz")
	exec := string(requestHead(c, c.Target, false))
	kept := string(requestHead(c, c.Target, true))
	assert.True(t, strings.HasSuffix(exec, "Connection: close\r\n\r\n"), "the exec path closes after one request")
	assert.Equal(t, strings.TrimSuffix(exec, "Connection: close\r\n\r\n")+"\r\n", kept)
}
