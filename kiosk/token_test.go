package kiosk_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"kioskd/kiosk"
)

// tokKey returns a fixed test key pair; seed byte b picks which.
func tokKey(b byte) (ed25519.PublicKey, ed25519.PrivateKey) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
	return priv.Public().(ed25519.PublicKey), priv
}

// tokSignRaw signs an arbitrary payload (already JSON or not) the way the
// portal signs tokens.
func tokSignRaw(payload []byte, priv ed25519.PrivateKey) string {
	msg := kiosk.TokenPrefix + base64.RawURLEncoding.EncodeToString(payload)
	return msg + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(msg)))
}

var tokClaims = kiosk.TokenClaims{
	CID: "tok-77", HID: "h-9", Role: kiosk.RoleCourier, Doors: []string{"main", "locker-3"},
	NBF: 1780000000, EXP: 1780086400, Uses: 2,
}

func TestTokenRoundTrip(t *testing.T) {
	pub, priv := tokKey(1)
	tests := []struct {
		name   string
		claims kiosk.TokenClaims
	}{
		{"all fields", tokClaims},
		{"no start, unlimited, every room door", kiosk.TokenClaims{CID: "t", HID: "h", Role: kiosk.RoleResident, EXP: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := kiosk.SignToken(tt.claims, priv)
			if !kiosk.IsToken([]byte(text)) {
				t.Fatalf("IsToken(SignToken(...)) is false")
			}
			c, err := kiosk.ParseToken([]byte(text), pub)
			if err != nil {
				t.Fatalf("ParseToken: %v", err)
			}
			cl := tt.claims
			if c.ID != cl.CID || c.Kind != kiosk.KindQR || c.Holder != (kiosk.Holder{ID: cl.HID, Role: cl.Role}) ||
				c.Status != kiosk.StatusActive || c.Uses != cl.Uses || !slices.Equal(c.Doors, cl.Doors) {
				t.Fatalf("credential %+v does not match claims %+v", c, cl)
			}
			if !c.ValidUntil.Equal(time.Unix(cl.EXP, 0)) || c.ValidUntil.Location() != time.UTC {
				t.Errorf("ValidUntil = %v, want %v in UTC", c.ValidUntil, time.Unix(cl.EXP, 0).UTC())
			}
			if cl.NBF == 0 {
				if !c.ValidFrom.IsZero() {
					t.Errorf("nbf 0 gave ValidFrom %v, want the zero time", c.ValidFrom)
				}
			} else if !c.ValidFrom.Equal(time.Unix(cl.NBF, 0)) {
				t.Errorf("ValidFrom = %v, want %v", c.ValidFrom, time.Unix(cl.NBF, 0).UTC())
			}
		})
	}
}

