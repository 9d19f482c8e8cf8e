//go:build unix && !linux

package rawconn

import "syscall"

// nothingToRead peeks at the socket without waiting, through the syscall package.
func nothingToRead(fd uintptr) bool {
	var one [1]byte
	n, _, err := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
}
