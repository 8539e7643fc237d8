package packaging

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"kioskd/kiosk/config"
)

// testKey is a valid Ed25519 public key in standard base64, standing in
// for the placeholder of the packaged file.
const testKey = "JZbi/aKsCA/WNdPi5BP6/ATiOBgTeoXL9BJEYyHZ5XU="

// setting matches a commented-out setting ("#key = value" or a table
// header "#[[door]]"); prose comments start with "# ".
var setting = regexp.MustCompile(`^#(\[\[?[a-z_]+\]\]?|([a-z_]+)\s*=)`)

// header matches an active or commented-out table header.
var header = regexp.MustCompile(`^#?\[\[?([a-z_]+)\]\]?\s*$`)

func readShipped(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("kioskd.toml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// uncomment removes the "#" of every commented-out setting for which keep
// returns true; keep gets the table the line is in ("" for the top level;
// a second table of one name is "door2", a third "door3") and the key (""
// for a table header).
func uncomment(text string, keep func(table, key string) bool) string {
	lines := strings.Split(text, "\n")
	table := ""
	seen := map[string]int{}
	for i, l := range lines {
		if m := header.FindStringSubmatch(l); m != nil {
			table = m[1]
			if seen[m[1]]++; seen[m[1]] > 1 {
				table = fmt.Sprintf("%s%d", m[1], seen[m[1]])
			}
		}
		m := setting.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if keep(table, m[2]) {
			lines[i] = strings.TrimPrefix(l, "#")
		}
	}
	return strings.ReplaceAll(strings.Join(lines, "\n"), "PORTAL-PUBLIC-KEY-BASE64", testKey)
}

// required uncomments what a technician must set: device_id and one door.
func required(table, key string) bool {
	return table == "" && key == "device_id" || table == "door" && slices.Contains([]string{"", "id", "relay"}, key)
}

func TestShippedConfigAsksForDeviceAndDoor(t *testing.T) {
	_, err := config.Parse([]byte(readShipped(t)), "kioskd.toml")
	if !errors.Is(err, config.ErrConfig) {
		t.Fatalf("Parse of the file as shipped: %v, want an ErrConfig", err)
	}
	problems := strings.Split(strings.TrimSpace(err.Error()), "\n")
	want := []string{"device_id: required", "door: required"}
	if len(problems) != len(want) {
		t.Fatalf("Parse of the file as shipped: %d problems, want %d (%q):\n%v", len(problems), len(want), want, err)
	}
	for i, w := range want {
		if !strings.Contains(problems[i], w) {
			t.Errorf("problem %d = %q, want it to say %q", i, problems[i], w)
		}
	}
}

func TestShippedConfigOnceSet(t *testing.T) {
	c, err := config.Parse([]byte(uncomment(readShipped(t), required)), "kioskd.toml")
	if err != nil {
		t.Fatalf("Parse with device_id and a door set: %v", err)
	}
	def := config.Default()
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"device_id", c.DeviceID, "spr-0001"},
		{"hardware", c.Hardware, config.HardwareGPIO},
		{"state_dir (StateDirectory=kioskd)", c.StateDir, "/var/lib/kioskd"},
		{"api.socket (RuntimeDirectory=kioskd)", c.API.Socket, "/run/kioskd/kioskd.sock"},
		{"portal.token_file (LoadCredential=token)", c.Portal.TokenFile, "/run/credentials/kioskd.service/token"},
		{"portal.site_key_file (LoadCredential=site.key)", c.Portal.SiteKeyFile, "/run/credentials/kioskd.service/site.key"},
		{"portal.url (offline until set)", c.Portal.URL, ""},
		{"portal.push_listen", c.Portal.PushListen, ""},
		{"keypad", c.Keypad, def.Keypad},
		{"lockout", c.Lockout, def.Lockout},
		{"timezone", c.Timezone, def.Timezone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !reflect.DeepEqual(tc.got, tc.want) {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

// TestCommentedDefaultsAreDefaults checks the file's promise that a
// setting left commented out takes the value shown: uncommenting every
// setting that shows a default changes nothing.
func TestCommentedDefaultsAreDefaults(t *testing.T) {
	// Commented-out settings that show an example, not the default.
	examples := map[string]bool{
		"device_id": true, "timezone": true, "url": true, "public_key": true,
		"push_listen": true, "tls_cert_file": true, "tls_key_file": true,
		"contact": true, "exit_button": true, "buzzer": true, "led_green": true, "led_red": true,
	}
	shipped := readShipped(t)
	base := uncomment(shipped, required)
	// The lock board and its locker door are an example of their own.
	all := uncomment(shipped, func(table, key string) bool {
		return required(table, key) || strings.TrimRight(table, "0123456789") != "input" && table != "lock_board" && table != "door2" && !examples[key]
	})
	if all == base {
		t.Fatal("no commented-out default found")
	}
	a, err := config.Parse([]byte(base), "kioskd.toml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := config.Parse([]byte(all), "kioskd.toml")
	if err != nil {
		t.Fatalf("Parse with every default uncommented: %v", err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("uncommenting the defaults changed the config:\n as shipped: %+v\n uncommented: %+v", a, b)
	}
}

// TestEverySettingDocumented uncomments every setting of the file: the
// result must be a valid config that sets every key of SPEC §7 (and the
// door feedback lines), so the file documents them all and its examples
// are right.
func TestEverySettingDocumented(t *testing.T) {
	all := uncomment(readShipped(t), func(string, string) bool { return true })
	c, err := config.Parse([]byte(all), "kioskd.toml")
	if err != nil {
		t.Fatalf("Parse with every setting uncommented: %v", err)
	}
	if len(c.Inputs) != 4 || len(c.Doors) != 2 || len(c.LockBoards) != 1 {
		t.Errorf("%d inputs, %d doors and %d lock boards, want the 4 input examples, a door and a locker, and a lock board",
			len(c.Inputs), len(c.Doors), len(c.LockBoards))
	}
	var raw map[string]any
	if _, err := toml.Decode(all, &raw); err != nil {
		t.Fatal(err)
	}
	has := func(m map[string]any, key string) bool { _, ok := m[key]; return ok }
	sub := func(key string) map[string]any { m, _ := raw[key].(map[string]any); return m }
	tables := func(key string) []map[string]any { m, _ := raw[key].([]map[string]any); return m }
	want := map[string][]string{
		"":           {"device_id", "state_dir", "timezone", "hardware"},
		"portal":     {"url", "token_file", "site_key_file", "public_key", "sync_interval", "heartbeat_interval", "push_listen", "tls_cert_file", "tls_key_file", "max_document_bytes"},
		"keypad":     {"pin_length", "entry_timeout"},
		"lockout":    {"max_failures", "window", "duration"},
		"input":      {"name", "type", "device", "baud", "doors", "kind", "chip", "rows", "cols", "keys"},
		"door":       {"id", "kind", "relay", "lock", "pulse", "contact", "exit_button", "held_open_after", "buzzer", "led_green", "led_red"},
		"lock_board": {"name", "device", "baud", "address", "channels", "feedback"},
		"api":        {"socket"},
	}
	for table, keys := range want {
		for _, key := range keys {
			var ok bool
			switch table {
			case "":
				ok = has(raw, key)
			case "input", "door", "lock_board":
				for _, m := range tables(table) {
					ok = ok || has(m, key)
				}
			default:
				ok = has(sub(table), key)
			}
			if !ok {
				t.Errorf("%s.%s is not documented in kioskd.toml", table, key)
			}
		}
	}
	types := map[string]bool{}
	for _, in := range c.Inputs {
		types[in.Type] = true
	}
	for _, typ := range []string{config.InputSerialKeypad, config.InputSerialScanner, config.InputMatrixKeypad, config.InputEvdev} {
		if !types[typ] {
			t.Errorf("no example of an input of type %q", typ)
		}
	}
}
