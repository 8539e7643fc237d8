package serial

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"kioskd/kiosk"
)

// readers gives the ways a recorded capture is fed: as it comes (7-byte
// reads), one byte per read (so every CR LF straddles two Feeds), and in
// half reads.
var readers = []struct {
	name string
	wrap func(io.Reader) io.Reader
}{
	{"whole", func(r io.Reader) io.Reader { return r }},
	{"one byte", iotest.OneByteReader},
	{"half", iotest.HalfReader},
}

// feedAll reads r to its end, handing each read to feed.
func feedAll(t *testing.T, r io.Reader, feed func([]byte)) {
	t.Helper()
	buf := make([]byte, 7)
	for {
		n, err := r.Read(buf)
		feed(buf[:n])
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestKeypadDecoderRecorded(t *testing.T) {
	for _, tc := range []struct {
		file    string
		keys    string
		garbage uint64
		submits []string // what the engine's entry (PIN length 6) submits
	}{
		{"keypad_pin.bin", "123456#", 0, []string{"123456"}},
		{"keypad_crlf.bin", "123456#654321#", 0, []string{"123456", "654321"}},
		{"keypad_cr_lf_mixed.bin", "1##2##3#4##", 0, []string{"1", "2", "3", "4"}},
		// 00 ff 1 2 7f 3 * 1b 9 # A fe fe B C D a b c d CR: the 7f after
		// "12" and the fe after A clear; the 1b after '*' has nothing to
		// clear, nor has the rest of each run.
		{"keypad_noise.bin", "12*3*9#A*BCD*#", 10, []string{"9"}},
	} {
		for _, rd := range readers {
			t.Run(tc.file+"/"+rd.name, func(t *testing.T) {
				f, err := os.Open(filepath.Join("testdata", tc.file))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				var d KeypadDecoder
				var got strings.Builder
				feedAll(t, rd.wrap(f), func(b []byte) { d.Feed(b, func(r rune) { got.WriteRune(r) }) })
				if got.String() != tc.keys {
					t.Errorf("keys %q, want %q", got.String(), tc.keys)
				}
				if d.Garbage() != tc.garbage {
					t.Errorf("garbage %d, want %d", d.Garbage(), tc.garbage)
				}
				if sub := entrySubmits(got.String(), 6); strings.Join(sub, "|") != strings.Join(tc.submits, "|") {
					t.Errorf("entry submits %q, want %q", sub, tc.submits)
				}
			})
		}
	}
}

// entrySubmits feeds keys to the engine's keypad entry (kiosk.Entry, with
// pinLength and no timeout in reach) and returns what it submits.
func entrySubmits(keys string, pinLength int) []string {
	e := kiosk.NewEntry(pinLength, time.Hour)
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	var out []string
	for _, k := range keys {
		if s := e.Key(k, now); s != nil {
			out = append(out, string(s))
		}
	}
	return out
}

// TestKeypadDecoderGarbageClears: garbage after a key that an entry holds
// sends one '*' per run, so that the engine's entry never submits a key
// sequence broken by noise; a CR or LF after the garbage submits an empty
// entry, which does nothing.
func TestKeypadDecoderGarbageClears(t *testing.T) {
	for _, tc := range []struct {
		name, in, keys string
		submits        []string // by kiosk.Entry with PIN length 6
	}{
		{"noise inside a PIN", "123x456#", "123*456#", []string{"456"}},
		{"noise inside a full-length PIN", "123x456789", "123*456789", []string{"456789"}},
		{"one clear per run", "12\x00\xff\x7fzz34#", "12*34#", []string{"34"}},
		{"CR after garbage", "1234x\r", "1234*#", nil},
		{"CR LF after garbage", "1234\x1b\r\n", "1234*#", nil},
		{"hash after garbage", "99q#", "99*#", nil},
		{"garbage only", "\x00xyz\xff", "", nil},
		{"garbage before a PIN", "xyz246810", "246810", []string{"246810"}},
		{"garbage after a clear", "12*x34#", "12*34#", []string{"34"}},
		{"garbage after a submit", "12#x34#", "12#34#", []string{"12", "34"}},
		{"garbage after CR", "12\rx\n", "12##", []string{"12"}},
		{"garbage after A-D", "AxB", "A*B", nil},
		{"garbage after a full PIN", "123456x", "123456*", []string{"123456"}},
		{"lower-case a-d are garbage", "5a6#", "5*6#", []string{"6"}},
	} {
		for _, rd := range readers {
			t.Run(tc.name+"/"+rd.name, func(t *testing.T) {
				var d KeypadDecoder
				var got strings.Builder
				feedAll(t, rd.wrap(strings.NewReader(tc.in)), func(b []byte) { d.Feed(b, func(r rune) { got.WriteRune(r) }) })
				if got.String() != tc.keys {
					t.Errorf("keys %q, want %q", got.String(), tc.keys)
				}
				if sub := entrySubmits(got.String(), 6); strings.Join(sub, "|") != strings.Join(tc.submits, "|") {
					t.Errorf("entry submits %q, want %q", sub, tc.submits)
				}
			})
		}
	}
}

func TestKeypadDecoderReset(t *testing.T) {
	var d KeypadDecoder
	var got strings.Builder
	emit := func(r rune) { got.WriteRune(r) }
	d.Feed([]byte("1\r"), emit)
	d.Reset() // reconnect: the LF is a new submit, not the end of a pair
	d.Feed([]byte("\n"), emit)
	if got.String() != "1##" {
		t.Fatalf("keys %q, want %q", got.String(), "1##")
	}
	// The engine drops a half-typed entry on disconnect: garbage after a
	// reconnect has nothing to clear.
	got.Reset()
	d.Feed([]byte("7"), emit)
	d.Reset()
	d.Feed([]byte("x8"), emit)
	if got.String() != "78" {
		t.Fatalf("keys %q, want %q", got.String(), "78")
	}
}

func TestCodeDecoderRecorded(t *testing.T) {
	const over = "<overlong>"
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"scanner_qr.bin", []string{"KQ1.eyJjaWQiOiJjLTEifQ.c2ln", "HELLO WORLD"}},
		{"scanner_card.bin", []string{"0012345678", "0087654321"}},
		{"scanner_overlong.bin", []string{over, "NEXT", strings.Repeat("B", 1024), over}},
	} {
		for _, rd := range readers {
			t.Run(tc.file+"/"+rd.name, func(t *testing.T) {
				f, err := os.Open(filepath.Join("testdata", tc.file))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				var d CodeDecoder
				var got []string
				feedAll(t, rd.wrap(f), func(b []byte) {
					d.Feed(b,
						func(s kiosk.Secret) { got = append(got, string(s)) },
						func() { got = append(got, over) })
				})
				if strings.Join(got, "|") != strings.Join(tc.want, "|") {
					t.Errorf("got %d items %.80q, want %d %.80q", len(got), got, len(tc.want), tc.want)
				}
			})
		}
	}
}

