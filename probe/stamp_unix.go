//go:build unix && !linux

package probe

import (
	"os"
	"syscall"
)

// statStamp is the file's stamp. The inode and device make a rotated Secret's new file another even
// when its size and modification time are the old one's.
func statStamp(path string) (fileStamp, error) {
	info, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	stamp := fileStamp{size: info.Size(), modified: info.ModTime()}
	if sys, ok := info.Sys().(*syscall.Stat_t); ok {
		stamp.inode, stamp.device = uint64(sys.Ino), uint64(sys.Dev)
	}
	return stamp, nil
}
