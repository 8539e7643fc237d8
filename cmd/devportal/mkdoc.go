package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"kioskd/kiosk"
	portalsync "kioskd/sync"
)

// Seed is a seed file: holders and their credentials in the clear. It
// holds secrets because it is a demo and test input; the documents made
// from it hold only digests.
type Seed struct {
	// Revoked lists signed-token ids to put on the revoked list.
	Revoked []string     `toml:"revoked"`
	Holders []SeedHolder `toml:"holder"`
}

// SeedHolder is one [[holder]] of a seed file.
type SeedHolder struct {
	ID          string           `toml:"id"`
	Role        string           `toml:"role"`
	Name        string           `toml:"name"`
	Credentials []SeedCredential `toml:"credential"`
}

// SeedCredential is one [[holder.credential]] of a seed file.
type SeedCredential struct {
	ID     string `toml:"id"`
	Kind   string `toml:"kind"`
	Secret string `toml:"secret"`
	// Status defaults to "active"; Rev to 1.
	Status     string         `toml:"status"`
	Rev        int64          `toml:"rev"`
	Uses       int            `toml:"uses"`
	Used       map[string]int `toml:"used"`
	ValidFrom  *time.Time     `toml:"valid_from"`
	ValidUntil *time.Time     `toml:"valid_until"`
	Doors      []string       `toml:"doors"`
	Schedule   []SeedWindow   `toml:"schedule"`
}

// SeedWindow is one schedule window of a seed credential.
type SeedWindow struct {
	Days []string `toml:"days"`
	From string   `toml:"from"`
	To   string   `toml:"to"`
}

// maxSeedBytes bounds a seed file.
const maxSeedBytes = 16 << 20

// loadSeed reads and checks a seed file. Errors name the file and the
// holder or credential, never a secret.
func loadSeed(path string) (*Seed, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read seed: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSeedBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read seed: %w", err)
	}
	if len(data) > maxSeedBytes {
		return nil, fmt.Errorf("seed %s is larger than %d bytes", path, maxSeedBytes)
	}
	var s Seed
	md, err := toml.Decode(string(data), &s)
	if err != nil {
		return nil, fmt.Errorf("seed %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("seed %s: unknown keys: %s", path, strings.Join(keys, ", "))
	}
	return &s, nil
}

// credentials turns the seed into credentials with digests under siteKey,
// sorted in ascending order of the digest bytes (SPEC §6.1). It rejects
// what a kiosk would reject: a bad field, an id given twice, two active
// credentials with one digest.
func (s *Seed) credentials(siteKey []byte) ([]*kiosk.Credential, error) {
	var out []*kiosk.Credential
	ids := map[string]bool{}
	for hi, h := range s.Holders {
		if h.ID == "" {
			return nil, fmt.Errorf("holder[%d]: no id", hi)
		}
		for ci, sc := range h.Credentials {
			c, err := sc.credential(h, siteKey)
			if err != nil {
				return nil, fmt.Errorf("holder %q credential[%d] %q: %w", h.ID, ci, sc.ID, err)
			}
			if ids[c.ID] {
				return nil, fmt.Errorf("credential id %q is used twice", c.ID)
			}
			ids[c.ID] = true
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b *kiosk.Credential) int {
		if c := bytes.Compare(a.Digest[:], b.Digest[:]); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	for i := 1; i < len(out); i++ {
		a, b := out[i-1], out[i]
		if a.Digest == b.Digest && a.Status == kiosk.StatusActive && b.Status == kiosk.StatusActive {
			return nil, fmt.Errorf("credentials %q and %q are both active with the same %s secret", a.ID, b.ID, b.Kind)
		}
	}
	return out, nil
}

// credential builds one credential, checked through the same validation a
// kiosk applies to the wire form.
func (sc *SeedCredential) credential(h SeedHolder, siteKey []byte) (*kiosk.Credential, error) {
	if sc.Secret == "" {
		return nil, fmt.Errorf("no secret")
	}
	kind := kiosk.Kind(sc.Kind)
	if kind == kiosk.KindPIN && strings.Trim(sc.Secret, "0123456789") != "" {
		return nil, fmt.Errorf("a PIN is digits only")
	}
	status := sc.Status
	if status == "" {
		status = string(kiosk.StatusActive)
	}
	rev := sc.Rev
	if rev == 0 {
		rev = 1
	}
	w := &portalsync.WireCredential{
		ID: sc.ID, Kind: sc.Kind, Rev: rev,
		Holder: portalsync.WireHolder{ID: h.ID, Role: h.Role, Name: h.Name},
		Status: status, Uses: sc.Uses, Used: sc.Used,
		ValidFrom: sc.ValidFrom, ValidUntil: sc.ValidUntil, Doors: sc.Doors,
	}
	if kind.Valid() {
		w.Digest = kiosk.EncodeDigest(kiosk.Digest(siteKey, kind, []byte(sc.Secret)))
	}
	for _, win := range sc.Schedule {
		w.Schedule = append(w.Schedule, portalsync.WireWindow{Days: win.Days, From: win.From, To: win.To})
	}
	c, err := w.Credential()
	if err != nil {
		// The message names the credential already; drop the prefix that
		// says "malformed document".
		return nil, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), portalsync.ErrMalformed.Error()+": "))
	}
	return c, nil
}

