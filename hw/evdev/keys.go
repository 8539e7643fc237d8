package evdev

import (
	"fmt"

	"kioskd/kiosk"
)

// Event types and codes of linux/input-event-codes.h that the decoders
// use. They are part of the kernel's stable ABI; they are spelled out here
// so that the decoders build and are tested on every platform.
const (
	EvSyn = 0x00 // EV_SYN: synchronisation events
	EvKey = 0x01 // EV_KEY: key presses and releases

	SynReport  = 0 // SYN_REPORT: end of a packet of events
	SynDropped = 3 // SYN_DROPPED: the kernel's buffer overflowed; events were lost

	// Values of an EV_KEY event.
	KeyRelease = 0
	KeyPress   = 1
	KeyRepeat  = 2 // autorepeat; always ignored
)

// Key codes (KEY_* of linux/input-event-codes.h).
const (
	KeyEsc        = 1
	Key1          = 2 // Key1..Key9 are 2..10, Key0 is 11
	Key0          = 11
	KeyMinus      = 12
	KeyEqual      = 13
	KeyBackspace  = 14
	KeyTab        = 15
	KeyQ          = 16
	KeyLeftBrace  = 26
	KeyRightBrace = 27
	KeyEnter      = 28
	KeyLeftCtrl   = 29
	KeyA          = 30
	KeyD          = 32
	KeySemicolon  = 39
	KeyApostrophe = 40
	KeyGrave      = 41
	KeyLeftShift  = 42
	KeyBackslash  = 43
	KeyZ          = 44
	KeyC          = 46
	KeyB          = 48
	KeyComma      = 51
	KeyDot        = 52
	KeySlash      = 53
	KeyRightShift = 54
	KeyKPAsterisk = 55
	KeyLeftAlt    = 56
	KeySpace      = 57
	KeyCapsLock   = 58
	KeyNumLock    = 69
	KeyScrollLock = 70
	KeyKP7        = 71
	KeyKP8        = 72
	KeyKP9        = 73
	KeyKPMinus    = 74
	KeyKP4        = 75
	KeyKP5        = 76
	KeyKP6        = 77
	KeyKPPlus     = 78
	KeyKP1        = 79
	KeyKP2        = 80
	KeyKP3        = 81
	KeyKP0        = 82
	KeyKPDot      = 83
	KeyKPEnter    = 96
	KeyRightCtrl  = 97
	KeyKPSlash    = 98
	KeyRightAlt   = 100
	KeyKPEqual    = 117
	KeyLeftMeta   = 125
	KeyRightMeta  = 126

	// Phone-style keys, which kernel matrix-keypad keymaps often use.
	KeyNumeric0     = 0x200 // KeyNumeric0..KeyNumeric9 are 0x200..0x209
	KeyNumericStar  = 0x20a
	KeyNumericPound = 0x20b
	KeyNumericA     = 0x20c // KeyNumericA..KeyNumericD are 0x20c..0x20f
	KeyNumericD     = 0x20f
)

// keyPair is the character of a key without and with shift; 0 means none.
type keyPair struct{ plain, shifted byte }

// usMap is the US keyboard layout of the main block, by key code.
var usMap = func() map[uint16]keyPair {
	m := map[uint16]keyPair{
		KeyMinus:      {'-', '_'},
		KeyEqual:      {'=', '+'},
		KeyTab:        {'\t', 0},
		KeyLeftBrace:  {'[', '{'},
		KeyRightBrace: {']', '}'},
		KeySemicolon:  {';', ':'},
		KeyApostrophe: {'\'', '"'},
		KeyGrave:      {'`', '~'},
		KeyBackslash:  {'\\', '|'},
		KeyComma:      {',', '<'},
		KeyDot:        {'.', '>'},
		KeySlash:      {'/', '?'},
		KeySpace:      {' ', ' '},
	}
	rows := []struct {
		first   uint16
		plain   string
		shifted string
	}{
		{Key1, "1234567890", "!@#$%^&*()"},
		{KeyQ, "qwertyuiop", "QWERTYUIOP"},
		{KeyA, "asdfghjkl", "ASDFGHJKL"},
		{KeyZ, "zxcvbnm", "ZXCVBNM"},
	}
	for _, r := range rows {
		for i := range len(r.plain) {
			m[r.first+uint16(i)] = keyPair{r.plain[i], r.shifted[i]}
		}
	}
	return m
}()

