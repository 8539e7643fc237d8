// Package storetest helps tests that need a real store: it opens one on
// real files in t.TempDir() and builds credentials and snapshots.
package storetest

import (
	"crypto/hmac"
	"crypto/sha256"
	"log/slog"
	"testing"
	"time"

	"kioskd/kiosk"
	"kioskd/store"
)

// Open opens a store in a new temporary directory and closes it when the
// test ends.
func Open(t testing.TB) *store.Store {
	t.Helper()
	return OpenDir(t, t.TempDir())
}

// OpenDir opens the store in dir and closes it when the test ends (a
// second Close by the test is harmless).
func OpenDir(t testing.TB, dir string) *store.Store {
	t.Helper()
	s, err := store.Open(store.Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Digest is the digest SPEC §2 defines:
// HMAC-SHA256(siteKey, kind + "\x00" + secret).
func Digest(siteKey []byte, kind kiosk.Kind, secret string) [kiosk.DigestSize]byte {
	m := hmac.New(sha256.New, siteKey)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write([]byte(secret))
	var d [kiosk.DigestSize]byte
	copy(d[:], m.Sum(nil))
	return d
}

// TestSiteKey is a fixed site key for tests.
var TestSiteKey = []byte("storetest site key, 32 bytes....")

// Option changes a credential built by Cred.
type Option func(*kiosk.Credential)

// Cred builds an active, unlimited pin credential with holder
// "h-<id>" (resident) and the digest of the secret "<id>" under
// TestSiteKey, then applies the options in order.
func Cred(id string, opts ...Option) *kiosk.Credential {
	c := &kiosk.Credential{
		ID:     id,
		Kind:   kiosk.KindPIN,
		Digest: Digest(TestSiteKey, kiosk.KindPIN, id),
		Rev:    1,
		Holder: kiosk.Holder{ID: "h-" + id, Role: kiosk.RoleResident},
		Status: kiosk.StatusActive,
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Secret sets the kind and the digest of secret under TestSiteKey.
func Secret(kind kiosk.Kind, secret string) Option {
	return func(c *kiosk.Credential) {
		c.Kind = kind
		c.Digest = Digest(TestSiteKey, kind, secret)
	}
}

// WithDigest sets the digest.
func WithDigest(d [kiosk.DigestSize]byte) Option {
	return func(c *kiosk.Credential) { c.Digest = d }
}

// Uses sets the use limit (0 = unlimited).
func Uses(n int) Option { return func(c *kiosk.Credential) { c.Uses = n } }

// Used sets the spends the portal has ingested, per device.
func Used(used map[string]int) Option { return func(c *kiosk.Credential) { c.Used = used } }

// Deactivated sets the status to deactivated.
func Deactivated() Option { return func(c *kiosk.Credential) { c.Status = kiosk.StatusDeactivated } }

// Holder sets the holder.
func Holder(id string, role kiosk.Role, name string) Option {
	return func(c *kiosk.Credential) { c.Holder = kiosk.Holder{ID: id, Role: role, Name: name} }
}

// Valid sets the validity window (zero = no bound).
func Valid(from, until time.Time) Option {
	return func(c *kiosk.Credential) { c.ValidFrom, c.ValidUntil = from, until }
}

// Doors sets the doors.
func Doors(doors ...string) Option { return func(c *kiosk.Credential) { c.Doors = doors } }

// Schedule sets the weekly windows.
func Schedule(ws ...kiosk.Window) Option { return func(c *kiosk.Credential) { c.Schedule = ws } }

// Rev sets the revision.
func Rev(rev int64) Option { return func(c *kiosk.Credential) { c.Rev = rev } }

// Load applies a full snapshot of creds and revoked token ids with the
// given cursor and issued_at, failing the test on error.
func Load(t testing.TB, s *store.Store, cursor string, issuedAt time.Time, creds []*kiosk.Credential, revoked ...string) store.ApplyStats {
	t.Helper()
	st, err := LoadErr(s, cursor, issuedAt, creds, revoked...)
	if err != nil {
		t.Fatalf("full load: %v", err)
	}
	return st
}

// LoadErr is Load that returns the error (the load is aborted then).
func LoadErr(s *store.Store, cursor string, issuedAt time.Time, creds []*kiosk.Credential, revoked ...string) (store.ApplyStats, error) {
	l, err := s.BeginFull()
	if err != nil {
		return store.ApplyStats{}, err
	}
	for _, c := range creds {
		if err := l.Put(c); err != nil {
			l.Abort()
			return store.ApplyStats{}, err
		}
	}
	for _, cid := range revoked {
		if err := l.Revoke(cid); err != nil {
			l.Abort()
			return store.ApplyStats{}, err
		}
	}
	return l.Commit(store.DocMeta{Cursor: cursor, IssuedAt: issuedAt}, nil)
}

// Lookup returns the live credential with this digest (nil if none),
// failing the test on error.
func Lookup(t testing.TB, s *store.Store, digest [kiosk.DigestSize]byte) *kiosk.Credential {
	t.Helper()
	c, err := s.Lookup(digest)
	if err != nil {
		t.Fatalf("lookup: %v", err)
	}
	return c
}

// Events returns every event in the journal, failing the test on error.
func Events(t testing.TB, s *store.Store) []kiosk.Event {
	t.Helper()
	evs, err := s.Pending(0, 1<<30)
	if err != nil {
		t.Fatalf("pending: %v", err)
	}
	return evs
}
