//go:build !linux

package store

import bolt "go.etcd.io/bbolt"

// dropPages does nothing outside Linux; see madvise_linux.go.
func dropPages(db *bolt.DB, size int64) {}
