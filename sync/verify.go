package sync

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"filippo.io/edwards25519"
)

// DefaultMaxDocumentBytes is the largest document body (one page) accepted
// when no limit is configured: SPEC §6 max_document_bytes, 64 MiB.
const DefaultMaxDocumentBytes = 64 << 20

// SignatureHeader is the HTTP header that carries a document's signature.
const SignatureHeader = "Kiosk-Signature"

// ErrBadSignature is returned when a document is unsigned, its signature
// is not a well-formed base64url Ed25519 signature, or the signature does
// not verify against the portal's public key.
var ErrBadSignature = errors.New("bad signature")

// ErrTooLarge is returned when a document body (one page) is larger than
// the configured maximum.
var ErrTooLarge = errors.New("document too large")

// ParseSignature decodes a signature as carried by the Kiosk-Signature
// header or a NAME.json.sig file: base64url without padding, surrounding
// white space ignored. Errors wrap ErrBadSignature.
func ParseSignature(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("%w: signature is empty", ErrBadSignature)
	}
	sig, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: signature is not base64url without padding: %v", ErrBadSignature, err)
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: signature is %d bytes, want %d", ErrBadSignature, len(sig), ed25519.SignatureSize)
	}
	return sig, nil
}

// Verifier checks an Ed25519 signature over a message that is written to
// it in pieces, so that a document of hundreds of megabytes is verified
// without being held in memory. Ed25519 hashes the message only once, as
// SHA-512(R || A || M), so verification (unlike signing) streams.
//
// It accepts exactly what crypto/ed25519.Verify accepts: a canonical S
// (below the group order), a public key that decodes to a curve point, and
// an R whose encoding equals that of [S]B - [k]A.
type Verifier struct {
	h   hash.Hash
	sig [ed25519.SignatureSize]byte
	a   *edwards25519.Point
	s   *edwards25519.Scalar
	err error // set when the signature cannot verify whatever the message
	n   int64
}

// NewVerifier returns a Verifier for sig under pub. It fails only when pub
// does not have the size of an Ed25519 public key; a signature that cannot
// verify (bad length, non-canonical S, undecodable R or A) is reported by
// Verify, after the message has been written, so that callers judge the
// size of a body before its signature.
func NewVerifier(pub ed25519.PublicKey, sig []byte) (*Verifier, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("verify: portal public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	v := &Verifier{h: sha512.New()}
	switch {
	case len(sig) != ed25519.SignatureSize:
		v.err = fmt.Errorf("%w: signature is %d bytes, want %d", ErrBadSignature, len(sig), ed25519.SignatureSize)
		return v, nil
	case sig[63]&0xe0 != 0:
		v.err = fmt.Errorf("%w: S is not canonical", ErrBadSignature)
		return v, nil
	}
	copy(v.sig[:], sig)
	a, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		v.err = fmt.Errorf("%w: portal public key is not a curve point", ErrBadSignature)
		return v, nil
	}
	// R need not decode for the check below (the encodings are compared),
	// but an R that is no point can never verify: reject it early.
	if _, err := new(edwards25519.Point).SetBytes(sig[:32]); err != nil {
		v.err = fmt.Errorf("%w: R is not a curve point", ErrBadSignature)
		return v, nil
	}
	s, err := edwards25519.NewScalar().SetCanonicalBytes(sig[32:])
	if err != nil {
		v.err = fmt.Errorf("%w: S is not canonical", ErrBadSignature)
		return v, nil
	}
	v.a, v.s = a, s
	v.h.Write(sig[:32])
	v.h.Write(pub)
	return v, nil
}

// Write adds p to the message. It never fails.
func (v *Verifier) Write(p []byte) (int, error) {
	v.n += int64(len(p))
	if v.err == nil {
		v.h.Write(p)
	}
	return len(p), nil
}

// Verify reports whether the signature is valid for the message written so
// far. Errors wrap ErrBadSignature.
func (v *Verifier) Verify() error {
	if v.err != nil {
		return v.err
	}
	var digest [sha512.Size]byte
	k, err := edwards25519.NewScalar().SetUniformBytes(v.h.Sum(digest[:0]))
	if err != nil {
		return fmt.Errorf("verify: %w", err) // cannot happen: 64 bytes
	}
	// [S]B = R + [k]A  <=>  [k](-A) + [S]B = R
	minusA := new(edwards25519.Point).Negate(v.a)
	r := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(k, minusA, v.s)
	if !bytes.Equal(v.sig[:32], r.Bytes()) {
		return fmt.Errorf("%w: signature does not match the portal key", ErrBadSignature)
	}
	return nil
}

// VerifyReader reads r to its end and checks sig, the Ed25519 signature of
// everything read, under pub, holding no more than a read buffer in
// memory. It reads at most max+1 bytes: a longer body is ErrTooLarge,
// judged before the signature (max <= 0 means no limit). n is the number
// of bytes read. A signature that does not verify is ErrBadSignature.
func VerifyReader(pub ed25519.PublicKey, sig []byte, r io.Reader, max int64) (n int64, err error) {
	v, err := NewVerifier(pub, sig)
	if err != nil {
		return 0, err
	}
	if max > 0 {
		r = io.LimitReader(r, max+1)
	}
	n, err = io.CopyBuffer(v, r, make([]byte, 64<<10))
	if err != nil {
		return n, fmt.Errorf("verify: read body: %w", err)
	}
	if max > 0 && n > max {
		return n, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)
	}
	return n, v.Verify()
}
