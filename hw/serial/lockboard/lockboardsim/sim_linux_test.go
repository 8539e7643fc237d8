package lockboardsim

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bugst "go.bug.st/serial"

	"kioskd/hw/serial/lockboard"
)

// The simulator answers raw requests as a board does, faults and all,
// and survives an unplug.
func TestSimAnswers(t *testing.T) {
	link := filepath.Join(t.TempDir(), "rs485")
	s, err := Start(Options{Link: link})
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer s.Close()
	b, err := s.AddBoard(1, 8)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddBoard(1, 0); !errors.Is(err, ErrNoBoard) {
		t.Fatalf("AddBoard with 0 channels = %v", err)
	}
	b.SetDoor(2, true)

	exchange := func(req []byte, want string) {
		t.Helper()
		p, err := bugst.Open(s.Path(), &bugst.Mode{BaudRate: 9600})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		defer clearExcl(t, s) // the next exchange reopens the same slave
		if _, err := p.Write(req); err != nil {
			t.Fatal(err)
		}
		p.SetReadTimeout(5 * time.Second)
		var got []byte
		buf := make([]byte, 64)
		for len(got) < len(want)/3+1 {
			n, err := p.Read(buf)
			if err != nil || n == 0 {
				t.Fatalf("read after % X: %d, %v (have % X)", req, n, err, got)
			}
			got = append(got, buf[:n]...)
		}
		if w := unhex(want); !bytes.Equal(got, w) {
			t.Fatalf("reply to % X: % X, want % X", req, got, w)
		}
	}
	// Channel 2 open: bit 1 of the last status byte clear, the rest set.
	exchange(lockboard.Request{Op: lockboard.OpStatus, Address: 1}.Bytes(), "80 01 00 00 FD 33 4F")
	exchange(lockboard.Request{Op: lockboard.OpOpen, Address: 1, Channel: 5}.Bytes(), "8A 01 05 00 8E")
	if !b.Door(5) || b.Opens(5) != 1 {
		t.Fatal("open command did not open channel 5")
	}
	s.Inject(BadChecksum)
	exchange(lockboard.Request{Op: lockboard.OpOpen, Address: 1, Channel: 6}.Bytes(), "8A 01 06 00 72")
	if st := s.Stats(); st.Requests != 3 || st.Faults != 1 || st.Overlaps != 0 {
		t.Fatalf("stats %+v", st)
	}

	s.Unplug()
	if err := s.Replug(); err != nil {
		t.Fatal(err)
	}
	exchange(lockboard.Request{Op: lockboard.OpStatus, Address: 1}.Bytes(), "80 01 00 00 CD 33 7F")
}

func unhex(s string) []byte {
	var out []byte
	for i := 0; i+1 < len(s); i += 3 {
		var v byte
		for _, c := range s[i : i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			default:
				v |= byte(c-'A') + 10
			}
		}
		out = append(out, v)
	}
	return out
}

func clearExcl(t *testing.T, s *Sim) {
	t.Helper()
	if err := s.ClearExclusive(); err != nil {
		t.Fatalf("ClearExclusive: %v", err)
	}
}