// TestTokenWireFormat checks the token against the format of SPEC §2 built
// by hand: the signature is over the ASCII bytes "KQ1." + payload.
func TestTokenWireFormat(t *testing.T) {
	pub, priv := tokKey(1)
	text := kiosk.SignToken(tokClaims, priv)
	parts := strings.Split(text, ".")
	if len(parts) != 3 || parts[0] != "KQ1" {
		t.Fatalf("token %q is not KQ1.<payload>.<sig>", text)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	want := `{"cid":"tok-77","hid":"h-9","role":"courier","doors":["main","locker-3"],"nbf":1780000000,"exp":1780086400,"uses":2}`
	if string(payload) != want {
		t.Fatalf("payload %s, want %s", payload, want)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(pub, []byte("KQ1."+parts[1]), sig) {
		t.Fatal(`signature is not over "KQ1." + payload`)
	}
	// A token the portal made by hand the same way parses.
	if _, err := kiosk.ParseToken([]byte(tokSignRaw([]byte(want), priv)), pub); err != nil {
		t.Fatalf("hand-made token: %v", err)
	}
}

func TestIsToken(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"KQ1.abc.def", true},
		{"KQ1.", true},
		{"KQ1", false},
		{"kq1.abc.def", false},
		{" KQ1.abc.def", false},
		{"https://example.com/KQ1.x", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := kiosk.IsToken([]byte(tt.in)); got != tt.want {
			t.Errorf("IsToken(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseTokenBad(t *testing.T) {
	pub, priv := tokKey(1)
	_, otherPriv := tokKey(2)
	good := kiosk.SignToken(tokClaims, priv)
	dot := strings.LastIndexByte(good, '.')
	payload, sig := good[len(kiosk.TokenPrefix):dot], good[dot+1:]
	with := func(mod func(c *kiosk.TokenClaims)) string {
		c := tokClaims
		mod(&c)
		return kiosk.SignToken(c, priv)
	}
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	// A valid token with a door id of n bytes, for the length limit.
	long := func(n int) string {
		return with(func(c *kiosk.TokenClaims) { c.Doors = []string{strings.Repeat("d", n)} })
	}
	longest := ""
	for n := 1; len(long(n)) <= 1024; n++ {
		longest = long(n)
	}
	tooLong := long(len(longest)) // certainly over 1024 bytes
	if _, err := kiosk.ParseToken([]byte(longest), pub); err != nil {
		t.Fatalf("token of %d bytes rejected: %v", len(longest), err)
	}

	tests := []struct {
		name string
		text string
		pub  ed25519.PublicKey
	}{
		{"signed by another key", kiosk.SignToken(tokClaims, otherPriv), nil},
		{"signature bit flipped", good[:dot+1] + flip(sig, 5), nil},
		{"payload changed", kiosk.TokenPrefix + flip(payload, 10) + "." + sig, nil},
		{"payload of another token", kiosk.TokenPrefix + strings.Split(with(func(c *kiosk.TokenClaims) { c.Uses = 0 }), ".")[1] + "." + sig, nil},
		{"truncated signature", good[:len(good)-1], nil},
		{"signature with padding", good + "=", nil},
		{"signature with newline", good[:dot+10] + "\n" + good[dot+10:], nil},
		{"payload with newline", kiosk.TokenPrefix + payload[:8] + "\n" + payload[8:] + "." + sig, nil},
		{"payload std base64, signed", tokSignStd(t, priv), nil},
		{"extra dot at end", good + ".", nil},
		{"extra part", good + ".AAAA", nil},
		{"extra dot inside", kiosk.TokenPrefix + payload + ".." + sig, nil},
		{"no signature part", kiosk.TokenPrefix + payload, nil},
		{"empty payload", kiosk.TokenPrefix + "." + sig, nil},
		{"prefix only", kiosk.TokenPrefix, nil},
		{"lower-case prefix", "kq1." + payload + "." + sig, nil},
		{"no prefix", payload + "." + sig, nil},
		{"trailing space", good + " ", nil},
		{"over 1024 bytes", tooLong, nil},
		{"empty public key", good, ed25519.PublicKey{}},
		{"short public key", good, ed25519.PublicKey(make([]byte, 31))},
		{"not JSON", tokSignRaw([]byte("cid=tok-77"), priv), nil},
		{"JSON array", tokSignRaw([]byte(`["tok-77"]`), priv), nil},
		{"JSON null", tokSignRaw([]byte(`null`), priv), nil},
		{"trailing data", tokSignRaw([]byte(`{"cid":"c","hid":"h","role":"staff","exp":5} {}`), priv), nil},
		{"unknown field", tokSignRaw([]byte(`{"cid":"c","hid":"h","role":"staff","exp":5,"admin":true}`), priv), nil},
		{"exp missing", tokSignRaw([]byte(`{"cid":"c","hid":"h","role":"staff"}`), priv), nil},
		{"exp as string", tokSignRaw([]byte(`{"cid":"c","hid":"h","role":"staff","exp":"5"}`), priv), nil},
		{"exp fractional", tokSignRaw([]byte(`{"cid":"c","hid":"h","role":"staff","exp":5.5}`), priv), nil},
		{"exp 0", with(func(c *kiosk.TokenClaims) { c.EXP = 0 }), nil},
		{"exp negative", with(func(c *kiosk.TokenClaims) { c.EXP = -1 }), nil},
		{"nbf negative", with(func(c *kiosk.TokenClaims) { c.NBF = -1 }), nil},
		{"uses negative", with(func(c *kiosk.TokenClaims) { c.Uses = -1 }), nil},
		{"unknown role", with(func(c *kiosk.TokenClaims) { c.Role = "admin" }), nil},
		{"empty role", with(func(c *kiosk.TokenClaims) { c.Role = "" }), nil},
		{"empty cid", with(func(c *kiosk.TokenClaims) { c.CID = "" }), nil},
		{"empty hid", with(func(c *kiosk.TokenClaims) { c.HID = "" }), nil},
		{"empty door id", with(func(c *kiosk.TokenClaims) { c.Doors = []string{"main", ""} }), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := pub
			if tt.pub != nil {
				key = tt.pub
			}
			c, err := kiosk.ParseToken([]byte(tt.text), key)
			if err == nil {
				t.Fatalf("ParseToken accepted it: %+v", c)
			}
			if !errors.Is(err, kiosk.ErrBadToken) {
				t.Fatalf("error %v does not wrap ErrBadToken", err)
			}
			if c != nil {
				t.Fatalf("credential %+v returned with an error", c)
			}
			// The error never carries the token text.
			if len(tt.text) > 8 && (strings.Contains(err.Error(), tt.text[len(kiosk.TokenPrefix):]) || strings.Contains(err.Error(), sig) || strings.Contains(err.Error(), payload)) {
				t.Fatalf("error holds token text: %v", err)
			}
		})
	}
}

// tokSignStd returns a token whose payload is in the standard base64
// alphabet (with a '+' or '/') and correctly signed as such.
func tokSignStd(t *testing.T, priv ed25519.PrivateKey) string {
	t.Helper()
	for i := range 1000 {
		c := tokClaims
		c.HID = strings.Repeat("?", i)
		js, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		p := base64.RawStdEncoding.EncodeToString(js)
		if strings.ContainsAny(p, "+/") {
			msg := kiosk.TokenPrefix + p
			return msg + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(msg)))
		}
	}
	t.Fatal("no payload with + or / found")
	return ""
}

// tokSeeds returns valid tokens signed by priv, for fuzz corpora.
func tokSeeds(priv ed25519.PrivateKey) []string {
	return []string{
		kiosk.SignToken(tokClaims, priv),
		kiosk.SignToken(kiosk.TokenClaims{CID: "t", HID: "h", Role: kiosk.RoleResident, EXP: 1}, priv),
		kiosk.SignToken(kiosk.TokenClaims{CID: "c-1", HID: "h-1", Role: kiosk.RoleManager, Doors: []string{"a", "b", "c"}, EXP: 1 << 40, Uses: 1}, priv),
	}
}

func FuzzParseToken(f *testing.F) {
	pub, priv := tokKey(1)
	_, other := tokKey(2)
	for _, s := range tokSeeds(priv) {
		f.Add([]byte(s))
		f.Add([]byte(s + "."))
		f.Add([]byte(strings.Replace(s, ".", "..", 1)))
	}
	f.Add([]byte(tokSeeds(other)[0]))
	f.Add([]byte("KQ1."))
	f.Add([]byte("KQ1.e30.AAAA"))
	f.Fuzz(func(t *testing.T, text []byte) {
		c, err := kiosk.ParseToken(text, pub)
		if err != nil {
			if !errors.Is(err, kiosk.ErrBadToken) {
				t.Fatalf("error %v does not wrap ErrBadToken", err)
			}
			return
		}
		// A token that parses was signed by the key, in its one spelling:
		// signing its payload again gives exactly the same text.
		s := string(text)
		dot := strings.LastIndexByte(s, '.')
		msg := s[:dot]
		want := msg + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(msg)))
		if s != want {
			t.Fatalf("accepted a token not signed by the key: %q", text)
		}
		if len(text) > 1024 || c.ID == "" || c.Holder.ID == "" || !c.Holder.Role.Valid() || c.Uses < 0 || c.ValidUntil.IsZero() || c.Kind != kiosk.KindQR {
			t.Fatalf("accepted token gives an invalid credential %+v", c)
		}
	})
}

