package sync

import (
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"io"
	"os"

	"filippo.io/edwards25519"
)

// Sign returns the Kiosk-Signature value of body: base64url without
// padding of Ed25519(priv, body). devportal and tests sign documents with
// it.
func Sign(priv ed25519.PrivateKey, body []byte) string {
	return base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, body))
}

// SignReader returns the Kiosk-Signature value of everything r holds from
// its start, reading it twice (Ed25519 signing hashes the message twice)
// instead of holding it in memory, so that devportal can sign documents of
// any size. The signature equals Sign's for the same bytes.
func SignReader(priv ed25519.PrivateKey, r io.ReadSeeker) (string, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("sign: private key is %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	h := sha512.Sum512(priv.Seed())
	s, err := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	pub := priv[32:]
	buf := make([]byte, 64<<10)

	hashFrom := func(prefix ...[]byte) ([]byte, error) {
		if _, err := r.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("sign: rewind: %w", err)
		}
		mh := sha512.New()
		for _, p := range prefix {
			mh.Write(p)
		}
		if _, err := io.CopyBuffer(mh, r, buf); err != nil {
			return nil, fmt.Errorf("sign: read message: %w", err)
		}
		return mh.Sum(nil), nil
	}

	md, err := hashFrom(h[32:])
	if err != nil {
		return "", err
	}
	rs, err := edwards25519.NewScalar().SetUniformBytes(md)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	R := new(edwards25519.Point).ScalarBaseMult(rs).Bytes()
	kd, err := hashFrom(R, pub)
	if err != nil {
		return "", err
	}
	k, err := edwards25519.NewScalar().SetUniformBytes(kd)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	S := edwards25519.NewScalar().MultiplyAdd(k, s, rs)
	sig := append(R, S.Bytes()...)
	return base64.RawURLEncoding.EncodeToString(sig), nil
}

// SigPath returns the name of the signature file that goes with a
// document file: NAME.json.sig for NAME.json (SPEC §6.5).
func SigPath(path string) string { return path + ".sig" }

// WriteFile writes body to path and its signature to path+".sig", the pair
// of files of SPEC §6.5 that kioskctl apply reads.
func WriteFile(path string, body []byte, priv ed25519.PrivateKey) error {
	if err := os.WriteFile(path, body, 0o644); err != nil {
		return fmt.Errorf("write document: %w", err)
	}
	return WriteSigFile(path, Sign(priv, body))
}

// WriteSigFile writes sig, a Kiosk-Signature value, to the signature file
// of the document at path, followed by a newline.
func WriteSigFile(path, sig string) error {
	if err := os.WriteFile(SigPath(path), []byte(sig+"\n"), 0o644); err != nil {
		return fmt.Errorf("write signature: %w", err)
	}
	return nil
}

// SignFile signs the document file at path, streaming it, and writes its
// signature file next to it.
func SignFile(path string, priv ed25519.PrivateKey) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	defer f.Close()
	sig, err := SignReader(priv, f)
	if err != nil {
		return fmt.Errorf("sign %s: %w", path, err)
	}
	return WriteSigFile(path, sig)
}
