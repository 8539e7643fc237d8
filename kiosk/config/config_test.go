package config

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// testKey is a valid Ed25519 public key in standard base64.
const testKey = "JZbi/aKsCA/WNdPi5BP6/ATiOBgTeoXL9BJEYyHZ5XU="

// Pieces of a minimal valid config.
const (
	okRoot   = "device_id = \"spr-0001\"\n"
	okPortal = "[portal]\nsite_key_file = \"/etc/kioskd/site.key\"\n"
	okDoor   = "[[door]]\nid = \"main\"\nrelay = { chip = \"gpiochip0\", line = 17 }\n"
	okMin    = okRoot + okPortal + okDoor
	// lockBoards are two boards on one RS-485 bus.
	lockBoards = "[[lock_board]]\nname = \"bank-a\"\ndevice = \"/dev/ttyUSB1\"\naddress = 1\n[[lock_board]]\nname = \"bank-b\"\ndevice = \"/dev/ttyUSB1\"\naddress = 2\nchannels = 24\nfeedback = \"inverted\"\n"
	online     = okRoot + "[portal]\nurl = \"https://portal.example.com\"\ntoken_file = \"/etc/kioskd/token\"\nsite_key_file = \"/etc/kioskd/site.key\"\npublic_key = \"" + testKey + "\"\n"
)

