// Package portal is the reference portal of kioskd (SPEC §1 "devportal",
// §6 from the portal's side): a small but real portal for benches, demos
// and the integration tests.
//
// It keeps holders, credentials (digests only, never a secret), signed
// token ids, devices, queued commands and uploaded events in one bbolt
// database, portal.db, in the portal directory next to the keys that
// devportal keygen makes. It serves the device protocol of SPEC §6 over
// HTTP (pull with paged full snapshots and deltas, event upload,
// heartbeat), pushes signed deltas, hints and commands to kiosks that
// listen for them, and offers the property manager's operations both as
// Go methods (the Admin interface) and as a small JSON API under /admin/.
//
// Every credential change takes the next value of one global change
// counter, its rev; the cursor of a document is "c-<rev>". Records keep
// their rev, deletions stay as tombstones (for TombstoneTTL), and every
// superseded version of a record is kept for SnapshotTTL, so that the
// set as of any recent rev can be computed: the pages of one full
// snapshot all show the set as of its first page, however the set changes
// meanwhile, and a delta since rev N is every record whose rev is above N.
package portal

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Sentinel errors; test with errors.Is. The admin API maps them to HTTP
// statuses and the admin client maps the statuses back.
var (
	// ErrNotFound is returned when a holder, credential, device or token
	// named by an operation does not exist (or was deleted).
	ErrNotFound = errors.New("not found")
	// ErrInvalid is returned when the input of an operation breaks a rule:
	// an unknown role, a PIN that is not six digits or is trivial, a bad
	// schedule, door list, time window or device id.
	ErrInvalid = errors.New("invalid")
	// ErrConflict is returned when an operation would give two active
	// credentials one digest, reuse a PIN that was ever issued, add a
	// device that exists, or use a device token another device has.
	ErrConflict = errors.New("conflict")
	// ErrUnknownCursor is returned when a sync request names a cursor the
	// portal cannot answer a delta for (newer than the portal's rev,
	// malformed, or older than the tombstones it keeps), or a page token
	// that is malformed or has expired: the kiosk must ask for a full
	// snapshot (HTTP 410 Gone).
	ErrUnknownCursor = errors.New("unknown cursor")
	// ErrLocked is returned by Open when another process (a running
	// devportal serve) holds the database past Options.OpenTimeout.
	ErrLocked = errors.New("portal database is in use by another process (devportal serve?)")
	// ErrNoPIN is returned when no PIN could be found that was never issued
	// and is not trivial, after many tries; it wraps ErrConflict.
	ErrNoPIN = fmt.Errorf("%w: no unused PIN found", ErrConflict)
)

// Defaults of Options.
const (
	DefaultPageSize        = 10_000
	DefaultMaxDeltaChanges = 10_000
	DefaultSnapshotTTL     = 10 * time.Minute
	DefaultTombstoneTTL    = 30 * 24 * time.Hour
	DefaultCommandTTL      = 5 * time.Minute
	DefaultOneTimeValidity = 24 * time.Hour
	DefaultTokenValidity   = 30 * 24 * time.Hour
	DefaultOpenTimeout     = time.Second
	DefaultPushTimeout     = 10 * time.Second
)

// PINLength is the length of every PIN the portal issues or accepts: the
// kiosk's default keypad pin_length, which submits at the sixth digit.
const PINLength = 6

// Options configure Open.
type Options struct {
	// Dir is the portal directory: portal.key and site.key (from devportal
	// keygen), admin.token (made when missing) and portal.db. Required.
	Dir string
	// PageSize is the number of credentials on one page of a full
	// snapshot. Zero means DefaultPageSize (10 000).
	PageSize int
	// MaxDeltaChanges is the most changes a delta may carry; a sync
	// request whose delta would carry more is answered with a full
	// snapshot, and a push with a hint. Zero means DefaultMaxDeltaChanges
	// (10 000, half the kiosk's own cap).
	MaxDeltaChanges int
	// SnapshotTTL is how long the later pages of a full snapshot can be
	// fetched after its first page; older page tokens are 410 Gone.
	// Superseded versions of records are kept this long. Zero means
	// DefaultSnapshotTTL (10 min).
	SnapshotTTL time.Duration
	// TombstoneTTL is how long deleted credentials are remembered, so that
	// deltas can report them as removed; a cursor older than the newest
	// forgotten tombstone is 410 Gone. Zero means DefaultTombstoneTTL
	// (30 days).
	TombstoneTTL time.Duration
	// CommandTTL is how long a queued command (a remote unlock) waits for
	// its device; an undelivered command older than that is dropped, so a
	// door never opens long after it was asked to. Zero means
	// DefaultCommandTTL (5 min).
	CommandTTL time.Duration
	// OpenTimeout is how long Open waits for the database's file lock
	// before it fails with ErrLocked. Zero means DefaultOpenTimeout (1 s).
	OpenTimeout time.Duration
	// PushClient sends pushes. Nil means a client with a
	// DefaultPushTimeout (10 s) timeout.
	PushClient *http.Client
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Rand is the source of PINs, QR texts, nonces and ids. Nil means
	// crypto/rand.
	Rand io.Reader
	// Logger receives the portal's log lines. Nil means slog.Default().
	Logger *slog.Logger
}

