package sync

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"math/big"
	mrand "math/rand/v2"
	"strings"
	"testing"
)

// groupOrder is l, the order of the Ed25519 base point.
var groupOrder, _ = new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)

func verifyBytes(pub ed25519.PublicKey, sig, msg []byte) error {
	_, err := VerifyReader(pub, sig, bytes.NewReader(msg), 0)
	return err
}

// nonCanonical returns sig with S replaced by S + l, which reduces to the
// same scalar: crypto/ed25519 rejects it, so must we. ok is false when
// S + l does not fit below 2^253.
func nonCanonical(sig []byte) (out []byte, ok bool) {
	le := func(b []byte) *big.Int {
		be := make([]byte, len(b))
		for i := range b {
			be[len(b)-1-i] = b[i]
		}
		return new(big.Int).SetBytes(be)
	}
	s := le(sig[32:])
	s.Add(s, groupOrder)
	if s.BitLen() > 253 {
		return nil, false
	}
	be := s.FillBytes(make([]byte, 32))
	out = append([]byte{}, sig[:32]...)
	for i := range be {
		out = append(out, be[31-i])
	}
	return out, true
}

func TestVerifyMatchesCryptoEd25519(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	sizes := []int{0, 1, 31, 32, 63, 64, 65, 127, 128, 4095, 65536, 65537, 200_000}
	for i := 0; i < 200; i++ {
		sizes = append(sizes, rng.IntN(3000))
	}
	nonCanon := 0
	for _, n := range sizes {
		msg := make([]byte, n)
		for i := range msg {
			msg[i] = byte(rng.Uint32())
		}
		sig := ed25519.Sign(priv, msg)

		type variant struct {
			name     string
			pub      ed25519.PublicKey
			sig, msg []byte
		}
		vs := []variant{{"good", pub, sig, msg}, {"wrong key", otherPub, sig, msg}}
		if n > 0 {
			m := append([]byte{}, msg...)
			m[rng.IntN(n)] ^= 1 << rng.IntN(8)
			vs = append(vs, variant{"tampered message", pub, sig, m})
			vs = append(vs, variant{"truncated message", pub, sig, msg[:n-1]})
		}
		vs = append(vs, variant{"appended byte", pub, sig, append(append([]byte{}, msg...), 0)})
		s := append([]byte{}, sig...)
		s[rng.IntN(64)] ^= 1 << rng.IntN(8)
		vs = append(vs, variant{"tampered signature", pub, s, msg})
		if nc, ok := nonCanonical(sig); ok {
			nonCanon++
			vs = append(vs, variant{"non-canonical S", pub, nc, msg})
		}
		for _, v := range vs {
			want := ed25519.Verify(v.pub, v.msg, v.sig)
			if (v.name == "good") != want {
				t.Fatalf("crypto/ed25519 says %v for %s", want, v.name)
			}
			err := verifyBytes(v.pub, v.sig, v.msg)
			if want && err != nil {
				t.Errorf("size %d, %s: VerifyReader = %v, crypto/ed25519 accepts", n, v.name, err)
			}
			if !want && !errors.Is(err, ErrBadSignature) {
				t.Errorf("size %d, %s: VerifyReader = %v, want ErrBadSignature", n, v.name, err)
			}
		}
	}
	if nonCanon == 0 {
		t.Error("no non-canonical S was tried")
	}
}

