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
	"golang.org/x/sys/unix"
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

// noDelay reads TCP_NODELAY from the socket.
func noDelay(t *testing.T, c *FDConn) int {
	t.Helper()
	var nodelay int
	var err error
	require.NoError(t, c.withFD(func(fd int) {
		nodelay, err = syscall.GetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY)
	}))
	require.NoError(t, err)
	return nodelay
}

// TestAcceptedProbe: a request that came with the connection is read, answered and closed with raw
// system calls, the connection never joining the netpoller. TCP_NODELAY is not set for the one
// answer, which Nagle's algorithm never holds back.
func TestAcceptedProbe(t *testing.T) {
	ours, peer := accepted(t, "GET /live HTTP/1.1\r\n\r\n")
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
	assert.Equal(t, 0, noDelay(t, ours), "TCP_NODELAY after the first write")
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

// TestAcceptedNoDelay: a second write, which Nagle's algorithm could hold back until the first is
// acknowledged (answers to pipelined requests), and the rest of a write the socket could not take
// whole are sent with TCP_NODELAY, as the net package sends every write.
func TestAcceptedNoDelay(t *testing.T) {
	ours, peer := accepted(t, "")
	_, err := ours.Write([]byte("first"))
	require.NoError(t, err)
	assert.Equal(t, 0, noDelay(t, ours), "after the first write")
	_, err = ours.Write([]byte("second"))
	require.NoError(t, err)
	assert.Equal(t, 1, noDelay(t, ours), "after the second write")
	got := make([]byte, 11)
	_, err = io.ReadFull(peer, got)
	require.NoError(t, err)
	assert.Equal(t, "firstsecond", string(got))

	// One write larger than the socket takes at once: its rest follows unacknowledged data.
	// The client reads nothing until the write has waited: more than both sockets' buffers hold.
	ours, peer = accepted(t, "")
	require.NoError(t, peer.(*net.TCPConn).SetReadBuffer(64<<10))
	big := bytes.Repeat([]byte("x"), 32<<20)
	done := make(chan error, 1)
	go func() { _, err := ours.Write(big); done <- err }()
	require.Eventually(t, func() bool { return joined(ours) }, 10*time.Second, time.Millisecond, "the write waits for room")
	assert.Equal(t, 1, noDelay(t, ours), "after a write that waited")
	n, err := io.CopyN(io.Discard, peer, int64(len(big)))
	require.NoError(t, err)
	require.EqualValues(t, len(big), n)
	require.NoError(t, <-done)
}

// segmentsIn is how many TCP segments c has received (tcpi_segs_in).
func segmentsIn(t *testing.T, c net.Conn) uint32 {
	t.Helper()
	raw, err := c.(syscall.Conn).SyscallConn()
	require.NoError(t, err)
	var info *unix.TCPInfo
	require.NoError(t, raw.Control(func(fd uintptr) { info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }))
	require.NoError(t, err)
	return info.Segs_in
}

// TestWriteLast: the answer and the end of the connection reach the client together, in one
// segment fewer than a write and a shutdown: the FIN rides on the answer.
func TestWriteLast(t *testing.T) {
	const answer = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nok\n"
	received := func(last bool) (string, uint32) {
		ours, peer := accepted(t, "GET /live HTTP/1.1\r\n\r\n")
		buf := make([]byte, 64)
		_, err := ours.Read(buf)
		require.NoError(t, err)
		if last {
			n, err := ours.WriteLast([]byte(answer))
			require.NoError(t, err)
			require.Equal(t, len(answer), n)
		} else {
			_, err := ours.Write([]byte(answer))
			require.NoError(t, err)
			require.NoError(t, ours.CloseWrite())
		}
		got, err := io.ReadAll(peer) // to the FIN
		require.NoError(t, err)
		require.NoError(t, ours.Close())
		return string(got), segmentsIn(t, peer)
	}
	got, apart := received(false)
	require.Equal(t, answer, got)
	got, together := received(true)
	require.Equal(t, answer, got)
	assert.Equal(t, apart-1, together, "segments the client received: the answer and the FIN apart, then together")

	// An answer larger than the socket takes at once still arrives whole, and then the end.
	ours, peer := accepted(t, "")
	big := bytes.Repeat([]byte("y"), 8<<20)
	done := make(chan error, 1)
	go func() { _, err := ours.WriteLast(big); done <- err }()
	all, err := io.ReadAll(peer)
	require.NoError(t, err)
	assert.Equal(t, len(big), len(all))
	require.NoError(t, <-done)

	// After its end, a connection writes nothing more.
	_, err = ours.Write([]byte("z"))
	assert.Error(t, err)
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

		big := make([]byte, 64<<20) // made before the deadline runs, which a loaded machine could spend zeroing it
		require.NoError(t, ours.SetWriteDeadline(time.Now().Add(300*time.Millisecond)))
		n, err := ours.Write(big)
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
