package portal

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// TrivialPIN reports whether pin is too easy to guess to be issued: fewer
// than three distinct digits (111111, 121212, 112211, 000009), a straight
// run up or down, wrapping past 9 (123456, 654321, 890123), or a repeated
// triple (123123). It says nothing about the length; IssuePIN checks that.
func TrivialPIN(pin string) bool {
	if len(pin) == 0 {
		return true
	}
	var seen [10]bool
	distinct := 0
	for i := 0; i < len(pin); i++ {
		c := pin[i]
		if c < '0' || c > '9' {
			return false // not a PIN at all; the caller rejects it
		}
		if !seen[c-'0'] {
			seen[c-'0'] = true
			distinct++
		}
	}
	if distinct < 3 {
		return true
	}
	up, down := true, true
	for i := 1; i < len(pin); i++ {
		a, b := int(pin[i-1]-'0'), int(pin[i]-'0')
		if (a+1)%10 != b {
			up = false
		}
		if (b+1)%10 != a {
			down = false
		}
	}
	if up || down {
		return true
	}
	if len(pin)%3 == 0 && len(pin) > 3 {
		rep := true
		for i := 3; i < len(pin); i++ {
			if pin[i] != pin[i-3] {
				rep = false
				break
			}
		}
		if rep {
			return true
		}
	}
	return false
}

// validPIN checks that pin has PINLength digits and is not trivial.
func validPIN(pin string) error {
	if len(pin) != PINLength {
		return fmt.Errorf("%w: a PIN has %d digits", ErrInvalid, PINLength)
	}
	for i := 0; i < len(pin); i++ {
		if pin[i] < '0' || pin[i] > '9' {
			return fmt.Errorf("%w: a PIN is digits only", ErrInvalid)
		}
	}
	if TrivialPIN(pin) {
		return fmt.Errorf("%w: the PIN is too easy to guess (repeated digits, a straight run or a repeated group)", ErrInvalid)
	}
	return nil
}

// pinSpace is 10^PINLength; pinReject is the largest multiple of it that
// fits in a uint32, so that drawing below it and reducing is uniform.
const (
	pinSpace  = 1_000_000
	pinReject = (1 << 32) / pinSpace * pinSpace
)

// maxPINDraws bounds the draws of one IssuePIN before ErrNoPIN.
const maxPINDraws = 10_000

// drawPIN draws a uniformly random PIN of PINLength digits from the
// portal's random source; it may be trivial or used, the caller checks.
func (p *Portal) drawPIN() (string, error) {
	var b [4]byte
	for {
		if err := p.randBytes(b[:]); err != nil {
			return "", err
		}
		v := binary.BigEndian.Uint32(b[:])
		if v >= pinReject {
			continue
		}
		s := strconv.FormatUint(uint64(v%pinSpace), 10)
		for len(s) < PINLength {
			s = "0" + s
		}
		return s, nil
	}
}
