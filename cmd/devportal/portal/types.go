package portal

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"kioskd/kiosk"
	portalsync "kioskd/sync"
)

// Admin is the property manager's side of the portal. *Portal implements
// it on the database directly; *Client implements it over the admin HTTP
// API of a running server, so that the command line works either way.
type Admin interface {
	// AddHolder creates a holder with an id of the portal's choosing.
	AddHolder(ctx context.Context, spec HolderSpec) (Holder, error)
	// Holders lists the holders.
	Holders(ctx context.Context) ([]Holder, error)
	// Issue creates a credential for a holder and returns it with its
	// secret, which the portal does not keep: show it once.
	Issue(ctx context.Context, spec CredentialSpec) (Issued, error)
	// IssueToken signs a QR token (SPEC §2, KQ1) for a holder.
	IssueToken(ctx context.Context, spec TokenSpec) (IssuedToken, error)
	// Credentials lists credentials, never their secrets.
	Credentials(ctx context.Context, f CredentialFilter) ([]CredentialInfo, error)
	// SetStatus deactivates or reactivates a credential.
	SetStatus(ctx context.Context, id string, status kiosk.Status) (CredentialInfo, error)
	// Delete deletes a credential; kiosks drop it at their next sync.
	Delete(ctx context.Context, id string) error
	// Revoke puts a signed token id on the revoked list.
	Revoke(ctx context.Context, cid string) error
	// Tokens lists the signed tokens issued here.
	Tokens(ctx context.Context) ([]TokenInfo, error)
	// AddDevice registers a kiosk (or, with spec.Update, changes one).
	AddDevice(ctx context.Context, spec DeviceSpec) (AddedDevice, error)
	// Devices lists the registered kiosks.
	Devices(ctx context.Context) ([]Device, error)
	// Unlock queues a remote unlock for a kiosk and pushes it when the
	// kiosk has a push URL.
	Unlock(ctx context.Context, device, door string) (portalsync.Command, error)
	// Events lists the events a kiosk uploaded, newest first.
	Events(ctx context.Context, device string, limit int) ([]json.RawMessage, error)
	// Export writes a signed full document of the live set for a kiosk as
	// the files path and path+".sig" (SPEC §6.5).
	Export(ctx context.Context, device, path string) (ExportInfo, error)
	// Import adds credentials with known secrets and ids (a demo seed).
	Import(ctx context.Context, spec ImportSpec) (ImportInfo, error)
}

var (
	_ Admin = (*Portal)(nil)
	_ Admin = (*Client)(nil)
)

// SecretText is a secret in the clear (a PIN, a QR text, a card number, a
// token) on its way to or from the property manager. Its String, GoString,
// Format and LogValue mask it, so that it never reaches a log line or an
// error by accident; JSON carries it as a plain string.
type SecretText string

// String masks the secret.
func (s SecretText) String() string { return fmt.Sprintf("[secret, %d bytes]", len(s)) }

// GoString masks the secret in %#v.
func (s SecretText) GoString() string { return s.String() }

// Format masks the secret whatever the verb.
func (s SecretText) Format(f fmt.State, verb rune) { fmt.Fprint(f, s.String()) }

// LogValue masks the secret in structured logs.
func (s SecretText) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Reveal returns the secret in the clear, for the one place that shows it.
func (s SecretText) Reveal() string { return string(s) }

// Duration is a time.Duration that JSON carries as a Go duration string
// ("24h").
type Duration time.Duration

// MarshalText writes the duration as time.Duration.String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// HolderSpec describes a holder to create.
type HolderSpec struct {
	Role kiosk.Role `json:"role"`
	Name string     `json:"name"`
}

// Holder is a holder as the portal keeps it.
type Holder struct {
	ID      string     `json:"id"`
	Role    kiosk.Role `json:"role"`
	Name    string     `json:"name"`
	Created time.Time  `json:"created"`
}

// Credential types: how a credential is issued.
const (
	// TypePIN is a PIN the portal draws: six digits, never issued before,
	// not trivial.
	TypePIN = "pin"
	// TypeChosenPIN is a PIN the property manager chooses for a staff
	// member or courier, under the same rules.
	TypeChosenPIN = "chosen-pin"
	// TypeOneTime is a one-time access PIN: a drawn PIN with one use,
	// valid for DefaultOneTimeValidity unless told otherwise.
	TypeOneTime = "one-time"
	// TypeQR is a plain QR credential: random text the portal draws.
	TypeQR = "qr"
	// TypeCard is a key card or fob: its number is given.
	TypeCard = "card"
)

// CredentialSpec describes a credential to issue.
type CredentialSpec struct {
	// Holder is the holder's id (required).
	Holder string `json:"holder"`
	// Type is one of TypePIN, TypeChosenPIN, TypeOneTime, TypeQR,
	// TypeCard (required).
	Type string `json:"type"`
	// Secret is the chosen PIN (TypeChosenPIN) or the card number
	// (TypeCard); empty for the types whose secret the portal draws.
	Secret SecretText `json:"secret,omitempty"`
	// Uses is the use limit: 0 = unlimited (one for TypeOneTime).
	Uses int `json:"uses,omitempty"`
	// ValidFrom and ValidUntil bound the validity window; nil = no bound.
	ValidFrom  *time.Time `json:"valid_from,omitempty"`
	ValidUntil *time.Time `json:"valid_until,omitempty"`
	// ValidFor sets ValidUntil to ValidFrom (or now) plus this, when
	// ValidUntil is nil. Zero means no bound, except for TypeOneTime,
	// where it means DefaultOneTimeValidity (24 h).
	ValidFor Duration `json:"valid_for,omitempty"`
	// Doors lists the door ids; empty = every room door.
	Doors []string `json:"doors,omitempty"`
	// Schedule lists weekly windows; empty = always.
	Schedule []portalsync.WireWindow `json:"schedule,omitempty"`
}

