package evdev

import (
	"fmt"
	"strings"
	"testing"

	"kioskd/kiosk"
)

// raw is one raw input event as the kernel reports it.
type raw struct {
	typ, code uint16
	value     int32
}

func syn() raw                { return raw{EvSyn, SynReport, 0} }
func press(code uint16) raw   { return raw{EvKey, code, KeyPress} }
func release(code uint16) raw { return raw{EvKey, code, KeyRelease} }

// tap is a key pressed and released, each in its own packet, as a HID
// keyboard reports it.
func tap(code uint16) []raw { return []raw{press(code), syn(), release(code), syn()} }

// typist maps each character a US keyboard types to its key and shift,
// main block first (so '1' is the top-row key, not the keypad's).
var typist = func() map[byte]struct {
	code  uint16
	shift bool
} {
	m := map[byte]struct {
		code  uint16
		shift bool
	}{}
	for _, shift := range []bool{false, true} {
		for code := range uint16(0x300) {
			if _, kp := kpMap[code]; kp {
				continue
			}
			if c, ok := USChar(code, shift); ok {
				if _, dup := m[c]; !dup {
					m[c] = struct {
						code  uint16
						shift bool
					}{code, shift}
				}
			}
		}
	}
	return m
}()

// typeText returns the events of a scanner typing s with the left shift
// (not followed by Enter); ok is false when s holds a character a US
// keyboard cannot type.
func typeText(s string) (evs []raw, ok bool) {
	for i := range len(s) {
		k, found := typist[s[i]]
		if !found {
			return nil, false
		}
		if k.shift {
			evs = append(evs, press(KeyLeftShift), syn())
		}
		evs = append(evs, tap(k.code)...)
		if k.shift {
			evs = append(evs, release(KeyLeftShift), syn())
		}
	}
	return evs, true
}

// mustType is typeText for texts known to be typable, followed by Enter.
func mustType(t testing.TB, s string) []raw {
	t.Helper()
	evs, ok := typeText(s)
	if !ok {
		t.Fatalf("cannot type %q on a US keyboard", s)
	}
	return append(evs, tap(KeyEnter)...)
}

func cat(parts ...[]raw) []raw {
	var all []raw
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}

// feed runs evs through d and returns the events it emits.
func feed(d interface {
	Event(typ, code uint16, value int32) (kiosk.InputEvent, bool)
}, evs []raw) []kiosk.InputEvent {
	var got []kiosk.InputEvent
	for _, e := range evs {
		if ev, ok := d.Event(e.typ, e.code, e.value); ok {
			got = append(got, ev)
		}
	}
	return got
}

// show renders events for comparison; codes in the clear, since these
// are test codes.
func show(evs []kiosk.InputEvent) string {
	var b strings.Builder
	for _, ev := range evs {
		switch ev.Type {
		case kiosk.InputCode:
			fmt.Fprintf(&b, "code(%s) ", string(ev.Code))
		case kiosk.InputRejected:
			fmt.Fprintf(&b, "rejected(%s) ", ev.Detail)
		case kiosk.InputKey:
			fmt.Fprintf(&b, "key(%c) ", ev.Key)
		default:
			fmt.Fprintf(&b, "type%d(%s) ", ev.Type, ev.Detail)
		}
	}
	return strings.TrimSpace(b.String())
}

// Letter keys the tests use beyond those the package names.
const (
	KeyE = 18 // AltGr+e is € on many layouts
	KeyS = 31
)

const qrText = `KQ1.aB-_x/Y?Z:{"x":1}`