// kpMap is the numeric keypad, read as with Num Lock on whatever the
// lock's state: scanners that type on the keypad mean digits.
var kpMap = map[uint16]byte{
	KeyKP0: '0', KeyKP1: '1', KeyKP2: '2', KeyKP3: '3', KeyKP4: '4',
	KeyKP5: '5', KeyKP6: '6', KeyKP7: '7', KeyKP8: '8', KeyKP9: '9',
	KeyKPAsterisk: '*', KeyKPMinus: '-', KeyKPPlus: '+', KeyKPDot: '.',
	KeyKPSlash: '/', KeyKPEqual: '=',
}

// USChar returns the character a US keyboard types for the key code with
// shift held or not; ok is false for keys that type no character (Enter,
// modifiers, function keys, keys of other layouts). Keypad keys type
// their digit or sign whatever shift says.
func USChar(code uint16, shift bool) (c byte, ok bool) {
	if c, ok := kpMap[code]; ok {
		return c, true
	}
	p, ok := usMap[code]
	if !ok {
		return 0, false
	}
	if shift {
		return p.shifted, p.shifted != 0
	}
	return p.plain, p.plain != 0
}

func isLetter(code uint16) bool {
	p, ok := usMap[code]
	return ok && p.plain >= 'a' && p.plain <= 'z'
}

// mods tracks the modifier keys of one device, and SYN_DROPPED recovery.
type mods struct {
	lshift, rshift bool
	lctrl, rctrl   bool
	lalt, ralt     bool
	lmeta, rmeta   bool
	caps           bool // Caps Lock toggled on
	skipping       bool // after SYN_DROPPED, until the next SYN_REPORT
}

// key updates the modifier state from an EV_KEY event; true when code is
// a modifier or lock key (which types nothing).
func (m *mods) key(code uint16, value int32) bool {
	down := value != KeyRelease
	switch code {
	case KeyLeftShift:
		m.lshift = down
	case KeyRightShift:
		m.rshift = down
	case KeyLeftCtrl:
		m.lctrl = down
	case KeyRightCtrl:
		m.rctrl = down
	case KeyLeftAlt:
		m.lalt = down
	case KeyRightAlt:
		m.ralt = down
	case KeyLeftMeta:
		m.lmeta = down
	case KeyRightMeta:
		m.rmeta = down
	case KeyCapsLock:
		if value == KeyPress {
			m.caps = !m.caps
		}
	case KeyNumLock, KeyScrollLock:
	default:
		return false
	}
	return true
}

func (m *mods) shift() bool { return m.lshift || m.rshift }

// chord reports whether Ctrl, Alt, AltGr or Meta is held: a key pressed
// then is a command, not text.
func (m *mods) chord() bool {
	return m.lctrl || m.rctrl || m.lalt || m.ralt || m.lmeta || m.rmeta
}

// filter handles the event stream's framing: it returns the EV_KEY event
// to act on (ok), or says that events were lost (dropped). After a
// SYN_DROPPED the kernel's packet is incomplete, so everything up to the
// next SYN_REPORT is skipped, and the modifiers are forgotten (their
// releases may be among the lost events).
func (m *mods) filter(typ, code uint16) (key, dropped bool) {
	if typ == EvSyn {
		switch code {
		case SynDropped:
			caps := m.caps
			*m = mods{caps: caps, skipping: true}
			return false, true
		case SynReport:
			m.skipping = false
		}
		return false, false
	}
	return typ == EvKey && !m.skipping, false
}

// DefaultMaxCode is the longest code in bytes that a CodeDecoder with
// Max 0 accepts (SPEC §3).
const DefaultMaxCode = 1024

