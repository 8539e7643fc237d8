// Package config reads kioskd's configuration file, the TOML file of SPEC
// §7 (/etc/kioskd/kioskd.toml by default).
//
// Parsing is strict, so that a technician finds every mistake before the
// kiosk starts: an unknown key, a value of the wrong type and a bad value
// are each an error that names the file, the line and the key's dotted
// path ("kioskd.toml:14: portal.sync_interval: ..."), and all of a file's
// errors are returned at once, one per line. kioskd and `kioskctl
// check-config` both use Load, so they say the same.
//
// Secrets never live in the file: the portal token and the site key are
// read from the files named by portal.token_file and portal.site_key_file
// (ReadToken, ReadSiteKey) when kioskd needs them.
//
// Choices where the spec is silent:
//   - timezone defaults to "UTC"; the IANA database is embedded
//     (time/tzdata), so a board without /usr/share/zoneinfo still loads it.
//   - An input without a name is named "<type>-<index>", index being its
//     0-based position among the [[input]] tables of the file, the same
//     index error messages use ("input[2]").
//   - Paths (state_dir, the secret and TLS files, api.socket) must be
//     absolute, so their meaning does not depend on the working directory.
//   - portal.url is optional: without it the kiosk runs offline and takes
//     documents from files (SPEC §6.5). portal.site_key_file is always
//     required, since without the site key no PIN, QR code or card can be
//     checked.
//   - Besides the keys of SPEC §7, a door may name LED and buzzer lines
//     (SPEC §4): buzzer, led_green and led_red, inline tables like relay.
//   - A door may instead name a channel of an RS-485 lock controller
//     board: lock = { board, channel } and a [[lock_board]] table with
//     name, device, baud, address and channels (SPEC §4 lockers).
//   - No two doors or inputs may claim the same GPIO line or board channel; "gpiochip0"
//     and "/dev/gpiochip0" name the same chip.
package config

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // timezone must load on boards without a zoneinfo database
	"unicode"
)

// ErrConfig is wrapped by every error about the content of a config file
// or of a secret file it names: a syntax error, an unknown key, a value of
// the wrong type or out of range, a missing required key, an empty token
// or a malformed site key. It is not wrapped by I/O errors such as a
// missing file.
var ErrConfig = errors.New("config error")

// DefaultPath is where kioskd looks for its config file when no -config
// flag is given.
const DefaultPath = "/etc/kioskd/kioskd.toml"

// Defaults of SPEC §7, for keys left out of the file.
const (
	DefaultStateDir          = "/var/lib/kioskd"
	DefaultTimezone          = "UTC"
	DefaultHardware          = HardwareGPIO
	DefaultSyncInterval      = 60 * time.Second
	DefaultHeartbeatInterval = 5 * time.Minute
	DefaultMaxDocumentBytes  = 64 << 20
	DefaultPINLength         = 6
	DefaultEntryTimeout      = 10 * time.Second
	DefaultMaxFailures       = 5
	DefaultLockoutWindow     = 10 * time.Minute
	DefaultLockoutDuration   = 5 * time.Minute
	DefaultDoorKind          = "room"
	DefaultPulse             = 3 * time.Second
	DefaultHeldOpenAfter     = 60 * time.Second
	DefaultBaud              = 9600
	DefaultSocket            = "/run/kioskd/kioskd.sock"
	DefaultBoardChannels     = 16
)

// Limits on values.
const (
	// MaxPulse is the longest relay pulse a door may have (SPEC §4).
	MaxPulse = 30 * time.Second
	// MinInterval is the shortest sync or heartbeat interval (SPEC §7).
	MinInterval = time.Second
	// MaxLockoutDuration is the cap of a doubled lockout (SPEC §2); a
	// first lockout may not be longer.
	MaxLockoutDuration = time.Hour
	// MinPINLength and MaxPINLength bound keypad.pin_length.
	MinPINLength, MaxPINLength = 4, 12
)

// Hardware values.
const (
	HardwareGPIO = "gpio" // real GPIO lines through the kernel's character device
	HardwareSim  = "sim"  // every GPIO line simulated in memory (SPEC §7)
)

