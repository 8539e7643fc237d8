package store

import (
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// dropPages releases the resident pages of db's read-only shared file
// mapping (MADV_DONTNEED). The data stays in the page cache and is
// faulted back in on the next access, so readers see no difference; the
// process's resident size (which counts mapped file pages) stops growing
// while a full load reads the whole old id index. size is the used size
// of the file; the caller holds a read transaction, so bbolt cannot remap
// meanwhile.
func dropPages(db *bolt.DB, size int64) {
	if size <= 0 {
		return
	}
	addr := db.Info().Data
	syscall.Syscall(syscall.SYS_MADVISE, addr, uintptr(size), uintptr(syscall.MADV_DONTNEED))
}
