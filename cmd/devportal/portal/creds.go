package portal

import (
	"context"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"

	"kioskd/kiosk"
	portalsync "kioskd/sync"
)

// Limits of names and ids the property manager types.
const (
	maxNameLen   = 200
	maxIDLen     = 128
	maxDoors     = 64
	maxWindows   = 32
	maxCardLen   = 64
	qrRandomSize = 15 // bytes: 120 bits, 24 base32 characters
)

// AddHolder creates a holder with the next id "h-N".
func (p *Portal) AddHolder(ctx context.Context, spec HolderSpec) (Holder, error) {
	if !spec.Role.Valid() {
		return Holder{}, fmt.Errorf("add holder: %w: role %q is not one of resident, staff, courier, manager", ErrInvalid, spec.Role)
	}
	if err := checkText("name", spec.Name, maxNameLen); err != nil {
		return Holder{}, fmt.Errorf("add holder: %w", err)
	}
	var h Holder
	err := p.update(func(w *wtx) error {
		b := w.tx.Bucket(bHolders)
		id, err := nextID(b, b, "h-")
		if err != nil {
			return err
		}
		h = Holder{ID: id, Role: spec.Role, Name: spec.Name, Created: w.now}
		v, err := encode(h)
		if err != nil {
			return err
		}
		return b.Put([]byte(h.ID), v)
	})
	if err != nil {
		return Holder{}, fmt.Errorf("add holder: %w", err)
	}
	p.log.Info("holder added", "holder", h.ID, "role", h.Role)
	return h, nil
}

// Holders lists the holders in the order they were created.
func (p *Portal) Holders(ctx context.Context) ([]Holder, error) {
	var out []Holder
	err := p.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bHolders).ForEach(func(k, v []byte) error {
			var h Holder
			if err := decode(v, &h); err != nil {
				return err
			}
			out = append(out, h)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list holders: %w", err)
	}
	slices.SortFunc(out, func(a, b Holder) int { return cmpSeqID(a.ID, b.ID) })
	return out, nil
}

// nextID returns prefix + the next sequence number of seq that is not a
// key of taken (imported records may hold such ids already).
func nextID(seq, taken *bolt.Bucket, prefix string) (string, error) {
	for {
		n, err := seq.NextSequence()
		if err != nil {
			return "", err
		}
		id := prefix + strconv.FormatUint(n, 10)
		if taken.Get([]byte(id)) == nil {
			return id, nil
		}
	}
}

// cmpSeqID orders ids of the form "x-N" by N, then anything else by text.
func cmpSeqID(a, b string) int {
	pa, na, oka := splitSeqID(a)
	pb, nb, okb := splitSeqID(b)
	if oka && okb && pa == pb {
		switch {
		case na < nb:
			return -1
		case na > nb:
			return 1
		}
		return 0
	}
	return strings.Compare(a, b)
}

func splitSeqID(s string) (string, uint64, bool) {
	i := strings.LastIndexByte(s, '-')
	if i < 0 {
		return "", 0, false
	}
	n, err := strconv.ParseUint(s[i+1:], 10, 64)
	return s[:i], n, err == nil
}

func getHolder(tx *bolt.Tx, id string) (*Holder, error) {
	v := tx.Bucket(bHolders).Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("%w: holder %q", ErrNotFound, id)
	}
	var h Holder
	if err := decode(v, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// checkText checks a free-text field: valid UTF-8, printable, bounded.
func checkText(what, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalid, what, max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not UTF-8", ErrInvalid, what)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: %s holds a control character", ErrInvalid, what)
		}
	}
	return nil
}

// checkID checks an id (door, token cid): 1 to maxIDLen printable ASCII
// characters, no space.
func checkID(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: %s is empty", ErrInvalid, what)
	}
	if len(s) > maxIDLen {
		return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalid, what, maxIDLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return fmt.Errorf("%w: %s %q holds a space or a character outside printable ASCII", ErrInvalid, what, s)
		}
	}
	return nil
}

func checkDoors(doors []string) error {
	if len(doors) > maxDoors {
		return fmt.Errorf("%w: more than %d doors", ErrInvalid, maxDoors)
	}
	for i, d := range doors {
		if err := checkID("door", d); err != nil {
			return err
		}
		if slices.Contains(doors[:i], d) {
			return fmt.Errorf("%w: door %q is listed twice", ErrInvalid, d)
		}
	}
	return nil
}

