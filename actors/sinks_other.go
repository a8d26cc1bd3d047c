//go:build !unix

package actors

import "os"

// fileID identifies a file across renames and restarts.
type fileID struct{ dev, ino uint64 }

// identity is unknown off Unix: a file output then knows the files it
// wrote by their content only (isOutputFile).
func identity(os.FileInfo) (fileID, bool) { return fileID{}, false }
