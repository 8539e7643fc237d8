//go:build !linux

package main

import (
	"errors"
	"fmt"
	"os"
)

// access reports whether path can be opened as asked; elsewhere than on
// Linux it tries to open it.
func access(path string, read, write bool) bool {
	flag := os.O_RDONLY
	switch {
	case read && write:
		flag = os.O_RDWR
	case write:
		flag = os.O_WRONLY
	}
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	if fi.IsDir() {
		return true
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// freeBytes is not implemented elsewhere than on Linux.
func freeBytes(dir string) (uint64, error) {
	return 0, errors.New("free space is checked on Linux only")
}

// describeFile returns the mode of path.
func describeFile(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "cannot stat"
	}
	return fmt.Sprintf("mode %04o", fi.Mode().Perm())
}
