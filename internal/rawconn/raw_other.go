//go:build !linux

package rawconn

import "syscall"

// Elsewhere Wrap leaves connections as they are: rawRead and rawWrite are never called.
const supported = false

func rawRead(fd uintptr, p []byte) (int, syscall.Errno)  { return 0, syscall.EINVAL }
func rawWrite(fd uintptr, p []byte) (int, syscall.Errno) { return 0, syscall.EINVAL }
