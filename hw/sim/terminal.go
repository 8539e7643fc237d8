package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"kioskd/kiosk"
)

// Terminal is the `terminal` input: a keypad made of the keys typed on the
// controlling terminal, for bench runs with `hardware = "sim"`. It
// implements kiosk.Input.
//
// '0'-'9', '*', '#' and 'A'-'D' (or 'a'-'d') are keys; Enter (CR or LF,
// with CR LF or LF CR as one) is '#'; Ctrl-C (0x03) interrupts the process,
// since raw mode turns it into a plain byte; the escape sequences of arrow
// and function keys and every other byte are ignored.
type Terminal struct {
	name string
	r    io.Reader
	log  *slog.Logger

	// Interrupt is called for each Ctrl-C byte read. NewTerminal sets it to
	// send SIGINT to this process; tests replace it before Run.
	Interrupt func()
	// Now stamps the events; NewTerminal sets it to time.Now.
	Now func() time.Time
}

var _ kiosk.Input = (*Terminal)(nil)

// NewTerminal returns the terminal input called name reading r; nil r
// means the controlling terminal (or standard input when that is not a
// terminal). log nil means slog.Default().
func NewTerminal(name string, r io.Reader, log *slog.Logger) *Terminal {
	if log == nil {
		log = slog.Default()
	}
	return &Terminal{name: name, r: r, log: log, Interrupt: interruptSelf, Now: time.Now}
}

// Name returns the input's configured name.
func (t *Terminal) Name() string { return t.name }

// Run reads keys until ctx is done and returns nil then. When the reader
// is a terminal it is put in raw mode (no echo, no line buffering) for the
// duration of Run and restored on return, even on a panic. It emits
// InputConnected first; at end of input or on a read error it emits
// InputDisconnected and waits for ctx. A caller-supplied reader that
// cannot be interrupted (no read deadline) may keep one goroutine blocked
// in Read after Run returns, until that Read returns.
func (t *Terminal) Run(ctx context.Context, out chan<- kiosk.InputEvent) error {
	r, closeR, err := t.open()
	if err != nil {
		t.send(ctx, out, kiosk.InputEvent{Type: kiosk.InputDisconnected, Detail: err.Error()})
		<-ctx.Done()
		return nil
	}
	if closeR != nil {
		defer closeR()
	}
	if f, ok := r.(*os.File); ok {
		restore, err := makeRaw(f)
		if err != nil {
			t.log.Warn("terminal input: cannot enter raw mode; keys arrive after Enter",
				"input", t.name, "err", err)
		} else if restore != nil {
			defer restore()
		}
	}

	if !t.send(ctx, out, kiosk.InputEvent{Type: kiosk.InputConnected}) {
		return nil
	}

	chunks := make(chan []byte)
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		buf := make([]byte, 256)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				c := append([]byte(nil), buf[:n]...)
				select {
				case chunks <- c:
				case <-stop:
					return
				}
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	defer func() {
		close(stop)
		// Wait for the reader only when it can be interrupted.
		if d, ok := r.(interface{ SetReadDeadline(time.Time) error }); ok &&
			d.SetReadDeadline(time.Now()) == nil {
			<-readerDone
			_ = d.SetReadDeadline(time.Time{}) // leave the caller's reader as it was
		}
	}()

	var dec termDecoder
	keys := make([]rune, 0, 16)
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-chunks:
			keys = keys[:0]
			interrupts := 0
			dec.feed(c, func(k rune) { keys = append(keys, k) }, func() { interrupts++ })
			for range interrupts {
				t.log.Info("terminal input: Ctrl-C", "input", t.name)
				if t.Interrupt != nil {
					t.Interrupt()
				}
			}
			for _, k := range keys {
				if !t.send(ctx, out, kiosk.InputEvent{Type: kiosk.InputKey, Key: k}) {
					return nil
				}
			}
		case err := <-readErr:
			detail := "end of input"
			if !errors.Is(err, io.EOF) {
				detail = fmt.Sprintf("read terminal: %v", err)
			}
			t.log.Warn("terminal input closed", "input", t.name, "detail", detail)
			t.send(ctx, out, kiosk.InputEvent{Type: kiosk.InputDisconnected, Detail: detail})
			<-ctx.Done()
			return nil
		}
	}
}

// send delivers ev stamped with the input's name and time; false when ctx
// ended first.
func (t *Terminal) send(ctx context.Context, out chan<- kiosk.InputEvent, ev kiosk.InputEvent) bool {
	ev.Input = t.name
	ev.Time = t.Now()
	return kiosk.SendInput(ctx, out, ev)
}

// open returns the reader to use and, when Run opened it, how to close it.
func (t *Terminal) open() (io.Reader, func(), error) {
	if t.r != nil {
		return t.r, nil, nil
	}
	f, err := openControllingTerminal()
	if err != nil {
		return nil, nil, fmt.Errorf("open terminal: %w", err)
	}
	if f == os.Stdin {
		return f, nil, nil
	}
	return f, func() { f.Close() }, nil
}

// termDecoder turns terminal bytes into keys. It skips the escape
// sequences that arrow and function keys send (ESC [ ... final, ESC O x),
// so that Up (ESC [ A) does not type an 'A'.
type termDecoder struct {
	prevEOL byte // the CR or LF just seen, 0 otherwise
	esc     int  // escNone, escStart, escCSI or escSS3
}

const (
	escNone  = iota
	escStart // after ESC
	escCSI   // inside ESC [ ... up to a final byte 0x40-0x7e
	escSS3   // after ESC O: one more byte
)

func (d *termDecoder) feed(b []byte, key func(rune), interrupt func()) {
	for _, c := range b {
		switch d.esc {
		case escStart:
			switch c {
			case '[':
				d.esc = escCSI
				continue
			case 'O':
				d.esc = escSS3
				continue
			}
			d.esc = escNone // a lone ESC: take c as it is
		case escCSI:
			if c >= 0x40 && c <= 0x7e {
				d.esc = escNone
			}
			continue
		case escSS3:
			d.esc = escNone
			continue
		}
		switch {
		case c == '\r' || c == '\n':
			if d.prevEOL != 0 && d.prevEOL != c {
				d.prevEOL = 0 // second half of CR LF or LF CR
				continue
			}
			d.prevEOL = c
			key('#')
			continue
		case c >= '0' && c <= '9', c == '*', c == '#', c >= 'A' && c <= 'D':
			key(rune(c))
		case c >= 'a' && c <= 'd':
			key(rune(c - 'a' + 'A'))
		case c == 0x03:
			interrupt()
		case c == 0x1b:
			d.esc = escStart
		}
		d.prevEOL = 0
	}
}
