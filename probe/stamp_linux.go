package probe

import (
	"time"

	"github.com/health-check-proxy/health-check-proxy/internal/rawconn"
)

// statStamp is the file's stamp, from a raw stat (see rawconn.Stat): a session looks at its TLS
// files at every check. The inode and device make a rotated Secret's new file another even when its
// size and modification time are the old one's.
func statStamp(path string) (fileStamp, error) {
	st, err := rawconn.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{size: int64(st.Size), modified: time.Unix(int64(st.Mtim.Sec), int64(st.Mtim.Nsec)),
		inode: uint64(st.Ino), device: uint64(st.Dev)}, nil
}