// Emitted codes are copies: later input does not change them, and the
// decoder keeps no copy of a code once emitted.
func TestCodeDecoderOwnsNothingEmitted(t *testing.T) {
	var d CodeDecoder
	var codes []kiosk.Secret
	d.Feed([]byte("SECRET1\r"), func(s kiosk.Secret) { codes = append(codes, s) }, func() {})
	d.Feed([]byte("XXXXXXX\r"), func(s kiosk.Secret) { codes = append(codes, s) }, func() {})
	if string(codes[0]) != "SECRET1" {
		t.Fatalf("first code changed to %q", codes[0])
	}
	if bytes.Contains(d.buf[:cap(d.buf)], []byte("XXX")) {
		t.Fatal("decoder buffer still holds the emitted code")
	}
	d.Feed([]byte("PART"), func(kiosk.Secret) { t.Fatal("partial code emitted") }, func() {})
	d.Reset()
	d.Feed([]byte("\r"), func(kiosk.Secret) { t.Fatal("code emitted after Reset") }, func() {})
}

// keyByte reports whether c is a key byte of the serial keypad.
func keyByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '*' || c == '#' || c >= 'A' && c <= 'D'
}

// keypadModel is the reference reading of a serial keypad stream (SPEC
// §3 and the garbage rule of KeypadDecoder), stated per byte from its
// neighbour: a key byte is that key; a CR or LF is '#' unless it is the
// other half of a CR or LF that was one; any other byte is garbage, and
// the first of a run of garbage is '*' when the byte before it is a digit
// or A-D (a key no '*', '#', CR or LF has cleared or submitted since).
type keypadModel struct {
	prev    byte // the byte before the next one; 0 (garbage) at the start
	prevSub bool // prev is a CR or LF that was a '#'
	garbage uint64
}

func (m *keypadModel) feed(b []byte, emit func(rune)) {
	for _, c := range b {
		prev, prevSub := m.prev, m.prevSub
		m.prev, m.prevSub = c, false
		switch {
		case keyByte(c):
			emit(rune(c))
		case c == '\r' || c == '\n':
			if !prevSub || prev == c {
				m.prevSub = true
				emit('#')
			}
		default:
			m.garbage++
			if keyByte(prev) && prev != '*' && prev != '#' {
				emit('*')
			}
		}
	}
}

