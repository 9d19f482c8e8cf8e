package serve

import (
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestListenDefersAccept: the listener asks the kernel to accept a connection once its request has
// arrived.
func TestListenDefersAccept(t *testing.T) {
	l, err := Listen("127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	raw, err := l.(syscall.Conn).SyscallConn()
	require.NoError(t, err)
	var deferred int
	var optErr error
	require.NoError(t, raw.Control(func(fd uintptr) {
		deferred, optErr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT)
	}))
	require.NoError(t, optErr)
	assert.Positive(t, deferred, "TCP_DEFER_ACCEPT")
}
