package state

import (
	"fmt"
	"syscall"
)

// DiskSpace is how much space the store takes and how much its file
// system has left for it.
type DiskSpace struct {
	StoreBytes uint64 // Pebble's files: tables, WAL, manifests
	FreeBytes  uint64 // available to this process on the store's file system
}

// DiskSpace measures the store and its file system.
func (s *Store) DiskSpace() (DiskSpace, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.dir, &st); err != nil {
		return DiskSpace{}, fmt.Errorf("state: statfs %s: %w", s.dir, err)
	}
	return DiskSpace{StoreBytes: s.DiskUsage(), FreeBytes: uint64(st.Bavail) * uint64(st.Bsize)}, nil //nolint:unconvert // Bsize's type differs by platform
}
