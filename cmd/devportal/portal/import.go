package portal

import (
	"context"
	"fmt"
	"time"

	"kioskd/kiosk"
	portalsync "kioskd/sync"
)

// ImportCredential is a credential with its secret in the clear and ids
// of its own, as a seed file (examples/demo-seed.toml) holds it.
type ImportCredential struct {
	ID         string                  `json:"id"`
	Kind       kiosk.Kind              `json:"kind"`
	Secret     SecretText              `json:"secret"`
	Holder     kiosk.Holder            `json:"holder"`
	Status     kiosk.Status            `json:"status,omitempty"` // default active
	Uses       int                     `json:"uses,omitempty"`
	ValidFrom  *time.Time              `json:"valid_from,omitempty"`
	ValidUntil *time.Time              `json:"valid_until,omitempty"`
	Doors      []string                `json:"doors,omitempty"`
	Schedule   []portalsync.WireWindow `json:"schedule,omitempty"`
}

// ImportSpec is a set of credentials and revoked token ids to import.
type ImportSpec struct {
	Credentials []ImportCredential `json:"credentials"`
	Revoked     []string           `json:"revoked,omitempty"`
}

// ImportInfo says what Import added.
type ImportInfo struct {
	Holders     int `json:"holders"`
	Credentials int `json:"credentials"`
	Revoked     int `json:"revoked"`
}

// Import adds credentials with known secrets and ids (a demo or test seed)
// in one transaction: all or nothing. Holders are created when missing
// (an existing holder id must have the same role). A credential id that
// exists, a PIN that was ever issued, or an active digest that is active
// already is ErrConflict. Imported PINs join the PINs that are never
// issued again; they are not checked for triviality (they exist already).
func (p *Portal) Import(ctx context.Context, spec ImportSpec) (ImportInfo, error) {
	var info ImportInfo
	err := p.update(func(w *wtx) error {
		info = ImportInfo{}
		for i, ic := range spec.Credentials {
			if err := p.importOne(w, ic, &info); err != nil {
				return fmt.Errorf("credential[%d] %q: %w", i, ic.ID, err)
			}
		}
		for _, cid := range spec.Revoked {
			if err := checkID("token id", cid); err != nil {
				return err
			}
			b := w.tx.Bucket(bRevoked)
			if b.Get([]byte(cid)) != nil {
				continue
			}
			rev := w.nextRev()
			v, err := encode(revokedRecord{Rev: rev, At: w.now})
			if err != nil {
				return err
			}
			if err := b.Put([]byte(cid), v); err != nil {
				return err
			}
			if err := w.tx.Bucket(bChanges).Put(u64(uint64(rev)), append([]byte{'r'}, cid...)); err != nil {
				return err
			}
			info.Revoked++
		}
		return nil
	})
	if err != nil {
		return ImportInfo{}, fmt.Errorf("import: %w", err)
	}
	p.log.Info("imported", "holders", info.Holders, "credentials", info.Credentials, "revoked", info.Revoked)
	return info, nil
}

func (p *Portal) importOne(w *wtx, ic ImportCredential, info *ImportInfo) error {
	if err := checkID("credential id", ic.ID); err != nil {
		return err
	}
	if err := checkID("holder id", ic.Holder.ID); err != nil {
		return err
	}
	if !ic.Holder.Role.Valid() {
		return fmt.Errorf("%w: role %q", ErrInvalid, ic.Holder.Role)
	}
	if err := checkText("name", ic.Holder.Name, maxNameLen); err != nil {
		return err
	}
	if !ic.Kind.Valid() || ic.Secret == "" {
		return fmt.Errorf("%w: kind %q, or no secret", ErrInvalid, ic.Kind)
	}
	if ic.Status == "" {
		ic.Status = kiosk.StatusActive
	}
	if err := checkDoors(ic.Doors); err != nil {
		return err
	}
	hb := w.tx.Bucket(bHolders)
	if v := hb.Get([]byte(ic.Holder.ID)); v != nil {
		var h Holder
		if err := decode(v, &h); err != nil {
			return err
		}
		if h.Role != ic.Holder.Role {
			return fmt.Errorf("%w: holder %s exists as a %s", ErrConflict, h.ID, h.Role)
		}
		ic.Holder.Name = h.Name
	} else {
		v, err := encode(Holder{ID: ic.Holder.ID, Role: ic.Holder.Role, Name: ic.Holder.Name, Created: w.now})
		if err != nil {
			return err
		}
		if err := hb.Put([]byte(ic.Holder.ID), v); err != nil {
			return err
		}
		info.Holders++
	}
	if w.tx.Bucket(bCredIDs).Get([]byte(ic.ID)) != nil {
		return fmt.Errorf("%w: credential id exists", ErrConflict)
	}
	digest := kiosk.Digest(p.siteKey, ic.Kind, []byte(ic.Secret))
	if ic.Kind == kiosk.KindPIN {
		pins := w.tx.Bucket(bPINs)
		if pins.Get(digest[:]) != nil {
			return fmt.Errorf("%w: this PIN was issued before", ErrConflict)
		}
		if err := pins.Put(digest[:], []byte(w.now.Format(time.RFC3339))); err != nil {
			return err
		}
	}
	if ic.Status == kiosk.StatusActive {
		if other, err := activeWithDigest(w.tx, digest, ""); err != nil {
			return err
		} else if other != "" {
			return fmt.Errorf("%w: credential %s is active with the same %s", ErrConflict, other, ic.Kind)
		}
	}
	rec := &credRecord{
		Wire: portalsync.WireCredential{
			ID: ic.ID, Kind: string(ic.Kind), Digest: kiosk.EncodeDigest(digest),
			Holder: portalsync.WireHolder{ID: ic.Holder.ID, Role: string(ic.Holder.Role), Name: ic.Holder.Name},
			Status: string(ic.Status), Uses: ic.Uses, ValidFrom: ic.ValidFrom, ValidUntil: ic.ValidUntil,
			Doors: ic.Doors, Schedule: ic.Schedule,
		},
		Type: "import", Created: w.now,
	}
	if _, err := rec.Wire.Credential(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := w.putCred(rec, nil); err != nil {
		return err
	}
	info.Credentials++
	return nil
}