// FuzzParseTokenClaims fuzzes the claims parser behind a valid signature:
// whatever the portal signs, ParseToken never panics and returns only
// credentials with valid fields.
func FuzzParseTokenClaims(f *testing.F) {
	pub, priv := tokKey(1)
	for _, s := range tokSeeds(priv) {
		p, _ := base64.RawURLEncoding.DecodeString(strings.Split(s, ".")[1])
		f.Add(p)
	}
	f.Add([]byte(`{"cid":"c","hid":"h","role":"staff","exp":5,"nbf":-1}`))
	f.Add([]byte(`{"cid":"c","hid":"h","role":"staff","exp":5,"doors":[""]}`))
	f.Add([]byte(`{"CID":"c","hid":"h","role":"staff","exp":1e3}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		text := tokSignRaw(payload, priv)
		c, err := kiosk.ParseToken([]byte(text), pub)
		if err != nil {
			if !errors.Is(err, kiosk.ErrBadToken) {
				t.Fatalf("error %v does not wrap ErrBadToken", err)
			}
			return
		}
		if len(text) > 1024 || c.ID == "" || c.Holder.ID == "" || !c.Holder.Role.Valid() || c.Uses < 0 ||
			c.ValidUntil.Unix() <= 0 || c.ValidFrom.Unix() < 0 && !c.ValidFrom.IsZero() || slices.Contains(c.Doors, "") {
			t.Fatalf("payload %q gave an invalid credential %+v", payload, c)
		}
	})
}
