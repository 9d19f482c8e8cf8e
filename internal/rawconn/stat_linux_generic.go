//go:build linux && (arm64 || riscv64)

package rawconn

import "syscall"

// fstatatTrap is the system call the syscall package's Stat makes here, filling a syscall.Stat_t.
const fstatatTrap = syscall.SYS_FSTATAT