// Details of the InputRejected events of a CodeDecoder. A rejection never
// carries the code or any part of it.
const (
	// DetailUnmapped: the code held a key that types no character on a
	// US keyboard (or a key pressed with Ctrl, Alt or Meta held), so the
	// text read would not be what the scanner read.
	DetailUnmapped = "unmapped key"
	// DetailDropped: the kernel dropped events (SYN_DROPPED) while the
	// code was typed, so keys of it may be missing.
	DetailDropped = "events lost"
	// DetailOverlong starts the Detail of a code over the maximum length;
	// the full Detail is "overlong code, N bytes".
	DetailOverlong = "overlong code"
)

// CodeDecoder turns the key events of a USB QR scanner or card reader (a
// HID keyboard) into codes (SPEC §3): keys are read with the US layout,
// Left/Right Shift held and Caps Lock toggled (Caps Lock inverts shift
// for letters only, as on a PC), and Enter or keypad Enter ends a code.
//
// A complete code is one kiosk.InputCode. An empty code (Enter alone)
// yields nothing. A code longer than Max bytes is discarded whole up to
// its Enter with one InputRejected "overlong code, N bytes"; a code with
// a key that types no character (see USChar; also any key pressed while
// Ctrl, Alt or Meta is held) is discarded with one InputRejected
// DetailUnmapped; a code during which the kernel dropped events is
// discarded with one InputRejected DetailDropped. Key releases (other
// than of modifiers) and autorepeats are ignored.
//
// The decoder holds at most Max bytes of a code and wipes them when the
// code is emitted, discarded or Reset; emitted codes are fresh copies
// owned by the receiver. The zero value is ready to use.
type CodeDecoder struct {
	// Max is the longest code in bytes; 0 means DefaultMaxCode.
	Max int

	m        mods
	buf      []byte
	n        int  // bytes typed in the current code (may pass Max)
	unmapped bool // the current code held an unmapped key
	dropped  bool // events were lost during the current code
	codes    uint64
	rejected uint64
}

func (d *CodeDecoder) max() int {
	if d.Max <= 0 {
		return DefaultMaxCode
	}
	return d.Max
}

// Event decodes one raw input event (type, code, value as the kernel
// reports it) and returns the InputCode or InputRejected it completes, if
// any. The returned event's Input and Time are left for the caller.
func (d *CodeDecoder) Event(typ, code uint16, value int32) (kiosk.InputEvent, bool) {
	key, dropped := d.m.filter(typ, code)
	if dropped {
		d.dropped = true
		return kiosk.InputEvent{}, false
	}
	if !key || d.m.key(code, value) || value != KeyPress {
		return kiosk.InputEvent{}, false
	}
	if code == KeyEnter || code == KeyKPEnter {
		return d.end()
	}
	if d.m.chord() {
		d.unmapped = true
		return kiosk.InputEvent{}, false
	}
	shift := d.m.shift()
	if d.m.caps && isLetter(code) {
		shift = !shift
	}
	c, ok := USChar(code, shift)
	if !ok {
		d.unmapped = true
		return kiosk.InputEvent{}, false
	}
	d.n++
	if d.n <= d.max() {
		d.buf = append(d.buf, c)
	} else if len(d.buf) > 0 {
		d.wipe() // overlong: nothing of it is kept
	}
	return kiosk.InputEvent{}, false
}

// end finishes the current code at an Enter.
func (d *CodeDecoder) end() (kiosk.InputEvent, bool) {
	var ev kiosk.InputEvent
	switch {
	case d.n > d.max():
		ev = kiosk.InputEvent{Type: kiosk.InputRejected, Detail: fmt.Sprintf("%s, %d bytes", DetailOverlong, d.n)}
	case d.dropped:
		ev = kiosk.InputEvent{Type: kiosk.InputRejected, Detail: DetailDropped}
	case d.unmapped:
		ev = kiosk.InputEvent{Type: kiosk.InputRejected, Detail: DetailUnmapped}
	case d.n == 0:
		return ev, false // Enter alone
	default:
		code := make(kiosk.Secret, len(d.buf))
		copy(code, d.buf)
		d.clear()
		d.codes++
		return kiosk.InputEvent{Type: kiosk.InputCode, Code: code}, true
	}
	d.clear()
	d.rejected++
	return ev, true
}

