package rawconn

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pair is a connected pair of sockets of network: ours wrapped, and the peer's as the net package
// gives it.
func pair(t *testing.T, network string) (ours, peer net.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s.sock")
	}
	l, err := net.Listen(network, addr)
	require.NoError(t, err)
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	dialed, err := net.Dial(network, l.Addr().String())
	require.NoError(t, err)
	peer = <-accepted
	require.NotNil(t, peer)
	ours = Wrap(dialed)
	t.Cleanup(func() { ours.Close(); peer.Close() })
	return ours, peer
}

func TestWrap(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Wrap leaves connections as they are off Linux")
	}
	ours, _ := pair(t, "tcp")
	assert.IsType(t, &Conn{}, ours)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	assert.Same(t, a, Wrap(a), "not a socket: left as it is")
}

func TestReadWrite(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			ours, peer := pair(t, network)
			n, err := ours.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
			require.NoError(t, err)
			assert.Equal(t, 18, n)
			got := make([]byte, 18)
			_, err = io.ReadFull(peer, got)
			require.NoError(t, err)
			assert.Equal(t, "GET / HTTP/1.1\r\n\r\n", string(got))

			// A read waits on the netpoller until the peer writes.
			go func() {
				time.Sleep(20 * time.Millisecond)
				peer.Write([]byte("HTTP/1.1 200 OK\r\n"))
			}()
			buf := make([]byte, 64)
			n, err = ours.Read(buf)
			require.NoError(t, err)
			assert.Equal(t, "HTTP/1.1 200 OK\r\n", string(buf[:n]))

			n, err = ours.Read(nil)
			assert.NoError(t, err)
			assert.Zero(t, n)

			require.NoError(t, ours.(*Conn).CloseWrite())
			rest, err := io.ReadAll(peer)
			require.NoError(t, err, "CloseWrite: the peer reads to the end")
			assert.Empty(t, rest)

			peer.Close()
			_, err = ours.Read(buf)
			assert.ErrorIs(t, err, io.EOF)
		})
	}
}

// TestWriteLarge writes far more than a socket buffer holds to a peer that reads slowly: the write
// waits for room on the netpoller and goes on where it stopped.
func TestWriteLarge(t *testing.T) {
	ours, peer := pair(t, "tcp")
	want, got := writeToSlowReader(t, ours, peer)
	ours.Close()
	assert.True(t, bytes.Equal(want, <-got), "the peer read what was written, in order")
}

// writeToSlowReader writes 8 MiB, far more than a socket buffer holds, through ours while peer starts
// reading only after 50 ms, and checks that the write took it all. It returns what was written and
// what peer reads up to the end, which arrives once ours is closed.
func writeToSlowReader(t *testing.T, ours, peer net.Conn) (want []byte, got <-chan []byte) {
	t.Helper()
	want = make([]byte, 8<<20)
	_, _ = rand.Read(want)
	read := make(chan []byte, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		b, _ := io.ReadAll(peer)
		read <- b
	}()
	n, err := ours.Write(want)
	require.NoError(t, err)
	assert.Equal(t, len(want), n)
	return want, read
}

func TestDeadlines(t *testing.T) {
	ours, _ := pair(t, "tcp")
	require.NoError(t, ours.SetReadDeadline(time.Now().Add(30*time.Millisecond)))
	start := time.Now()
	_, err := ours.Read(make([]byte, 10))
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	var netErr net.Error
	require.ErrorAs(t, err, &netErr)
	assert.True(t, netErr.Timeout())
	assert.Less(t, time.Since(start), 2*time.Second)
	assert.Contains(t, err.Error(), "read tcp ", "reported as net.Conn reports it")

	// The peer never reads: the write fills the buffers, then waits until its deadline.
	big := make([]byte, 64<<20) // made before the deadline runs, which a loaded machine could spend zeroing it
	require.NoError(t, ours.SetWriteDeadline(time.Now().Add(300*time.Millisecond)))
	n, err := ours.Write(big)
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	assert.Positive(t, n, "what was written before the deadline is counted")
	assert.Less(t, n, 64<<20)
}

func TestCloseWhileReading(t *testing.T) {
	ours, _ := pair(t, "tcp")
	done := make(chan error, 1)
	go func() {
		_, err := ours.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, ours.Close())
	select {
	case err := <-done:
		assert.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the Read")
	}
	_, err := ours.Write([]byte("x"))
	assert.ErrorIs(t, err, net.ErrClosed)
}

func TestWriteToClosedPeer(t *testing.T) {
	ours, peer := pair(t, "tcp")
	require.NoError(t, peer.(*net.TCPConn).SetLinger(0)) // close with a reset
	peer.Close()
	time.Sleep(20 * time.Millisecond)
	var err error
	for range 10 { // the first write may still be taken; the reset ends the next ones
		if _, err = ours.Write([]byte("x")); err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.Error(t, err)
	assert.NotErrorIs(t, err, os.ErrDeadlineExceeded)
	var syscallErr *os.SyscallError
	assert.ErrorAs(t, err, &syscallErr, "the errno as net.Conn reports it: %v", err)
}

func TestQuiet(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows has no peek: Quiet takes every connection as quiet")
	}
	ours, peer := pair(t, "tcp")
	assert.True(t, Quiet(ours), "open, nothing sent")
	_, err := peer.Write([]byte("x"))
	require.NoError(t, err)
	assert.Eventually(t, func() bool { return !Quiet(ours) }, 5*time.Second, 5*time.Millisecond, "a byte came unasked")
	_, err = ours.Read(make([]byte, 1))
	require.NoError(t, err)
	assert.True(t, Quiet(ours), "the byte was read")
	peer.Close()
	assert.Eventually(t, func() bool { return !Quiet(ours) }, 5*time.Second, 5*time.Millisecond, "the peer closed")

	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	assert.True(t, Quiet(a), "not a socket: taken as quiet")
}
