package rawconn

import (
	"syscall"
	"unsafe"
)

const supported = true

// rawRead is read(2) without the runtime's syscall state: fd is non-blocking, so it never waits.
func rawRead(fd uintptr, p []byte) (int, syscall.Errno) {
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if errno != syscall.EINTR {
			return int(n), errno
		}
	}
}

// nothingToRead peeks at the socket without waiting: only "it would wait" (EAGAIN) means it is open
// and empty; a byte, the end of the stream (0) or an error mean it is not.
func nothingToRead(fd uintptr) bool {
	var one [1]byte
	_, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&one[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return errno == syscall.EAGAIN
}

// rawWrite is write(2) without the runtime's syscall state: fd is non-blocking, so it never waits.
func rawWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if errno != syscall.EINTR {
			return int(n), errno
		}
	}
}

// rawSend is rawWrite with send(2)'s flags (MSG_MORE: hold p back for what follows).
func rawSend(fd uintptr, p []byte, flags int) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	for {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), uintptr(flags), 0, 0)
		if errno != syscall.EINTR {
			return int(n), errno
		}
	}
}
