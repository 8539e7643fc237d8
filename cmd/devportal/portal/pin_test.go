package portal

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"kioskd/kiosk"
	portalsync "kioskd/sync"
)

// scriptRand is a deterministic random source: it serves the queued
// values (as big-endian uint32s, the width drawPIN reads) and falls back to
// crypto/rand when the queue is empty.
type scriptRand struct {
	mu  sync.Mutex
	buf []byte
}

func (s *scriptRand) push(vals ...uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range vals {
		s.buf = binary.BigEndian.AppendUint32(s.buf, v)
	}
}

func (s *scriptRand) left() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.buf)
}

func (s *scriptRand) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.buf) == 0 {
		return rand.Read(p)
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}

func TestTrivialPIN(t *testing.T) {
	tests := []struct {
		pin     string
		trivial bool
	}{
		{"000000", true}, {"111111", true}, {"999999", true},
		{"123456", true}, {"234567", true}, {"890123", true}, {"012345", true},
		{"654321", true}, {"987654", true}, {"210987", true},
		{"121212", true}, {"112211", true}, {"111222", true}, {"000009", true},
		{"123123", true}, {"907907", true},
		{"583920", false}, {"246810", false}, {"719304", false}, {"123457", false}, {"121213", false}, {"102938", false},
	}
	for _, tt := range tests {
		t.Run(tt.pin, func(t *testing.T) {
			if got := TrivialPIN(tt.pin); got != tt.trivial {
				t.Errorf("TrivialPIN(%s) = %v, want %v", tt.pin, got, tt.trivial)
			}
		})
	}
}

func TestPINGenerator(t *testing.T) {
	sr := &scriptRand{}
	e := newEnv(t, func(o *Options) { o.Rand = sr })
	h := e.holder(kiosk.RoleResident, "Ana")

	t.Run("skips trivial draws and uses the draw below the bias cut", func(t *testing.T) {
		// 111111, 123456, 654321, 121212, 123123 are trivial; a value at or
		// above pinReject is redrawn; 4_000_583_920 % 10^6 = 583920.
		sr.push(111111, 123456, 654321, 121212, 123123, pinReject, 0xFFFFFFFF, 4_000_583_920)
		is := e.issue(CredentialSpec{Holder: h, Type: TypePIN})
		if is.Secret != "583920" || sr.left() != 0 {
			t.Fatalf("PIN %s, %d scripted bytes left; want 583920 and none", is.Secret.Reveal(), sr.left())
		}
	})

	t.Run("never repeats a deleted PIN", func(t *testing.T) {
		sr.push(719304)
		first := e.issue(CredentialSpec{Holder: h, Type: TypePIN})
		if err := e.p.Delete(ctx, first.Credential.ID); err != nil {
			t.Fatal(err)
		}
		sr.push(719304, 583920, 402958) // the deleted one, the active one, a fresh one
		again := e.issue(CredentialSpec{Holder: h, Type: TypePIN})
		if again.Secret != "402958" {
			t.Errorf("PIN %s, want 402958", again.Secret.Reveal())
		}
	})

	t.Run("one-time PIN used up is never drawn again", func(t *testing.T) {
		sr.push(360482)
		once := e.issue(CredentialSpec{Holder: h, Type: TypeOneTime})
		sr.push(360482, 815273)
		if next := e.issue(CredentialSpec{Holder: h, Type: TypeOneTime}); next.Secret != "815273" || once.Secret != "360482" {
			t.Errorf("PINs %s then %s", once.Secret.Reveal(), next.Secret.Reveal())
		}
	})

	t.Run("no PIN left", func(t *testing.T) {
		vals := make([]uint32, maxPINDraws)
		for i := range vals {
			vals[i] = 583920
		}
		sr.push(vals...)
		if _, err := e.p.Issue(ctx, CredentialSpec{Holder: h, Type: TypePIN}); !errors.Is(err, ErrNoPIN) || !errors.Is(err, ErrConflict) {
			t.Errorf("err %v, want ErrNoPIN", err)
		}
	})

	t.Run("drawn PINs are distinct and not trivial", func(t *testing.T) {
		seen := map[string]bool{}
		for range 100 {
			pin := e.issue(CredentialSpec{Holder: h, Type: TypePIN}).Secret.Reveal()
			if seen[pin] || TrivialPIN(pin) || len(pin) != PINLength {
				t.Fatalf("drew %s (seen %v)", pin, seen[pin])
			}
			seen[pin] = true
		}
	})
}

