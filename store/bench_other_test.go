//go:build !linux

package store_test

import (
	"testing"
	"time"
)

// cpuTime is not measured outside Linux.
func cpuTime() time.Duration { return 0 }

// vmHWM is Linux only: the full-apply benchmark child skips elsewhere.
func vmHWM(t testing.TB) float64 {
	t.Skip("peak RSS is measured on Linux only")
	return 0
}
