package portal

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	portalsync "kioskd/sync"
)

// Export writes a signed full document of the live set for device as the
// pair of files of SPEC §6.5: path (the body) and path+".sig". It is one
// page however large the set, so a kiosk with the default
// max_document_bytes (64 MiB) takes sets up to roughly 150 000
// credentials this way. The device need not be registered (first
// provisioning).
func (p *Portal) Export(ctx context.Context, device, path string) (ExportInfo, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return ExportInfo{}, fmt.Errorf("export: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	info, sig, err := p.writeFull(device, tmp)
	if err != nil {
		return ExportInfo{}, fmt.Errorf("export: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return ExportInfo{}, fmt.Errorf("export: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return ExportInfo{}, fmt.Errorf("export: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return ExportInfo{}, fmt.Errorf("export: %w", err)
	}
	if err := portalsync.WriteSigFile(path, sig); err != nil {
		return ExportInfo{}, fmt.Errorf("export: %w", err)
	}
	info.Path = path
	p.log.Info("exported", "device", device, "path", path, "cursor", info.Cursor, "credentials", info.Credentials)
	return info, nil
}

// writeFull writes the full document of the live set for device to f, as
// one page, and returns its signature.
func (p *Portal) writeFull(device string, f *os.File) (ExportInfo, string, error) {
	if err := CheckDeviceID(device); err != nil {
		return ExportInfo{}, "", err
	}
	var info ExportInfo
	err := p.db.View(func(tx *bolt.Tx) error {
		rev := getInt(tx.Bucket(bMeta), kRev)
		revoked, err := revokedAsOf(tx, rev)
		if err != nil {
			return err
		}
		h := portalsync.Header{DeviceID: device, IssuedAt: p.now(), Full: true, Cursor: Cursor(rev), Revoked: revoked}
		w, err := portalsync.NewDocWriter(f, &h)
		if err != nil {
			return err
		}
		info.Cursor, info.Revoked = h.Cursor, len(revoked)
		err = tx.Bucket(bCreds).ForEach(func(k, v []byte) error {
			r, err := decodeRec(v)
			if err != nil {
				return err
			}
			if r.Deleted {
				return nil
			}
			info.Credentials++
			return w.Write(&r.Wire)
		})
		if err != nil {
			return err
		}
		return w.Close()
	})
	if err != nil {
		return ExportInfo{}, "", err
	}
	n, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return ExportInfo{}, "", err
	}
	info.Bytes = n
	sig, err := portalsync.SignReader(p.priv, f)
	if err != nil {
		return ExportInfo{}, "", err
	}
	return info, sig, nil
}
