package evdev

import (
	"errors"
	"testing"
	"time"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name     string
		o        Options
		err      error
		wantName string
	}{
		{"qr", Options{Name: "front", Device: "/dev/input/by-id/usb-x-event-kbd", Kind: KindQR}, nil, "front"},
		{"card, name defaults to device", Options{Device: "/dev/input/event3", Kind: KindCard, MaxCode: 64}, nil, "/dev/input/event3"},
		{"keypad", Options{Name: "pad", Device: "/dev/input/event0", Kind: KindKeypad}, nil, "pad"},
		{"no device", Options{Name: "front", Kind: KindQR}, ErrNoDevice, ""},
		{"no kind", Options{Name: "front", Device: "/dev/input/event0"}, ErrKind, ""},
		{"unknown kind", Options{Name: "front", Device: "/dev/input/event0", Kind: "pin"}, ErrKind, ""},
		{"negative max", Options{Name: "front", Device: "/dev/input/event0", Kind: KindQR, MaxCode: -1}, ErrMaxCode, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := New(tt.o)
			if !errors.Is(err, tt.err) {
				t.Fatalf("New: %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if in.Name() != tt.wantName {
				t.Fatalf("Name() = %q, want %q", in.Name(), tt.wantName)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	var b backoff
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second,
		8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	within := func(got, want time.Duration) bool {
		return got >= time.Duration(float64(want)*(1-backoffJitter)) && got <= time.Duration(float64(want)*(1+backoffJitter))
	}
	for i, w := range want {
		if got := b.wait(); !within(got, w) {
			t.Fatalf("wait %d = %v, want %v ±%.0f%%", i, got, w, backoffJitter*100)
		}
	}
	b.reset()
	if got := b.wait(); !within(got, backoffMin) {
		t.Fatalf("after reset: %v, want %v", got, backoffMin)
	}
	// The jitter varies the waits.
	seen := map[time.Duration]bool{}
	for range 20 {
		b.reset()
		seen[b.wait()] = true
	}
	if len(seen) < 2 {
		t.Fatal("20 first waits all equal: no jitter")
	}
}
