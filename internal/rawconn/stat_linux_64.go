//go:build linux && (amd64 || ppc64 || ppc64le || s390x)

package rawconn

import "syscall"

// fstatatTrap is the system call the syscall package's Stat makes here, filling a syscall.Stat_t.
const fstatatTrap = syscall.SYS_NEWFSTATAT
