package main

import (
	"errors"
	"fmt"
	"log/slog"

	"kioskd/hw/serial/lockboard"
	"kioskd/kiosk"
	"kioskd/kiosk/config"
)

// lockBoards are the RS-485 lock controller boards of the config, by
// name, on one bus per serial device.
type lockBoards struct {
	buses  []*lockboard.Bus
	boards map[string]*lockboard.Board
}

// openLockBoards opens every bus and addresses every board. A bus whose
// device cannot be opened stops the start, as a missing relay line does:
// its lockers could not open.
func openLockBoards(cfg *config.Config, log *slog.Logger) (lb *lockBoards, err error) {
	lb = &lockBoards{boards: map[string]*lockboard.Board{}}
	defer func() {
		if err != nil {
			_ = lb.close()
		}
	}()
	buses := map[string]*lockboard.Bus{}
	for _, bc := range cfg.LockBoards {
		bus := buses[bc.Device]
		if bus == nil {
			bus, err = lockboard.OpenBus(lockboard.BusOptions{Device: bc.Device, Baud: bc.Baud, Log: log})
			if err != nil {
				return lb, fmt.Errorf("lock_board %s: %w", bc.Name, err)
			}
			buses[bc.Device] = bus
			lb.buses = append(lb.buses, bus)
		}
		var opts []lockboard.BoardOption
		if bc.InvertedFeedback {
			opts = append(opts, lockboard.InvertedFeedback())
		}
		b, err := bus.Board(bc.Address, bc.Channels, opts...)
		if err != nil {
			return lb, fmt.Errorf("lock_board %s: %w", bc.Name, err)
		}
		lb.boards[bc.Name] = b
		log.Info("lock board ready", "board", bc.Name, "device", bc.Device, "address", bc.Address, "channels", bc.Channels)
	}
	return lb, nil
}

// lock returns a door's lock-board channel as its relay and, when the
// door has no contact line of its own, the board's feedback of that
// channel as its contact.
func (lb *lockBoards) lock(l config.Lock, wantContact bool) (relay kiosk.OutputLine, contact kiosk.InputLine, err error) {
	b := lb.boards[l.Board]
	if b == nil {
		return nil, nil, fmt.Errorf("no lock_board %q", l.Board) // config.Parse prevents it
	}
	lk, err := b.Lock(l.Channel)
	if err != nil {
		return nil, nil, fmt.Errorf("lock_board %s channel %d: %w", l.Board, l.Channel, err)
	}
	if !wantContact {
		return lk, nil, nil
	}
	s, err := b.Sensor(l.Channel)
	if err != nil {
		return nil, nil, fmt.Errorf("lock_board %s channel %d feedback: %w", l.Board, l.Channel, err)
	}
	return lk, s, nil
}

// stats returns every bus's counters, for status.
func (lb *lockBoards) stats() []lockboard.Stats {
	if lb == nil {
		return nil
	}
	st := make([]lockboard.Stats, 0, len(lb.buses))
	for _, b := range lb.buses {
		st = append(st, b.Stats())
	}
	return st
}

// close closes every bus (after the doors: their sensors poll it).
func (lb *lockBoards) close() error {
	if lb == nil {
		return nil
	}
	var errs []error
	for _, b := range lb.buses {
		if err := b.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close lock bus %s: %w", b.Device(), err))
		}
	}
	lb.buses = nil
	return errors.Join(errs...)
}