func TestVerifyEdgeCases(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	msg := []byte(`{"device_id":"spr-0001"}`)
	sig := ed25519.Sign(priv, msg)
	highS := append([]byte{}, sig...)
	highS[63] |= 0x80
	// A public key that is no curve point: y = 2 is not on the curve.
	badPub := make([]byte, 32)
	badPub[0] = 2
	if ed25519.Verify(badPub, msg, sig) {
		t.Fatal("crypto/ed25519 accepts a key off the curve")
	}
	// An R that is no curve point.
	badR := append([]byte{}, sig...)
	copy(badR[:32], badPub)

	tests := []struct {
		name string
		pub  ed25519.PublicKey
		sig  []byte
		msg  []byte
		max  int64
		want error
	}{
		{"good", pub, sig, msg, 0, nil},
		{"good at the limit", pub, sig, msg, int64(len(msg)), nil},
		{"one byte over the limit", pub, sig, msg, int64(len(msg)) - 1, ErrTooLarge},
		{"too large beats bad signature", pub, sig[:10], msg, 5, ErrTooLarge},
		{"empty signature", pub, nil, msg, 0, ErrBadSignature},
		{"short signature", pub, sig[:63], msg, 0, ErrBadSignature},
		{"long signature", pub, append(append([]byte{}, sig...), 0), msg, 0, ErrBadSignature},
		{"high bits of S", pub, highS, msg, 0, ErrBadSignature},
		{"key off the curve", badPub, sig, msg, 0, ErrBadSignature},
		{"R off the curve", pub, badR, msg, 0, ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := VerifyReader(tt.pub, tt.sig, bytes.NewReader(tt.msg), tt.max)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("VerifyReader = %v, want %v", err, tt.want)
			}
			if tt.want == nil && n != int64(len(tt.msg)) {
				t.Errorf("n = %d, want %d", n, len(tt.msg))
			}
			if tt.want == ErrTooLarge && n != tt.max+1 {
				t.Errorf("read %d bytes, want at most max+1 = %d", n, tt.max+1)
			}
		})
	}
	t.Run("public key of the wrong size", func(t *testing.T) {
		_, err := VerifyReader(pub[:31], sig, bytes.NewReader(msg), 0)
		if err == nil || errors.Is(err, ErrBadSignature) {
			t.Fatalf("err = %v, want a configuration error", err)
		}
	})
}

func TestParseSignature(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	raw := ed25519.Sign(priv, []byte("x"))
	good := base64.RawURLEncoding.EncodeToString(raw)
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"plain", good, true},
		{"trailing newline", good + "\n", true},
		{"surrounding white space", " \t" + good + "\r\n", true},
		{"padded", base64.URLEncoding.EncodeToString(raw), false},
		{"standard alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(good) + "+/", false},
		{"empty", "  \n", false},
		{"short", good[:80], false},
		{"space inside", good[:40] + " " + good[40:], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig, err := ParseSignature(tt.in)
			if tt.ok {
				if err != nil || !bytes.Equal(sig, raw) {
					t.Fatalf("ParseSignature = %x, %v", sig, err)
				}
				return
			}
			if !errors.Is(err, ErrBadSignature) {
				t.Fatalf("ParseSignature = %v, want ErrBadSignature", err)
			}
		})
	}
}

func TestSignMatchesCryptoEd25519(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	rng := mrand.New(mrand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 100, 65535, 65536, 70000, 300_000} {
		msg := make([]byte, n)
		for i := range msg {
			msg[i] = byte(rng.Uint32())
		}
		want := Sign(priv, msg)
		if want != base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, msg)) {
			t.Fatal("Sign differs from crypto/ed25519")
		}
		got, err := SignReader(priv, bytes.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("size %d: SignReader = %s, Sign = %s", n, got, want)
		}
		sig, err := ParseSignature(got)
		if err != nil || !ed25519.Verify(pub, msg, sig) {
			t.Errorf("size %d: signature does not verify: %v", n, err)
		}
	}
}

// FuzzVerify checks VerifyReader against crypto/ed25519.Verify on
// arbitrary keys, messages and signatures, and on signatures made by a
// fuzzed seed with one fuzzed bit flipped.
func FuzzVerify(f *testing.F) {
	f.Add(make([]byte, 32), []byte("hello"), make([]byte, 64), uint16(0))
	f.Add([]byte("seed-seed-seed-seed-seed-seed-se"), []byte{}, []byte{1, 2, 3}, uint16(513))
	f.Fuzz(func(t *testing.T, seed, msg, sig []byte, flip uint16) {
		if len(seed) < ed25519.SeedSize {
			seed = append(seed, make([]byte, ed25519.SeedSize-len(seed))...)
		}
		priv := ed25519.NewKeyFromSeed(seed[:ed25519.SeedSize])
		pub := priv.Public().(ed25519.PublicKey)
		check := func(pub ed25519.PublicKey, sig []byte) {
			want := ed25519.Verify(pub, msg, sig)
			err := verifyBytes(pub, sig, msg)
			if want != (err == nil) {
				t.Fatalf("crypto/ed25519 %v, VerifyReader %v", want, err)
			}
			if err != nil && !errors.Is(err, ErrBadSignature) {
				t.Fatalf("error %v does not wrap ErrBadSignature", err)
			}
		}
		check(pub, sig)
		good := ed25519.Sign(priv, msg)
		check(pub, good)
		bad := append([]byte{}, good...)
		bad[int(flip/8)%64] ^= 1 << (flip % 8)
		check(pub, bad)
		if len(seed) >= 64 { // a fuzzed public key
			check(ed25519.PublicKey(seed[32:64]), good)
		}
	})
}