// CredentialInfo is a credential as listed: never its secret.
type CredentialInfo struct {
	ID         string                  `json:"id"`
	Kind       kiosk.Kind              `json:"kind"`
	Type       string                  `json:"type"`
	Holder     kiosk.Holder            `json:"holder"`
	Status     kiosk.Status            `json:"status"`
	Uses       int                     `json:"uses"`
	Used       map[string]int          `json:"used,omitempty"`
	ValidFrom  *time.Time              `json:"valid_from,omitempty"`
	ValidUntil *time.Time              `json:"valid_until,omitempty"`
	Doors      []string                `json:"doors,omitempty"`
	Schedule   []portalsync.WireWindow `json:"schedule,omitempty"`
	Rev        int64                   `json:"rev"`
	Created    time.Time               `json:"created"`
	Deleted    bool                    `json:"deleted,omitempty"`
}

// Issued is a credential just issued, with its secret: the only time the
// portal shows it.
type Issued struct {
	Credential CredentialInfo `json:"credential"`
	Secret     SecretText     `json:"secret"`
}

// CredentialFilter selects credentials to list.
type CredentialFilter struct {
	// Holder, when not empty, lists only that holder's credentials.
	Holder string `json:"holder,omitempty"`
	// Deleted includes deleted credentials (tombstones still kept).
	Deleted bool `json:"deleted,omitempty"`
}

// TokenSpec describes a signed QR token to issue.
type TokenSpec struct {
	// Holder is the holder's id (required); the token carries the
	// holder's role.
	Holder string `json:"holder"`
	// Doors lists the door ids; empty = every room door.
	Doors []string `json:"doors,omitempty"`
	// ValidFrom is nbf; nil = no start.
	ValidFrom *time.Time `json:"valid_from,omitempty"`
	// ValidUntil is exp; nil means ValidFrom (or now) plus ValidFor.
	ValidUntil *time.Time `json:"valid_until,omitempty"`
	// ValidFor is used when ValidUntil is nil; zero means
	// DefaultTokenValidity (30 days).
	ValidFor Duration `json:"valid_for,omitempty"`
	// Uses is the use limit, tracked by the kiosk per cid; 0 = unlimited.
	Uses int `json:"uses,omitempty"`
}

// TokenInfo is a signed token as listed: not its text.
type TokenInfo struct {
	CID     string     `json:"cid"`
	Holder  string     `json:"holder"`
	Role    kiosk.Role `json:"role"`
	Doors   []string   `json:"doors,omitempty"`
	NBF     int64      `json:"nbf"`
	EXP     int64      `json:"exp"`
	Uses    int        `json:"uses"`
	Created time.Time  `json:"created"`
	Revoked bool       `json:"revoked,omitempty"`
}

// IssuedToken is a signed token just issued, with its text (the QR code
// content).
type IssuedToken struct {
	Token TokenInfo  `json:"token"`
	Text  SecretText `json:"text"`
}

// DeviceSpec describes a kiosk to register.
type DeviceSpec struct {
	// ID is the kiosk's device_id: 1 to 64 of A-Z a-z 0-9 . _ -.
	ID string `json:"id"`
	// Token is the kiosk's bearer token; empty means the portal draws one
	// (and, with Update, keeps the current one). Only its SHA-256 is kept.
	Token SecretText `json:"token,omitempty"`
	// PushURL is where the kiosk listens for pushes (its push_listen),
	// e.g. "http://127.0.0.1:8443"; empty = no pushes. Plain http only to
	// loopback (SPEC §6).
	PushURL string `json:"push_url,omitempty"`
	// Update changes an existing device (token when given, push URL)
	// instead of failing with ErrConflict.
	Update bool `json:"update,omitempty"`
}

// Device is a registered kiosk as listed: never its token.
type Device struct {
	ID      string `json:"id"`
	PushURL string `json:"push_url,omitempty"`
	// Cursor is the cursor the portal believes the kiosk has: from its
	// last sync request, the last document served in full, its heartbeat,
	// or a push answer. Pushed deltas use it as their base.
	Cursor        string          `json:"cursor,omitempty"`
	LastSync      time.Time       `json:"last_sync,omitzero"`
	LastHeartbeat time.Time       `json:"last_heartbeat,omitzero"`
	Heartbeat     json.RawMessage `json:"heartbeat,omitempty"`
	LastPush      time.Time       `json:"last_push,omitzero"`
	PushStatus    string          `json:"push_status,omitempty"`
	Created       time.Time       `json:"created"`
}

// AddedDevice is a device just registered; Token is set when the portal
// drew it (show it once).
type AddedDevice struct {
	Device Device     `json:"device"`
	Token  SecretText `json:"token,omitempty"`
}

// ExportInfo says what Export wrote.
type ExportInfo struct {
	Path        string `json:"path"`
	Cursor      string `json:"cursor"`
	Credentials int    `json:"credentials"`
	Revoked     int    `json:"revoked"`
	Bytes       int64  `json:"bytes"`
}
