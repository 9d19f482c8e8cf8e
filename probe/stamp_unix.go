//go:build unix

package probe

import (
	"os"
	"syscall"
)

// fileIdentity is the file's inode and device: a rotated Secret's new file has another inode even
// when its size and modification time are the old one's.
func fileIdentity(info os.FileInfo) (inode, device uint64) {
	if sys, ok := info.Sys().(*syscall.Stat_t); ok {
		return uint64(sys.Ino), uint64(sys.Dev)
	}
	return 0, 0
}
