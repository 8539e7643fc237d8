package portal

import (
	"strings"
	"testing"
	"time"

	"kioskd/kiosk"
)

func TestParseSchedule(t *testing.T) {
	tests := []struct {
		in, want string // want: FormatSchedule of the result, or "error"
	}{
		{"mon-fri 07:00-20:00", "mon,tue,wed,thu,fri 07:00-20:00"},
		{"mon-fri 07:00-20:00; sat 09:00-13:00", "mon,tue,wed,thu,fri 07:00-20:00; sat 09:00-13:00"},
		{"fri-mon 22:00-06:00", "mon,fri,sat,sun 22:00-06:00"},
		{"mon,wed,fri 08:00-08:00", "mon,wed,fri 08:00-08:00"},
		{"07:00-20:00", "mon,tue,wed,thu,fri,sat,sun 07:00-20:00"},
		{"weekends 10:00-12:00", "sat,sun 10:00-12:00"},
		{"Weekdays 10:00-12:00", "mon,tue,wed,thu,fri 10:00-12:00"},
		{"", ""},
		{"   ", ""},
		{"monday 07:00-20:00", "error"},
		{"mon-fri 7:00-20:00", "error"},
		{"mon-fri 07:00", "error"},
		{"mon-fri 07:00-24:00", "error"},
		{"mon-fri 07:00-20:00;", "error"},
		{"mon fri 07:00-20:00", "error"},
		{"mon-xyz 07:00-20:00", "error"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ws, err := ParseSchedule(tt.in)
			if tt.want == "error" {
				if err == nil {
					t.Errorf("parsed as %q", FormatSchedule(ws))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := FormatSchedule(ws); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzParseSchedule: whatever is typed, a schedule that parses is one the
// kiosk accepts, and reads back the same.
func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{"mon-fri 07:00-20:00", "fri-mon 22:00-06:00; sat 09:00-13:00", "07:00-20:00", "weekends 00:00-00:00", "", ";", "mon-mon 1:1-2:2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ws, err := ParseSchedule(s)
		if err != nil {
			return
		}
		for _, w := range ws {
			if _, err := kiosk.ParseWindow(w.Days, w.From, w.To); err != nil {
				t.Fatalf("%q parsed into a window the kiosk refuses: %v", s, err)
			}
		}
		again, err := ParseSchedule(FormatSchedule(ws))
		if err != nil || FormatSchedule(again) != FormatSchedule(ws) {
			t.Fatalf("%q: %q does not read back: %v", s, FormatSchedule(ws), err)
		}
	})
}

func TestParseCursor(t *testing.T) {
	for _, tt := range []struct {
		in  string
		rev int64
		ok  bool
	}{
		{"c-0", 0, true}, {"c-1041", 1041, true}, {"c-9223372036854775807", 1<<63 - 1, true},
		{"c-", 0, false}, {"c-01", 0, false}, {"c--1", 0, false}, {"c-+1", 0, false}, {"C-1", 0, false},
		{"c-9223372036854775808", 0, false}, {"c-1 ", 0, false}, {"", 0, false},
	} {
		rev, ok := ParseCursor(tt.in)
		if ok != tt.ok || rev != tt.rev {
			t.Errorf("ParseCursor(%q) = %d, %v; want %d, %v", tt.in, rev, ok, tt.rev, tt.ok)
		}
	}
}

// FuzzParseCursor: a cursor that parses is the one Cursor writes.
func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"c-0", "c-17", "c-01", "c-", "x", "c-99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if rev, ok := ParseCursor(s); ok && (Cursor(rev) != s || rev < 0) {
			t.Fatalf("%q parses as %d", s, rev)
		}
	})
}

// FuzzPageToken: a page token that is not one the portal made for this
// device never decodes; one it made always does, to the same state.
func FuzzPageToken(f *testing.F) {
	p := &Portal{pageKey: []byte("0123456789abcdef0123456789abcdef")}
	good := p.encodePageToken("spr-0001", pageToken{rev: 42, issued: time.Unix(1_800_000_000, 5).UTC(), after: []byte("digest-and-id")})
	for _, s := range []string{good, good[:len(good)-1], "", "AQ", strings.Repeat("A", 60), "!!"} {
		f.Add(s, int64(42), []byte("k"))
	}
	f.Fuzz(func(t *testing.T, s string, rev int64, after []byte) {
		if s != good {
			if _, err := p.decodePageToken("spr-0001", s); err == nil {
				t.Fatalf("forged token %q decodes", s)
			}
		}
		if len(after) > 300 {
			return
		}
		tok := pageToken{rev: rev, issued: time.Unix(0, rev).UTC(), after: after}
		got, err := p.decodePageToken("spr-0001", p.encodePageToken("spr-0001", tok))
		if err != nil || got.rev != tok.rev || !got.issued.Equal(tok.issued) || string(got.after) != string(after) {
			t.Fatalf("round trip %+v → %+v, %v", tok, got, err)
		}
		if _, err := p.decodePageToken("spr-0002", p.encodePageToken("spr-0001", tok)); err == nil {
			t.Fatal("a token of another device decodes")
		}
	})
}
