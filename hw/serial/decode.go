package serial

import (
	"kioskd/kiosk"
)

// KeypadDecoder turns the bytes of a serial keypad (SPEC §3) into keys:
// each key is one ASCII byte '0'-'9', '*', '#', 'A'-'D'; CR or LF acts as
// '#', and a CR LF or LF CR pair is one submit (two CRs are two); any other
// byte is ignored and counted as garbage, and also breaks a CR/LF pair.
//
// Garbage discards the entry in progress: a garbage byte that follows a
// key other than '*' and '#' (a digit, or A-D, which an input may map)
// yields one '*' (SPEC §3 "* clears"), so a key sequence broken by line
// noise is never submitted; the rest of a run of garbage yields nothing.
// A CR or LF after the garbage then submits an empty entry, which does
// nothing. Without this, the key bytes in random noise (about one byte in
// fourteen) would add up to PINs and lock the keypad out.
//
// The decoder is a pure state machine with no clock. The zero value is
// ready to use; a pair, and a key followed by garbage, may straddle two
// Feed calls.
type KeypadDecoder struct {
	prevEOL byte   // the CR or LF just seen, 0 otherwise
	keyed   bool   // the last byte was a key that an entry may hold
	garbage uint64 // bytes ignored so far
}

// Feed decodes b, calling emit for each key in order.
func (d *KeypadDecoder) Feed(b []byte, emit func(rune)) {
	for _, c := range b {
		keyed := d.keyed
		d.keyed = false
		switch {
		case c == '\r' || c == '\n':
			if d.prevEOL != 0 && d.prevEOL != c {
				d.prevEOL = 0 // second half of CR LF or LF CR
				continue
			}
			d.prevEOL = c
			emit('#')
			continue
		case c == '*' || c == '#':
			emit(rune(c))
		case c >= '0' && c <= '9', c >= 'A' && c <= 'D':
			d.keyed = true
			emit(rune(c))
		default:
			d.garbage++
			if keyed {
				emit('*') // noise broke the entry: discard it
			}
		}
		d.prevEOL = 0
	}
}

// Garbage returns how many bytes have been ignored since the decoder was
// made; Reset does not clear it.
func (d *KeypadDecoder) Garbage() uint64 { return d.garbage }

// Reset forgets a pending CR or LF, so that the first byte after a
// reconnect is not taken as the second half of a pair, and the key before
// the outage (the engine drops a half-typed entry on disconnect, so
// garbage after a reconnect has nothing to clear).
func (d *KeypadDecoder) Reset() { d.prevEOL, d.keyed = 0, false }

// MaxCodeLen is the longest code a scanner may send (SPEC §3); longer
// codes are discarded.
const MaxCodeLen = 1024

// CodeDecoder splits the bytes of a serial scanner or card reader into
// codes (SPEC §3): a code ends at CR or LF; empty codes are ignored, so a
// CR LF ends one code; a code over MaxCodeLen bytes is discarded and
// reported once, as soon as it passes the limit. Codes may straddle Feed
// calls. The zero value is ready to use.
//
// The decoder holds at most MaxCodeLen bytes and wipes them once a code is
// emitted or discarded; emitted codes are fresh copies owned by the
// receiver.
type CodeDecoder struct {
	buf      []byte
	overlong bool // the current code passed MaxCodeLen; skip to its end
}

// Feed decodes b, calling emitCode for each complete code and
// emitOverlong once for each code that passes MaxCodeLen, in the order
// they occur.
func (d *CodeDecoder) Feed(b []byte, emitCode func(kiosk.Secret), emitOverlong func()) {
	for _, c := range b {
		switch {
		case c == '\r' || c == '\n':
			if d.overlong {
				d.overlong = false
				continue
			}
			if len(d.buf) == 0 {
				continue // empty code, or the LF of a CR LF
			}
			code := make(kiosk.Secret, len(d.buf))
			copy(code, d.buf)
			d.wipe()
			emitCode(code)
		case d.overlong:
			// still inside an overlong code
		case len(d.buf) == MaxCodeLen:
			d.wipe()
			d.overlong = true
			emitOverlong()
		default:
			if d.buf == nil {
				d.buf = make([]byte, 0, 64)
			}
			d.buf = append(d.buf, c)
		}
	}
}

// Reset discards a partial code, as after a reconnect.
func (d *CodeDecoder) Reset() {
	d.wipe()
	d.overlong = false
}

func (d *CodeDecoder) wipe() {
	clear(d.buf[:cap(d.buf)])
	d.buf = d.buf[:0]
}
