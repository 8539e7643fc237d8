package main

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// access reports whether the current user may open path for reading
// and/or writing (access(2), with the real uid as the kernel checks it).
func access(path string, read, write bool) bool {
	var mode uint32
	if read {
		mode |= unix.R_OK
	}
	if write {
		mode |= unix.W_OK
	}
	return unix.Access(path, mode) == nil
}

// freeBytes returns the bytes available to unprivileged users on the file
// system of dir.
func freeBytes(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// describeFile returns "owner:group mode" of path, for permission hints.
func describeFile(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "cannot stat"
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Sprintf("mode %04o", fi.Mode().Perm())
	}
	owner := strconv.FormatUint(uint64(st.Uid), 10)
	if u, err := user.LookupId(owner); err == nil {
		owner = u.Username
	}
	group := strconv.FormatUint(uint64(st.Gid), 10)
	if g, err := user.LookupGroupId(group); err == nil {
		group = g.Name
	}
	return fmt.Sprintf("%s:%s %04o", owner, group, fi.Mode().Perm())
}
