//go:build !unix

package probe

import "os"

// statStamp is the file's stamp. os.FileInfo carries no file ID on Windows: size and modification
// time alone say that a file changed.
func statStamp(path string) (fileStamp, error) {
	info, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{size: info.Size(), modified: info.ModTime()}, nil
}
