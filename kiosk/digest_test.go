package kiosk_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"strings"
	"testing"

	"kioskd/kiosk"
)

// digestTestKey is the site key 0x00, 0x01, …, 0x1f.
func digestTestKey() []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = byte(i)
	}
	return k
}

func TestDigestKnownVectors(t *testing.T) {
	key := digestTestKey()
	tests := []struct {
		kind   kiosk.Kind
		secret string
		want   string // from: printf 'KIND\x00SECRET' | openssl dgst -sha256 -mac HMAC -macopt hexkey:0001…1f -binary | basenc --base64url
	}{
		{kiosk.KindPIN, "123456", "dWXjIzwjPeTFSmHEHFBeGmaU_str6eIJWPLznQ2jEXw"},
		{kiosk.KindCard, "123456", "YFwJL2eqEYnsLHlOGjXFEw1dXj-e-pOYdHB_RcZpq_Y"},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			d := kiosk.Digest(key, tt.kind, []byte(tt.secret))
			if got := kiosk.EncodeDigest(d); got != tt.want {
				t.Errorf("EncodeDigest(Digest(%s)) = %s, want %s", tt.kind, got, tt.want)
			}
			// The same with crypto/hmac directly.
			m := hmac.New(sha256.New, key)
			m.Write([]byte(string(tt.kind) + "\x00" + tt.secret))
			if !hmac.Equal(d[:], m.Sum(nil)) {
				t.Errorf("Digest differs from HMAC-SHA256(key, kind+\\x00+secret)")
			}
		})
	}
}

func TestDigestKindIsPartOfDigest(t *testing.T) {
	key := digestTestKey()
	secret := []byte("04A2B3C4D5")
	seen := map[[kiosk.DigestSize]byte]kiosk.Kind{}
	for _, k := range []kiosk.Kind{kiosk.KindPIN, kiosk.KindQR, kiosk.KindCard} {
		d := kiosk.Digest(key, k, secret)
		if other, dup := seen[d]; dup {
			t.Errorf("kinds %s and %s give the same digest for one secret", other, k)
		}
		seen[d] = k
	}
	// The separator keeps kind and secret apart: "pin"+"1…" is not "pin1"+"…".
	if kiosk.Digest(key, "pin", []byte("1x")) == kiosk.Digest(key, "pin1", []byte("x")) {
		t.Error("kind/secret boundary is ambiguous")
	}
	// And the site key matters.
	other := digestTestKey()
	other[0] ^= 1
	if kiosk.Digest(key, kiosk.KindPIN, secret) == kiosk.Digest(other, kiosk.KindPIN, secret) {
		t.Error("site key does not change the digest")
	}
}

func TestDecodeDigest(t *testing.T) {
	good := "dWXjIzwjPeTFSmHEHFBeGmaU_str6eIJWPLznQ2jEXw"
	d, err := kiosk.DecodeDigest(good)
	if err != nil {
		t.Fatalf("DecodeDigest(good): %v", err)
	}
	if kiosk.EncodeDigest(d) != good {
		t.Fatalf("round trip changed the digest")
	}
	bad := []struct{ name, in string }{
		{"empty", ""},
		{"padded", good + "="},
		{"short", good[:42]},
		{"long", good + "A"},
		{"std alphabet", strings.Replace(good, "_", "/", 1)},
		{"newline inside", good[:20] + "\n" + good[21:]},
		{"trailing bits", good[:42] + "x"}, // last char must encode zero low bits
		{"space", good[:42] + " "},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := kiosk.DecodeDigest(tt.in); err == nil {
				t.Errorf("DecodeDigest(%q) succeeded, want error", tt.in)
			}
		})
	}
}

func FuzzDecodeDigest(f *testing.F) {
	f.Add("dWXjIzwjPeTFSmHEHFBeGmaU_str6eIJWPLznQ2jEXw")
	f.Add("YFwJL2eqEYnsLHlOGjXFEw1dXj-e-pOYdHB_RcZpq_Y")
	f.Add("")
	f.Add("====")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := kiosk.DecodeDigest(s)
		if err != nil {
			return
		}
		// Exactly one spelling per digest.
		if got := kiosk.EncodeDigest(d); got != s {
			t.Fatalf("DecodeDigest(%q) accepted a non-canonical spelling of %q", s, got)
		}
	})
}
