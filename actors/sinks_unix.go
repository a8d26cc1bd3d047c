//go:build unix

package actors

import (
	"os"
	"syscall"
)

// fileID identifies a file across renames and restarts.
type fileID struct{ dev, ino uint64 }

func identity(fi os.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, true //nolint:unconvert // Dev is 32 bits on some systems
}
