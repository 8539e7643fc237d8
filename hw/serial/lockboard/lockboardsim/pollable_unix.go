//go:build unix

package lockboardsim

import (
	"os"

	"golang.org/x/sys/unix"
)

// pollable returns f as a file in the runtime's poller, so that closing
// it ends a Read blocked in another goroutine (Unplug relies on that).
// creack/pty hands the master out in blocking mode, where Close does not
// interrupt a Read. f is closed; the result owns a duplicate descriptor.
func pollable(f *os.File) (*os.File, error) {
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	f.Close()
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// ClearExclusive clears the exclusive mode (TIOCEXCL) that go.bug.st/serial
// sets on the slave when it opens it, and that outlives its close while
// the master is open: without it a host that closes the device and opens
// it again (a restarted kioskd) gets EBUSY unless it runs as root.
func (s *Sim) ClearExclusive() error {
	s.mu.Lock()
	g := s.gen
	s.mu.Unlock()
	if g == nil {
		return ErrNoBoard
	}
	rc, err := g.tty.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) { ierr = unix.IoctlSetInt(int(fd), unix.TIOCNXCL, 0) }); err != nil {
		return err
	}
	return ierr
}
