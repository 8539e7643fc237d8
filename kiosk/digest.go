package kiosk

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// Digest returns the digest under which a credential of this kind and
// secret is stored: HMAC-SHA256(siteKey, kind || 0x00 || secret), as in
// SPEC §2. The kiosk computes it from what was typed or scanned and looks
// it up; the secret itself is never stored. The kind is part of the
// digest, so a card number typed on the keypad never matches a card
// credential.
func Digest(siteKey []byte, kind Kind, secret []byte) [DigestSize]byte {
	m := hmac.New(sha256.New, siteKey)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write(secret)
	var d [DigestSize]byte
	m.Sum(d[:0])
	return d
}

// digestEncoding is the wire form of digests: base64url without padding,
// strict (no stray trailing bits), so every digest has one spelling.
var digestEncoding = base64.RawURLEncoding.Strict()

// digestEncodedLen is the length of an encoded digest (43).
var digestEncodedLen = digestEncoding.EncodedLen(DigestSize)

// EncodeDigest returns the wire form of a digest (SPEC §6.3):
// base64url without padding.
func EncodeDigest(d [DigestSize]byte) string {
	return digestEncoding.EncodeToString(d[:])
}

// DecodeDigest parses the wire form of a digest. It accepts only the one
// canonical spelling EncodeDigest produces: exactly 43 characters of the
// base64url alphabet, no padding, no white space, no stray trailing bits.
func DecodeDigest(s string) ([DigestSize]byte, error) {
	var d [DigestSize]byte
	if len(s) != digestEncodedLen {
		return d, fmt.Errorf("decode digest: %d characters, want %d", len(s), digestEncodedLen)
	}
	// The decoder skips CR and LF; the length check above would catch
	// them (fewer bytes out), but reject them explicitly for a clear error.
	if i := digestBadB64Char(s); i >= 0 {
		return d, fmt.Errorf("decode digest: invalid character at offset %d", i)
	}
	n, err := digestEncoding.Decode(d[:], []byte(s))
	if err != nil {
		return [DigestSize]byte{}, fmt.Errorf("decode digest: %w", err)
	}
	if n != DigestSize {
		return [DigestSize]byte{}, fmt.Errorf("decode digest: %d bytes, want %d", n, DigestSize)
	}
	return d, nil
}

// digestBadB64Char returns the offset of the first character of s outside
// the base64url alphabet, or -1. The standard decoder silently skips CR
// and LF; wire values here must have exactly one spelling.
func digestBadB64Char[T string | []byte](s T) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return i
		}
	}
	return -1
}
