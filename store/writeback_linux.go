package store

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// writeback writes out the dirty pages of the file at path chunk bytes at
// a time, calling yield before each chunk (decisions go first). Each
// chunk is written and waited for (sync_file_range), then the device's
// cache is flushed through the file's directory, which has nothing of
// its own to write: so a decision's flush never has more than one chunk
// of bulk data before it in the disk's queue, instead of the whole file
// that one fdatasync at the end would send. It does not make the file
// durable by itself (it writes no metadata): the caller syncs the file
// afterwards, and finds little left to write.
func writeback(path string, chunk int64, yield func()) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("write back: %w", err)
	}
	defer f.Close()
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("write back: %w", err)
	}
	defer d.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("write back: %w", err)
	}
	const how = unix.SYNC_FILE_RANGE_WAIT_BEFORE | unix.SYNC_FILE_RANGE_WRITE | unix.SYNC_FILE_RANGE_WAIT_AFTER
	for off := int64(0); off < fi.Size(); off += chunk {
		yield()
		if err := unix.SyncFileRange(int(f.Fd()), off, chunk, how); err != nil {
			return fmt.Errorf("write back %s: %w", path, err)
		}
		if err := unix.Fdatasync(int(d.Fd())); err != nil {
			return fmt.Errorf("write back %s: flush: %w", path, err)
		}
	}
	return nil
}

// removeGently deletes the file at path after shrinking it step bytes at
// a time, each step synced, calling yield before each: the blocks it
// frees (and their discards, on a file system mounted with discard) go
// out in small journal commits that a decision's flush does not queue
// behind, where one unlink of a large file frees them all at once. The
// file must be garbage already (a crash midway leaves a shorter garbage
// file, which Open removes).
func removeGently(path string, step int64, yield func()) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	for size := fi.Size(); size > 0; {
		size = max(0, size-step)
		yield()
		if err := f.Truncate(size); err != nil {
			return fmt.Errorf("remove %s: %w", path, err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return fmt.Errorf("remove %s: %w", path, err)
		}
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// fdatasync flushes f's data (not its timestamps) to the device.
func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