// Portal is an open portal database with its keys. Its methods are safe
// for concurrent use.
type Portal struct {
	db         *bolt.DB
	opts       Options
	priv       ed25519.PrivateKey
	siteKey    []byte
	adminToken string
	pageKey    []byte
	log        *slog.Logger
	push       *pusher

	randMu sync.Mutex // guards opts.Rand, which need not be safe for concurrent use
}

// Open opens (or creates) the portal database in opts.Dir and reads the
// keys there. It fails with ErrLocked while another process has the
// database open.
func Open(opts Options) (*Portal, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("open portal: %w: no directory", ErrInvalid)
	}
	if opts.PageSize <= 0 {
		opts.PageSize = DefaultPageSize
	}
	if opts.MaxDeltaChanges <= 0 {
		opts.MaxDeltaChanges = DefaultMaxDeltaChanges
	}
	if opts.SnapshotTTL <= 0 {
		opts.SnapshotTTL = DefaultSnapshotTTL
	}
	if opts.TombstoneTTL <= 0 {
		opts.TombstoneTTL = DefaultTombstoneTTL
	}
	// A snapshot's pages must still see every credential deleted after
	// its first page.
	opts.TombstoneTTL = max(opts.TombstoneTTL, opts.SnapshotTTL)
	if opts.CommandTTL <= 0 {
		opts.CommandTTL = DefaultCommandTTL
	}
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = DefaultOpenTimeout
	}
	if opts.PushClient == nil {
		opts.PushClient = &http.Client{Timeout: DefaultPushTimeout}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	priv, err := ReadPortalKey(filepath.Join(opts.Dir, PortalKeyFile))
	if err != nil {
		return nil, fmt.Errorf("open portal: %w", err)
	}
	siteKey, err := ReadSiteKey(filepath.Join(opts.Dir, SiteKeyFile))
	if err != nil {
		return nil, fmt.Errorf("open portal: %w", err)
	}
	admin, err := ensureAdminToken(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("open portal: %w", err)
	}
	path := filepath.Join(opts.Dir, DBFile)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.OpenTimeout, FreelistType: bolt.FreelistMapType})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("open portal %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open portal %s: %w", path, err)
	}
	p := &Portal{db: db, opts: opts, priv: priv, siteKey: siteKey, adminToken: admin, log: log}
	if err := p.init(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open portal %s: %w", path, err)
	}
	p.push = newPusher(p)
	return p, nil
}

// Close stops the background work started by Start, waiting for pushes in
// flight, and closes the database.
func (p *Portal) Close() error {
	p.push.stop()
	if err := p.db.Close(); err != nil {
		return fmt.Errorf("close portal: %w", err)
	}
	return nil
}

// PublicKey returns the portal's Ed25519 public key, which kiosks are
// configured with (portal.public_key).
func (p *Portal) PublicKey() ed25519.PublicKey { return p.priv.Public().(ed25519.PublicKey) }

// AdminToken returns the bearer token of the admin API.
func (p *Portal) AdminToken() string { return p.adminToken }

func (p *Portal) now() time.Time { return p.opts.Now().Round(0).UTC() }

// randBytes fills b from the configured random source.
func (p *Portal) randBytes(b []byte) error {
	p.randMu.Lock()
	defer p.randMu.Unlock()
	if _, err := io.ReadFull(p.opts.Rand, b); err != nil {
		return fmt.Errorf("random source: %w", err)
	}
	return nil
}

// removeServeFile removes dir's serve.json; see WriteServeFile.
func removeServeFile(dir string) { os.Remove(filepath.Join(dir, ServeFile)) }