func runMkdoc(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("mkdoc", "-site-key F -portal-key F -device ID -seed seed.toml -out NAME.json [-cursor c-1]", stderr)
	siteKeyPath := fs.String("site-key", "", "site key file (devportal keygen's site.key)")
	portalKeyPath := fs.String("portal-key", "", "portal private key file (devportal keygen's portal.key)")
	device := fs.String("device", "", "device_id of the kiosk the document is for")
	seedPath := fs.String("seed", "", "seed file: holders and credentials in the clear (see examples/demo-seed.toml)")
	out := fs.String("out", "", "document file to write; its signature goes to the same name plus .sig")
	cursor := fs.String("cursor", "c-1", "cursor of the document")
	issued := fs.String("issued-at", "", "issued_at, RFC 3339 (default: now)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("mkdoc: unexpected argument %q", fs.Arg(0))
	}
	if err := required(fs, "site-key", "portal-key", "device", "seed", "out", "cursor"); err != nil {
		return err
	}
	issuedAt := time.Now().UTC()
	if *issued != "" {
		t, err := time.Parse(time.RFC3339Nano, *issued)
		if err != nil {
			return usagef("mkdoc: -issued-at: %v", err)
		}
		issuedAt = t
	}
	siteKey, err := readSiteKey(*siteKeyPath)
	if err != nil {
		return fmt.Errorf("mkdoc: %w", err)
	}
	priv, err := readPortalKey(*portalKeyPath)
	if err != nil {
		return fmt.Errorf("mkdoc: %w", err)
	}
	seed, err := loadSeed(*seedPath)
	if err != nil {
		return fmt.Errorf("mkdoc: %w", err)
	}
	creds, err := seed.credentials(siteKey)
	if err != nil {
		return fmt.Errorf("mkdoc: seed %s: %w", *seedPath, err)
	}
	h := &portalsync.Header{
		DeviceID: *device, IssuedAt: issuedAt, Full: true, Cursor: *cursor,
		Revoked: seed.Revoked,
	}
	if err := writeDocument(*out, h, creds); err != nil {
		return fmt.Errorf("mkdoc: %w", err)
	}
	if err := portalsync.SignFile(*out, priv); err != nil {
		return fmt.Errorf("mkdoc: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s (full document %s for %s: %d credentials, %d revoked) and %s\n",
		*out, *cursor, *device, len(creds), len(seed.Revoked), portalsync.SigPath(*out))
	return nil
}

// writeDocument writes a document through a temporary file, so that a
// failure leaves no half-written document under the final name.
func writeDocument(path string, h *portalsync.Header, creds []*kiosk.Credential) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	w, err := portalsync.NewDocWriter(tmp, h)
	if err != nil {
		tmp.Close()
		return err
	}
	for _, c := range creds {
		if err := w.Write(portalsync.NewWireCredential(c)); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := w.Close(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func runSign(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sign", "-portal-key F NAME.json", stderr)
	portalKeyPath := fs.String("portal-key", "", "portal private key file (devportal keygen's portal.key)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, "portal-key"); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("sign: want one document file, got %d arguments", fs.NArg())
	}
	priv, err := readPortalKey(*portalKeyPath)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	path := fs.Arg(0)
	if err := portalsync.SignFile(path, priv); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", portalsync.SigPath(path))
	return nil
}
