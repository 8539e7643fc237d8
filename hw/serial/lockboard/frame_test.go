package lockboard

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Frames published for these boards (docs/lockboard.md, "Sources").
func TestRequestBytes(t *testing.T) {
	for _, tc := range []struct {
		req  Request
		want string
	}{
		{Request{OpOpen, 1, 1}, "8A 01 01 11 9B"},
		{Request{OpOpen, 1, 0}, "8A 01 00 11 9A"},
		{Request{OpOpen, 1, 6}, "8A 01 06 11 9C"},
		{Request{OpOpen, 1, 7}, "8A 01 07 11 9D"},
		{Request{OpStatus, 1, 0}, "80 01 00 33 B2"},
		{Request{OpStatus, 1, 1}, "80 01 01 33 B3"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			got := tc.req.Bytes()
			if !bytes.Equal(got, unhex(t, tc.want)) {
				t.Fatalf("%+v encodes as % X, want %s", tc.req, got, tc.want)
			}
			back, n, err := ParseRequest(got)
			if err != nil || n != 5 || back != tc.req {
				t.Fatalf("ParseRequest(% X) = %+v, %d, %v", got, back, n, err)
			}
		})
	}
}

func TestParseRequestBad(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		n        int
		err      error
	}{
		{"empty", "", 0, ErrShortFrame},
		{"short", "8A 01 01", 0, ErrShortFrame},
		{"unknown head", "55 01 01 11 9B", 1, ErrBadFrame},
		{"bad checksum", "8A 01 01 11 9C", 1, ErrBadFrame},
		{"wrong function", "8A 01 01 33 B9", 1, ErrBadFrame},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, n, err := ParseRequest(unhex(t, tc.in))
			if !errors.Is(err, tc.err) || n != tc.n {
				t.Fatalf("ParseRequest(%s) = %d, %v; want %d, %v", tc.in, n, err, tc.n, tc.err)
			}
		})
	}
}

// setBits lists the channels (1-based) whose bit is set.
func setBits(bits []bool) []int {
	var out []int
	for i, b := range bits {
		if b {
			out = append(out, i+1)
		}
	}
	return out
}