func decodeKey(t testing.TB, s string) ed25519.PublicKey {
	t.Helper()
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSpecExample(t *testing.T) {
	c, err := Load("testdata/spec-example.toml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		DeviceID: "spr-0001",
		StateDir: "/var/lib/kioskd",
		Timezone: "America/New_York",
		Location: ny,
		Hardware: "gpio",
		Portal: Portal{
			URL:               "https://portal.example.com",
			TokenFile:         "/etc/kioskd/token",
			SiteKeyFile:       "/etc/kioskd/site.key",
			PublicKey:         decodeKey(t, testKey),
			SyncInterval:      60 * time.Second,
			HeartbeatInterval: 5 * time.Minute,
			PushListen:        ":8443",
			MaxDocumentBytes:  67108864,
		},
		Keypad:  Keypad{PINLength: 6, EntryTimeout: 10 * time.Second},
		Lockout: Lockout{MaxFailures: 5, Window: 10 * time.Minute, Duration: 5 * time.Minute},
		Inputs: []Input{
			{Name: "keypad", Type: "serial-keypad", Device: "/dev/ttyUSB0", Baud: 9600, Doors: []string{"main"}},
			{Name: "scanner", Type: "serial-scanner", Device: "/dev/ttyACM0", Baud: 9600, Kind: "qr"},
			{Name: "matrix-keypad-2", Type: "matrix-keypad", Chip: "gpiochip0",
				Rows: []int{5, 6, 13, 19}, Cols: []int{12, 16, 20, 21},
				Keys: []string{"123A", "456B", "789C", "*0#D"}},
			{Name: "evdev-3", Type: "evdev", Device: "/dev/input/by-id/usb-scanner-event-kbd", Kind: "qr"},
		},
		Doors: []Door{{
			ID: "main", Kind: "room",
			Relay:         Line{Chip: "gpiochip0", Line: 17},
			Pulse:         3 * time.Second,
			Contact:       &Line{Chip: "gpiochip0", Line: 27},
			ExitButton:    &Line{Chip: "gpiochip0", Line: 22},
			HeldOpenAfter: 60 * time.Second,
		}},
		API:  API{Socket: "/run/kioskd/kioskd.sock"},
		Path: "testdata/spec-example.toml",
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got\n%+v\nwant\n%+v", c, want)
	}
	if got := c.InputDoors(0); !reflect.DeepEqual(got, []string{"main"}) {
		t.Errorf("InputDoors(0) = %v", got)
	}
	if got := c.DBPath(); got != "/var/lib/kioskd/kioskd.db" {
		t.Errorf("DBPath = %q", got)
	}
}

func TestSimSample(t *testing.T) {
	c, err := Load("testdata/sim.toml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Hardware != HardwareSim {
		t.Errorf("hardware = %q", c.Hardware)
	}
	if len(c.Inputs) != 1 || c.Inputs[0].Type != InputTerminal {
		t.Errorf("inputs = %+v, want one terminal input", c.Inputs)
	}
	if len(c.Doors) != 1 || c.Doors[0].ID != "main" {
		t.Errorf("doors = %+v, want one door main", c.Doors)
	}
	d := c.Doors[0]
	if d.Buzzer == nil || d.LEDGreen == nil || d.LEDRed == nil {
		t.Errorf("door main: buzzer/LED lines missing: %+v", d)
	}
}

func TestDefault(t *testing.T) {
	d := Default()
	checks := []struct {
		name      string
		got, want any
	}{
		{"state_dir", d.StateDir, "/var/lib/kioskd"},
		{"timezone", d.Timezone, "UTC"},
		{"location", d.Location, time.UTC},
		{"hardware", d.Hardware, "gpio"},
		{"sync_interval", d.Portal.SyncInterval, 60 * time.Second},
		{"heartbeat_interval", d.Portal.HeartbeatInterval, 5 * time.Minute},
		{"max_document_bytes", d.Portal.MaxDocumentBytes, int64(67108864)},
		{"pin_length", d.Keypad.PINLength, 6},
		{"entry_timeout", d.Keypad.EntryTimeout, 10 * time.Second},
		{"max_failures", d.Lockout.MaxFailures, 5},
		{"window", d.Lockout.Window, 10 * time.Minute},
		{"duration", d.Lockout.Duration, 5 * time.Minute},
		{"socket", d.API.Socket, "/run/kioskd/kioskd.sock"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("Default %s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// TestDefaultsApplied parses a minimal file and checks that every key left
// out takes its default.
func TestDefaultsApplied(t *testing.T) {
	doc := okMin + "[[door]]\nid = \"b\"\nrelay = { chip = \"gpiochip0\", line = 18 }\n" +
		"[[input]]\ntype = \"serial-keypad\"\ndevice = \"/dev/ttyUSB0\"\n" +
		"[[input]]\ntype = \"terminal\"\n"
	c, err := Parse([]byte(doc), "test.toml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := Default()
	want.DeviceID = "spr-0001"
	want.Portal.SiteKeyFile = "/etc/kioskd/site.key"
	want.Doors = []Door{
		{ID: "main", Kind: "room", Relay: Line{Chip: "gpiochip0", Line: 17}, Pulse: 3 * time.Second, HeldOpenAfter: 60 * time.Second},
		{ID: "b", Kind: "room", Relay: Line{Chip: "gpiochip0", Line: 18}, Pulse: 3 * time.Second, HeldOpenAfter: 60 * time.Second},
	}
	want.Inputs = []Input{
		{Name: "serial-keypad-0", Type: "serial-keypad", Device: "/dev/ttyUSB0", Baud: 9600},
		{Name: "terminal-1", Type: "terminal"},
	}
	want.Path = "test.toml"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got\n%+v\nwant\n%+v", c, want)
	}
	if got := c.InputDoors(1); !reflect.DeepEqual(got, []string{"main", "b"}) {
		t.Errorf("InputDoors(1) = %v, want every door in file order", got)
	}
}

// TestValid lists configs that must be accepted, with what they must give.
func TestValid(t *testing.T) {
	cases := []struct {
		name  string
		doc   string
		check func(*Config) error
	}{
		{"http to 127.0.0.1", strings.Replace(online, "https://portal.example.com", "http://127.0.0.1:8080", 1) + okDoor, nil},
		{"http to another 127/8 address", strings.Replace(online, "https://portal.example.com", "http://127.9.9.9", 1) + okDoor, nil},
		{"http to ::1", strings.Replace(online, "https://portal.example.com", "http://[::1]:8080", 1) + okDoor, nil},
		{"http to localhost", strings.Replace(online, "https://portal.example.com", "http://LocalHost:8080", 1) + okDoor, nil},
		{"url path, trailing slash trimmed", strings.Replace(online, "https://portal.example.com", "https://portal.example.com/kiosk/", 1) + okDoor,
			func(c *Config) error {
				if c.Portal.URL != "https://portal.example.com/kiosk" {
					return fmt.Errorf("url = %q", c.Portal.URL)
				}
				return nil
			}},
		{"offline kiosk: no url, token or public key", okMin, func(c *Config) error {
			if c.Portal.URL != "" || c.Portal.PublicKey != nil {
				return fmt.Errorf("portal = %+v", c.Portal)
			}
			return nil
		}},
		{"push with TLS", online + "push_listen = \":8443\"\ntls_cert_file = \"/etc/kioskd/push.crt\"\ntls_key_file = \"/etc/kioskd/push.key\"\n" + okDoor, func(c *Config) error {
			if c.Portal.TLSCertFile != "/etc/kioskd/push.crt" || c.Portal.TLSKeyFile != "/etc/kioskd/push.key" {
				return fmt.Errorf("portal = %+v", c.Portal)
			}
			return nil
		}},
		{"intervals of 1s", okRoot + okPortal + "sync_interval = \"1s\"\nheartbeat_interval = \"1s\"\n" + okDoor, func(c *Config) error {
			if c.Portal.SyncInterval != time.Second || c.Portal.HeartbeatInterval != time.Second {
				return fmt.Errorf("portal = %+v", c.Portal)
			}
			return nil
		}},
		{"pulse of 30s", okRoot + okPortal + okDoor + "pulse = \"30s\"\n", func(c *Config) error {
			if c.Doors[0].Pulse != 30*time.Second {
				return fmt.Errorf("pulse = %v", c.Doors[0].Pulse)
			}
			return nil
		}},
		{"doors as an inline array", okRoot + `door = [{ id = "a", relay = { chip = "c", line = 1 } }, { id = "b", kind = "locker", relay = { chip = "c", line = 2, active_low = true } }]` + "\n" + okPortal,
			func(c *Config) error {
				if len(c.Doors) != 2 || c.Doors[1].Kind != "locker" || !c.Doors[1].Relay.ActiveLow {
					return fmt.Errorf("doors = %+v", c.Doors)
				}
				return nil
			}},
		{"portal by dotted keys", okRoot + "portal.site_key_file = \"/k\"\n" + okDoor, nil},
		{"relay as a sub-table", okRoot + okPortal + "[[door]]\nid = \"main\"\n[door.relay]\nchip = \"gpiochip0\"\nline = 4\n", func(c *Config) error {
			if c.Doors[0].Relay.Line != 4 {
				return fmt.Errorf("relay = %+v", c.Doors[0].Relay)
			}
			return nil
		}},
		{"same line number on another chip", okMin + "contact = { chip = \"gpiochip1\", line = 17 }\n", nil},
		{"every output line", okMin + "buzzer = { chip = \"gpiochip0\", line = 1 }\nled_green = { chip = \"gpiochip0\", line = 2 }\nled_red = { chip = \"gpiochip0\", line = 3, active_low = true }\n",
			func(c *Config) error {
				d := c.Doors[0]
				if d.Buzzer == nil || d.Buzzer.Line != 1 || d.LEDGreen == nil || d.LEDGreen.Line != 2 || d.LEDRed == nil || !d.LEDRed.ActiveLow {
					return fmt.Errorf("door = %+v", d)
				}
				return nil
			}},
		{"input serving a locker", okMin + "[[door]]\nid = \"L1\"\nkind = \"locker\"\nrelay = { chip = \"gpiochip0\", line = 30 }\n[[input]]\ntype = \"terminal\"\ndoors = [\"L1\"]\n",
			func(c *Config) error {
				if got := c.InputDoors(0); !reflect.DeepEqual(got, []string{"L1"}) {
					return fmt.Errorf("InputDoors = %v", got)
				}
				return nil
			}},
		{"timezone Europe/Berlin", "timezone = \"Europe/Berlin\"\n" + okMin, func(c *Config) error {
			if c.Location.String() != "Europe/Berlin" {
				return fmt.Errorf("location = %v", c.Location)
			}
			return nil
		}},
		{"lockers on two boards of one bus", okMin + lockBoards + "[[door]]\nid = \"l1\"\nkind = \"locker\"\nlock = { board = \"bank-a\", channel = 1 }\n[[door]]\nid = \"l17\"\nkind = \"locker\"\nlock = { board = \"bank-b\", channel = 24 }\ncontact = { chip = \"gpiochip0\", line = 4 }\n", func(c *Config) error {
			want := []LockBoard{
				{Name: "bank-a", Device: "/dev/ttyUSB1", Baud: 9600, Address: 1, Channels: 16, path: "lock_board[0]"},
				{Name: "bank-b", Device: "/dev/ttyUSB1", Baud: 9600, Address: 2, Channels: 24, InvertedFeedback: true, path: "lock_board[1]"},
			}
			if !reflect.DeepEqual(c.LockBoards, want) {
				return fmt.Errorf("LockBoards = %+v, want %+v", c.LockBoards, want)
			}
			if l := c.Doors[1].Lock; l == nil || *l != (Lock{Board: "bank-a", Channel: 1}) || c.Doors[1].Relay != (Line{}) {
				return fmt.Errorf("door l1 = %+v", c.Doors[1])
			}
			if l := c.Doors[2].Lock; l == nil || *l != (Lock{Board: "bank-b", Channel: 24}) || c.Doors[2].Contact == nil {
				return fmt.Errorf("door l17 = %+v", c.Doors[2])
			}
			if c.Doors[0].Lock != nil {
				return fmt.Errorf("relay door has a lock: %+v", c.Doors[0])
			}
			return nil
		}},
		{"matrix with an unused position", okMin + "[[input]]\ntype = \"matrix-keypad\"\nchip = \"gpiochip0\"\nrows = [1, 2]\ncols = [3, 4]\nkeys = [\"12\", \"# \"]\n", func(c *Config) error {
			if c.Inputs[0].Keys[1] != "# " {
				return fmt.Errorf("keys %q", c.Inputs[0].Keys)
			}
			return nil
		}},
		{"evdev keypad", okMin + "[[input]]\ntype = \"evdev\"\ndevice = \"/dev/input/event3\"\nkind = \"keypad\"\n", nil},
		{"serial scanner of cards at 115200", okMin + "[[input]]\ntype = \"serial-scanner\"\ndevice = \"/dev/ttyACM0\"\nkind = \"card\"\nbaud = 115200\n", func(c *Config) error {
			if c.Inputs[0].Baud != 115200 || c.Inputs[0].Kind != "card" {
				return fmt.Errorf("input = %+v", c.Inputs[0])
			}
			return nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.doc), "test.toml")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if err := checkConsistent(c); err != nil {
				t.Errorf("inconsistent: %v", err)
			}
			if tc.check != nil {
				if err := tc.check(c); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// errorCase is a config with one mistake. The line that must be named is
// marked with a "#!" comment; without a mark the error has no line.
type errorCase struct {
	name string
	doc  string
	key  string // dotted path the error names
	msg  string // part of the message
}

var errorCases = []errorCase{
	// Unknown keys.
	{"unknown top-level key", okRoot + "colour = \"red\" #!\n" + okPortal + okDoor, "colour", "unknown key"},
	{"unknown table", okMin + "[log] #!\nlevel = \"debug\"\n", "log", "unknown key"},
	{"token in the file", okRoot + "[portal]\nsite_key_file = \"/k\"\ntoken = \"s3cr3t-t0ken\" #!\n" + okDoor, "portal.token", "token_file"},
	{"site key in the file", okRoot + "[portal]\nsite_key = \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\" #!\nsite_key_file = \"/k\"\n" + okDoor, "portal.site_key", "site_key_file"},
	{"unknown key in the second door", okMin + "[[door]]\nid = \"b\"\nrelay = { chip = \"gpiochip0\", line = 18 }\ncolour = 1 #!\n", "door[1].colour", "unknown key"},
	{"unknown key in a relay", okRoot + okPortal + "[[door]]\nid = \"main\"\nrelay = { chip = \"gpiochip0\", line = 17, pull = \"up\" } #!\n", "door[0].relay.pull", "unknown key"},
	{"unknown key in an input", okMin + "[[input]]\ntype = \"terminal\"\n[[input]]\ntype = \"terminal\"\ndebounce = \"20ms\" #!\n", "input[1].debounce", "unknown key"},
	{"unknown key in keypad", okMin + "[keypad]\ndigits = 6 #!\n", "keypad.digits", "unknown key"},
	{"unknown key in lockout", okMin + "[lockout]\ntries = 3 #!\n", "lockout.tries", "unknown key"},
	{"unknown key in api", okMin + "[api]\npath = \"/x\" #!\n", "api.path", "unknown key"},
	{"unknown dotted key", okRoot + "portal.site_key_file = \"/k\"\nportal.urll = \"https://x\" #!\n" + okDoor, "portal.urll", "unknown key"},
	{"unknown quoted key", okRoot + "\"device id\" = \"x\" #!\n" + okPortal + okDoor, `"device id"`, "unknown key"},

	// Top level.
	{"device_id missing", okPortal + okDoor, "device_id", "required"},
	{"device_id with a space", "device_id = \"spr 0001\" #!\n" + okPortal + okDoor, "device_id", `"spr 0001" is not a device id`},
	{"device_id ..", "device_id = \"..\" #!\n" + okPortal + okDoor, "device_id", "is not a device id"},
	{"device_id empty", "device_id = \"\" #!\n" + okPortal + okDoor, "device_id", "is not a device id"},
	{"device_id integer", "device_id = 17 #!\n" + okPortal + okDoor, "device_id", "must be a string, not an integer"},
	{"state_dir relative", okRoot + "state_dir = \"state\" #!\n" + okPortal + okDoor, "state_dir", "not an absolute path"},
	{"state_dir empty", okRoot + "state_dir = \"\" #!\n" + okPortal + okDoor, "state_dir", "must not be empty"},
	{"timezone unknown", okRoot + "timezone = \"Mars/Olympus\" #!\n" + okPortal + okDoor, "timezone", "not a known IANA time zone"},
	{"timezone empty", okRoot + "timezone = \"\" #!\n" + okPortal + okDoor, "timezone", "must not be empty"},
	{"hardware unknown", okRoot + "hardware = \"pi\" #!\n" + okPortal + okDoor, "hardware", `"pi" is not one of "gpio", "sim"`},

	// [portal]
	{"url ftp", strings.Replace(online, "url = \"https://portal.example.com\"", "url = \"ftp://portal.example.com\" #!", 1) + okDoor, "portal.url", "not an http(s) URL"},
	{"url plain http to a remote host", strings.Replace(online, "url = \"https://portal.example.com\"", "url = \"http://portal.example.com\" #!", 1) + okDoor, "portal.url", "allowed only to a loopback host"},
	{"url plain http to 128.0.0.1", strings.Replace(online, "url = \"https://portal.example.com\"", "url = \"http://128.0.0.1\" #!", 1) + okDoor, "portal.url", "allowed only to a loopback host"},
	{"url with a password", strings.Replace(online, "url = \"https://portal.example.com\"", "url = \"https://dev:pw@portal.example.com\" #!", 1) + okDoor, "portal.url", "user name or password"},
	{"url with a query", strings.Replace(online, "url = \"https://portal.example.com\"", "url = \"https://portal.example.com/?a=b\" #!", 1) + okDoor, "portal.url", "query"},
	{"url without host", strings.Replace(online, "url = \"https://portal.example.com\"", "url = \"https:///v1\" #!", 1) + okDoor, "portal.url", "not an http(s) URL"},
	{"url empty", strings.Replace(online, "url = \"https://portal.example.com\"", "url = \"\" #!", 1) + okDoor, "portal.url", "must not be empty"},
	{"public_key not base64", strings.Replace(online, testKey+"\"", "not-base64!\" #!", 1) + okDoor, "portal.public_key", "not standard base64"},
	{"public_key base64url", strings.Replace(online, testKey+"\"", "JZbi_aKsCA_WNdPi5BP6_ATiOBgTeoXL9BJEYyHZ5XU=\" #!", 1) + okDoor, "portal.public_key", "not standard base64"},
	{"public_key short", strings.Replace(online, testKey+"\"", "MDEyMzQ1Njc4OWFiY2RlZg==\" #!", 1) + okDoor, "portal.public_key", "holds 16 bytes"},
	{"public_key not a curve point", strings.Replace(online, testKey+"\"", "AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\" #!", 1) + okDoor, "portal.public_key", "not a valid Ed25519 public key"},
	{"public_key missing with url", okRoot + "[portal] #!\nurl = \"https://p.example.com\"\ntoken_file = \"/t\"\nsite_key_file = \"/k\"\n" + okDoor, "portal.public_key", "required"},
	{"token_file missing with url", okRoot + "[portal] #!\nurl = \"https://p.example.com\"\npublic_key = \"" + testKey + "\"\nsite_key_file = \"/k\"\n" + okDoor, "portal.token_file", "required"},
	{"token_file relative", strings.Replace(online, "token_file = \"/etc/kioskd/token\"", "token_file = \"token\" #!", 1) + okDoor, "portal.token_file", "not an absolute path"},
	{"site_key_file missing", okRoot + "[portal] #!\nsync_interval = \"60s\"\n" + okDoor, "portal.site_key_file", "required"},
	{"portal missing", okRoot + okDoor, "portal.site_key_file", "required"},
	{"portal not a table", okRoot + "portal = \"https://p\" #!\n" + okDoor, "portal", "must be a table, not a string"},
	{"sync_interval not a duration", okRoot + okPortal + "sync_interval = \"abc\" #!\n" + okDoor, "portal.sync_interval", `"abc" is not a duration (e.g. "60s")`},
	{"sync_interval under 1s", okRoot + okPortal + "sync_interval = \"500ms\" #!\n" + okDoor, "portal.sync_interval", "shorter than the minimum 1s"},
	{"sync_interval an integer", okRoot + okPortal + "sync_interval = 60 #!\n" + okDoor, "portal.sync_interval", `must be a duration string such as "60s", not an integer`},
	{"heartbeat_interval negative", okRoot + okPortal + "heartbeat_interval = \"-5m\" #!\n" + okDoor, "portal.heartbeat_interval", "must be positive"},
	{"heartbeat_interval zero", okRoot + okPortal + "heartbeat_interval = \"0s\" #!\n" + okDoor, "portal.heartbeat_interval", "must be positive"},
	{"push_listen without port", online + "push_listen = \"8443\" #!\n" + okDoor, "portal.push_listen", "not a host:port"},
	{"push_listen port out of range", online + "push_listen = \":70000\" #!\n" + okDoor, "portal.push_listen", "port number"},
	{"push_listen without public key", okRoot + "[portal] #!\nsite_key_file = \"/k\"\npush_listen = \"127.0.0.1:8443\"\n" + okDoor, "portal.public_key", "required"},
	{"tls cert without key", okRoot + "[portal] #!\nsite_key_file = \"/k\"\ntls_cert_file = \"/c\"\n" + okDoor, "portal.tls_key_file", "required with tls_cert_file"},
	{"tls key without cert", okRoot + okPortal + "tls_cert_file = \"\" #!\ntls_key_file = \"/k\"\n" + okDoor, "portal.tls_cert_file", "required with tls_key_file"},
	{"tls cert relative", okRoot + okPortal + "tls_cert_file = \"push.crt\" #!\ntls_key_file = \"/k\"\n" + okDoor, "portal.tls_cert_file", "not an absolute path"},
	{"max_document_bytes zero", okRoot + okPortal + "max_document_bytes = 0 #!\n" + okDoor, "portal.max_document_bytes", "out of range"},
	{"max_document_bytes a string", okRoot + okPortal + "max_document_bytes = \"64MiB\" #!\n" + okDoor, "portal.max_document_bytes", "must be an integer, not a string"},

	// [keypad], [lockout]
	{"pin_length 3", okMin + "[keypad]\npin_length = 3 #!\n", "keypad.pin_length", "out of range (4 to 12)"},
	{"pin_length 13", okMin + "[keypad]\npin_length = 13 #!\n", "keypad.pin_length", "out of range (4 to 12)"},
	{"pin_length a float", okMin + "[keypad]\npin_length = 6.0 #!\n", "keypad.pin_length", "must be an integer, not a float"},
	{"entry_timeout zero", okMin + "[keypad]\nentry_timeout = \"0s\" #!\n", "keypad.entry_timeout", "must be positive"},
	{"max_failures zero", okMin + "[lockout]\nmax_failures = 0 #!\n", "lockout.max_failures", "out of range"},
	{"window not a duration", okMin + "[lockout]\nwindow = \"ten minutes\" #!\n", "lockout.window", "is not a duration"},
	{"window an integer", okMin + "[lockout]\nwindow = 600 #!\n", "lockout.window", `must be a duration string such as "10m", not an integer`},
	{"lockout duration over 1h", okMin + "[lockout]\nduration = \"2h\" #!\n", "lockout.duration", "longer than the maximum 1h"},

	// [[input]]
	{"input without type", okMin + "[[input]] #!\nname = \"x\"\n", "input[0].type", "required"},
	{"input type unknown", okMin + "[[input]]\ntype = \"keyboard\" #!\n", "input[0].type", `"keyboard" is not one of`},
	{"serial keypad without device", okMin + "[[input]] #!\ntype = \"serial-keypad\"\n", "input[0].device", "required"},
	{"serial keypad with empty device", okMin + "[[input]]\ntype = \"serial-keypad\"\ndevice = \"\" #!\n", "input[0].device", "must not be empty"},
	{"serial keypad with a kind", okMin + "[[input]]\ntype = \"serial-keypad\"\ndevice = \"/dev/ttyUSB0\"\nkind = \"qr\" #!\n", "input[0].kind", "not used by a serial-keypad input"},
	{"serial keypad baud zero", okMin + "[[input]]\ntype = \"serial-keypad\"\ndevice = \"/dev/ttyUSB0\"\nbaud = 0 #!\n", "input[0].baud", "out of range"},
	{"serial keypad baud a string", okMin + "[[input]]\ntype = \"serial-keypad\"\ndevice = \"/dev/ttyUSB0\"\nbaud = \"9600\" #!\n", "input[0].baud", "must be an integer"},
	{"serial scanner without kind", okMin + "[[input]] #!\ntype = \"serial-scanner\"\ndevice = \"/dev/ttyACM0\"\n", "input[0].kind", "required"},
	{"serial scanner of keypad kind", okMin + "[[input]]\ntype = \"serial-scanner\"\ndevice = \"/dev/ttyACM0\"\nkind = \"keypad\" #!\n", "input[0].kind", `"keypad" is not one of "qr", "card"`},
	{"evdev without device", okMin + "[[input]] #!\ntype = \"evdev\"\nkind = \"qr\"\n", "input[0].device", "required"},
	{"evdev without kind", okMin + "[[input]] #!\ntype = \"evdev\"\ndevice = \"/dev/input/event0\"\n", "input[0].kind", "required"},
	{"evdev kind unknown", okMin + "[[input]]\ntype = \"evdev\"\ndevice = \"/dev/input/event0\"\nkind = \"barcode\" #!\n", "input[0].kind", `"barcode" is not one of "qr", "card", "keypad"`},
	{"evdev with baud", okMin + "[[input]]\ntype = \"evdev\"\ndevice = \"/dev/input/event0\"\nkind = \"qr\"\nbaud = 9600 #!\n", "input[0].baud", "not used by a evdev input"},
	{"terminal with a device", okMin + "[[input]]\ntype = \"terminal\"\ndevice = \"/dev/tty\" #!\n", "input[0].device", "not used by a terminal input"},
	{"matrix without chip", okMin + "[[input]] #!\ntype = \"matrix-keypad\"\nrows = [1]\ncols = [2]\nkeys = [\"1\"]\n", "input[0].chip", "required"},
	{"matrix without keys", okMin + "[[input]] #!\ntype = \"matrix-keypad\"\nchip = \"gpiochip0\"\nrows = [1]\ncols = [2]\n", "input[0].keys", "required"},
	{"matrix rows empty", okMin + "[[input]]\ntype = \"matrix-keypad\"\nchip = \"gpiochip0\"\nrows = [] #!\ncols = [2]\nkeys = []\n", "input[0].rows", "is empty"},
	{"matrix row a string", okMin + "[[input]]\ntype = \"matrix-keypad\"\nchip = \"gpiochip0\"\nrows = [1, \"5\"] #!\ncols = [2]\nkeys = [\"1\", \"2\"]\n", "input[0].rows[1]", "must be an integer, not a string"},
	{"matrix row negative", okMin + "[[input]]\ntype = \"matrix-keypad\"\nchip = \"gpiochip0\"\nrows = [-1] #!\ncols = [2]\nkeys = [\"1\"]\n", "input[0].rows[0]", "out of range"},
	{"matrix rows on a multi-line array", okMin + "[[input]]\ntype = \"matrix-keypad\"\nchip = \"gpiochip0\"\nrows = [\n  1,\n  2,\n  -3, #!\n]\ncols = [4]\nkeys = [\"1\", \"2\", \"3\"]\n", "input[0].rows[2]", "out of range"},
	{"matrix keys for fewer rows", okMin + "[[input]]\ntype = \"matrix-keypad\"\nchip = \"gpiochip0\"\nrows = [1, 2]\ncols = [3, 4]\nkeys = [\"12\"] #!\n", "input[0].keys", "has 1 strings for 2 rows"},
	{"matrix key string too long", okMin + "[[input]]\ntype = \"matrix-keypad\"\nchip = \"gpiochip0\"\nrows = [1, 2]\ncols = [3, 4]\nkeys = [\"12\", \"345\"] #!\n", "input[0].keys[1]", "has 3 keys for 2 columns"},
	{"matrix key unknown", okMin + "[[input]]\ntype = \"matrix-keypad\"\nchip = \"gpiochip0\"\nrows = [1]\ncols = [3, 4]\nkeys = [\"1x\"] #!\n", "input[0].keys[0]", "holds a key other than"},
	{"matrix key twice", okMin + "[[input]]\ntype = \"matrix-keypad\"\nchip = \"gpiochip0\"\nrows = [1, 2]\ncols = [3, 4]\nkeys = [\"12\", \"31\"] #!\n", "input[0].keys[1]", `key '1' is already in input[0].keys[0]`},
	{"matrix of spaces only", okMin + "[[input]]\ntype = \"matrix-keypad\"\nchip = \"gpiochip0\"\nrows = [1]\ncols = [3, 4]\nkeys = [\"  \"] #!\n", "input[0].keys", "maps no key"},
	{"input names twice", okMin + "[[input]]\nname = \"kp\"\ntype = \"terminal\"\n[[input]]\nname = \"kp\" #!\ntype = \"terminal\"\n", "input[1].name", `"kp" is already the name of input[0]`},
	{"input name clashes with a default name", okMin + "[[input]]\nname = \"terminal-1\"\ntype = \"terminal\"\n[[input]] #!\ntype = \"terminal\"\n", "input[1].name", `"terminal-1" is already the name`},
	{"input name empty", okMin + "[[input]]\nname = \"\" #!\ntype = \"terminal\"\n", "input[0].name", "must not be empty"},
	{"input name with a newline", okMin + "[[input]]\nname = \"a\\nb\" #!\ntype = \"terminal\"\n", "input[0].name", "control character"},
	{"input door unknown", okMin + "[[input]]\ntype = \"terminal\"\ndoors = [\"main\", \"back\"] #!\n", "input[0].doors[1]", `no door has id "back"`},
	{"input doors empty", okMin + "[[input]]\ntype = \"terminal\"\ndoors = [] #!\n", "input[0].doors", "is empty"},
	{"input doors not strings", okMin + "[[input]]\ntype = \"terminal\"\ndoors = [1] #!\n", "input[0].doors[0]", "must be a string, not an integer"},
	{"input doors a string", okMin + "[[input]]\ntype = \"terminal\"\ndoors = \"main\" #!\n", "input[0].doors", "must be an array, not a string"},
	{"input door listed twice", okMin + "[[input]]\ntype = \"terminal\"\ndoors = [\"main\", \"main\"] #!\n", "input[0].doors[1]", "listed twice"},

	{"input not a table", okRoot + "input = [\"terminal\"] #!\n" + okPortal + okDoor, "input[0]", "must be a table, not a string"},
	{"inputs after a bad one keep their index", okRoot + "input = [1, { type = \"terminal\", doors = [\"back\"] }] #!\n" + okPortal + okDoor, "input[1].doors[0]", `no door has id "back"`},

	// [[door]]
	{"no door", okRoot + okPortal, "door", "required: at least one [[door]]"},
	{"door an empty array", okRoot + "door = [] #!\n" + okPortal, "door", "at least one [[door]]"},
	{"door without id", okRoot + okPortal + "[[door]] #!\nrelay = { chip = \"gpiochip0\", line = 17 }\n", "door[0].id", "required"},
	{"door id twice", okMin + "[[door]]\nid = \"main\" #!\nrelay = { chip = \"gpiochip0\", line = 18 }\n", "door[1].id", `"main" is already the id of door[0] (line 4)`},
	{"doors after a bad one keep their index", okRoot + "door = [1, { id = \"a\", relay = { chip = \"c\", line = 1 } },\n  { id = \"a\", relay = { chip = \"c\", line = 2 } }] #!\n" + okPortal, "door[2].id", `"a" is already the id of door[1] (line 2)`},
	{"door id with a space", okRoot + okPortal + "[[door]]\nid = \"main door\" #!\nrelay = { chip = \"gpiochip0\", line = 17 }\n", "door[0].id", "is not a door id"},
	{"door kind unknown", okMin + "kind = \"cupboard\" #!\n", "door[0].kind", `"cupboard" is not one of "room", "locker"`},
	{"door without relay", okRoot + okPortal + "[[door]] #!\nid = \"main\"\n", "door[0].relay", "required"},
	{"relay without line", okRoot + okPortal + "[[door]]\nid = \"main\"\nrelay = { chip = \"gpiochip0\" } #!\n", "door[0].relay.line", "required"},
	{"relay without chip", okRoot + okPortal + "[[door]]\nid = \"main\"\nrelay = { line = 17 } #!\n", "door[0].relay.chip", "required"},
	{"relay chip empty", okRoot + okPortal + "[[door]]\nid = \"main\"\nrelay = { chip = \"\", line = 17 } #!\n", "door[0].relay.chip", "must not be empty"},
	{"relay line negative", okRoot + okPortal + "[[door]]\nid = \"main\"\nrelay = { chip = \"gpiochip0\", line = -1 } #!\n", "door[0].relay.line", "out of range"},
	{"relay line a string", okRoot + okPortal + "[[door]]\nid = \"main\"\nrelay = { chip = \"gpiochip0\", line = \"17\" } #!\n", "door[0].relay.line", "must be an integer, not a string"},
	{"relay active_low a string", okRoot + okPortal + "[[door]]\nid = \"main\"\nrelay = { chip = \"gpiochip0\", line = 17, active_low = \"yes\" } #!\n", "door[0].relay.active_low", "must be true or false"},
	{"relay a string", okRoot + okPortal + "[[door]]\nid = \"main\"\nrelay = \"gpiochip0:17\" #!\n", "door[0].relay", "must be a table, not a string"},
	{"relay line of a sub-table", okRoot + okPortal + "[[door]]\nid = \"main\"\n[door.relay]\nchip = \"gpiochip0\"\nline = 1.5 #!\n", "door[0].relay.line", "must be an integer, not a float"},
	{"pulse over 30s", okMin + "pulse = \"31s\" #!\n", "door[0].pulse", "longer than the maximum 30s"},
	{"pulse zero", okMin + "pulse = \"0s\" #!\n", "door[0].pulse", "must be positive"},
	{"pulse an integer", okMin + "pulse = 3 #!\n", "door[0].pulse", `must be a duration string such as "3s", not an integer`},
	{"pulse of the second door", okMin + "[[door]]\nid = \"b\"\nrelay = { chip = \"gpiochip0\", line = 18 }\npulse = \"1 minute\" #!\n", "door[1].pulse", `"1 minute" is not a duration (e.g. "3s")`},
	{"held_open_after bad", okMin + "held_open_after = \"x\" #!\n", "door[0].held_open_after", "is not a duration"},
	{"contact a string", okMin + "contact = \"gpiochip0\" #!\n", "door[0].contact", "must be a table"},
	{"contact on the relay's line", okMin + "contact = { chip = \"gpiochip0\", line = 17 } #!\n", "door[0].contact", "gpiochip0 line 17 is already used by door[0].relay (line 6)"},
	{"two doors on one relay", okMin + "[[door]]\nid = \"b\"\nrelay = { chip = \"/dev/gpiochip0\", line = 17 } #!\n", "door[1].relay", "line 17 is already used by door[0].relay"},
	{"buzzer and red LED on one line", okMin + "buzzer = { chip = \"gpiochip0\", line = 5 }\nled_red = { chip = \"gpiochip0\", line = 5 } #!\n", "door[0].led_red", "is already used by door[0].buzzer"},
	{"matrix row on a relay line", okMin + "[[input]]\ntype = \"matrix-keypad\"\nchip = \"gpiochip0\"\nrows = [5, 17] #!\ncols = [6]\nkeys = [\"1\", \"2\"]\n", "input[0].rows[1]", "line 17 is already used by door[0].relay"},
	{"matrix row and column on one line", okMin + "[[input]]\ntype = \"matrix-keypad\"\nchip = \"gpiochip0\"\nrows = [5]\ncols = [6, 5] #!\nkeys = [\"12\"]\n", "input[0].cols[1]", "line 5 is already used by input[0].rows[0]"},

	// [[lock_board]], door lock
	{"door with relay and lock", okMin + "lock = { board = \"bank-a\", channel = 1 } #!\n" + lockBoards, "door[0].lock", "either a relay line or a lock-board channel"},
	{"lock of an unknown board", okMin + lockBoards + "[[door]]\nid = \"l1\"\nlock = { board = \"bank-z\", channel = 1 } #!\n", "door[1].lock.board", `no [[lock_board]] has name "bank-z"`},
	{"lock channel zero", okMin + lockBoards + "[[door]]\nid = \"l1\"\nlock = { board = \"bank-a\", channel = 0 } #!\n", "door[1].lock.channel", "out of range"},
	{"lock channel beyond the board", okMin + lockBoards + "[[door]]\nid = \"l1\"\nlock = { board = \"bank-a\", channel = 17 } #!\n", "door[1].lock.channel", "beyond the 16 channels"},
	{"lock without channel", okMin + lockBoards + "[[door]]\nid = \"l1\"\nlock = { board = \"bank-a\" } #!\n", "door[1].lock.channel", "required"},
	{"lock with an unknown key", okMin + lockBoards + "[[door]]\nid = \"l1\"\nlock = { board = \"bank-a\", channel = 2, line = 3 } #!\n", "door[1].lock.line", "unknown"},
	{"two doors on one channel", okMin + lockBoards + "[[door]]\nid = \"l1\"\nlock = { board = \"bank-a\", channel = 2 }\n[[door]]\nid = \"l2\"\nlock = { board = \"bank-a\", channel = 2 } #!\n", "door[2].lock", `channel 2 of lock_board "bank-a" is already used by door[1].lock`},
	{"board without address", okMin + "[[lock_board]] #!\nname = \"b\"\ndevice = \"/dev/ttyUSB1\"\n", "lock_board[0].address", "required"},
	{"board without device", okMin + "[[lock_board]] #!\nname = \"b\"\naddress = 1\n", "lock_board[0].device", "required"},
	{"board address 256", okMin + "[[lock_board]]\nname = \"b\"\ndevice = \"/dev/ttyUSB1\"\naddress = 256 #!\n", "lock_board[0].address", "out of range"},
	{"board names twice", okMin + lockBoards + "[[lock_board]]\nname = \"bank-a\" #!\ndevice = \"/dev/ttyUSB2\"\naddress = 1\n", "lock_board[2].name", `"bank-a" is already the name of lock_board lock_board[0]`},
	{"two boards at one address", okMin + lockBoards + "[[lock_board]]\nname = \"bank-c\"\ndevice = \"/dev/ttyUSB1\"\naddress = 2 #!\n", "lock_board[2].address", "are both address 2 on /dev/ttyUSB1"},
	{"two speeds on one bus", okMin + lockBoards + "[[lock_board]]\nname = \"bank-c\"\ndevice = \"/dev/ttyUSB1\"\naddress = 3\nbaud = 19200 #!\n", "lock_board[2].baud", "boards on one bus"},
	{"board feedback unknown", okMin + "[[lock_board]]\nname = \"b\"\ndevice = \"/dev/ttyUSB1\"\naddress = 1\nfeedback = \"reversed\" #!\n", "lock_board[0].feedback", `"reversed" is not one of "normal", "inverted"`},
	{"board with 65 channels", okMin + "[[lock_board]]\nname = \"b\"\ndevice = \"/dev/ttyUSB1\"\naddress = 1\nchannels = 65 #!\n", "lock_board[0].channels", "out of range"},
	{"board key unknown", okMin + "[[lock_board]]\nname = \"b\"\ndevice = \"/dev/ttyUSB1\"\naddress = 1\nparity = \"none\" #!\n", "lock_board[0].parity", "unknown"},

	// [api]
	{"socket relative", okMin + "[api]\nsocket = \"kioskd.sock\" #!\n", "api.socket", "not an absolute path"},
	{"socket too long", okMin + "[api]\nsocket = \"/" + strings.Repeat("s", 120) + "\" #!\n", "api.socket", "a Unix socket path holds at most 107"},
	{"socket an integer", okMin + "[api]\nsocket = 1 #!\n", "api.socket", "must be a string"},
}

// markedLine returns the 1-based line holding the "#!" mark, or 0.
func markedLine(doc string) int {
	for i, l := range strings.Split(doc, "\n") {
		if strings.Contains(l, "#!") {
			return i + 1
		}
	}
	return 0
}

func TestErrors(t *testing.T) {
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.doc), "test.toml")
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", c)
			}
			if c != nil {
				t.Errorf("Parse returned a Config with its error")
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error does not wrap ErrConfig: %v", err)
			}
			prefix := "test.toml: " + tc.key + ": "
			if n := markedLine(tc.doc); n > 0 {
				prefix = fmt.Sprintf("test.toml:%d: %s: ", n, tc.key)
			}
			found := false
			for _, line := range strings.Split(err.Error(), "\n") {
				if strings.HasPrefix(line, prefix) && strings.Contains(line, tc.msg) {
					found = true
				}
			}
			if !found {
				t.Errorf("no error line starts with %q and contains %q; got:\n%v", prefix, tc.msg, err)
			}
			if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "MDEyMzQ1") {
				t.Errorf("error shows a secret from the file:\n%v", err)
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.File != "test.toml" {
				t.Errorf("error is not an *Error naming the file: %#v", err)
			}
		})
	}
}

func TestSyntaxError(t *testing.T) {
	cases := []struct {
		name, doc string
		line      int
	}{
		{"unterminated table header", okRoot + "[portal\nsite_key_file = \"/k\"\n", 2},
		{"unterminated string", okRoot + "[portal]\nsite_key_file = \"/k\n", 3},
		{"duplicate key", okRoot + okPortal + "site_key_file = \"/j\"\n", 4},
		{"duplicate table", okMin + "[portal]\n", 7},
		{"after a byte-order mark", "\xef\xbb\xbf" + okRoot + "[portal\nsite_key_file = \"/k\"\n", 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), "test.toml")
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
			re := regexp.MustCompile(fmt.Sprintf(`^test\.toml:%d:\d+: TOML syntax: `, tc.line))
			if !re.MatchString(err.Error()) {
				t.Errorf("error %q does not match %s", err, re)
			}
		})
	}
}