func TestUSChar(t *testing.T) {
	tests := []struct {
		code  uint16
		shift bool
		want  byte
		ok    bool
	}{
		{KeyA, false, 'a', true},
		{KeyA, true, 'A', true},
		{KeyZ, true, 'Z', true},
		{Key1, false, '1', true},
		{Key1, true, '!', true},
		{Key1 + 2, true, '#', true},
		{Key1 + 7, true, '*', true},
		{Key0, false, '0', true},
		{Key0, true, ')', true},
		{KeyMinus, true, '_', true},
		{KeyEqual, true, '+', true},
		{KeyLeftBrace, true, '{', true},
		{KeyRightBrace, false, ']', true},
		{KeySemicolon, true, ':', true},
		{KeyApostrophe, true, '"', true},
		{KeyApostrophe, false, '\'', true},
		{KeyGrave, true, '~', true},
		{KeyBackslash, true, '|', true},
		{KeyComma, true, '<', true},
		{KeyDot, false, '.', true},
		{KeySlash, true, '?', true},
		{KeySpace, true, ' ', true},
		{KeyTab, false, '\t', true},
		{KeyTab, true, 0, false},
		{KeyKP7, false, '7', true},
		{KeyKP7, true, '7', true},
		{KeyKPAsterisk, false, '*', true},
		{KeyKPSlash, false, '/', true},
		{KeyEnter, false, 0, false},
		{KeyLeftShift, false, 0, false},
		{59 /* F1 */, false, 0, false},
		{86 /* 102ND, not on US boards */, false, 0, false},
		{KeyNumeric0, false, 0, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%v", tt.code, tt.shift), func(t *testing.T) {
			c, ok := USChar(tt.code, tt.shift)
			if c != tt.want || ok != tt.ok {
				t.Fatalf("USChar(%d, %v) = %q, %v; want %q, %v", tt.code, tt.shift, c, ok, tt.want, tt.ok)
			}
		})
	}
	// Every printable ASCII character can be typed: a QR text in ASCII
	// is read as is.
	for c := byte(' '); c <= '~'; c++ {
		if _, ok := typist[c]; !ok {
			t.Errorf("%q cannot be typed on the US map", c)
		}
	}
}

func TestCodeDecoder(t *testing.T) {
	tests := []struct {
		name string
		max  int
		evs  []raw
		want string
	}{
		{"qr text with shifted characters", 0, mustType(t, qrText), "code(" + qrText + ")"},
		{"card number", 0, mustType(t, "0004127823"), "code(0004127823)"},
		{"every printable character", 0,
			mustType(t, " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~"),
			"code( !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~)"},
		{"two codes", 0, cat(mustType(t, "ab"), mustType(t, "CD")), "code(ab) code(CD)"},
		{"right shift", 0, cat([]raw{press(KeyRightShift)}, tap(KeyA), []raw{release(KeyRightShift)}, tap(KeyA), tap(KeyEnter)), "code(Aa)"},
		{"shift held across keys", 0, cat([]raw{press(KeyLeftShift)}, tap(KeyA), tap(Key1), []raw{release(KeyLeftShift)}, tap(Key1), tap(KeyEnter)), "code(A!1)"},
		{"both shifts, one released", 0, cat([]raw{press(KeyLeftShift), press(KeyRightShift), release(KeyLeftShift)}, tap(KeyA), tap(KeyEnter)), "code(A)"},
		{"caps lock inverts letters only", 0, cat(tap(KeyCapsLock), tap(KeyA), tap(Key1), []raw{press(KeyLeftShift)}, tap(KeyA), tap(Key1), []raw{release(KeyLeftShift)}, tap(KeyCapsLock), tap(KeyA), tap(KeyEnter)), "code(A1a!a)"},
		{"keypad digits and keypad enter", 0, cat(tap(KeyKP1), tap(KeyKP2), tap(KeyKP0), tap(KeyKPEnter)), "code(120)"},
		{"enter alone is nothing", 0, cat(tap(KeyEnter), tap(KeyKPEnter)), ""},
		{"modifiers alone are nothing", 0, cat(tap(KeyLeftShift), tap(KeyNumLock), tap(KeyEnter)), ""},
		{"repeat ignored", 0, cat([]raw{press(KeyA), {EvKey, KeyA, KeyRepeat}, {EvKey, KeyA, KeyRepeat}, release(KeyA)}, tap(KeyEnter)), "code(a)"},
		{"repeated enter ignored", 0, cat(mustType(t, "a"), []raw{{EvKey, KeyEnter, KeyRepeat}}), "code(a)"},
		{"other event types ignored", 0, cat([]raw{{4 /* EV_MSC */, 4, 0x70004}}, mustType(t, "a")), "code(a)"},
		{"exactly max", 4, mustType(t, "abcd"), "code(abcd)"},
		{"overlong then next code", 4, cat(mustType(t, "abcde"), mustType(t, "xy")), "rejected(overlong code, 5 bytes) code(xy)"},
		{"overlong counts every byte", 4, cat(mustType(t, strings.Repeat("z", 1000)), mustType(t, "ok")), "rejected(overlong code, 1000 bytes) code(ok)"},
		{"default max 1024", 0, cat(mustType(t, strings.Repeat("7", 1024)), mustType(t, strings.Repeat("7", 1025))), "code(" + strings.Repeat("7", 1024) + ") rejected(overlong code, 1025 bytes)"},
		{"unmapped key rejects the code", 0, cat(tap(KeyA), tap(59), tap(KeyB), tap(KeyEnter), mustType(t, "ok")), "rejected(unmapped key) code(ok)"},
		{"unmapped key alone is rejected", 0, cat(tap(KeyBackspace), tap(KeyEnter)), "rejected(unmapped key)"},
		{"ctrl chord is unmapped", 0, cat([]raw{press(KeyLeftCtrl)}, tap(KeyRightBrace), []raw{release(KeyLeftCtrl)}, tap(KeyA), tap(KeyEnter)), "rejected(unmapped key)"},
		{"altgr chord is unmapped", 0, cat([]raw{press(KeyRightAlt)}, tap(KeyE), []raw{release(KeyRightAlt)}, tap(KeyEnter), mustType(t, "e")), "rejected(unmapped key) code(e)"},
		{"overlong wins over unmapped", 2, cat(tap(59), mustType(t, "abc")), "rejected(overlong code, 3 bytes)"},
		{"dropped events reject the code", 0, cat(tap(KeyA), []raw{{EvSyn, SynDropped, 0}, press(KeyB), release(KeyB), syn()}, tap(KeyC), tap(KeyEnter), mustType(t, "ok")), "rejected(events lost) code(ok)"},
		{"dropped events forget shift", 0, cat([]raw{press(KeyLeftShift), {EvSyn, SynDropped, 0}, release(KeyLeftShift), syn()}, tap(KeyEnter), tap(KeyA), tap(KeyEnter)), "rejected(events lost) code(a)"},
		{"dropped enter merges into a rejection", 0, cat(tap(KeyA), []raw{{EvSyn, SynDropped, 0}, press(KeyEnter), syn(), release(KeyEnter), syn()}, tap(KeyB), tap(KeyEnter), mustType(t, "ok")), "rejected(events lost) code(ok)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &CodeDecoder{Max: tt.max}
			got := feed(d, tt.evs)
			if s := show(got); s != tt.want {
				t.Fatalf("got %q\nwant %q", s, tt.want)
			}
			var codes, rejects uint64
			for _, ev := range got {
				switch ev.Type {
				case kiosk.InputCode:
					codes++
				case kiosk.InputRejected:
					rejects++
				}
			}
			if d.Codes() != codes || d.Rejected() != rejects {
				t.Fatalf("counters %d codes, %d rejected; emitted %d, %d", d.Codes(), d.Rejected(), codes, rejects)
			}
		})
	}
}

