package kiosk

import (
	"errors"
	"sync"
	"time"
)

// Pattern is a feedback pattern shown on a door's buzzer and LEDs.
type Pattern int

// The feedback patterns of SPEC §3.
const (
	PatternKey     Pattern = iota + 1 // a short beep per key
	PatternGrant                      // green LED and one beep
	PatternDeny                       // red LED and three short beeps
	PatternLockout                    // red LED and a long beep
)

type step struct {
	line   int // 0 buzzer, 1 green, 2 red
	at     time.Duration
	active bool
}

func onFor(line int, at, d time.Duration) []step {
	return []step{{line, at, true}, {line, at + d, false}}
}

func patternSteps(p Pattern) []step {
	ms := time.Millisecond
	var s []step
	switch p {
	case PatternKey:
		s = onFor(0, 0, 40*ms)
	case PatternGrant:
		s = append(onFor(1, 0, 2*time.Second), onFor(0, 0, 150*ms)...)
	case PatternDeny:
		s = onFor(2, 0, time.Second)
		for i := 0; i < 3; i++ {
			s = append(s, onFor(0, time.Duration(i)*160*ms, 80*ms)...)
		}
	case PatternLockout:
		s = append(onFor(2, 0, 3*time.Second), onFor(0, 0, time.Second)...)
	}
	return s
}

// Indicator plays feedback patterns on a buzzer and two LEDs. Any of the
// lines may be nil. A new pattern cancels the one playing; every line is
// switched off by a runtime timer at the end of its step, so nothing can
// leave a buzzer sounding. Safe for concurrent use.
type Indicator struct {
	lines [3]OutputLine

	mu     sync.Mutex
	timers []*time.Timer
	gen    int
}

// NewIndicator returns an indicator on the given lines (nil = absent).
func NewIndicator(buzzer, green, red OutputLine) *Indicator {
	return &Indicator{lines: [3]OutputLine{buzzer, green, red}}
}

// Play shows a pattern, cancelling the one playing.
func (ind *Indicator) Play(p Pattern) {
	if ind == nil {
		return
	}
	ind.mu.Lock()
	defer ind.mu.Unlock()
	ind.stopLocked()
	ind.gen++
	gen := ind.gen
	for _, st := range patternSteps(p) {
		l := ind.lines[st.line]
		if l == nil {
			continue
		}
		if st.at == 0 {
			_ = l.Set(st.active)
			continue
		}
		active := st.active
		ind.timers = append(ind.timers, time.AfterFunc(st.at, func() {
			ind.mu.Lock()
			defer ind.mu.Unlock()
			if ind.gen == gen {
				_ = l.Set(active)
			}
		}))
	}
}

func (ind *Indicator) stopLocked() {
	for _, t := range ind.timers {
		t.Stop()
	}
	ind.timers = ind.timers[:0]
	for _, l := range ind.lines {
		if l != nil {
			_ = l.Set(false)
		}
	}
}

// Close switches every line off and releases it.
func (ind *Indicator) Close() error {
	if ind == nil {
		return nil
	}
	ind.mu.Lock()
	defer ind.mu.Unlock()
	ind.gen++
	ind.stopLocked()
	var errs []error
	for _, l := range ind.lines {
		if l != nil {
			errs = append(errs, l.Close())
		}
	}
	return errors.Join(errs...)
}