// Input types.
const (
	InputSerialKeypad  = "serial-keypad"
	InputMatrixKeypad  = "matrix-keypad"
	InputEvdev         = "evdev"
	InputSerialScanner = "serial-scanner"
	InputTerminal      = "terminal"
)

// Config is a parsed and validated config file. Every field holds either
// the file's value or its default; Default returns a Config of defaults
// only.
type Config struct {
	// DeviceID names this kiosk to the portal (device_id; required).
	DeviceID string
	// StateDir holds kioskd.db and the credential files (state_dir).
	StateDir string
	// Timezone is the IANA time zone schedules are read in (timezone,
	// default "UTC").
	Timezone string
	// Location is Timezone, loaded.
	Location *time.Location
	// Hardware is HardwareGPIO or HardwareSim (hardware, default "gpio").
	Hardware string
	Portal   Portal
	Keypad   Keypad
	Lockout  Lockout
	// Inputs are the [[input]] tables in file order.
	Inputs []Input
	// Doors are the [[door]] tables in file order; there is at least one.
	Doors []Door
	// LockBoards are the [[lock_board]] tables in file order: RS-485 lock
	// controller boards whose channels doors name in their lock table.
	LockBoards []LockBoard
	API        API
	// Path is the file the config came from, as given to Load or Parse.
	Path string
}

// Portal is the [portal] table: how to reach the portal and check what it
// sends.
type Portal struct {
	// URL is the portal's base URL without a trailing slash; empty for a
	// kiosk that runs offline. https, or http to a loopback host only.
	URL string
	// TokenFile holds the device's bearer token (required with URL).
	TokenFile string
	// SiteKeyFile holds the 32-byte site key in standard base64
	// (always required).
	SiteKeyFile string
	// PublicKey is the portal's Ed25519 key that signs sync documents and
	// QR tokens (required with URL or PushListen; nil when absent).
	PublicKey ed25519.PublicKey
	// SyncInterval is the pull period (default 60s, at least 1s).
	SyncInterval time.Duration
	// HeartbeatInterval is the heartbeat period (default 5m, at least 1s).
	HeartbeatInterval time.Duration
	// PushListen is the host:port of the push server; empty disables
	// pushes.
	PushListen string
	// TLSCertFile and TLSKeyFile serve pushes over TLS; both or neither,
	// and only with PushListen.
	TLSCertFile, TLSKeyFile string
	// MaxDocumentBytes bounds one page of a sync document (default 64 MiB).
	MaxDocumentBytes int64
}

// Keypad is the [keypad] table: PIN entry on every keypad.
type Keypad struct {
	// PINLength is the number of digits that submits at once (default 6,
	// 4 to 12).
	PINLength int
	// EntryTimeout clears an entry this long after its last key (default
	// 10s).
	EntryTimeout time.Duration
}

// Lockout is the [lockout] table, applied to every input (SPEC §2).
type Lockout struct {
	// MaxFailures denied entries within Window lock the input (default 5).
	MaxFailures int
	// Window is the default 10m.
	Window time.Duration
	// Duration is the length of a first lockout (default 5m, at most 1h).
	Duration time.Duration
}

// Input is one [[input]] table: a keypad, scanner or card reader.
type Input struct {
	// Name names the input in events, lockouts and status; default
	// "<type>-<index>". Unique.
	Name string
	// Type is one of the Input* constants.
	Type string
	// Device is the device file of serial-keypad, serial-scanner and evdev
	// inputs.
	Device string
	// Baud is the speed of serial inputs (default 9600); 0 for others.
	Baud int
	// Doors lists the door ids the input serves; nil means every door
	// (see Config.InputDoors).
	Doors []string
	// Kind is what the input reads: "qr" or "card" for a serial scanner,
	// "qr", "card" or "keypad" for evdev; empty for others.
	Kind string
	// Chip, Rows, Cols and Keys describe a matrix keypad: the GPIO chip,
	// the row and column line offsets, and one string per row naming the
	// key at each column.
	Chip       string
	Rows, Cols []int
	Keys       []string
}

// Line is one GPIO line: an inline table { chip, line, active_low }.
type Line struct {
	// Chip names the GPIO chip ("gpiochip0"); any name under hardware =
	// "sim".
	Chip string
	// Line is the line's offset on the chip.
	Line int
	// ActiveLow says the line is active at low level (default false).
	ActiveLow bool
}