func TestCodeDecoderResetDiscardsPartialCode(t *testing.T) {
	d := &CodeDecoder{}
	evs, _ := typeText("secret")
	if got := feed(d, cat(evs, []raw{press(KeyLeftShift), press(KeyLeftCtrl)})); len(got) != 0 {
		t.Fatalf("events before Enter: %s", show(got))
	}
	d.Reset()
	if got := show(feed(d, cat(tap(KeyEnter), tap(KeyA), tap(KeyEnter)))); got != "code(a)" {
		t.Fatalf("after Reset: %q, want the partial code and the modifiers gone: code(a)", got)
	}
}

func TestCodeDecoderWipesAndCopies(t *testing.T) {
	d := &CodeDecoder{Max: 8}
	got := feed(d, mustType(t, "abc"))
	if len(got) != 1 {
		t.Fatalf("got %s", show(got))
	}
	code := got[0].Code
	feed(d, mustType(t, "xyz"))
	if string(code) != "abc" {
		t.Fatalf("emitted code changed to %q by the next code", string(code))
	}
	if cap(d.buf) > 0 && strings.Trim(string(d.buf[:cap(d.buf)]), "\x00") != "" {
		t.Fatalf("decoder still holds code bytes after emitting")
	}
	// An overlong code leaves nothing of itself behind either.
	feed(d, cat(func() []raw { e, _ := typeText("123456789"); return e }()))
	if strings.Trim(string(d.buf[:cap(d.buf)]), "\x00") != "" {
		t.Fatalf("decoder holds bytes of an overlong code")
	}
}