// clear starts a new code, wiping the old one.
func (d *CodeDecoder) clear() {
	d.wipe()
	d.n, d.unmapped, d.dropped = 0, false, false
}

func (d *CodeDecoder) wipe() {
	clear(d.buf)
	d.buf = d.buf[:0]
}

// Reset discards a code in progress without an event and forgets the
// modifier and lock state: the device was reopened.
func (d *CodeDecoder) Reset() {
	d.clear()
	d.m = mods{}
}

// Codes returns how many codes the decoder has emitted.
func (d *CodeDecoder) Codes() uint64 { return d.codes }

// Rejected returns how many codes the decoder has rejected.
func (d *CodeDecoder) Rejected() uint64 { return d.rejected }

// KeypadDecoder turns the key events of a keypad seen through evdev (a
// kernel matrix-keypad, or a USB numeric keypad) into kiosk.InputKey
// events, one per key press; it accumulates nothing (the engine's entry
// state machine does). Autorepeats and releases are ignored.
//
// The keys:
//   - '0'-'9': the top-row digits (unshifted), the keypad digits, and
//     KEY_NUMERIC_0-9;
//   - '*': keypad '*', KEY_NUMERIC_STAR, Shift+8, and Backspace and Esc
//     (on a USB numeric keypad they are the natural "clear", which is what
//     '*' does);
//   - '#': Enter, keypad Enter, KEY_NUMERIC_POUND and Shift+3;
//   - 'A'-'D': the letter keys A-D (shifted or not) and KEY_NUMERIC_A-D.
//
// Every other key is ignored and counted (Ignored).
// The zero value is ready to use.
type KeypadDecoder struct {
	m       mods
	ignored uint64
}

// Event decodes one raw input event and returns the InputKey it is, if
// any. The returned event's Input and Time are left for the caller.
func (d *KeypadDecoder) Event(typ, code uint16, value int32) (kiosk.InputEvent, bool) {
	key, _ := d.m.filter(typ, code)
	if !key || d.m.key(code, value) || value != KeyPress {
		return kiosk.InputEvent{}, false
	}
	r := keypadRune(code, d.m.shift())
	if r == 0 {
		d.ignored++
		return kiosk.InputEvent{}, false
	}
	return kiosk.InputEvent{Type: kiosk.InputKey, Key: r}, true
}

// keypadRune maps a key of a keypad; 0 means none.
func keypadRune(code uint16, shift bool) rune {
	switch {
	case code >= KeyNumeric0 && code <= KeyNumeric0+9:
		return rune('0' + code - KeyNumeric0)
	case code >= KeyNumericA && code <= KeyNumericD:
		return rune('A' + code - KeyNumericA)
	}
	switch code {
	case KeyNumericStar, KeyKPAsterisk, KeyBackspace, KeyEsc:
		return '*'
	case KeyNumericPound, KeyEnter, KeyKPEnter:
		return '#'
	}
	if r, ok := keypadLetters[code]; ok {
		return r
	}
	if code >= Key1 && code <= Key0 {
		switch {
		case !shift && code == Key0:
			return '0'
		case !shift:
			return rune('1' + code - Key1)
		case code == Key1+2: // Shift+3
			return '#'
		case code == Key1+7: // Shift+8
			return '*'
		}
		return 0
	}
	if c, ok := kpMap[code]; ok && c >= '0' && c <= '9' {
		return rune(c)
	}
	return 0
}

// keypadLetters are the letter keys A-D of a keypad.
var keypadLetters = map[uint16]rune{KeyA: 'A', KeyB: 'B', KeyC: 'C', KeyD: 'D'}

// Ignored returns how many key presses the decoder has ignored.
func (d *KeypadDecoder) Ignored() uint64 { return d.ignored }

// Reset forgets the modifier state: the device was reopened.
func (d *KeypadDecoder) Reset() { d.m = mods{} }
