package lockboard

import (
	"errors"
	"fmt"
)

// This file is the one place that knows the wire format of the lock
// control board (docs/lockboard.md, "Frames"). The driver (Bus, Board) and
// the simulator (lockboardsim) both encode and decode through it.

// Frame bytes of the protocol.
const (
	// HeadOpen starts an open request and its reply.
	HeadOpen byte = 0x8A
	// HeadStatus starts a status request and its reply.
	HeadStatus byte = 0x80
	// FuncOpen is the fourth byte of an open request.
	FuncOpen byte = 0x11
	// FuncStatus is the byte before the checksum of a status request and
	// of a whole-board status reply.
	FuncStatus byte = 0x33
	// StateUnlocked is the state byte of an open reply whose lock reports
	// unlocked after the pulse.
	StateUnlocked byte = 0x00
	// StateLocked is the state byte of an open reply whose lock still
	// reports locked after the pulse.
	StateLocked byte = 0x11
)

// Limits of the protocol.
const (
	// MaxChannels is the most channels a board may have: a status reply
	// carries at most eight status bytes.
	MaxChannels = 8 * maxStatusBytes
	// MaxAddress is the highest board address (one byte).
	MaxAddress = 0xFF

	requestLen     = 5
	openReplyLen   = 5
	minStatusBytes = 3 // boards of this family send at least 3 (24 channels), even with 8
	maxStatusBytes = 8
)

// ErrShortFrame is returned by ParseRequest when the bytes end before a
// whole request: read more and try again.
var ErrShortFrame = errors.New("lockboard: incomplete frame")

// ErrBadFrame is returned by ParseRequest when the bytes at the start do
// not begin a request (unknown head byte, wrong function byte or bad
// checksum); skip the bytes it reports and try again.
var ErrBadFrame = errors.New("lockboard: not a valid frame")

// Op is the operation of a request or reply.
type Op uint8

// The operations of the protocol.
const (
	// OpOpen pulses the latch of one channel (channel 0: every channel).
	OpOpen Op = iota + 1
	// OpStatus reads the feedback of the whole board (channel 0).
	OpStatus
)