func TestRejectionsHoldNoContent(t *testing.T) {
	d := &CodeDecoder{Max: 5}
	got := feed(d, cat(mustType(t, "SECRET99"), tap(KeyS), tap(59), tap(KeyEnter)))
	if len(got) != 2 {
		t.Fatalf("got %s, want two rejections", show(got))
	}
	for _, ev := range got {
		if ev.Type != kiosk.InputRejected || len(ev.Code) != 0 ||
			ev.Detail != DetailUnmapped && ev.Detail != "overlong code, 8 bytes" {
			t.Fatalf("rejection %+v carries more than a reason", ev)
		}
	}
}

func TestKeypadDecoder(t *testing.T) {
	shifted := func(code uint16) []raw {
		return cat([]raw{press(KeyLeftShift)}, tap(code), []raw{release(KeyLeftShift)})
	}
	tests := []struct {
		name string
		evs  []raw
		want string
	}{
		{"top row digits", cat(tap(Key1), tap(Key1+1), tap(Key1+8), tap(Key0)), "key(1) key(2) key(9) key(0)"},
		{"keypad digits", cat(tap(KeyKP0), tap(KeyKP1), tap(KeyKP5), tap(KeyKP9)), "key(0) key(1) key(5) key(9)"},
		{"numeric keys", cat(tap(KeyNumeric0), tap(KeyNumeric0+7), tap(KeyNumericStar), tap(KeyNumericPound), tap(KeyNumericA), tap(KeyNumericD)), "key(0) key(7) key(*) key(#) key(A) key(D)"},
		{"star", cat(tap(KeyKPAsterisk), shifted(Key1+7), tap(KeyBackspace), tap(KeyEsc)), "key(*) key(*) key(*) key(*)"},
		{"pound", cat(tap(KeyEnter), tap(KeyKPEnter), shifted(Key1+2)), "key(#) key(#) key(#)"},
		{"letters", cat(tap(KeyA), tap(KeyB), tap(KeyC), tap(KeyD), shifted(KeyA)), "key(A) key(B) key(C) key(D) key(A)"},
		{"other shifted digits ignored", cat(shifted(Key1), shifted(Key0)), ""},
		{"other keys ignored", cat(tap(KeyKPPlus), tap(KeyKPDot), tap(KeyE), tap(59), tap(KeyNumLock)), ""},
		{"repeat ignored", []raw{press(KeyKP5), {EvKey, KeyKP5, KeyRepeat}, release(KeyKP5)}, "key(5)"},
		{"after dropped events, the packet is skipped", []raw{{EvSyn, SynDropped, 0}, press(KeyKP1), syn(), press(KeyKP2), syn()}, "key(2)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d KeypadDecoder
			if got := show(feed(&d, tt.evs)); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
	var d KeypadDecoder
	feed(&d, cat(tap(KeyKPPlus), tap(KeyKP1), tap(59)))
	if d.Ignored() != 2 {
		t.Fatalf("Ignored() = %d, want 2", d.Ignored())
	}
}

// palette is the keys the fuzzer draws from most of the time: the ones
// that matter to the decoders.
var palette = []uint16{
	KeyA, KeyB, Key1, Key0, KeyMinus, KeySlash, KeySpace, KeyTab, KeyEnter, KeyKPEnter,
	KeyLeftShift, KeyRightShift, KeyCapsLock, KeyLeftCtrl, KeyRightAlt, KeyLeftMeta,
	KeyKP1, KeyKPAsterisk, KeyBackspace, KeyEsc, 59, KeyNumeric0, KeyNumericPound, KeyNumericD,
}

// fuzzEvents turns fuzz bytes into raw events, three bytes each.
func fuzzEvents(b []byte) []raw {
	var evs []raw
	for i := 0; i+2 < len(b); i += 3 {
		var e raw
		switch b[i] % 16 {
		case 0:
			e = raw{EvSyn, uint16(b[i+1] % 4), 0}
		case 1:
			e = raw{uint16(b[i+1] % 32), uint16(b[i+2]), int32(b[i+2])}
		case 2:
			e = raw{EvKey, uint16(b[i+1]) | uint16(b[i+2])<<8, int32(b[i+2] % 3)}
		default:
			e = raw{EvKey, palette[int(b[i+1])%len(palette)], int32(b[i+2] % 3)}
		}
		evs = append(evs, e)
	}
	return evs
}

func FuzzCodeDecoder(f *testing.F) {
	enc := func(evs []raw) []byte {
		var b []byte
		for _, e := range evs {
			for i, p := range palette {
				if p == e.code && e.typ == EvKey {
					b = append(b, 3, byte(i), byte(e.value))
					break
				}
			}
		}
		return b
	}
	f.Add(enc(mustType(f, "ab1-")), uint8(8))
	f.Add(enc(mustType(f, "aaaaaaaaaaaa")), uint8(3))
	f.Add(enc(cat(tap(KeyCapsLock), tap(KeyA), tap(59), tap(KeyEnter))), uint8(0))
	f.Add([]byte{0, 3, 0, 3, 0, 1, 3, 8, 1}, uint8(4))
	f.Fuzz(func(t *testing.T, b []byte, max uint8) {
		d := &CodeDecoder{Max: int(max) % 40}
		limit := d.max()
		var codes, rejects, enters uint64
		for _, e := range fuzzEvents(b) {
			if e.typ == EvKey && e.value == KeyPress && (e.code == KeyEnter || e.code == KeyKPEnter) {
				enters++
			}
			ev, ok := d.Event(e.typ, e.code, e.value)
			if !ok {
				continue
			}
			switch ev.Type {
			case kiosk.InputCode:
				codes++
				if len(ev.Code) == 0 || len(ev.Code) > limit {
					t.Fatalf("code of %d bytes, max %d", len(ev.Code), limit)
				}
				for _, c := range ev.Code {
					if (c < ' ' || c > '~') && c != '\t' {
						t.Fatalf("code holds byte %#x", c)
					}
				}
			case kiosk.InputRejected:
				rejects++
				var n int
				if _, err := fmt.Sscanf(ev.Detail, DetailOverlong+", %d bytes", &n); err == nil {
					if n <= limit {
						t.Fatalf("overlong rejection of %d bytes, max %d", n, limit)
					}
				} else if ev.Detail != DetailUnmapped && ev.Detail != DetailDropped {
					t.Fatalf("rejection detail %q", ev.Detail)
				}
				if len(ev.Code) != 0 {
					t.Fatal("rejection carries a code")
				}
			default:
				t.Fatalf("event type %d", ev.Type)
			}
		}
		if codes != d.Codes() || rejects != d.Rejected() {
			t.Fatalf("emitted %d codes, %d rejects; counters say %d, %d", codes, rejects, d.Codes(), d.Rejected())
		}
		if codes+rejects > enters {
			t.Fatalf("%d events from %d Enter presses", codes+rejects, enters)
		}
		if len(d.buf) > limit {
			t.Fatalf("decoder holds %d bytes, max %d", len(d.buf), limit)
		}
	})
}

// FuzzTypeRoundTrip types a text as a scanner would and checks that the
// decoder reads exactly that text back, or rejects it whole when too long.
func FuzzTypeRoundTrip(f *testing.F) {
	f.Add(qrText, uint8(0))
	f.Add("0004127823", uint8(5))
	f.Add("", uint8(1))
	f.Add("a\tb c~", uint8(0))
	f.Fuzz(func(t *testing.T, s string, max uint8) {
		evs, ok := typeText(s)
		if !ok {
			t.Skip("not typable on a US keyboard")
		}
		d := &CodeDecoder{Max: int(max)}
		got := feed(d, cat(evs, tap(KeyEnter)))
		switch {
		case s == "":
			if len(got) != 0 {
				t.Fatalf("Enter alone gave %s", show(got))
			}
		case len(s) > d.max():
			want := fmt.Sprintf("rejected(overlong code, %d bytes)", len(s))
			if show(got) != want {
				t.Fatalf("got %q, want %q", show(got), want)
			}
		default:
			if len(got) != 1 || got[0].Type != kiosk.InputCode || string(got[0].Code) != s {
				t.Fatalf("typed %q, got %s", s, show(got))
			}
		}
	})
}

func FuzzKeypadDecoder(f *testing.F) {
	f.Add([]byte{3, 2, 1, 3, 2, 0, 3, 8, 1})
	f.Add([]byte{0, 3, 0, 3, 16, 1, 0, 0, 0, 3, 16, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var d KeypadDecoder
		var presses, keys uint64
		for _, e := range fuzzEvents(b) {
			if e.typ == EvKey && e.value == KeyPress {
				presses++
			}
			ev, ok := d.Event(e.typ, e.code, e.value)
			if !ok {
				continue
			}
			keys++
			if ev.Type != kiosk.InputKey || !strings.ContainsRune("0123456789*#ABCD", ev.Key) {
				t.Fatalf("event %+v", ev)
			}
		}
		if keys > presses {
			t.Fatalf("%d keys from %d presses", keys, presses)
		}
	})
}