// Door is one [[door]] table: a room door or a locker compartment.
type Door struct {
	// ID names the door in credentials, commands and events. Unique.
	ID string
	// Kind is "room" (default) or "locker".
	Kind string
	// Relay is the lock's relay output (required unless Lock is set).
	Relay Line
	// Lock names a lock-board channel that opens the door instead of a
	// relay line (lock = { board, channel }); nil for relay doors. Its
	// door state comes from the board's status unless Contact is set.
	Lock *Lock
	// Pulse is how long a grant energises the relay (default 3s, at most
	// 30s).
	Pulse time.Duration
	// Contact (active = open) and ExitButton (active = pressed) are
	// optional inputs; Buzzer, LEDGreen and LEDRed optional outputs. nil
	// when not configured.
	Contact, ExitButton, Buzzer, LEDGreen, LEDRed *Line
	// HeldOpenAfter is when an open door is reported held open (default
	// 60s).
	HeldOpenAfter time.Duration
}

// LockBoard is one [[lock_board]] table: an RS-485 lock controller board
// driving a bank of locker compartments (kioskd's extension of SPEC §4
// and §7). Boards on one serial port share a bus and its speed and have
// distinct addresses.
type LockBoard struct {
	// Name names the board in doors' lock tables (required, unique).
	Name string
	// Device is the RS-485 serial port (required), e.g. /dev/ttyUSB1.
	Device string
	// Baud is the bus speed (default 9600).
	Baud int
	// Address is the board's address on the bus, 0 to 255 (required).
	Address int
	// Channels is the number of locks on the board (default 16, at most
	// 64).
	Channels int
	// InvertedFeedback says the board's lock feedback reads the other
	// way round (feedback = "inverted"; default "normal": a set status
	// bit is a shut lock). Wrong polarity makes every open unconfirmed.
	InvertedFeedback bool

	path string // "lock_board[i]", for error messages
}

// Lock is a door's lock table: a channel of a lock board.
type Lock struct {
	// Board is the Name of a LockBoard.
	Board string
	// Channel is the lock number on the board, from 1.
	Channel int
}

// API is the [api] table: kioskd's local API for kioskctl.
type API struct {
	// Socket is the Unix socket path (default /run/kioskd/kioskd.sock).
	Socket string
	// MetricsListen is an optional TCP address (host:port) that serves
	// only the Prometheus metrics, for a scraper on the network; "" (the
	// default) serves them on the socket alone. kioskd's extension of
	// SPEC §7.
	MetricsListen string
}

// Default returns a Config holding every default of SPEC §7 and nothing
// else: no device id, portal, input or door. It is not a valid config by
// itself.
func Default() *Config {
	return &Config{
		StateDir: DefaultStateDir,
		Timezone: DefaultTimezone,
		Location: time.UTC,
		Hardware: DefaultHardware,
		Portal: Portal{
			SyncInterval:      DefaultSyncInterval,
			HeartbeatInterval: DefaultHeartbeatInterval,
			MaxDocumentBytes:  DefaultMaxDocumentBytes,
		},
		Keypad:  Keypad{PINLength: DefaultPINLength, EntryTimeout: DefaultEntryTimeout},
		Lockout: Lockout{MaxFailures: DefaultMaxFailures, Window: DefaultLockoutWindow, Duration: DefaultLockoutDuration},
		API:     API{Socket: DefaultSocket},
	}
}

// maxFileBytes bounds what Load and the secret readers read, so a path to
// the wrong file (a device, a log) fails instead of eating memory.
const maxFileBytes = 1 << 20

// Load reads the config file at path and parses it (see Parse). A file
// that cannot be read is an error naming the path that does not wrap
// ErrConfig.
func Load(path string) (*Config, error) {
	data, err := readFile(path, maxFileBytes)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path)
}

// readFile reads at most limit bytes of the file at path; a larger file is
// an error.
func readFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return data, nil
}

// Parse parses and validates the TOML config in data; path names it in
// errors and is kept in Config.Path. On any problem it returns no Config
// and an error that wraps ErrConfig and lists every problem found, one
// per line, each as "path:line: key: what is wrong" (a TOML syntax error,
// which stops parsing, as "path:line:col: ...").
func Parse(data []byte, path string) (*Config, error) {
	return parse(data, path)
}

