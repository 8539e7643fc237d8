//go:build !linux

package store

import (
	"fmt"
	"os"
)

// writeback does nothing outside Linux (no sync_file_range); the caller's
// sync writes the whole file. See writeback_linux.go.
func writeback(path string, chunk int64, yield func()) error { return nil }

// removeGently deletes the file at once outside Linux. See
// writeback_linux.go.
func removeGently(path string, step int64, yield func()) error {
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// fdatasync is f.Sync outside Linux.
func fdatasync(f *os.File) error { return f.Sync() }
