//go:build linux && (386 || amd64 || arm || arm64 || mips || mipsle || ppc64 || ppc64le || riscv64 || s390x)

package rawconn

import (
	"os"
	"syscall"
	"unsafe"
)

// Stat is os.Stat's system call, fstatat(2), made raw: `health-check serve` looks at its three TLS
// files at every check, to pick up a rotated certificate, and a stat through the syscall package is
// the kind of call that wakes the runtime's system monitor (see the package comment) — once per
// probe, when accepts, reads, writes and closes no longer do. The cost: while the call runs, the
// process's one P runs nothing else. On the filesystems TLS files live on in a pod — a Secret or
// projected volume (tmpfs), a CSI driver's tmpfs, the image — a stat of a file whose directory was
// just looked at is a few microseconds, all of it in memory.
func Stat(path string) (syscall.Stat_t, error) {
	var st syscall.Stat_t
	name, err := syscall.BytePtrFromString(path)
	if err != nil {
		return st, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	for {
		_, _, errno := syscall.RawSyscall6(fstatatTrap, atFDCWD, uintptr(unsafe.Pointer(name)), uintptr(unsafe.Pointer(&st)), 0, 0, 0)
		switch errno {
		case 0:
			return st, nil
		case syscall.EINTR:
			continue
		}
		return st, &os.PathError{Op: "stat", Path: path, Err: errno}
	}
}

// atFDCWD is AT_FDCWD (-100): a relative path is taken from the working directory, as os.Stat takes it.
const atFDCWD = ^uintptr(99)