// window resolves a validity window: from, until as given, or until =
// (from or now) + validFor.
func window(from, until *time.Time, validFor time.Duration, now time.Time) (*time.Time, *time.Time, error) {
	if validFor < 0 {
		return nil, nil, fmt.Errorf("%w: negative validity", ErrInvalid)
	}
	if until == nil && validFor > 0 {
		start := now.Truncate(time.Second)
		if from != nil {
			start = *from
		}
		u := start.Add(validFor).UTC()
		until = &u
	}
	if from != nil {
		f := from.UTC()
		from = &f
	}
	if until != nil {
		u := until.UTC()
		until = &u
	}
	if from != nil && until != nil && !until.After(*from) {
		return nil, nil, fmt.Errorf("%w: valid-until is not after valid-from", ErrInvalid)
	}
	return from, until, nil
}

// Issue creates a credential for a holder. See CredentialSpec. The secret
// is returned once and never stored: PINs are drawn (or chosen) so that no
// PIN the portal ever issued comes back, deleted or used up or not.
func (p *Portal) Issue(ctx context.Context, spec CredentialSpec) (Issued, error) {
	is, err := p.issue(spec)
	if err != nil {
		return Issued{}, fmt.Errorf("issue %s credential: %w", spec.Type, err)
	}
	p.log.Info("credential issued", "credential", is.Credential.ID, "type", is.Credential.Type,
		"holder", is.Credential.Holder.ID, "rev", is.Credential.Rev)
	return is, nil
}

