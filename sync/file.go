package sync

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"kioskd/kiosk"
)

// maxSigFileBytes bounds what is read of a .sig file: a signature is 86
// characters; the rest is room for white space.
const maxSigFileBytes = 4 << 10

// FileOptions configure ApplyFile.
type FileOptions struct {
	// DeviceID is this kiosk's device id (required).
	DeviceID string
	// PublicKey is the portal's Ed25519 public key that signs documents
	// (required).
	PublicKey ed25519.PublicKey
	// MaxBytes bounds the document file (SPEC max_document_bytes); zero
	// means DefaultMaxDocumentBytes.
	MaxBytes int64
	// Now returns the time stamped on events and whether the system
	// clock is synchronised; nil means the system clock, reported as not
	// synchronised.
	Now func() (time.Time, bool)
	// MaxDeltaChanges is Options.MaxDeltaChanges.
	MaxDeltaChanges int
}

// ApplyFile applies a document that travelled as a file (SPEC §6.5): it
// reads path (NAME.json) and its signature file path+".sig", verifies the
// body with the portal key, and applies it through the same path as a
// pulled document (Apply). A delta file applies only on its base cursor.
//
// A rejected document — too large, unsigned or badly signed, malformed,
// for another device, stale, holding two active credentials with one
// digest, or a delta on another base — touches no credential and is
// recorded as a sync.rejected event with detail {"reason", "file"} (the
// file's base name); the error is returned too and RejectReason gives its
// reason. A file that cannot be read is an error without an event.
//
// The file is read three times (verify, header, credentials) and must
// not change meanwhile: whoever could rewrite it during the apply could
// as well run kioskctl.
func ApplyFile(ctx context.Context, st Applier, opts FileOptions, path string) (Result, error) {
	res, err := applyFile(ctx, st, opts, path)
	if err == nil {
		return res, nil
	}
	if reason := RejectReason(err); reason != "" {
		o := Options{Now: opts.Now}
		ev := o.event(kiosk.EvSyncRejected, map[string]any{"reason": reason, "file": filepath.Base(path)})
		if rerr := st.Record(ev); rerr != nil {
			err = errors.Join(err, fmt.Errorf("record sync.rejected: %w", rerr))
		}
	}
	return Result{}, err
}

func applyFile(ctx context.Context, st Applier, opts FileOptions, path string) (Result, error) {
	max := opts.MaxBytes
	if max <= 0 {
		max = DefaultMaxDocumentBytes
	}
	f, err := os.Open(path)
	if err != nil {
		return Result{}, fmt.Errorf("open document: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Result{}, fmt.Errorf("open document: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Result{}, fmt.Errorf("open document: %s is not a regular file", path)
	}
	if fi.Size() > max {
		return Result{}, fmt.Errorf("%s: %w: %d bytes, the limit is %d", path, ErrTooLarge, fi.Size(), max)
	}
	sig, err := readSigFile(SigPath(path))
	if err != nil {
		return Result{}, err
	}
	n, err := VerifyReader(opts.PublicKey, sig, io.NewSectionReader(f, 0, max+1), max)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", path, err)
	}
	res, err := Apply(ctx, st, Options{DeviceID: opts.DeviceID, Now: opts.Now, MaxDeltaChanges: opts.MaxDeltaChanges}, f, n)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", path, err)
	}
	return res, nil
}

// readSigFile reads a NAME.json.sig file. A missing file means the
// document is unsigned: ErrBadSignature.
func readSigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no signature file %s", ErrBadSignature, path)
	}
	if err != nil {
		return nil, fmt.Errorf("open signature: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSigFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read signature: %w", err)
	}
	if len(data) > maxSigFileBytes {
		return nil, fmt.Errorf("%w: signature file %s is larger than %d bytes", ErrBadSignature, path, maxSigFileBytes)
	}
	sig, err := ParseSignature(string(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sig, nil
}
