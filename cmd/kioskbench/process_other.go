//go:build !linux

package main

import (
	"errors"
	"time"
)

// errNotLinux is returned by the process scenarios off Linux: they read
// /proc and speak the systemd notify protocol.
var errNotLinux = errors.New("the process scenarios run on Linux only")

// MeasureReady needs Linux.
func MeasureReady(bin, dir string, n, runs int) (ReadyResult, error) {
	return ReadyResult{}, errNotLinux
}

// MeasureIdle needs Linux.
func MeasureIdle(bin, dir string, n int, settle, window time.Duration) (IdleResult, error) {
	return IdleResult{}, errNotLinux
}
