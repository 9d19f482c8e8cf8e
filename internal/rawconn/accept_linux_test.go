package rawconn

import (
	"bytes"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// accepted is a connection accepted by a wrapped listener, and the client's end as the net package
// gives it. sent is written by the client before the accept, as a kubelet's request is there when
// TCP_DEFER_ACCEPT lets the server accept.
func accepted(t *testing.T, sent string) (ours *FDConn, peer net.Conn) {
	t.Helper()
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l := WrapListener(plain)
	defer l.Close()
	peer, err = net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	if sent != "" {
		_, err = peer.Write([]byte(sent))
		require.NoError(t, err)
	}
	nc, err := l.Accept()
	require.NoError(t, err)
	require.IsType(t, &FDConn{}, nc)
	ours = nc.(*FDConn)
	t.Cleanup(func() { ours.Close(); peer.Close() })
	return ours, peer
}

func joined(c *FDConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.file != nil
}

// TestAcceptedProbe: a request that came with the connection is read, answered and closed with raw
// system calls, the connection never joining the netpoller; TCP_NODELAY is set as net sets it.
func TestAcceptedProbe(t *testing.T) {
	ours, peer := accepted(t, "GET /live HTTP/1.1\r\n\r\n")
	var nodelay int
	require.NoError(t, ours.withFD(func(fd int) {
		nodelay, _ = syscall.GetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY)
	}))
	assert.Equal(t, 1, nodelay, "TCP_NODELAY")
	assert.Equal(t, peer.LocalAddr().String(), ours.RemoteAddr().String())
	assert.Equal(t, peer.RemoteAddr().String(), ours.LocalAddr().String())

	buf := make([]byte, 64)
	var got []byte
	for len(got) < 22 { // on loopback the request is there at once; a short read is allowed all the same
		n, err := ours.Read(buf)
		require.NoError(t, err)
		got = append(got, buf[:n]...)
	}
	assert.Equal(t, "GET /live HTTP/1.1\r\n\r\n", string(got))
	_, err := ours.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
	require.NoError(t, err)
	assert.False(t, joined(ours), "nothing waited: the connection stayed out of the netpoller")
	require.NoError(t, ours.Close())
	answer, err := io.ReadAll(peer)
	require.NoError(t, err)
	assert.Equal(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", string(answer))
	assert.ErrorIs(t, ours.Close(), net.ErrClosed, "closed twice")
	_, err = ours.Read(buf)
	assert.ErrorIs(t, err, net.ErrClosed)
	_, err = ours.Write([]byte("x"))
	assert.ErrorIs(t, err, net.ErrClosed)
}

// TestAcceptedWaits: a read with nothing to read, and a write the socket cannot take, join the
// netpoller and wait there, with the deadlines set before.
func TestAcceptedWaits(t *testing.T) {
	t.Run("read", func(t *testing.T) {
		ours, peer := accepted(t, "")
		go func() {
			time.Sleep(20 * time.Millisecond)
			peer.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		}()
		buf := make([]byte, 64)
		n, err := ours.Read(buf)
		require.NoError(t, err)
		assert.Equal(t, "GET / HTTP/1.1\r\n\r\n", string(buf[:n]))
		assert.True(t, joined(ours))
		require.NoError(t, ours.CloseWrite())
		rest, err := io.ReadAll(peer)
		require.NoError(t, err, "CloseWrite: the peer reads to the end")
		assert.Empty(t, rest)
		peer.Close()
		_, err = ours.Read(buf)
		assert.ErrorIs(t, err, io.EOF)
	})
	t.Run("write", func(t *testing.T) {
		ours, peer := accepted(t, "")
		want, got := writeToSlowReader(t, ours, peer)
		assert.True(t, joined(ours))
		ours.Close()
		assert.True(t, bytes.Equal(want, <-got), "the peer read what was written, in order")
	})
	t.Run("deadlines", func(t *testing.T) {
		ours, _ := accepted(t, "")
		require.NoError(t, ours.SetReadDeadline(time.Now().Add(30*time.Millisecond)))
		start := time.Now()
		_, err := ours.Read(make([]byte, 10))
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "the deadline set before the wait holds in the netpoller")
		var netErr net.Error
		require.ErrorAs(t, err, &netErr)
		assert.True(t, netErr.Timeout())
		assert.Less(t, time.Since(start), 2*time.Second)

		require.NoError(t, ours.SetWriteDeadline(time.Now().Add(100*time.Millisecond)))
		n, err := ours.Write(make([]byte, 64<<20))
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
		assert.Positive(t, n, "what was written before the deadline is counted")
	})
	t.Run("passed deadline", func(t *testing.T) {
		ours, _ := accepted(t, "GET / HTTP/1.1\r\n\r\n")
		require.NoError(t, ours.SetReadDeadline(time.Now().Add(-time.Second)))
		_, err := ours.Read(make([]byte, 64))
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "a passed deadline fails the read, as on net.Conn, data or not")
		assert.False(t, joined(ours))
	})
}

// TestAcceptedCloseWhileReading: Close from another goroutine ends a read waiting in the netpoller,
// as Server.Shutdown and a cut-off rely on.
func TestAcceptedCloseWhileReading(t *testing.T) {
	ours, _ := accepted(t, "")
	done := make(chan error, 1)
	go func() {
		_, err := ours.Read(make([]byte, 10))
		done <- err
	}()
	require.Eventually(t, func() bool { return joined(ours) }, 5*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, ours.Close())
	select {
	case err := <-done:
		assert.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the Read")
	}
}

// TestListenerClose: closing the listener ends an Accept waiting on it with net.ErrClosed, which
// Server.Serve takes as the end.
func TestListenerClose(t *testing.T) {
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l := WrapListener(plain)
	require.IsType(t, &Listener{}, l)
	done := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, l.Close())
	select {
	case err := <-done:
		assert.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the Accept")
	}
	_, err = l.Accept()
	assert.ErrorIs(t, err, net.ErrClosed)
}

// TestStat: the raw stat sees what os.Stat sees, and reports a missing file as os.Stat does.
func TestStat(t *testing.T) {
	path := t.TempDir() + "/ca.crt"
	require.NoError(t, os.WriteFile(path, []byte("pem"), 0o644))
	st, err := Stat(path)
	require.NoError(t, err)
	info, err := os.Stat(path)
	require.NoError(t, err)
	sys := info.Sys().(*syscall.Stat_t)
	assert.Equal(t, sys.Ino, st.Ino)
	assert.Equal(t, sys.Dev, st.Dev)
	assert.EqualValues(t, 3, st.Size)
	assert.Equal(t, info.ModTime(), time.Unix(int64(st.Mtim.Sec), int64(st.Mtim.Nsec)))

	_, err = Stat(path + ".missing")
	_, want := os.Stat(path + ".missing")
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Equal(t, want.Error(), err.Error())
}
