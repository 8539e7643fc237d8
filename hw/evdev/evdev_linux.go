package evdev

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	goevdev "github.com/holoplot/go-evdev"

	"kioskd/kiosk"
)

// Run reads the device until ctx is done, sending what it reads on out,
// and returns nil then. It reports kiosk.InputConnected once the device is
// open and grabbed, and kiosk.InputDisconnected (Detail says why) when it
// cannot be opened or grabbed, or goes away; then it reopens it with
// back-off. A code in progress when the device goes away is discarded.
func (in *Input) Run(ctx context.Context, out chan<- kiosk.InputEvent) error {
	dec := in.newDecoder()
	var b backoff
	down := false // an outage has been reported and not yet ended
	for {
		if ctx.Err() != nil {
			return nil
		}
		dev, node, err := in.open()
		if err != nil {
			if !down {
				down = true
				in.log.Warn("input device unavailable; retrying", "err", err)
				if !in.send(ctx, out, kiosk.InputEvent{Type: kiosk.InputDisconnected, Detail: err.Error()}) {
					return nil
				}
			} else {
				in.log.Debug("input device still unavailable", "err", err)
			}
			if !b.sleep(ctx) {
				return nil
			}
			continue
		}

		down = false
		in.log.Info("input device connected", "node", node)
		dec.Reset()
		if !in.send(ctx, out, kiosk.InputEvent{Type: kiosk.InputConnected}) {
			dev.Close()
			return nil
		}
		start := time.Now()
		healthy, err := in.read(ctx, dev, node, dec, out)
		dec.Reset() // a partial code is discarded
		if ctx.Err() != nil {
			return nil
		}
		// A connection that delivered events or stayed up a while restarts
		// the back-off; one that fails at once keeps doubling it, so a
		// flapping device cannot flood the journal.
		if healthy || time.Since(start) >= backoffMax {
			b.reset()
		}
		down = true
		in.log.Warn("input device disconnected; reopening", "err", err)
		if !in.send(ctx, out, kiosk.InputEvent{Type: kiosk.InputDisconnected, Detail: err.Error()}) {
			return nil
		}
		if !b.sleep(ctx) {
			return nil
		}
	}
}

// open resolves the device link, opens the node and grabs it. The
// returned device reads in non-blocking mode, so closing it ends a read
// in progress.
func (in *Input) open() (*goevdev.InputDevice, string, error) {
	node, err := filepath.EvalSymlinks(in.o.Device)
	if err != nil {
		return nil, "", fmt.Errorf("resolve %s: %w", in.o.Device, err)
	}
	dev, err := goevdev.OpenWithFlags(node, os.O_RDONLY)
	if err != nil {
		return nil, "", fmt.Errorf("open %s (%s): %w", in.o.Device, node, err)
	}
	if err := dev.Grab(); err != nil {
		dev.Close()
		return nil, "", fmt.Errorf("grab %s (%s): %w", in.o.Device, node, err)
	}
	// Grab took the descriptor out of the runtime poller's non-blocking
	// mode (os.File.Fd does); put it back so that Close wakes a read.
	// Nothing below may call a method that uses Fd.
	if err := dev.NonBlock(); err != nil {
		dev.Close()
		return nil, "", fmt.Errorf("set %s non-blocking: %w", node, err)
	}
	return dev, node, nil
}

// read decodes events until the device fails or ctx is done, then closes
// the device (which also releases the grab). healthy says whether any
// event arrived; err says why the device was lost.
func (in *Input) read(ctx context.Context, dev *goevdev.InputDevice, node string, dec decoder, out chan<- kiosk.InputEvent) (healthy bool, err error) {
	stop := context.AfterFunc(ctx, func() { dev.Close() })
	defer func() {
		if stop() {
			dev.Close()
		}
	}()
	for {
		evs, err := dev.ReadSlice(64)
		if err != nil {
			return healthy, fmt.Errorf("read %s (%s): %w", in.o.Device, node, err)
		}
		for i := range evs {
			healthy = true
			ev, ok := dec.Event(uint16(evs[i].Type), uint16(evs[i].Code), evs[i].Value)
			if !ok {
				continue
			}
			if !in.send(ctx, out, ev) {
				return healthy, ctx.Err()
			}
		}
		if in.afterRead != nil {
			in.afterRead(len(evs))
		}
	}
}