func (p *Portal) issue(spec CredentialSpec) (Issued, error) {
	if spec.Uses < 0 {
		return Issued{}, fmt.Errorf("%w: negative use limit", ErrInvalid)
	}
	if err := checkDoors(spec.Doors); err != nil {
		return Issued{}, err
	}
	if len(spec.Schedule) > maxWindows {
		return Issued{}, fmt.Errorf("%w: more than %d schedule windows", ErrInvalid, maxWindows)
	}
	for i, win := range spec.Schedule {
		if _, err := kiosk.ParseWindow(win.Days, win.From, win.To); err != nil {
			return Issued{}, fmt.Errorf("%w: schedule[%d]: %v", ErrInvalid, i, err)
		}
	}
	validFor := time.Duration(spec.ValidFor)
	kind := kiosk.KindPIN
	switch spec.Type {
	case TypePIN:
	case TypeChosenPIN:
		if err := validPIN(string(spec.Secret)); err != nil {
			return Issued{}, err
		}
	case TypeOneTime:
		if spec.Uses > 1 {
			return Issued{}, fmt.Errorf("%w: a one-time PIN has one use", ErrInvalid)
		}
		spec.Uses = 1
		if validFor == 0 && spec.ValidUntil == nil {
			validFor = DefaultOneTimeValidity
		}
	case TypeQR:
		kind = kiosk.KindQR
	case TypeCard:
		kind = kiosk.KindCard
		if spec.Secret == "" {
			return Issued{}, fmt.Errorf("%w: no card number", ErrInvalid)
		}
		if len(spec.Secret) > maxCardLen {
			return Issued{}, fmt.Errorf("%w: a card number is at most %d characters", ErrInvalid, maxCardLen)
		}
		for i := 0; i < len(spec.Secret); i++ {
			if c := spec.Secret[i]; c <= ' ' || c > '~' {
				return Issued{}, fmt.Errorf("%w: a card number is printable ASCII without spaces", ErrInvalid)
			}
		}
	default:
		return Issued{}, fmt.Errorf("%w: type %q is not one of %s, %s, %s, %s, %s", ErrInvalid, spec.Type,
			TypePIN, TypeChosenPIN, TypeOneTime, TypeQR, TypeCard)
	}
	if spec.Secret != "" && spec.Type != TypeChosenPIN && spec.Type != TypeCard {
		return Issued{}, fmt.Errorf("%w: the portal draws the secret of a %s credential", ErrInvalid, spec.Type)
	}

	var out Issued
	err := p.update(func(w *wtx) error {
		h, err := getHolder(w.tx, spec.Holder)
		if err != nil {
			return err
		}
		if spec.Type == TypeChosenPIN && h.Role != kiosk.RoleStaff && h.Role != kiosk.RoleCourier {
			return fmt.Errorf("%w: chosen PINs are for staff and couriers; holder %s is a %s", ErrInvalid, h.ID, h.Role)
		}
		from, until, err := window(spec.ValidFrom, spec.ValidUntil, validFor, w.now)
		if err != nil {
			return err
		}
		secret := spec.Secret
		switch spec.Type {
		case TypePIN, TypeOneTime:
			pin, err := p.newPIN(w.tx)
			if err != nil {
				return err
			}
			secret = SecretText(pin)
		case TypeQR:
			b := make([]byte, qrRandomSize)
			if err := p.randBytes(b); err != nil {
				return err
			}
			secret = SecretText("KIOSK-" + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
		}
		digest := kiosk.Digest(p.siteKey, kind, []byte(secret))
		if kind == kiosk.KindPIN {
			pins := w.tx.Bucket(bPINs)
			if pins.Get(digest[:]) != nil {
				return fmt.Errorf("%w: this PIN was issued before; choose another", ErrConflict)
			}
			if err := pins.Put(digest[:], []byte(w.now.Format(time.RFC3339))); err != nil {
				return err
			}
		}
		if other, err := activeWithDigest(w.tx, digest, ""); err != nil {
			return err
		} else if other != "" {
			return fmt.Errorf("%w: credential %s is active with the same %s", ErrConflict, other, kind)
		}
		id, err := nextID(w.tx.Bucket(bCreds), w.tx.Bucket(bCredIDs), "c-")
		if err != nil {
			return err
		}
		rec := &credRecord{
			Wire: portalsync.WireCredential{
				ID: id, Kind: string(kind), Digest: kiosk.EncodeDigest(digest),
				Holder: portalsync.WireHolder{ID: h.ID, Role: string(h.Role), Name: h.Name},
				Status: string(kiosk.StatusActive), Uses: spec.Uses,
				ValidFrom: from, ValidUntil: until, Doors: spec.Doors, Schedule: spec.Schedule,
			},
			Type: spec.Type, Created: w.now,
		}
		if _, err := rec.Wire.Credential(); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if err := w.putCred(rec, nil); err != nil {
			return err
		}
		out = Issued{Credential: rec.info(), Secret: secret}
		return nil
	})
	return out, err
}

// newPIN draws PINs until one is not trivial and was never issued.
func (p *Portal) newPIN(tx *bolt.Tx) (string, error) {
	pins := tx.Bucket(bPINs)
	for range maxPINDraws {
		pin, err := p.drawPIN()
		if err != nil {
			return "", err
		}
		if TrivialPIN(pin) {
			continue
		}
		d := kiosk.Digest(p.siteKey, kiosk.KindPIN, []byte(pin))
		if pins.Get(d[:]) != nil {
			continue
		}
		return pin, nil
	}
	return "", ErrNoPIN
}

func (r *credRecord) info() CredentialInfo {
	w := &r.Wire
	return CredentialInfo{
		ID: w.ID, Kind: kiosk.Kind(w.Kind), Type: r.Type,
		Holder: kiosk.Holder{ID: w.Holder.ID, Role: kiosk.Role(w.Holder.Role), Name: w.Holder.Name},
		Status: kiosk.Status(w.Status), Uses: w.Uses, Used: w.Used,
		ValidFrom: w.ValidFrom, ValidUntil: w.ValidUntil, Doors: w.Doors, Schedule: w.Schedule,
		Rev: w.Rev, Created: r.Created, Deleted: r.Deleted,
	}
}

// IssueToken signs a QR token for a holder and records its cid.
func (p *Portal) IssueToken(ctx context.Context, spec TokenSpec) (IssuedToken, error) {
	out, err := p.issueToken(spec)
	if err != nil {
		return IssuedToken{}, fmt.Errorf("issue token: %w", err)
	}
	p.log.Info("token issued", "cid", out.Token.CID, "holder", out.Token.Holder, "exp", out.Token.EXP)
	return out, nil
}

func (p *Portal) issueToken(spec TokenSpec) (IssuedToken, error) {
	if spec.Uses < 0 {
		return IssuedToken{}, fmt.Errorf("%w: negative use limit", ErrInvalid)
	}
	if err := checkDoors(spec.Doors); err != nil {
		return IssuedToken{}, err
	}
	validFor := time.Duration(spec.ValidFor)
	if validFor == 0 && spec.ValidUntil == nil {
		validFor = DefaultTokenValidity
	}
	var out IssuedToken
	err := p.update(func(w *wtx) error {
		h, err := getHolder(w.tx, spec.Holder)
		if err != nil {
			return err
		}
		from, until, err := window(spec.ValidFrom, spec.ValidUntil, validFor, w.now)
		if err != nil {
			return err
		}
		b := make([]byte, 8)
		if err := p.randBytes(b); err != nil {
			return err
		}
		info := TokenInfo{CID: "tok-" + hex.EncodeToString(b), Holder: h.ID, Role: h.Role,
			Doors: spec.Doors, EXP: until.Unix(), Uses: spec.Uses, Created: w.now}
		if from != nil {
			info.NBF = from.Unix()
		}
		if info.NBF < 0 || info.EXP <= 0 {
			return fmt.Errorf("%w: token times must be after 1970", ErrInvalid)
		}
		text := kiosk.SignToken(kiosk.TokenClaims{CID: info.CID, HID: h.ID, Role: h.Role, Doors: spec.Doors,
			NBF: info.NBF, EXP: info.EXP, Uses: spec.Uses}, p.priv)
		if _, err := kiosk.ParseToken([]byte(text), p.PublicKey()); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		v, err := encode(info)
		if err != nil {
			return err
		}
		if err := w.tx.Bucket(bTokens).Put([]byte(info.CID), v); err != nil {
			return err
		}
		out = IssuedToken{Token: info, Text: SecretText(text)}
		return nil
	})
	return out, err
}

// Tokens lists the signed tokens issued here, oldest first.
func (p *Portal) Tokens(ctx context.Context) ([]TokenInfo, error) {
	var out []TokenInfo
	err := p.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bTokens).ForEach(func(k, v []byte) error {
			var t TokenInfo
			if err := decode(v, &t); err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	slices.SortFunc(out, func(a, b TokenInfo) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// Revoke puts a signed token id on the revoked list; kiosks deny the token
// (revoked) from their next sync. Revoking a cid twice is a no-op. The cid
// need not have been issued here.
func (p *Portal) Revoke(ctx context.Context, cid string) error {
	if err := checkID("token id", cid); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	err := p.update(func(w *wtx) error {
		b := w.tx.Bucket(bRevoked)
		if b.Get([]byte(cid)) != nil {
			return nil
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
		if tv := w.tx.Bucket(bTokens).Get([]byte(cid)); tv != nil {
			var t TokenInfo
			if err := decode(tv, &t); err != nil {
				return err
			}
			t.Revoked = true
			nv, err := encode(t)
			if err != nil {
				return err
			}
			return w.tx.Bucket(bTokens).Put([]byte(cid), nv)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("revoke %s: %w", cid, err)
	}
	p.log.Info("token revoked", "cid", cid)
	return nil
}

// SetStatus deactivates or reactivates a credential. Reactivating fails
// with ErrConflict while another active credential has the same digest.
func (p *Portal) SetStatus(ctx context.Context, id string, status kiosk.Status) (CredentialInfo, error) {
	if !status.Valid() {
		return CredentialInfo{}, fmt.Errorf("set status of %s: %w: status %q", id, ErrInvalid, status)
	}
	var out CredentialInfo
	err := p.update(func(w *wtx) error {
		prev, _, err := credByID(w.tx, id)
		if err != nil {
			return err
		}
		if prev == nil || prev.Deleted {
			return fmt.Errorf("%w: credential %q", ErrNotFound, id)
		}
		if prev.Wire.Status == string(status) {
			out = prev.info()
			return nil
		}
		if status == kiosk.StatusActive {
			d, err := kiosk.DecodeDigest(prev.Wire.Digest)
			if err != nil {
				return err
			}
			if other, err := activeWithDigest(w.tx, d, id); err != nil {
				return err
			} else if other != "" {
				return fmt.Errorf("%w: credential %s is active with the same %s", ErrConflict, other, prev.Wire.Kind)
			}
		}
		next := *prev
		next.Wire.Status = string(status)
		if err := w.putCred(&next, prev); err != nil {
			return err
		}
		out = next.info()
		return nil
	})
	if err != nil {
		return CredentialInfo{}, fmt.Errorf("set status of %s: %w", id, err)
	}
	p.log.Info("credential status", "credential", id, "status", status, "rev", out.Rev)
	return out, nil
}

// Delete deletes a credential. It stays a tombstone for TombstoneTTL so
// that deltas report it as removed; a deleted PIN is never issued again.
func (p *Portal) Delete(ctx context.Context, id string) error {
	err := p.update(func(w *wtx) error {
		prev, key, err := credByID(w.tx, id)
		if err != nil {
			return err
		}
		if prev == nil || prev.Deleted {
			return fmt.Errorf("%w: credential %q", ErrNotFound, id)
		}
		next := *prev
		next.Deleted, next.DeletedAt = true, w.now
		if err := w.putCred(&next, prev); err != nil {
			return err
		}
		return w.tx.Bucket(bTombstones).Put(u64(uint64(next.Wire.Rev)), key)
	})
	if err != nil {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	p.log.Info("credential deleted", "credential", id)
	return nil
}

// Credentials lists credentials, oldest first, never their secrets.
func (p *Portal) Credentials(ctx context.Context, f CredentialFilter) ([]CredentialInfo, error) {
	var out []CredentialInfo
	err := p.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bCreds).ForEach(func(k, v []byte) error {
			r, err := decodeRec(v)
			if err != nil {
				return err
			}
			if (r.Deleted && !f.Deleted) || (f.Holder != "" && r.Wire.Holder.ID != f.Holder) {
				return nil
			}
			out = append(out, r.info())
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list credentials: %w", err)
	}
	slices.SortFunc(out, func(a, b CredentialInfo) int { return cmpSeqID(a.ID, b.ID) })
	return out, nil
}
