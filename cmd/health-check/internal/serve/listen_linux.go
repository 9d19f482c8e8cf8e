package serve

import "syscall"

// deferAccept asks the kernel to hold a new connection back from accept until data arrives, for up
// to a second. A kernel that refuses leaves an ordinary listener: nothing but the saving is lost.
func deferAccept(network, address string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, 1)
	})
}

// openFileLimit is the process's limit of open files (RLIMIT_NOFILE), or 0 when unknown.
func openFileLimit() uint64 {
	var limit syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &limit); err != nil {
		return 0
	}
	return limit.Cur
}
