package kiosk

import (
	"testing"
	"time"
)

// TestEntryZeroesDigits checks that no typed digit stays in the entry's
// buffer once the entry is submitted, cleared or timed out.
func TestEntryZeroesDigits(t *testing.T) {
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	zeroed := func(e *Entry) bool {
		for _, b := range e.buf[:cap(e.buf)] {
			if b != 0 {
				return false
			}
		}
		return true
	}
	tests := []struct {
		name string
		end  func(e *Entry)
	}{
		{"submitted by length", func(e *Entry) { e.Key('4', t0); e.Key('5', t0); e.Key('6', t0) }},
		{"submitted by hash", func(e *Entry) { e.Key('#', t0) }},
		{"cleared by star", func(e *Entry) { e.Key('*', t0) }},
		{"timed out by Expire", func(e *Entry) { e.Expire(t0.Add(time.Minute)) }},
		{"timed out by the next key", func(e *Entry) { e.Key('A', t0.Add(time.Minute)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEntry(6, 10*time.Second)
			for _, k := range "123" {
				e.Key(k, t0)
			}
			if zeroed(e) {
				t.Fatal("digits not stored")
			}
			tt.end(e)
			if e.Len() != 0 || !zeroed(e) {
				t.Fatalf("buffer after the entry ended: %q", e.buf[:cap(e.buf)])
			}
		})
	}
}
