// Package kiosk is the domain of kioskd: credentials, holders, doors,
// decisions, reasons and events, the access rules of the product
// specification as pure functions with an injected clock, the keypad entry
// state machine, per-input lockout, the clock floor, and the interfaces the
// core needs from the store and the hardware.
//
// It imports no other package of the project and no hardware or network
// library; adapters (store, hw, sync) implement its interfaces and
// cmd/kioskd wires them together.
package kiosk

import (
	"fmt"
	"log/slog"
	"time"
)

// Kind is the kind of a credential: what was typed or scanned.
type Kind string

// The credential kinds.
const (
	KindPIN  Kind = "pin"  // digits typed on a keypad
	KindQR   Kind = "qr"   // the text a QR scanner reads
	KindCard Kind = "card" // the number a card or fob reader reports
)

// Valid reports whether k is one of the known kinds.
func (k Kind) Valid() bool { return k == KindPIN || k == KindQR || k == KindCard }

// Role is the role of a credential's holder.
type Role string

// The holder roles.
const (
	RoleResident Role = "resident"
	RoleStaff    Role = "staff"
	RoleCourier  Role = "courier"
	RoleManager  Role = "manager"
)

// Valid reports whether r is one of the known roles.
func (r Role) Valid() bool {
	switch r {
	case RoleResident, RoleStaff, RoleCourier, RoleManager:
		return true
	}
	return false
}

// Status is the status of a credential. A deleted credential is not a
// status: it is removed from the store and unknown from then on.
type Status string

// The credential statuses.
const (
	StatusActive      Status = "active"
	StatusDeactivated Status = "deactivated"
)

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool { return s == StatusActive || s == StatusDeactivated }

// Reason is the single reason code every decision yields.
type Reason string

// The reason codes of SPEC §2.
const (
	Granted         Reason = "granted"
	Unknown         Reason = "unknown"
	Deactivated     Reason = "deactivated"
	UsedUp          Reason = "used_up"
	NotYetValid     Reason = "not_yet_valid"
	Expired         Reason = "expired"
	OutsideSchedule Reason = "outside_schedule"
	WrongDoor       Reason = "wrong_door"
	LockedOut       Reason = "locked_out"
	BadToken        Reason = "bad_token"
	Revoked         Reason = "revoked"
)

// DoorKind says whether a door is a room door or a locker compartment.
type DoorKind string

// The door kinds.
const (
	DoorRoom   DoorKind = "room"
	DoorLocker DoorKind = "locker"
)

// Holder is the person or company a credential belongs to.
type Holder struct {
	ID   string `json:"id"`
	Role Role   `json:"role"`
	Name string `json:"name,omitempty"`
}

// Window is one weekly schedule window in the kiosk's time zone. From is
// inclusive and To exclusive, both minutes after local midnight; a window
// whose To is not after its From runs past midnight into the next day
// (equal: 24 h) and belongs to the day it starts on.
type Window struct {
	Days []time.Weekday
	From int // minutes after midnight, 0..1439
	To   int // minutes after midnight, 0..1439
}

// Credential is one credential as the kiosk stores it: the portal's view of
// SPEC §6.3 less the secret, which the kiosk never holds.
type Credential struct {
	ID     string
	Kind   Kind
	Digest [DigestSize]byte // HMAC-SHA256(site key, kind || 0 || secret)
	Rev    int64
	Holder Holder
	Status Status
	// Uses is the use limit: 0 = unlimited, N = at most N grants in all.
	Uses int
	// Used holds the spends the portal has ingested, per device id.
	Used map[string]int
	// ValidFrom and ValidUntil bound the validity window; the zero time
	// means no bound.
	ValidFrom, ValidUntil time.Time
	// Doors lists the door ids the credential opens; empty means every
	// door of kind room, never a locker.
	Doors []string
	// Schedule lists weekly windows; empty means always.
	Schedule []Window
}

// DigestSize is the size in bytes of a credential digest.
const DigestSize = 32

// Door describes a door as the rules see it.
type Door struct {
	ID   string
	Kind DoorKind
}

// Event types of SPEC §5.
const (
	EvDeviceStarted     = "device.started"
	EvDeviceStopping    = "device.stopping"
	EvAccessGranted     = "access.granted"
	EvAccessDenied      = "access.denied"
	EvCredentialUsedUp  = "credential.used_up"
	EvDoorUnlocked      = "door.unlocked"
	EvDoorOpened        = "door.opened"
	EvDoorClosed        = "door.closed"
	EvDoorForced        = "door.forced"
	EvDoorHeldOpen      = "door.held_open"
	EvInputLockedOut    = "input.locked_out"
	EvInputConnected    = "input.connected"
	EvInputDisconnected = "input.disconnected"
	EvInputRejected     = "input.rejected"
	EvSyncApplied       = "sync.applied"
	EvSyncRejected      = "sync.rejected"
	EvPushRejected      = "push.rejected"
)

// Unlock sources of door.unlocked events.
const (
	SourceCredential = "credential"
	SourceRemote     = "remote"
	SourceExitButton = "exit_button"
	SourceTechnician = "technician"
)

// Event is one recorded event (SPEC §5). The store assigns ID and Seq when
// it appends the event; it never holds a secret.
type Event struct {
	ID           string         `json:"id"`
	Seq          uint64         `json:"seq"`
	Time         time.Time      `json:"time"`
	ClockSynced  bool           `json:"clock_synced"`
	Type         string         `json:"type"`
	Door         string         `json:"door,omitempty"`
	Input        string         `json:"input,omitempty"`
	CredentialID string         `json:"credential_id,omitempty"`
	HolderID     string         `json:"holder_id,omitempty"`
	Role         Role           `json:"role,omitempty"`
	Reason       Reason         `json:"reason,omitempty"`
	Source       string         `json:"source,omitempty"`
	Detail       map[string]any `json:"detail,omitempty"`
}

// Secret is what was typed or scanned. Its String and LogValue never show
// the content, so a secret that reaches a log line or an error is masked.
type Secret []byte

// String masks the secret.
func (s Secret) String() string { return fmt.Sprintf("[secret, %d bytes]", len(s)) }

// GoString masks the secret in %#v.
func (s Secret) GoString() string { return s.String() }

// LogValue masks the secret in structured logs (slog would otherwise
// write its bytes, base64 in JSON).
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Format masks the secret whatever the verb (%s, %v, %x, %q, ...).
func (s Secret) Format(f fmt.State, verb rune) { fmt.Fprint(f, s.String()) }
