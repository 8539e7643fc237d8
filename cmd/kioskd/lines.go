package main

import (
	"log/slog"
	"strings"
	"time"

	"kioskd/hw/gpio"
	"kioskd/hw/sim"
	"kioskd/kiosk"
	"kioskd/kiosk/config"
)

// lineOpener requests the GPIO lines of doors: simulated ones under
// hardware = "sim", the kernel's through hw/gpio under "gpio". Consumer
// labels the line ("kioskd-main-relay"), which gpioinfo shows.
type lineOpener interface {
	output(l config.Line, consumer string) (kiosk.OutputLine, error)
	input(l config.Line, consumer string) (kiosk.InputLine, error)
}

type simLines struct{ bank *sim.Bank }

// simLines requests lines from the in-memory bank.
func (s simLines) output(l config.Line, consumer string) (kiosk.OutputLine, error) {
	o, err := s.bank.Chip(l.Chip).Output(l.Line, l.ActiveLow, consumer)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(consumer, "-relay") {
		o.SetLogLevel(slog.LevelDebug) // a beep per key would drown the relays
	}
	return o, nil
}

func (s simLines) input(l config.Line, consumer string) (kiosk.InputLine, error) {
	return s.bank.Chip(l.Chip).Input(l.Line, l.ActiveLow, consumer)
}

// inputDebounce is the kernel debounce of contacts and exit buttons:
// long enough to hide a reed switch's or a button's bounce, short enough
// that a press is seen at once.
const inputDebounce = 20 * time.Millisecond

// gpioLines requests lines from the GPIO character device, opening each
// chip once.
type gpioLines struct {
	log   *slog.Logger
	chips map[string]*gpio.Chip
}

func newGPIOLines(log *slog.Logger) *gpioLines {
	return &gpioLines{log: log, chips: map[string]*gpio.Chip{}}
}

func (g *gpioLines) chip(name string) (*gpio.Chip, error) {
	key := strings.TrimPrefix(name, "/dev/")
	if c := g.chips[key]; c != nil {
		return c, nil
	}
	c, err := gpio.Open(name, g.log)
	if err != nil {
		return nil, err
	}
	g.chips[key] = c
	return c, nil
}

func (g *gpioLines) output(l config.Line, consumer string) (kiosk.OutputLine, error) {
	c, err := g.chip(l.Chip)
	if err != nil {
		return nil, err
	}
	o, err := c.Output(l.Line, l.ActiveLow, consumer)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(consumer, "-relay") {
		o.SetLogLevel(slog.LevelDebug)
	}
	return o, nil
}

func (g *gpioLines) input(l config.Line, consumer string) (kiosk.InputLine, error) {
	c, err := g.chip(l.Chip)
	if err != nil {
		return nil, err
	}
	return c.Input(l.Line, l.ActiveLow, consumer, inputDebounce)
}

// closeChips closes the chip handles; the lines requested from them stay
// requested until each is closed.
func (g *gpioLines) closeChips() {
	for name, c := range g.chips {
		if err := c.Close(); err != nil {
			g.log.Warn("close gpio chip", "chip", name, "err", err)
		}
	}
	clear(g.chips)
}

var (
	_ lineOpener = simLines{}
	_ lineOpener = (*gpioLines)(nil)
)