func TestChosenPIN(t *testing.T) {
	sr := &scriptRand{}
	e := newEnv(t, func(o *Options) { o.Rand = sr })
	staff := e.holder(kiosk.RoleStaff, "Sam")
	courier := e.holder(kiosk.RoleCourier, "ParcelCo")
	resident := e.holder(kiosk.RoleResident, "Ana")
	sr.push(246810)
	drawn := e.issue(CredentialSpec{Holder: resident, Type: TypePIN})
	if err := e.p.Delete(ctx, drawn.Credential.ID); err != nil {
		t.Fatal(err)
	}
	chosen := e.issue(CredentialSpec{Holder: courier, Type: TypeChosenPIN, Secret: "583920"})

	tests := []struct {
		name, holder string
		pin          SecretText
		want         error
	}{
		{"fresh for staff", staff, "719304", nil},
		{"active already", staff, chosen.Secret, ErrConflict},
		{"deleted before", staff, "246810", ErrConflict},
		{"trivial", staff, "123456", ErrInvalid},
		{"repeated pairs", courier, "121212", ErrInvalid},
		{"short", staff, "12345", ErrInvalid},
		{"letters", staff, "12a456", ErrInvalid},
		{"for a resident", resident, "815273", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.p.Issue(ctx, CredentialSpec{Holder: tt.holder, Type: TypeChosenPIN, Secret: tt.pin})
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			if err != nil && len(tt.pin) >= 5 && strings.Contains(err.Error(), string(tt.pin)) {
				t.Errorf("the error shows the PIN: %v", err)
			}
		})
	}
	// A drawn PIN never equals a chosen one either.
	sr.push(583920, 719304, 402958)
	if is := e.issue(CredentialSpec{Holder: resident, Type: TypePIN}); is.Secret != "402958" {
		t.Errorf("drew %s, want 402958", is.Secret.Reveal())
	}
}

func TestCredentialOptions(t *testing.T) {
	e := newEnv(t, nil)
	h := e.holder(kiosk.RoleCourier, "ParcelCo")
	now := e.clock.Now()
	from := now.Add(48 * time.Hour)
	until := now.Add(72 * time.Hour)
	tests := []struct {
		name      string
		spec      CredentialSpec
		wantUses  int
		wantFrom  *time.Time
		wantUntil *time.Time
		wantErr   error
	}{
		{"one-time defaults to 24 h", CredentialSpec{Type: TypeOneTime}, 1, nil, ptr(now.Add(24 * time.Hour)), nil},
		{"one-time for 2 h", CredentialSpec{Type: TypeOneTime, ValidFor: Duration(2 * time.Hour)}, 1, nil, ptr(now.Add(2 * time.Hour)), nil},
		{"one-time from a start", CredentialSpec{Type: TypeOneTime, ValidFrom: &from}, 1, &from, ptr(from.Add(24 * time.Hour)), nil},
		{"one-time with two uses", CredentialSpec{Type: TypeOneTime, Uses: 2}, 0, nil, nil, ErrInvalid},
		{"N uses, window", CredentialSpec{Type: TypePIN, Uses: 3, ValidFrom: &from, ValidUntil: &until}, 3, &from, &until, nil},
		{"until before from", CredentialSpec{Type: TypePIN, ValidFrom: &until, ValidUntil: &from}, 0, nil, nil, ErrInvalid},
		{"negative uses", CredentialSpec{Type: TypePIN, Uses: -1}, 0, nil, nil, ErrInvalid},
		{"door twice", CredentialSpec{Type: TypePIN, Doors: []string{"main", "main"}}, 0, nil, nil, ErrInvalid},
		{"bad schedule", CredentialSpec{Type: TypePIN, Schedule: []portalsync.WireWindow{{Days: []string{"monday"}, From: "07:00", To: "20:00"}}}, 0, nil, nil, ErrInvalid},
		{"unknown type", CredentialSpec{Type: "iris"}, 0, nil, nil, ErrInvalid},
		{"secret for a drawn type", CredentialSpec{Type: TypePIN, Secret: "583920"}, 0, nil, nil, ErrInvalid},
		{"card without number", CredentialSpec{Type: TypeCard}, 0, nil, nil, ErrInvalid},
		{"card with a space", CredentialSpec{Type: TypeCard, Secret: "12 34"}, 0, nil, nil, ErrInvalid},
		{"unknown holder", CredentialSpec{Type: TypePIN, Holder: "h-404"}, 0, nil, nil, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.spec.Holder == "" {
				tt.spec.Holder = h
			}
			is, err := e.p.Issue(ctx, tt.spec)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := is.Credential
			if c.Uses != tt.wantUses || !timeEq(c.ValidFrom, tt.wantFrom) || !timeEq(c.ValidUntil, tt.wantUntil) {
				t.Errorf("uses %d from %v until %v; want %d %v %v", c.Uses, c.ValidFrom, c.ValidUntil, tt.wantUses, tt.wantFrom, tt.wantUntil)
			}
		})
	}
}

func TestCardConflict(t *testing.T) {
	e := newEnv(t, nil)
	h := e.holder(kiosk.RoleManager, "Lee")
	first := e.issue(CredentialSpec{Holder: h, Type: TypeCard, Secret: "0004817265"})
	if _, err := e.p.Issue(ctx, CredentialSpec{Holder: h, Type: TypeCard, Secret: "0004817265"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("second active card with one number: %v", err)
	}
	// Deactivated, the number may be given to a new card; the old one then
	// cannot be reactivated while the new one is active.
	if _, err := e.p.SetStatus(ctx, first.Credential.ID, kiosk.StatusDeactivated); err != nil {
		t.Fatal(err)
	}
	e.issue(CredentialSpec{Holder: h, Type: TypeCard, Secret: "0004817265"})
	if _, err := e.p.SetStatus(ctx, first.Credential.ID, kiosk.StatusActive); !errors.Is(err, ErrConflict) {
		t.Errorf("reactivating a duplicate: %v", err)
	}
	// The same number as a PIN kind is another digest: no conflict.
	if _, err := e.p.Issue(ctx, CredentialSpec{Holder: h, Type: TypeCard, Secret: "0004817266"}); err != nil {
		t.Error(err)
	}
}

func ptr(t time.Time) *time.Time { return &t }

func timeEq(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}
