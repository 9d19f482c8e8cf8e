//go:build linux && !(386 || amd64 || arm || arm64 || mips || mipsle || ppc64 || ppc64le || riscv64 || s390x)

package rawconn

import (
	"os"
	"syscall"
)

// Stat is the syscall package's here: loong64 and mips64 make statx into another structure, and
// serve is not released for them.
func Stat(path string) (syscall.Stat_t, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return st, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return st, nil
}
