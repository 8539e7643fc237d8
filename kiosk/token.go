package kiosk

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// TokenPrefix starts the text of every signed QR token (SPEC §2): the
// format is "KQ1.<payload>.<sig>".
const TokenPrefix = "KQ1."

// tokMaxLen is the longest QR text the kiosk accepts (SPEC §3: codes over
// 1024 bytes are discarded); a longer token is a bad token.
const tokMaxLen = 1024

// ErrBadToken is returned (wrapped) by ParseToken when a QR text that
// starts with TokenPrefix is not a valid signed token: malformed, too
// long, badly signed, or with invalid claims. The decision is bad_token.
var ErrBadToken = errors.New("bad token")

// tokEncoding is the encoding of payload and signature: base64url without
// padding, strict, so that a token has exactly one spelling.
var tokEncoding = base64.RawURLEncoding.Strict()

// TokenClaims is the JSON payload of a signed QR token. Times are Unix
// seconds.
type TokenClaims struct {
	CID   string   `json:"cid"`   // credential id; uses are tracked by it
	HID   string   `json:"hid"`   // holder id
	Role  Role     `json:"role"`  // holder role
	Doors []string `json:"doors"` // door ids; empty means every room door
	NBF   int64    `json:"nbf"`   // not before; 0 means no start
	EXP   int64    `json:"exp"`   // expiry; required, > 0
	Uses  int      `json:"uses"`  // use limit; 0 means unlimited
}

// IsToken reports whether a scanned text claims to be a signed token
// (starts with TokenPrefix). Such a text is decided by ParseToken — a
// defect is bad_token — and never looked up by digest.
func IsToken(text []byte) bool {
	return bytes.HasPrefix(text, []byte(TokenPrefix))
}

// ParseToken verifies a signed QR token against the portal's public key
// and returns the credential it stands for: ID = cid, Kind qr, Holder {ID:
// hid, Role: role}, Status active, Doors, ValidFrom = nbf (the zero time
// for 0), ValidUntil = exp, Uses. The credential has no digest and no
// portal spend counts; the caller tracks its spends by cid.
//
// Any defect is an error wrapping ErrBadToken: longer than 1024 bytes,
// not of the form KQ1.<payload>.<sig>, a character outside the base64url
// alphabet, a signature that does not verify (or an unusable public key),
// a payload that is not one JSON object of the known fields, an unknown
// role, an empty cid or hid, an empty door id, a negative nbf or uses, or
// exp missing or not positive. The error never holds the token text.
func ParseToken(text []byte, pub ed25519.PublicKey) (*Credential, error) {
	c, err := tokParse(text, pub)
	if err != nil {
		return nil, fmt.Errorf("parse token: %w: %s", ErrBadToken, err)
	}
	return c, nil
}

func tokParse(text []byte, pub ed25519.PublicKey) (*Credential, error) {
	if len(text) > tokMaxLen {
		return nil, fmt.Errorf("%d bytes, more than %d", len(text), tokMaxLen)
	}
	if !IsToken(text) {
		return nil, errors.New("no " + TokenPrefix + " prefix")
	}
	rest := text[len(TokenPrefix):]
	dot := bytes.IndexByte(rest, '.')
	if dot < 0 {
		return nil, errors.New("no signature part")
	}
	payload, sig := rest[:dot], rest[dot+1:]
	if bytes.IndexByte(sig, '.') >= 0 {
		return nil, errors.New("too many parts")
	}
	if len(payload) == 0 {
		return nil, errors.New("empty payload")
	}
	if i := digestBadB64Char(payload); i >= 0 {
		return nil, fmt.Errorf("payload: invalid character at offset %d", i)
	}
	if i := digestBadB64Char(sig); i >= 0 {
		return nil, fmt.Errorf("signature: invalid character at offset %d", i)
	}
	if len(sig) != tokEncoding.EncodedLen(ed25519.SignatureSize) {
		return nil, fmt.Errorf("signature: %d characters, want %d", len(sig), tokEncoding.EncodedLen(ed25519.SignatureSize))
	}
	rawSig := make([]byte, ed25519.SignatureSize)
	if n, err := tokEncoding.Decode(rawSig, sig); err != nil || n != ed25519.SignatureSize {
		return nil, errors.New("signature: bad base64url")
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	if !ed25519.Verify(pub, text[:len(TokenPrefix)+len(payload)], rawSig) {
		return nil, errors.New("signature does not verify")
	}
	// Only a verified payload is decoded: the JSON parser never sees
	// what the portal did not sign.
	raw := make([]byte, tokEncoding.DecodedLen(len(payload)))
	n, err := tokEncoding.Decode(raw, payload)
	if err != nil {
		return nil, errors.New("payload: bad base64url")
	}
	cl, err := tokDecodeClaims(raw[:n])
	if err != nil {
		return nil, err
	}
	c := &Credential{
		ID:         cl.CID,
		Kind:       KindQR,
		Holder:     Holder{ID: cl.HID, Role: cl.Role},
		Status:     StatusActive,
		Uses:       cl.Uses,
		ValidUntil: time.Unix(cl.EXP, 0).UTC(),
		Doors:      cl.Doors,
	}
	if cl.NBF != 0 {
		c.ValidFrom = time.Unix(cl.NBF, 0).UTC()
	}
	return c, nil
}

// tokDecodeClaims decodes and checks the JSON claims: one object of the
// known fields and nothing after it.
func tokDecodeClaims(raw []byte) (TokenClaims, error) {
	var cl TokenClaims
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cl); err != nil {
		return TokenClaims{}, errors.New("payload: not a JSON object of the token fields")
	}
	if _, err := dec.Token(); err != io.EOF {
		return TokenClaims{}, errors.New("payload: data after the JSON object")
	}
	switch {
	case cl.CID == "":
		return TokenClaims{}, errors.New("claims: empty cid")
	case cl.HID == "":
		return TokenClaims{}, errors.New("claims: empty hid")
	case !cl.Role.Valid():
		return TokenClaims{}, errors.New("claims: unknown role")
	case cl.EXP <= 0:
		return TokenClaims{}, errors.New("claims: exp missing or not positive")
	case cl.NBF < 0:
		return TokenClaims{}, errors.New("claims: negative nbf")
	case cl.Uses < 0:
		return TokenClaims{}, errors.New("claims: negative uses")
	}
	for _, d := range cl.Doors {
		if d == "" {
			return TokenClaims{}, errors.New("claims: empty door id")
		}
	}
	return cl, nil
}

// SignToken makes the text of a signed QR token for the claims (for
// devportal and tests): "KQ1." + base64url(JSON claims) + "." +
// base64url(Ed25519 signature over the ASCII bytes "KQ1." + payload). It
// does not check the claims; ParseToken does. A token longer than 1024
// bytes (many long door ids) does not parse.
func SignToken(c TokenClaims, priv ed25519.PrivateKey) string {
	js, err := json.Marshal(c)
	if err != nil {
		// TokenClaims holds only strings, ints and a string slice.
		panic("kiosk: marshal token claims: " + err.Error())
	}
	msg := TokenPrefix + tokEncoding.EncodeToString(js)
	sig := ed25519.Sign(priv, []byte(msg))
	return msg + "." + tokEncoding.EncodeToString(sig)
}