// TestTooDeep checks that a document nested deeper than any config needs
// is refused, with the line, before the TOML library sees it.
func TestTooDeep(t *testing.T) {
	cases := []struct {
		name, doc string
		line      int
	}{
		{"dotted key", okMin + "a" + strings.Repeat(".a", 40) + " = 1\n", 7},
		{"arrays", okRoot + "x = " + strings.Repeat("[", 40) + strings.Repeat("]", 40) + "\n" + okPortal + okDoor, 2},
		{"inline tables", okRoot + "x = " + strings.Repeat("{ a = ", 40) + "1" + strings.Repeat(" }", 40) + "\n" + okPortal + okDoor, 2},
		{"table header", okMin + "[" + strings.Repeat("a.", 40) + "a]\n", 7},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), "test.toml")
			want := fmt.Sprintf("test.toml:%d: nested more than 32 levels deep", tc.line)
			if !errors.Is(err, ErrConfig) || !strings.HasPrefix(fmt.Sprint(err), want) {
				t.Errorf("err = %v, want %q", err, want)
			}
		})
	}
	// 16 levels (as deep as errors can be placed) are still TOML's business.
	doc := okMin + "[keypad]\n" + "x" + strings.Repeat(".a", 15) + " = 1 #!\n"
	_, err := Parse([]byte(doc), "test.toml")
	if want := "test.toml:8: keypad.x: unknown key"; !strings.HasPrefix(fmt.Sprint(err), want) {
		t.Errorf("err = %v, want prefix %q", err, want)
	}
}