func FuzzKeypadDecoder(f *testing.F) {
	for _, name := range []string{"keypad_pin.bin", "keypad_crlf.bin", "keypad_cr_lf_mixed.bin", "keypad_noise.bin"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, 3)
	}
	f.Add([]byte("\r\n\n\r\r"), 1)
	f.Add([]byte("123x456#12\x003456\r\n9\xff\r"), 4)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		var whole KeypadDecoder
		var all []rune
		whole.Feed(b, func(r rune) { all = append(all, r) })

		// The reference reading, key for key, and the garbage count.
		var m keypadModel
		var want []rune
		m.feed(b, func(r rune) { want = append(want, r) })
		if string(all) != string(want) || whole.Garbage() != m.garbage {
			t.Fatalf("keys %q/%d garbage, reference %q/%d", string(all), whole.Garbage(), string(want), m.garbage)
		}

		// Any split into two Feeds gives the same keys and count.
		if len(b) > 0 {
			split = int(uint(split) % uint(len(b)+1))
		} else {
			split = 0
		}
		var parts KeypadDecoder
		var got []rune
		parts.Feed(b[:split], func(r rune) { got = append(got, r) })
		parts.Feed(b[split:], func(r rune) { got = append(got, r) })
		if string(got) != string(all) || parts.Garbage() != whole.Garbage() {
			t.Fatalf("split at %d: %q/%d, whole: %q/%d", split, string(got), parts.Garbage(), string(all), whole.Garbage())
		}

		// Through the engine's entry rules, no submitted entry holds a
		// key that garbage preceded: between its first digit and the key
		// that submits it there is no garbage byte. Bytes are fed one at
		// a time to know which byte made each key.
		noise := make([]int, len(b)+1) // noise[i]: garbage bytes in b[:i]
		for i, c := range b {
			noise[i+1] = noise[i]
			if !keyByte(c) && c != '\r' && c != '\n' {
				noise[i+1]++
			}
		}
		for _, pinLength := range []int{4, 6} {
			var d KeypadDecoder
			e := kiosk.NewEntry(pinLength, time.Hour)
			now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
			var held []int // the byte index of each digit in the entry
			for i := range b {
				d.Feed(b[i:i+1], func(k rune) {
					if k >= '0' && k <= '9' {
						held = append(held, i)
					}
					s := e.Key(k, now)
					if s == nil {
						if k == '*' || k == '#' {
							held = held[:0]
						}
						if e.Len() != len(held) {
							t.Fatalf("entry holds %d digits, model %d", e.Len(), len(held))
						}
						return
					}
					for j, c := range s {
						if j >= len(held) || c != b[held[j]] {
							t.Fatalf("PIN length %d: entry submitted by byte %d is not the digits since the last clear", pinLength, i)
						}
					}
					if len(s) != len(held) || noise[i+1]-noise[held[0]] != 0 {
						t.Fatalf("PIN length %d: entry of %d digits submitted by byte %d, its first digit byte %d, %d garbage bytes between",
							pinLength, len(s), i, held[0], noise[i+1]-noise[held[0]])
					}
					held = held[:0]
				})
			}
		}
	})
}

// refCodes is the reference reading of a scanner stream: the segments
// between CR and LF bytes, with empty ones dropped and those over
// MaxCodeLen overlong; a last unterminated segment counts only when it is
// already overlong.
func refCodes(b []byte) []string {
	var out []string
	segs := bytes.FieldsFunc(b, func(r rune) bool { return r == '\r' || r == '\n' })
	terminated := len(b) > 0 && (b[len(b)-1] == '\r' || b[len(b)-1] == '\n')
	for i, s := range segs {
		last := i == len(segs)-1 && !terminated
		switch {
		case len(s) > MaxCodeLen:
			out = append(out, "<overlong>")
		case last:
		default:
			out = append(out, string(s))
		}
	}
	return out
}

func FuzzCodeDecoder(f *testing.F) {
	for _, name := range []string{"scanner_qr.bin", "scanner_card.bin", "scanner_overlong.bin"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, 5)
	}
	f.Add([]byte("\r\n\r\n"), 0)
	f.Add(append(bytes.Repeat([]byte("x"), MaxCodeLen+1), 'y'), 1025)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		if len(b) > 0 {
			split = int(uint(split) % uint(len(b)+1))
		} else {
			split = 0
		}
		var d CodeDecoder
		var got []string
		emit := func(s kiosk.Secret) {
			if len(s) == 0 || len(s) > MaxCodeLen || bytes.ContainsAny(s, "\r\n") {
				t.Fatalf("bad code of %d bytes", len(s))
			}
			got = append(got, string(s))
		}
		over := func() { got = append(got, "<overlong>") }
		d.Feed(b[:split], emit, over)
		d.Feed(b[split:], emit, over)
		want := refCodes(b)
		if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
			t.Fatalf("split %d: got %d items, reference %d", split, len(got), len(want))
		}
		if len(d.buf) > MaxCodeLen {
			t.Fatalf("decoder holds %d bytes", len(d.buf))
		}
	})
}