func TestFindStatusReply(t *testing.T) {
	st := Request{Op: OpStatus, Address: 1}
	for _, tc := range []struct {
		name     string
		channels int
		in       string
		want     []int // set bits; nil with found=false
		found    bool
	}{
		// An 8-channel board answers with three status bytes.
		{"8ch all clear", 8, "80 01 00 00 00 33 B2", nil, true},
		// Highest group first: the last byte is channels 1-8.
		{"groups", 24, "80 01 01 01 01 33 B3", []int{1, 9, 17}, true},
		{"channel 2", 24, "80 01 00 00 02 33 B0", []int{2}, true},
		{"channel 24", 24, "80 01 80 00 00 33 32", []int{24}, true},
		{"50ch seven bytes", 50, "80 01 02 00 00 00 00 00 01 33 B1", []int{1, 50}, true},
		{"leading garbage", 24, "00 80 FF 80 01 00 00 02 33 B0", []int{2}, true},
		{"other board first", 24, "80 02 00 00 00 33 B1 80 01 00 00 02 33 B0", []int{2}, true},
		{"only other board", 24, "80 02 00 00 00 33 B1", nil, false},
		{"damaged", 24, "80 01 00 00 02 33 B1", nil, false},
		{"incomplete", 24, "80 01 00 00 02 33", nil, false},
		// An adapter that echoes the request: five bytes are not a reply.
		{"echo", 8, "80 01 00 33 B2", nil, false},
		{"open reply", 24, "8A 01 01 00 8A", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, ok := findReply(unhex(t, tc.in), st, tc.channels)
			if ok != tc.found {
				t.Fatalf("found = %v, want %v (%+v)", ok, tc.found, rep)
			}
			if !ok {
				return
			}
			if rep.Address != 1 || len(rep.Bits)%8 != 0 || len(rep.Bits) < tc.channels {
				t.Fatalf("reply %+v", rep)
			}
			if got := setBits(rep.Bits); !equalInts(got, tc.want) {
				t.Fatalf("set bits %v, want %v", got, tc.want)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFindOpenReply(t *testing.T) {
	op := Request{Op: OpOpen, Address: 1, Channel: 1}
	for _, tc := range []struct {
		name  string
		in    string
		found bool
		state byte
	}{
		{"unlocked", "8A 01 01 00 8A", true, StateUnlocked},
		{"still locked", "8A 01 01 11 9B", true, StateLocked},
		{"other channel", "8A 01 02 00 89", false, 0},
		{"other board", "8A 02 01 00 89", false, 0},
		{"damaged", "8A 01 01 00 8B", false, 0},
		{"garbage then reply", "8A 8A 01 01 00 8A", true, StateUnlocked},
		{"status reply", "80 01 00 00 00 33 B2", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, ok := findReply(unhex(t, tc.in), op, 24)
			if ok != tc.found || (ok && (rep.State != tc.state || rep.Channel != 1 || rep.Address != 1)) {
				t.Fatalf("findReply = %+v, %v", rep, ok)
			}
		})
	}
}

func TestDiagnose(t *testing.T) {
	st := Request{Op: OpStatus, Address: 1}
	op := Request{Op: OpOpen, Address: 1, Channel: 3}
	for _, tc := range []struct {
		name string
		req  Request
		in   string
		want error
	}{
		{"nothing", st, "", ErrTimeout},
		{"noise", st, "00 8A FF 80 01 33 55", ErrTimeout},
		{"damaged status", st, "80 01 00 00 02 33 B1", ErrChecksum},
		{"other board", st, "80 02 00 00 00 33 B1", ErrWrongAddress},
		{"damaged open", op, "8A 01 03 00 89", ErrChecksum},
		{"open from other board", op, "8A 07 03 00 8E", ErrWrongAddress},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := diagnose(unhex(t, tc.in), tc.req, 24); got != tc.want {
				t.Fatalf("diagnose = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReplyRoundTrip(t *testing.T) {
	for _, channels := range []int{1, 8, 16, 24, 25, 48, 50, 64} {
		bits := make([]bool, channels)
		for i := range bits {
			bits[i] = i%3 == 0 || i == channels-1
		}
		rep := Reply{Op: OpStatus, Address: 9, Bits: bits}
		frame := rep.Bytes()
		if want := StatusBytes(channels) + 4; len(frame) != want {
			t.Fatalf("%d channels: %d bytes, want %d", channels, len(frame), want)
		}
		got, ok := findReply(frame, Request{Op: OpStatus, Address: 9}, channels)
		if !ok {
			t.Fatalf("%d channels: % X not found", channels, frame)
		}
		for i := range got.Bits {
			if want := i < channels && bits[i]; got.Bits[i] != want {
				t.Fatalf("%d channels: bit %d = %v", channels, i+1, got.Bits[i])
			}
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{"8A 01 01 11 9B", "80 01 00 33 B2", "8A 01", "FF", "8A 01 01 11 9C"} {
		f.Add(unhex(f, s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, n, err := ParseRequest(data)
		switch {
		case err == nil:
			if n != 5 || !bytes.Equal(req.Bytes(), data[:5]) {
				t.Fatalf("ParseRequest(% X) = %+v, %d: does not re-encode", data, req, n)
			}
		case errors.Is(err, ErrShortFrame):
			if n != 0 || len(data) >= 5 {
				t.Fatalf("short with %d bytes, n=%d", len(data), n)
			}
		case errors.Is(err, ErrBadFrame):
			if n != 1 {
				t.Fatalf("bad frame skips %d", n)
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}

func FuzzFindReply(f *testing.F) {
	seeds := []string{
		"80 01 00 00 00 33 B2", "80 01 01 01 01 33 B3", "00 80 FF 80 01 00 00 02 33 B0",
		"8A 01 01 00 8A", "8A 8A 01 01 00 8A", "80 02 00 00 00 33 B1",
		"80 01 02 00 00 00 00 00 01 33 B1", "",
	}
	for _, s := range seeds {
		f.Add(unhex(f, s), uint8(1), uint8(1), uint8(24), false)
		f.Add(unhex(f, s), uint8(1), uint8(1), uint8(50), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, addr, ch, channels uint8, open bool) {
		nch := int(channels)%MaxChannels + 1
		req := Request{Op: OpStatus, Address: int(addr)}
		if open {
			req = Request{Op: OpOpen, Address: int(addr), Channel: int(ch)}
		}
		rep, ok := findReply(data, req, nch)
		why := diagnose(data, req, nch)
		if !ok {
			if why != ErrTimeout && why != ErrChecksum && why != ErrWrongAddress {
				t.Fatalf("diagnose = %v", why)
			}
			return
		}
		if rep.Address != req.Address || rep.Op != req.Op {
			t.Fatalf("reply %+v to %+v", rep, req)
		}
		if open && rep.Channel != req.Channel {
			t.Fatalf("open reply for channel %d, asked %d", rep.Channel, req.Channel)
		}
		if !open && (len(rep.Bits)%8 != 0 || len(rep.Bits) < nch || len(rep.Bits) > MaxChannels) {
			t.Fatalf("status reply with %d bits for %d channels", len(rep.Bits), nch)
		}
		// What was found is exactly what was received.
		if !bytes.Contains(data, rep.Bytes()) {
			t.Fatalf("reply %+v re-encodes as % X, not in % X", rep, rep.Bytes(), data)
		}
	})
}
