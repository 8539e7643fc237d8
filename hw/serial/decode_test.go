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
	}{
		{"keypad_pin.bin", "123456#", 0},
		{"keypad_crlf.bin", "123456#654321#", 0},
		{"keypad_cr_lf_mixed.bin", "1##2##3#4##", 0},
		{"keypad_noise.bin", "123*9#ABCD#", 10},
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

func FuzzKeypadDecoder(f *testing.F) {
	for _, name := range []string{"keypad_pin.bin", "keypad_crlf.bin", "keypad_cr_lf_mixed.bin", "keypad_noise.bin"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, 3)
	}
	f.Add([]byte("\r\n\n\r\r"), 1)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		var whole KeypadDecoder
		var all []rune
		whole.Feed(b, func(r rune) { all = append(all, r) })

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

		// Every key byte is one key, every other non-EOL byte garbage, and
		// the EOL bytes yield between half and all of their count as '#'.
		var keys, eols, other int
		for _, c := range b {
			switch {
			case c == '\r' || c == '\n':
				eols++
			case keyByte(c):
				keys++
			default:
				other++
			}
		}
		if whole.Garbage() != uint64(other) {
			t.Fatalf("garbage %d, want %d", whole.Garbage(), other)
		}
		submits := len(all) - keys
		if submits < (eols+1)/2 || submits > eols {
			t.Fatalf("%d EOL bytes gave %d submits", eols, submits)
		}
		for _, r := range all {
			if r > 0x7f || !keyByte(byte(r)) {
				t.Fatalf("emitted non-key %q", r)
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
