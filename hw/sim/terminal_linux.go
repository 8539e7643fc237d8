package sim

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// openControllingTerminal returns the terminal to read keys from: when
// standard input is a terminal, a fresh descriptor of the controlling
// terminal (/dev/tty), which unlike standard input can be interrupted by a
// read deadline; otherwise standard input as it is (a pipe, say).
func openControllingTerminal() (*os.File, error) {
	if _, err := unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS); err != nil {
		return os.Stdin, nil
	}
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return os.Stdin, nil
	}
	return f, nil
}

// control runs fn on f's descriptor without f.Fd, which would switch f to
// blocking mode and disable its read deadlines.
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// makeRaw puts f in raw mode when it is a terminal and returns the
// function that restores it (nil when f is not a terminal). Unlike
// term.MakeRaw it keeps output processing (OPOST), so log lines written to
// the same terminal still start at the left margin.
func makeRaw(f *os.File) (func(), error) {
	var old *unix.Termios
	if control(f, func(fd int) (err error) {
		old, err = unix.IoctlGetTermios(fd, unix.TCGETS)
		return err
	}) != nil {
		return nil, nil // not a terminal: read bytes as they are
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN] = 1
	raw.Cc[unix.VTIME] = 0
	if err := control(f, func(fd int) error { return unix.IoctlSetTermios(fd, unix.TCSETS, &raw) }); err != nil {
		return nil, fmt.Errorf("set raw mode on %s: %w", f.Name(), err)
	}
	saved := *old
	return func() {
		_ = control(f, func(fd int) error { return unix.IoctlSetTermios(fd, unix.TCSETS, &saved) })
	}, nil
}

// interruptSelf sends SIGINT to this process, as Ctrl-C would outside raw
// mode.
func interruptSelf() { _ = unix.Kill(os.Getpid(), unix.SIGINT) }
