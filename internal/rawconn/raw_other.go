//go:build unix && !linux

package rawconn

import "syscall"

// Elsewhere Wrap leaves connections as they are: rawRead and rawWrite are never called.
const supported = false

func rawRead(fd uintptr, p []byte) (int, syscall.Errno)  { return 0, syscall.ENOSYS }
func rawWrite(fd uintptr, p []byte) (int, syscall.Errno) { return 0, syscall.ENOSYS }

// nothingToRead peeks at the socket without waiting, through the syscall package.
func nothingToRead(fd uintptr) bool {
	var one [1]byte
	n, _, err := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
}