// TestAllErrorsAtOnce checks that a file with several mistakes gets one
// error line for each, in line order.
func TestAllErrorsAtOnce(t *testing.T) {
	doc := "device_id = \"a b\"\n" + // 1
		"hardware = \"pi\"\n" + // 2
		"[portal]\n" + // 3
		"site_key_file = \"/k\"\n" + // 4
		"sync_interval = \"abc\"\n" + // 5
		"[[door]]\n" + // 6
		"id = \"main\"\n" + // 7
		"relay = { chip = \"gpiochip0\", line = 17 }\n" + // 8
		"pulse = \"40s\"\n" + // 9
		"[[input]]\n" + // 10
		"type = \"terminal\"\n" + // 11
		"doors = [\"back\"]\n" // 12
	_, err := Parse([]byte(doc), "kioskd.toml")
	if err == nil {
		t.Fatal("Parse accepted it")
	}
	want := []string{
		"kioskd.toml:1: device_id: ",
		"kioskd.toml:2: hardware: ",
		"kioskd.toml:5: portal.sync_interval: \"abc\" is not a duration (e.g. \"60s\")",
		"kioskd.toml:9: door[0].pulse: ",
		"kioskd.toml:12: input[0].doors[0]: ",
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) {
		t.Fatalf("got %d error lines, want %d:\n%v", len(got), len(want), err)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("line %d = %q, want prefix %q", i+1, got[i], want[i])
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kioskd.toml")
	if err := os.WriteFile(path, []byte(okMin+"pulse = \"x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":7: door[0].pulse: ") {
		t.Errorf("Load error = %v, want it to name %s:7", err, path)
	}

	missing := filepath.Join(dir, "nope.toml")
	_, err = Load(missing)
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Load of a missing file: %v, want it to name %s", err, missing)
	}
	if errors.Is(err, ErrConfig) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want os.ErrNotExist and not ErrConfig", err)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReadToken(t *testing.T) {
	cases := []struct {
		name    string
		content *string // nil: no file
		want    string  // token, or "" when an error is expected
		errHas  string
		config  bool // the error wraps ErrConfig
	}{
		{"trimmed", ptr("  dev-token-123\r\n\t"), "dev-token-123", "", false},
		{"empty", ptr(" \n "), "", "is empty", true},
		{"space inside", ptr("s3cr3t tok\n"), "", "not printable ASCII", true},
		{"missing file", nil, "", "no such file", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "token")
			if tc.content != nil {
				path = writeFile(t, "token", *tc.content)
			}
			c := Default()
			c.Portal.TokenFile = path
			tok, err := c.ReadToken()
			if tc.want != "" {
				if err != nil || tok != tc.want {
					t.Fatalf("ReadToken = %q, %v; want %q", tok, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ReadToken = %q, want an error", tok)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("error %q does not name %s and say %q", err, path, tc.errHas)
			}
			if errors.Is(err, ErrConfig) != tc.config {
				t.Errorf("errors.Is(err, ErrConfig) = %v, want %v", !tc.config, tc.config)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error shows the token: %v", err)
			}
		})
	}
	if _, err := Default().ReadToken(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "portal.token_file") {
		t.Errorf("ReadToken without token_file: %v", err)
	}
}

func ptr(s string) *string { return &s }

func TestReadSiteKey(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	enc := base64.StdEncoding.EncodeToString(key)
	cases := []struct {
		name    string
		content *string
		ok      bool
		errHas  string
		config  bool
	}{
		{"trimmed", ptr("\n  " + enc + "  \n"), true, "", false},
		{"16 bytes", ptr(base64.StdEncoding.EncodeToString(key[:16])), false, "holds 16 bytes, want 32", true},
		{"33 bytes", ptr(base64.StdEncoding.EncodeToString(append(key, 'x'))), false, "holds 33 bytes, want 32", true},
		{"bad base64", ptr("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY!"), false, "not standard base64", true},
		{"base64url", ptr(base64.URLEncoding.EncodeToString([]byte{0xfb, 0xff, 0xbf, 0xfb, 0xff, 0xbf, 0xfb, 0xff, 0xbf, 0xfb, 0xff, 0xbf, 0xfb, 0xff, 0xbf, 0xfb, 0xff, 0xbf, 0xfb, 0xff, 0xbf, 0xfb, 0xff, 0xbf, 0xfb, 0xff, 0xbf, 0xfb, 0xff, 0xbf, 0xfb, 0xff})), false, "not standard base64", true},
		{"unpadded", ptr(strings.TrimRight(enc, "=")), false, "not standard base64", true},
		{"empty", ptr("\n"), false, "is empty", true},
		{"missing file", nil, false, "no such file", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "site.key")
			if tc.content != nil {
				path = writeFile(t, "site.key", *tc.content)
			}
			c := Default()
			c.Portal.SiteKeyFile = path
			got, err := c.ReadSiteKey()
			if tc.ok {
				if err != nil || string(got) != string(key) {
					t.Fatalf("ReadSiteKey = %x, %v; want %x", got, err, key)
				}
				return
			}
			if err == nil {
				t.Fatalf("ReadSiteKey = %x, want an error", got)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("error %q does not name %s and say %q", err, path, tc.errHas)
			}
			if errors.Is(err, ErrConfig) != tc.config {
				t.Errorf("errors.Is(err, ErrConfig) = %v, want %v", !tc.config, tc.config)
			}
			if strings.Contains(err.Error(), "MDEyMzQ1") {
				t.Errorf("error shows the key: %v", err)
			}
		})
	}
	if _, err := Default().ReadSiteKey(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "portal.site_key_file") {
		t.Errorf("ReadSiteKey without site_key_file: %v", err)
	}
}