// String names the operation, for logs and errors.
func (o Op) String() string {
	switch o {
	case OpOpen:
		return "open"
	case OpStatus:
		return "status"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Checksum is the protocol's check byte: the XOR of every byte of b.
func Checksum(b []byte) byte {
	var x byte
	for _, c := range b {
		x ^= c
	}
	return x
}

// StatusBytes is the least number of status bytes a whole-board status
// reply of a board with this many channels carries: one bit per channel,
// and never fewer than three.
func StatusBytes(channels int) int {
	return max(minStatusBytes, (channels+7)/8)
}

// Request is a frame from the host to a board. Every request is five
// bytes: head, address, channel, function, checksum.
type Request struct {
	Op      Op
	Address int // board address, 0-255
	Channel int // OpOpen: channel 1-255, 0 = every channel; OpStatus: 0 = whole board
}

// Bytes encodes the request.
func (r Request) Bytes() []byte {
	f := make([]byte, requestLen)
	switch r.Op {
	case OpOpen:
		f[0], f[3] = HeadOpen, FuncOpen
	case OpStatus:
		f[0], f[3] = HeadStatus, FuncStatus
	}
	f[1], f[2] = byte(r.Address), byte(r.Channel)
	f[4] = Checksum(f[:4])
	return f
}

// ParseRequest decodes the request at the start of b and returns it with
// the number of bytes it took. With ErrShortFrame nothing is consumed
// (n = 0); with ErrBadFrame n is the number of bytes to skip (1).
func ParseRequest(b []byte) (req Request, n int, err error) {
	if len(b) == 0 {
		return Request{}, 0, ErrShortFrame
	}
	var op Op
	var fn byte
	switch b[0] {
	case HeadOpen:
		op, fn = OpOpen, FuncOpen
	case HeadStatus:
		op, fn = OpStatus, FuncStatus
	default:
		return Request{}, 1, ErrBadFrame
	}
	if len(b) < requestLen {
		return Request{}, 0, ErrShortFrame
	}
	if b[3] != fn || Checksum(b[:4]) != b[4] {
		return Request{}, 1, ErrBadFrame
	}
	return Request{Op: op, Address: int(b[1]), Channel: int(b[2])}, requestLen, nil
}

// Reply is a frame from a board to the host.
//
// An open reply is five bytes: 8A, address, channel, state, checksum.
// A whole-board status reply is 80, address, k status bytes, 33,
// checksum, with k >= StatusBytes(channels); the status bytes run from
// the highest group of eight channels to the lowest, so the last one
// holds channels 1-8, bit 0 being the lowest channel of its group.
type Reply struct {
	Op      Op
	Address int
	// Channel is the channel an open reply answers for.
	Channel int
	// State is an open reply's lock feedback after the pulse
	// (StateUnlocked or StateLocked with the common wiring). The driver
	// reads the status to confirm an open and does not rely on it.
	State byte
	// Bits is a status reply's feedback bit per channel, Bits[0] being
	// channel 1; len(Bits) is a multiple of 8. With the common wiring a
	// set bit means locked (door shut), a clear bit unlocked (open).
	Bits []bool
}

// Bytes encodes the reply. A status reply carries
// StatusBytes(len(Bits)) status bytes.
func (r Reply) Bytes() []byte {
	if r.Op == OpOpen {
		f := []byte{HeadOpen, byte(r.Address), byte(r.Channel), r.State, 0}
		f[4] = Checksum(f[:4])
		return f
	}
	k := min(StatusBytes(len(r.Bits)), maxStatusBytes)
	f := make([]byte, 0, k+4)
	f = append(f, HeadStatus, byte(r.Address))
	for g := k - 1; g >= 0; g-- { // highest group first
		var v byte
		for bit := 0; bit < 8; bit++ {
			if i := g*8 + bit; i < len(r.Bits) && r.Bits[i] {
				v |= 1 << bit
			}
		}
		f = append(f, v)
	}
	f = append(f, FuncStatus)
	return append(f, Checksum(f))
}

// decodeStatus decodes the status bytes s (highest group first) into one
// bit per channel.
func decodeStatus(s []byte) []bool {
	k := len(s)
	bits := make([]bool, 8*k)
	for j, v := range s {
		g := k - 1 - j
		for bit := 0; bit < 8; bit++ {
			bits[g*8+bit] = v&(1<<bit) != 0
		}
	}
	return bits
}

// frameAt reports whether a complete, checksum-valid reply of req's
// shape starts at b[0], from any address. For a status reply the first
// length that validates wins (see docs/lockboard.md on the length).
func frameAt(b []byte, req Request, channels int) (Reply, int, bool) {
	switch req.Op {
	case OpOpen:
		if len(b) < openReplyLen || b[0] != HeadOpen || int(b[2]) != req.Channel {
			return Reply{}, 0, false
		}
		if Checksum(b[:4]) != b[4] {
			return Reply{}, 0, false
		}
		return Reply{Op: OpOpen, Address: int(b[1]), Channel: int(b[2]), State: b[3]}, openReplyLen, true
	case OpStatus:
		if len(b) < 2 || b[0] != HeadStatus {
			return Reply{}, 0, false
		}
		for k := StatusBytes(channels); k <= maxStatusBytes; k++ {
			n := k + 4
			if len(b) < n {
				break
			}
			if b[n-2] == FuncStatus && Checksum(b[:n-1]) == b[n-1] {
				return Reply{Op: OpStatus, Address: int(b[1]), Bits: decodeStatus(b[2 : 2+k])}, n, true
			}
		}
	}
	return Reply{}, 0, false
}

// findReply returns the first complete, checksum-valid reply to req from
// req's board in buf, skipping garbage, damaged frames and replies from
// other addresses. channels is the board's channel count.
func findReply(buf []byte, req Request, channels int) (Reply, bool) {
	for i := range buf {
		// A valid frame from another board is passed over like garbage.
		if rep, _, ok := frameAt(buf[i:], req, channels); ok && rep.Address == req.Address {
			return rep, true
		}
	}
	return Reply{}, false
}

// diagnose says why buf holds no reply to req when the reply time is
// over: ErrWrongAddress when a valid reply came from another board,
// ErrChecksum when a frame from req's board failed its checksum, else
// ErrTimeout.
func diagnose(buf []byte, req Request, channels int) error {
	for i := range buf {
		if rep, _, ok := frameAt(buf[i:], req, channels); ok && rep.Address != req.Address {
			return ErrWrongAddress
		}
	}
	for i := range buf {
		if damagedAt(buf[i:], req, channels) {
			return ErrChecksum
		}
	}
	return ErrTimeout
}

// damagedAt reports whether b starts with a frame of req's shape from
// req's board, complete but for a wrong check byte.
func damagedAt(b []byte, req Request, channels int) bool {
	switch req.Op {
	case OpOpen:
		return len(b) >= openReplyLen && b[0] == HeadOpen && int(b[1]) == req.Address &&
			int(b[2]) == req.Channel && Checksum(b[:4]) != b[4]
	case OpStatus:
		if len(b) < 2 || b[0] != HeadStatus || int(b[1]) != req.Address {
			return false
		}
		for k := StatusBytes(channels); k <= maxStatusBytes && k+4 <= len(b); k++ {
			if n := k + 4; b[n-2] == FuncStatus && Checksum(b[:n-1]) != b[n-1] {
				return true
			}
		}
	}
	return false
}