// maxSecretBytes bounds a secret file.
const maxSecretBytes = 64 << 10

// ReadToken reads the portal token from portal.token_file, white space
// around it ignored. An unset token_file, an empty file or one holding
// characters that cannot go into an HTTP header are errors wrapping
// ErrConfig; the errors name the file, never its content.
func (c *Config) ReadToken() (string, error) {
	if c.Portal.TokenFile == "" {
		return "", fmt.Errorf("%w: portal.token_file is not set", ErrConfig)
	}
	data, err := readFile(c.Portal.TokenFile, maxSecretBytes)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	tok := string(bytes.TrimSpace(data))
	if tok == "" {
		return "", fmt.Errorf("%w: token file %s is empty", ErrConfig, c.Portal.TokenFile)
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] < 0x21 || tok[i] > 0x7e {
			return "", fmt.Errorf("%w: token file %s: the token holds a character (at byte %d) that is not printable ASCII", ErrConfig, c.Portal.TokenFile, i)
		}
	}
	return tok, nil
}

// SiteKeySize is the size in bytes of the site key.
const SiteKeySize = 32

// ReadSiteKey reads the site key from portal.site_key_file: 32 bytes in
// standard base64, white space around it ignored. An unset site_key_file,
// bad base64 or the wrong length are errors wrapping ErrConfig; the errors
// name the file, never its content.
func (c *Config) ReadSiteKey() ([]byte, error) {
	if c.Portal.SiteKeyFile == "" {
		return nil, fmt.Errorf("%w: portal.site_key_file is not set", ErrConfig)
	}
	data, err := readFile(c.Portal.SiteKeyFile, maxSecretBytes)
	if err != nil {
		return nil, fmt.Errorf("read site key file: %w", err)
	}
	text := bytes.TrimSpace(data)
	if len(text) == 0 {
		return nil, fmt.Errorf("%w: site key file %s is empty", ErrConfig, c.Portal.SiteKeyFile)
	}
	key := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	n, err := base64.StdEncoding.Decode(key, text)
	if err != nil {
		// CorruptInputError holds an offset, not content.
		return nil, fmt.Errorf("%w: site key file %s is not standard base64: %v", ErrConfig, c.Portal.SiteKeyFile, err)
	}
	if n != SiteKeySize {
		return nil, fmt.Errorf("%w: site key file %s holds %d bytes, want %d (standard base64)", ErrConfig, c.Portal.SiteKeyFile, n, SiteKeySize)
	}
	return key[:n], nil
}

// InputDoors returns the ids of the doors input i serves: its doors key,
// or every configured door in file order when it has none.
func (c *Config) InputDoors(i int) []string {
	if ds := c.Inputs[i].Doors; len(ds) > 0 {
		return append([]string(nil), ds...)
	}
	ids := make([]string, len(c.Doors))
	for j, d := range c.Doors {
		ids[j] = d.ID
	}
	return ids
}

// DBPath returns the path of the main database, kioskd.db in StateDir.
func (c *Config) DBPath() string {
	return filepath.Join(c.StateDir, "kioskd.db")
}

// Error is one problem found in a config file. Its message reads
// "file:line: key: what is wrong"; the line is left out when unknown.
type Error struct {
	File string // the file, as given to Parse
	Line int    // 1-based; 0 when the problem has no line (a missing key)
	Col  int    // 1-based column, for syntax errors only
	Key  string // dotted path of the key ("door[1].pulse"); empty for syntax errors
	Msg  string // what is wrong
	Err  error  // the underlying error, if any (a toml.ParseError)
}

// Error formats the problem on one line: control characters (a newline in
// a TOML error message, say) are escaped.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(oneLine(e.File))
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Col > 0 {
			fmt.Fprintf(&b, ":%d", e.Col)
		}
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(oneLine(e.Key))
		b.WriteString(": ")
	}
	b.WriteString(oneLine(e.Msg))
	return b.String()
}

// oneLine escapes the control characters of s, Go style.
func oneLine(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Unwrap returns ErrConfig and the underlying error, if any.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrConfig, e.Err}
	}
	return []error{ErrConfig}
}