// checkConsistent checks, independently of the parser, what every Config
// that Parse returns must satisfy.
func checkConsistent(c *Config) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !regexp.MustCompile(`^[A-Za-z0-9._-]+$`).MatchString(c.DeviceID) || strings.Trim(c.DeviceID, ".") == "" {
		bad("device id %q", c.DeviceID)
	}
	if !filepath.IsAbs(c.StateDir) || !filepath.IsAbs(c.API.Socket) || !filepath.IsAbs(c.DBPath()) {
		bad("paths not absolute: %q %q", c.StateDir, c.API.Socket)
	}
	if c.Location == nil || c.Timezone == "" {
		bad("no location")
	}
	if c.Hardware != "gpio" && c.Hardware != "sim" {
		bad("hardware %q", c.Hardware)
	}
	p := c.Portal
	if p.SiteKeyFile == "" {
		bad("no site key file")
	}
	if p.URL != "" {
		if p.TokenFile == "" || len(p.PublicKey) != ed25519.PublicKeySize {
			bad("url without token file or public key")
		}
		if !strings.HasPrefix(p.URL, "https://") && !strings.HasPrefix(p.URL, "http://127.") &&
			!strings.HasPrefix(p.URL, "http://[::1]") && !strings.HasPrefix(strings.ToLower(p.URL), "http://localhost") {
			bad("url %q", p.URL)
		}
	}
	if p.PushListen != "" && len(p.PublicKey) != ed25519.PublicKeySize {
		bad("push without public key")
	}
	if (p.TLSCertFile == "") != (p.TLSKeyFile == "") {
		bad("one TLS file without the other")
	}
	if p.SyncInterval < time.Second || p.HeartbeatInterval < time.Second || p.MaxDocumentBytes <= 0 {
		bad("portal %+v", p)
	}
	if c.Keypad.PINLength < 4 || c.Keypad.PINLength > 12 || c.Keypad.EntryTimeout <= 0 {
		bad("keypad %+v", c.Keypad)
	}
	if c.Lockout.MaxFailures < 1 || c.Lockout.Window <= 0 || c.Lockout.Duration <= 0 || c.Lockout.Duration > time.Hour {
		bad("lockout %+v", c.Lockout)
	}
	if len(c.Doors) == 0 {
		bad("no door")
	}
	ids := map[string]bool{}
	lines := map[string]bool{}
	claim := func(chip string, n int) {
		k := fmt.Sprintf("%s/%d", strings.TrimPrefix(chip, "/dev/"), n)
		if chip == "" || n < 0 || lines[k] {
			bad("line %s claimed twice or empty", k)
		}
		lines[k] = true
	}
	for _, d := range c.Doors {
		if ids[d.ID] || !regexp.MustCompile(`^[A-Za-z0-9._-]+$`).MatchString(d.ID) {
			bad("door id %q", d.ID)
		}
		ids[d.ID] = true
		if d.Kind != "room" && d.Kind != "locker" {
			bad("door kind %q", d.Kind)
		}
		if d.Pulse <= 0 || d.Pulse > 30*time.Second || d.HeldOpenAfter <= 0 {
			bad("door %q times", d.ID)
		}
		boards := map[string]LockBoard{}
		for _, b := range c.LockBoards {
			boards[b.Name] = b
		}
		if d.Lock != nil {
			if b, ok := boards[d.Lock.Board]; !ok || d.Lock.Channel < 1 || d.Lock.Channel > b.Channels || d.Relay != (Line{}) {
				bad("door %q lock %+v", d.ID, *d.Lock)
			}
			claim("lock_board:"+d.Lock.Board, d.Lock.Channel)
		} else {
			claim(d.Relay.Chip, d.Relay.Line)
		}
		for _, l := range []*Line{d.Contact, d.ExitButton, d.Buzzer, d.LEDGreen, d.LEDRed} {
			if l != nil {
				claim(l.Chip, l.Line)
			}
		}
	}
	names := map[string]bool{}
	for i, in := range c.Inputs {
		if in.Name == "" || names[in.Name] {
			bad("input name %q", in.Name)
		}
		names[in.Name] = true
		ds := c.InputDoors(i)
		if len(ds) == 0 {
			bad("input %q serves no door", in.Name)
		}
		for _, d := range ds {
			if !ids[d] {
				bad("input %q serves unknown door %q", in.Name, d)
			}
		}
		switch in.Type {
		case "serial-keypad":
			if in.Device == "" || in.Baud <= 0 {
				bad("input %+v", in)
			}
		case "serial-scanner":
			if in.Device == "" || in.Baud <= 0 || (in.Kind != "qr" && in.Kind != "card") {
				bad("input %+v", in)
			}
		case "evdev":
			if in.Device == "" || (in.Kind != "qr" && in.Kind != "card" && in.Kind != "keypad") {
				bad("input %+v", in)
			}
		case "matrix-keypad":
			if in.Chip == "" || len(in.Rows) == 0 || len(in.Cols) == 0 || len(in.Keys) != len(in.Rows) {
				bad("input %+v", in)
			}
			for _, k := range in.Keys {
				if len(k) != len(in.Cols) {
					bad("input %+v", in)
				}
			}
			for _, n := range append(append([]int(nil), in.Rows...), in.Cols...) {
				claim(in.Chip, n)
			}
		case "terminal":
		default:
			bad("input type %q", in.Type)
		}
	}
	return errors.Join(errs...)
}
