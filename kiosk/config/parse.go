package config

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"filippo.io/edwards25519"
	"github.com/BurntSushi/toml"
)

// The keys each table knows, in the order SPEC §7 lists them.
var (
	rootKeys    = []string{"device_id", "state_dir", "timezone", "hardware", "portal", "keypad", "lockout", "input", "door", "lock_board", "api"}
	portalKeys  = []string{"url", "token_file", "site_key_file", "public_key", "sync_interval", "heartbeat_interval", "push_listen", "tls_cert_file", "tls_key_file", "max_document_bytes"}
	keypadKeys  = []string{"pin_length", "entry_timeout"}
	lockoutKeys = []string{"max_failures", "window", "duration"}
	inputKeys   = []string{"name", "type", "device", "baud", "doors", "kind", "chip", "rows", "cols", "keys"}
	doorKeys    = []string{"id", "kind", "relay", "lock", "pulse", "contact", "exit_button", "buzzer", "led_green", "led_red", "held_open_after"}
	lineKeys    = []string{"chip", "line", "active_low"}
	lockKeys    = []string{"board", "channel"}
	boardKeys   = []string{"name", "device", "baud", "address", "channels", "feedback"}
	apiKeys     = []string{"socket", "metrics_listen"}

	// inputTypeKeys lists, per input type, the keys it uses besides name,
	// type and doors; any other input key is an error for that type.
	inputTypeKeys = map[string][]string{
		InputSerialKeypad:  {"device", "baud"},
		InputSerialScanner: {"device", "baud", "kind"},
		InputMatrixKeypad:  {"chip", "rows", "cols", "keys"},
		InputEvdev:         {"device", "kind"},
		InputTerminal:      {},
	}
	inputTypes = []string{InputSerialKeypad, InputMatrixKeypad, InputEvdev, InputSerialScanner, InputTerminal}
)

const (
	maxLineOffset = 65535   // bound of a GPIO line offset
	maxBaud       = 4000000 // the fastest common UART speed
	maxFailures   = 1000    // bound of lockout.max_failures
	maxSocketPath = 107     // sun_path holds 108 bytes with the NUL
)

func parse(data []byte, file string) (*Config, error) {
	name := file
	if name == "" {
		name = "config"
	}
	sc := keyLines(data)
	if sc.depth > maxNesting {
		return nil, &Error{File: name, Line: sc.depthLine, Msg: fmt.Sprintf("nested more than %d levels deep (a kioskd config needs 4)", maxNesting)}
	}
	var raw map[string]any
	if _, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			line, col := syntaxPos(data, pe.Position)
			return nil, &Error{File: name, Line: line, Col: col, Msg: "TOML syntax: " + pe.Message, Err: err}
		}
		return nil, &Error{File: name, Msg: "TOML: " + err.Error(), Err: err}
	}
	p := &parser{file: name, lines: sc.lines}
	c := p.config(raw)
	if err := p.err(); err != nil {
		return nil, err
	}
	c.Path = file
	return c, nil
}

// syntaxPos returns the line and column of a syntax error. The library's
// Line is one too far when the error is at a line's end (it has counted
// the newline already), so both come from the byte offset instead.
func syntaxPos(data []byte, pos toml.Position) (line, col int) {
	start := pos.Start
	// The library skips a byte-order mark before it counts offsets.
	switch {
	case bytes.HasPrefix(data, []byte("\xef\xbb\xbf")):
		start += 3
	case bytes.HasPrefix(data, []byte("\xff\xfe")), bytes.HasPrefix(data, []byte("\xfe\xff")):
		start += 2
	}
	if start < 0 || start > len(data) {
		return pos.Line, pos.Col
	}
	before := data[:start]
	return bytes.Count(before, []byte("\n")) + 1, start - bytes.LastIndexByte(before, '\n')
}

// parser walks the decoded document, filling a Config and collecting
// errors.
type parser struct {
	file  string
	lines lineTable
	errs  []*Error
}

// errorf records an error about the key at path.
func (p *parser) errorf(path, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: p.lines.lineOf(path), Key: path, Msg: fmt.Sprintf(format, args...)})
}

// err returns every recorded error in line order (errors without a line
// first), joined, or nil.
func (p *parser) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
	errs := make([]error, len(p.errs))
	for i, e := range p.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// table is one TOML table being read.
type table struct {
	p     *parser
	path  string // "" for the root
	name  string // how messages name it: "the top level", "[portal]", ...
	m     map[string]any
	known []string
	index int // the element's index, for an element of an array of tables
}

func (p *parser) table(path, name string, m map[string]any, known []string) *table {
	return &table{p: p, path: path, name: name, m: m, known: known}
}

// key returns the path of key in t.
func (t *table) key(key string) string { return keyPath(t.path, key) }

func (t *table) has(key string) bool {
	_, ok := t.m[key]
	return ok
}

func (t *table) errorf(key, format string, args ...any) {
	t.p.errorf(t.key(key), format, args...)
}

// required reports a missing key.
func (t *table) required(key, what string) {
	if t.path == "" {
		t.p.errorf(key, "required: %s", what)
		return
	}
	t.p.errorf(t.key(key), "required in %s: %s", t.name, what)
}

// unknown reports every key of t that it does not know, in file order.
// Their values are never shown: a secret pasted into the file stays out
// of the error.
func (t *table) unknown() {
	var keys []string
	for k := range t.m {
		if !slices.Contains(t.known, k) {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		li, lj := t.p.lines.lineOf(t.key(keys[i])), t.p.lines.lineOf(t.key(keys[j]))
		if li != lj {
			return li < lj
		}
		return keys[i] < keys[j]
	})
	for _, k := range keys {
		hint := ""
		switch k {
		case "token", "site_key":
			if t.path == "portal" {
				hint = fmt.Sprintf("; secrets never go in this file: put it in a file of its own and name that file with %s_file", k)
			}
		}
		t.errorf(k, "unknown key (%s knows %s)%s", t.name, strings.Join(t.known, ", "), hint)
	}
}

// typeName names the TOML type of a decoded value.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date-time"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return "a date or time"
}

// quote quotes a value for a message, shortened when long.
func quote(s string) string {
	const max = 60
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}

// str returns the string at key; ok is false when the key is absent or not
// a string (which is reported).
func (t *table) str(key string) (string, bool) {
	v, ok := t.m[key]
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		t.errorf(key, "must be a string, not %s", typeName(v))
		return "", false
	}
	return s, true
}

// nonEmpty returns the non-empty string at key; present says the key was
// there at all (an empty or mistyped value is reported).
func (t *table) nonEmpty(key, example string) (s string, present bool) {
	if !t.has(key) {
		return "", false
	}
	s, ok := t.str(key)
	if ok && s == "" {
		t.errorf(key, "must not be empty (e.g. %s = %s)", key, example)
	}
	return s, true
}

// absPath returns the absolute path at key, or def when absent.
func (t *table) absPath(key, def, example string) string {
	s, present := t.nonEmpty(key, strconv.Quote(example))
	if !present {
		return def
	}
	if s != "" && !filepath.IsAbs(s) {
		t.errorf(key, "%s is not an absolute path (e.g. %q)", quote(s), example)
	}
	return s
}

// oneOf returns the string at key, which must be one of choices; def when
// absent.
func (t *table) oneOf(key, def string, choices ...string) string {
	s, ok := t.str(key)
	if !ok {
		return def
	}
	if !slices.Contains(choices, s) {
		t.errorf(key, "%s is not one of %s", quote(s), quoteAll(choices))
	}
	return s
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// duration returns the duration at key, def when absent. It must be a
// string Go's time.ParseDuration reads, at least min and, when max > 0, at
// most max.
func (t *table) duration(key string, def, min, max time.Duration) time.Duration {
	v, ok := t.m[key]
	if !ok {
		return def
	}
	s, ok := v.(string)
	if !ok {
		t.errorf(key, "must be a duration string such as %q, not %s", fmtDur(def), typeName(v))
		return def
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		t.errorf(key, "%s is not a duration (e.g. %q)", quote(s), fmtDur(def))
	case d <= 0:
		t.errorf(key, "%s must be positive", quote(s))
	case d < min:
		t.errorf(key, "%s is shorter than the minimum %s", quote(s), fmtDur(min))
	case max > 0 && d > max:
		t.errorf(key, "%s is longer than the maximum %s", quote(s), fmtDur(max))
	default:
		return d
	}
	return def
}

// fmtDur writes a round duration the way the config file would: "60s",
// "5m", "1h".
func fmtDur(d time.Duration) string {
	switch {
	case d%time.Second != 0 || d <= 0:
		return d.String()
	case d <= 2*time.Minute || d%time.Minute != 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	case d%time.Hour != 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
}

// integer returns the integer at key, def when absent; it must lie in
// [min, max].
func (t *table) integer(key string, def, min, max int64) int64 {
	v, ok := t.m[key]
	if !ok {
		return def
	}
	n, ok := t.intValue(t.key(key), v)
	if !ok {
		return def
	}
	if n < min || n > max {
		t.errorf(key, "%d is out of range (%d to %d)", n, min, max)
		return def
	}
	return n
}

// intValue checks that v is an integer.
func (t *table) intValue(path string, v any) (int64, bool) {
	n, ok := v.(int64)
	if !ok {
		t.p.errorf(path, "must be an integer, not %s", typeName(v))
	}
	return n, ok
}

// boolean returns the boolean at key, false when absent.
func (t *table) boolean(key string) bool {
	v, ok := t.m[key]
	if !ok {
		return false
	}
	b, ok := v.(bool)
	if !ok {
		t.errorf(key, "must be true or false, not %s", typeName(v))
	}
	return b
}

// array returns the elements of the array at key; ok is false when absent
// or not an array (reported).
func (t *table) array(key string) ([]any, bool) {
	v, ok := t.m[key]
	if !ok {
		return nil, false
	}
	switch a := v.(type) {
	case []any:
		return a, true
	case []map[string]any:
		out := make([]any, len(a))
		for i, m := range a {
			out[i] = m
		}
		return out, true
	}
	t.errorf(key, "must be an array, not %s", typeName(v))
	return nil, false
}

// strings returns the array of strings at key; ok is false when absent or
// malformed (reported).
func (t *table) strings(key string) ([]string, bool) {
	a, ok := t.array(key)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(a))
	for i, v := range a {
		s, isStr := v.(string)
		if !isStr {
			t.p.errorf(indexPath(t.key(key), i), "must be a string, not %s", typeName(v))
			ok = false
			continue
		}
		out = append(out, s)
	}
	return out, ok
}

// lineOffsets returns the array of GPIO line offsets at key.
func (t *table) lineOffsets(key string) ([]int, bool) {
	a, ok := t.array(key)
	if !ok {
		return nil, false
	}
	out := make([]int, 0, len(a))
	for i, v := range a {
		path := indexPath(t.key(key), i)
		n, isInt := t.intValue(path, v)
		if !isInt {
			ok = false
			continue
		}
		if n < 0 || n > maxLineOffset {
			t.p.errorf(path, "line offset %d is out of range (0 to %d)", n, maxLineOffset)
			ok = false
			continue
		}
		out = append(out, int(n))
	}
	return out, ok
}

// sub returns the table at key, or nil when absent or not a table
// (reported).
func (t *table) sub(key, name string, known []string) *table {
	v, ok := t.m[key]
	if !ok {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.errorf(key, "must be a table, not %s", typeName(v))
		return nil
	}
	return t.p.table(t.key(key), name, m, known)
}

// tables returns the array of tables at key ([[key]] or key = [{...}]).
func (t *table) tables(key, name string, known []string) []*table {
	a, ok := t.array(key)
	if !ok {
		return nil
	}
	out := make([]*table, 0, len(a))
	for i, v := range a {
		path := indexPath(t.key(key), i)
		m, ok := v.(map[string]any)
		if !ok {
			t.p.errorf(path, "must be a table, not %s", typeName(v))
			continue
		}
		et := t.p.table(path, fmt.Sprintf("[[%s]]", name), m, known)
		et.index = i
		out = append(out, et)
	}
	return out
}

// validID reports whether s is a non-empty id of [A-Za-z0-9._-], and not
// "." or "..", which would act as path steps in a portal URL.
func validID(s string) bool {
	if s == "" || strings.Trim(s, ".") == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func (p *parser) config(raw map[string]any) *Config {
	c := Default()
	root := p.table("", "the top level", raw, rootKeys)
	root.unknown()

	if id, ok := root.str("device_id"); ok {
		if !validID(id) {
			root.errorf("device_id", "%s is not a device id: use letters, digits, '.', '_' and '-' (e.g. \"spr-0001\")", quote(id))
		}
		c.DeviceID = id
	} else if !root.has("device_id") {
		root.required("device_id", `the id the portal knows this kiosk by (e.g. device_id = "spr-0001")`)
	}

	c.StateDir = root.absPath("state_dir", DefaultStateDir, DefaultStateDir)

	if tz, present := root.nonEmpty("timezone", `"America/New_York"`); present && tz != "" {
		loc, err := time.LoadLocation(tz)
		if err != nil {
			root.errorf("timezone", "%s is not a known IANA time zone (e.g. \"America/New_York\")", quote(tz))
		} else {
			c.Timezone, c.Location = tz, loc
		}
	}

	c.Hardware = root.oneOf("hardware", DefaultHardware, HardwareGPIO, HardwareSim)

	p.portal(c, root)

	if kp := root.sub("keypad", "[keypad]", keypadKeys); kp != nil {
		kp.unknown()
		c.Keypad.PINLength = int(kp.integer("pin_length", DefaultPINLength, MinPINLength, MaxPINLength))
		c.Keypad.EntryTimeout = kp.duration("entry_timeout", DefaultEntryTimeout, 0, 0)
	}

	if lo := root.sub("lockout", "[lockout]", lockoutKeys); lo != nil {
		lo.unknown()
		c.Lockout.MaxFailures = int(lo.integer("max_failures", DefaultMaxFailures, 1, maxFailures))
		c.Lockout.Window = lo.duration("window", DefaultLockoutWindow, 0, 0)
		c.Lockout.Duration = lo.duration("duration", DefaultLockoutDuration, 0, MaxLockoutDuration)
	}

	boards := map[string]*LockBoard{} // name -> board
	for _, bt := range root.tables("lock_board", "lock_board", boardKeys) {
		b := p.lockBoard(bt)
		if b.Name != "" {
			if first, dup := boards[b.Name]; dup {
				bt.errorf("name", "%s is already the name of lock_board %s", quote(b.Name), first.path)
			} else {
				boards[b.Name] = &b
			}
		}
		c.LockBoards = append(c.LockBoards, b)
	}
	for i := range c.LockBoards {
		for j := range i {
			a, b := c.LockBoards[j], c.LockBoards[i]
			if a.Device == b.Device && a.Address == b.Address && a.Device != "" {
				p.errorf(keyPath(b.path, "address"), "%s and %s are both address %d on %s", a.path, b.path, b.Address, b.Device)
			} else if a.Device == b.Device && a.Baud != b.Baud {
				p.errorf(keyPath(b.path, "baud"), "%d differs from %s's %d: boards on one bus (%s) share its speed", b.Baud, a.path, a.Baud, b.Device)
			}
		}
	}

	claims := lineClaims{}
	doorIDs := map[string]string{} // id -> path of the door that has it
	for _, dt := range root.tables("door", "door", doorKeys) {
		d := p.door(dt, claims, boards)
		if d.ID != "" {
			if first, dup := doorIDs[d.ID]; dup {
				dt.errorf("id", "%s is already the id of %s (line %d)", quote(d.ID), first, p.lines.lineOf(first))
			} else {
				doorIDs[d.ID] = dt.path
			}
		}
		c.Doors = append(c.Doors, d)
	}
	if a, ok := root.m["door"].([]any); !root.has("door") || ok && len(a) == 0 {
		root.required("door", "at least one [[door]] table")
	}

	names := map[string]string{} // name -> path of the input that has it
	for _, it := range root.tables("input", "input", inputKeys) {
		in := p.input(it, claims)
		for j, id := range in.Doors {
			if _, ok := doorIDs[id]; !ok && len(c.Doors) > 0 {
				p.errorf(indexPath(it.key("doors"), j), "no door has id %s (doors: %s)", quote(id), quoteAll(sortedKeys(doorIDs)))
			}
		}
		if in.Name != "" {
			if first, dup := names[in.Name]; dup {
				p.errorf(it.key("name"), "%s is already the name of %s (line %d)", quote(in.Name), first, p.lines.lineOf(first))
			} else {
				names[in.Name] = it.path
			}
		}
		c.Inputs = append(c.Inputs, in)
	}

	if at := root.sub("api", "[api]", apiKeys); at != nil {
		at.unknown()
		c.API.Socket = at.absPath("socket", DefaultSocket, DefaultSocket)
		if len(c.API.Socket) > maxSocketPath {
			at.errorf("socket", "path is %d bytes long; a Unix socket path holds at most %d", len(c.API.Socket), maxSocketPath)
		}
		if s, ok := at.str("metrics_listen"); ok && s != "" {
			if msg := checkListen(s); msg != "" {
				at.errorf("metrics_listen", "%s %s", quote(s), msg)
			}
			c.API.MetricsListen = s
		}
	}
	return c
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (p *parser) portal(c *Config, root *table) {
	pt := root.sub("portal", "[portal]", portalKeys)
	if pt == nil {
		if !root.has("portal") {
			p.errorf("portal.site_key_file", "required: a [portal] table with site_key_file, the file holding the site key")
		}
		return
	}
	pt.unknown()
	pc := &c.Portal

	if u, present := pt.nonEmpty("url", `"https://portal.example.com"`); present && u != "" {
		if msg := checkURL(u); msg != "" {
			pt.errorf("url", "%s %s", quote(u), msg)
		}
		pc.URL = strings.TrimRight(u, "/")
	}
	pc.TokenFile = pt.absPath("token_file", "", "/etc/kioskd/token")
	pc.SiteKeyFile = pt.absPath("site_key_file", "", "/etc/kioskd/site.key")
	if s, ok := pt.str("public_key"); ok {
		if key, msg := checkPublicKey(s); msg != "" {
			pt.errorf("public_key", "%s", msg)
		} else {
			pc.PublicKey = key
		}
	}
	pc.SyncInterval = pt.duration("sync_interval", DefaultSyncInterval, MinInterval, 0)
	pc.HeartbeatInterval = pt.duration("heartbeat_interval", DefaultHeartbeatInterval, MinInterval, 0)
	if s, ok := pt.str("push_listen"); ok && s != "" {
		if msg := checkListen(s); msg != "" {
			pt.errorf("push_listen", "%s %s", quote(s), msg)
		}
		pc.PushListen = s
	}
	// "" means unset for the TLS files, as in the example of SPEC §7.
	if s, ok := pt.str("tls_cert_file"); ok && s != "" {
		pc.TLSCertFile = pt.absPath("tls_cert_file", "", "/etc/kioskd/push.crt")
	}
	if s, ok := pt.str("tls_key_file"); ok && s != "" {
		pc.TLSKeyFile = pt.absPath("tls_key_file", "", "/etc/kioskd/push.key")
	}
	pc.MaxDocumentBytes = pt.integer("max_document_bytes", DefaultMaxDocumentBytes, 1, 1<<62)

	if pc.URL != "" {
		if !pt.has("token_file") {
			pt.required("token_file", "with url set, the file holding the device's bearer token")
		}
		if !pt.has("public_key") {
			pt.required("public_key", "with url set, the portal's Ed25519 public key in standard base64")
		}
	}
	if pc.PushListen != "" && !pt.has("public_key") && pc.URL == "" {
		pt.required("public_key", "with push_listen set, the portal's Ed25519 public key in standard base64")
	}
	if !pt.has("site_key_file") {
		pt.required("site_key_file", "the file holding the site key (32 bytes, standard base64)")
	}
	switch {
	case pc.TLSCertFile != "" && pc.TLSKeyFile == "":
		pt.errorf("tls_key_file", "required with tls_cert_file: the private key of the push server's certificate")
	case pc.TLSKeyFile != "" && pc.TLSCertFile == "":
		pt.errorf("tls_cert_file", "required with tls_key_file: the push server's certificate")
	}
}

// checkURL returns what is wrong with a portal URL, or "".
func checkURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "" {
		return `is not an http(s) URL (e.g. "https://portal.example.com")`
	}
	if u.User != nil {
		return "must not hold a user name or password (the token lives in token_file)"
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "must not hold a query or fragment"
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return "uses plain http, which is allowed only to a loopback host (127.0.0.0/8, ::1, localhost); use https"
	}
	return ""
}

// isLoopback reports whether host is localhost or a loopback address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkListen returns what is wrong with a push_listen address, or "".
func checkListen(s string) string {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return `is not a host:port address (e.g. ":8443")`
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "does not end in a port number from 1 to 65535"
	}
	return ""
}

// checkPublicKey decodes an Ed25519 public key in standard base64, or says
// what is wrong with it.
func checkPublicKey(s string) (ed25519.PublicKey, string) {
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Sprintf("%s is not standard base64 (an Ed25519 public key is 44 characters)", quote(s))
	}
	if len(key) != ed25519.PublicKeySize {
		return nil, fmt.Sprintf("holds %d bytes; an Ed25519 public key is %d", len(key), ed25519.PublicKeySize)
	}
	if _, err := new(edwards25519.Point).SetBytes(key); err != nil {
		return nil, "is not a valid Ed25519 public key (not a point of the curve)"
	}
	return ed25519.PublicKey(key), ""
}

// lineClaims remembers which key claimed each GPIO line.
type lineClaims map[[2]string]string

// claim records that path uses line n of chip, reporting a line already
// claimed.
func (p *parser) claim(claims lineClaims, path, chip string, n int) {
	k := [2]string{strings.TrimPrefix(chip, "/dev/"), strconv.Itoa(n)}
	if first, taken := claims[k]; taken {
		if board, ok := strings.CutPrefix(chip, "lock_board:"); ok {
			p.errorf(path, "channel %d of lock_board %s is already used by %s (line %d)", n, quote(board), first, p.lines.lineOf(first))
			return
		}
		p.errorf(path, "%s line %d is already used by %s (line %d)", chip, n, first, p.lines.lineOf(first))
		return
	}
	claims[k] = path
}

// line reads an optional GPIO line table at key; nil when absent or bad.
func (p *parser) line(t *table, key string, claims lineClaims) *Line {
	lt := t.sub(key, key, lineKeys)
	if lt == nil {
		return nil
	}
	lt.name = t.key(key)
	lt.unknown()
	var l Line
	ok := true
	if chip, present := lt.nonEmpty("chip", `"gpiochip0"`); !present {
		lt.required("chip", `the GPIO chip (e.g. chip = "gpiochip0")`)
		ok = false
	} else if chip == "" {
		ok = false
	} else {
		l.Chip = chip
	}
	if !lt.has("line") {
		lt.required("line", "the line's offset on the chip (e.g. line = 17)")
		ok = false
	} else {
		n := lt.integer("line", -1, 0, maxLineOffset)
		if n < 0 {
			ok = false
		}
		l.Line = int(n)
	}
	l.ActiveLow = lt.boolean("active_low")
	if !ok {
		return nil
	}
	p.claim(claims, lt.path, l.Chip, l.Line)
	return &l
}

func (p *parser) door(t *table, claims lineClaims, boards map[string]*LockBoard) Door {
	t.unknown()
	d := Door{Kind: DefaultDoorKind, Pulse: DefaultPulse, HeldOpenAfter: DefaultHeldOpenAfter}
	if id, ok := t.str("id"); ok {
		if !validID(id) {
			t.errorf("id", "%s is not a door id: use letters, digits, '.', '_' and '-' (e.g. \"main\")", quote(id))
		}
		d.ID = id
	} else if !t.has("id") {
		t.required("id", `the door's id, which credentials name (e.g. id = "main")`)
	}
	d.Kind = t.oneOf("kind", DefaultDoorKind, "room", "locker")
	switch {
	case t.has("relay") && t.has("lock"):
		t.errorf("lock", "a door has either a relay line or a lock-board channel, not both")
	case t.has("lock"):
		d.Lock = p.lock(t, claims, boards)
	case !t.has("relay"):
		t.required("relay", `the lock's relay line (e.g. relay = { chip = "gpiochip0", line = 17 }), or a lock-board channel (lock = { board = "lockers", channel = 1 })`)
	default:
		if r := p.line(t, "relay", claims); r != nil {
			d.Relay = *r
		}
	}
	d.Pulse = t.duration("pulse", DefaultPulse, 0, MaxPulse)
	d.Contact = p.line(t, "contact", claims)
	d.ExitButton = p.line(t, "exit_button", claims)
	d.Buzzer = p.line(t, "buzzer", claims)
	d.LEDGreen = p.line(t, "led_green", claims)
	d.LEDRed = p.line(t, "led_red", claims)
	d.HeldOpenAfter = t.duration("held_open_after", DefaultHeldOpenAfter, 0, 0)
	return d
}

// Lock-board limits.
const (
	maxBoardAddress  = 255 // one address byte on the bus
	maxBoardChannels = 64  // the largest boards have 50; one status bit each
)

// lockBoard reads one [[lock_board]] table.
func (p *parser) lockBoard(t *table) LockBoard {
	t.unknown()
	b := LockBoard{Baud: DefaultBaud, Channels: DefaultBoardChannels, path: t.path}
	if name, ok := t.str("name"); ok {
		if !validID(name) {
			t.errorf("name", "%s is not a board name: use letters, digits, '.', '_' and '-' (e.g. \"lockers-a\")", quote(name))
		}
		b.Name = name
	} else if !t.has("name") {
		t.required("name", `the board's name, which doors' lock tables use (e.g. name = "lockers-a")`)
	}
	if dev, present := t.nonEmpty("device", `"/dev/ttyUSB1"`); !present {
		t.required("device", `the RS-485 serial port (e.g. device = "/dev/ttyUSB1")`)
	} else {
		b.Device = dev
	}
	b.Baud = int(t.integer("baud", DefaultBaud, 1, maxBaud))
	if !t.has("address") {
		t.required("address", "the board's address on the bus (its DIP switches; e.g. address = 1)")
	}
	b.Address = int(t.integer("address", 0, 0, maxBoardAddress))
	b.Channels = int(t.integer("channels", DefaultBoardChannels, 1, maxBoardChannels))
	b.InvertedFeedback = t.oneOf("feedback", "normal", "normal", "inverted") == "inverted"
	return b
}

// lock reads a door's lock table { board, channel }; nil when bad.
func (p *parser) lock(t *table, claims lineClaims, boards map[string]*LockBoard) *Lock {
	lt := t.sub("lock", "lock", lockKeys)
	if lt == nil {
		return nil
	}
	lt.name = t.key("lock")
	lt.unknown()
	var l Lock
	ok := true
	if name, present := lt.nonEmpty("board", `"lockers-a"`); !present {
		lt.required("board", `the name of a [[lock_board]] (e.g. board = "lockers-a")`)
		ok = false
	} else if b := boards[name]; b == nil {
		if name != "" {
			lt.errorf("board", "no [[lock_board]] has name %s", quote(name))
		}
		ok = false
	} else {
		l.Board = name
		if !lt.has("channel") {
			lt.required("channel", "the compartment's lock number on the board, from 1 (e.g. channel = 3)")
			ok = false
		} else if n := lt.integer("channel", 0, 1, maxBoardChannels); n >= 1 {
			if int(n) > b.Channels {
				lt.errorf("channel", "%d is beyond the %d channels of lock_board %s", n, b.Channels, quote(name))
				ok = false
			}
			l.Channel = int(n)
		} else {
			ok = false
		}
	}
	if !ok {
		return nil
	}
	p.claim(claims, lt.path, "lock_board:"+l.Board, l.Channel)
	return &l
}

// matrixKeys are the keys a matrix keypad may map.
const matrixKeys = "0123456789*#ABCD"

func (p *parser) input(t *table, claims lineClaims) Input {
	t.unknown()
	var in Input
	typ, ok := t.str("type")
	switch {
	case !ok && !t.has("type"):
		t.required("type", "one of "+quoteAll(inputTypes))
	case ok && !slices.Contains(inputTypes, typ):
		t.errorf("type", "%s is not one of %s", quote(typ), quoteAll(inputTypes))
		ok = false
	}
	if !ok {
		return in // without a type nothing else can be judged
	}
	in.Type = typ
	in.Name = fmt.Sprintf("%s-%d", typ, t.index)
	if name, ok := t.str("name"); ok {
		if msg := checkName(name); msg != "" {
			t.errorf("name", "%s", msg)
		} else {
			in.Name = name
		}
	}
	if ds, ok := t.strings("doors"); ok {
		if len(ds) == 0 {
			t.errorf("doors", "is empty; leave it out to serve every door")
		}
		seen := map[string]bool{}
		for i, d := range ds {
			if seen[d] {
				t.p.errorf(indexPath(t.key("doors"), i), "%s is listed twice", quote(d))
			}
			seen[d] = true
		}
		in.Doors = ds
	}

	uses := inputTypeKeys[typ]
	for _, k := range inputKeys {
		if t.has(k) && k != "name" && k != "type" && k != "doors" && !slices.Contains(uses, k) {
			t.errorf(k, "is not used by a %s input", typ)
		}
	}

	if slices.Contains(uses, "device") {
		if dev, present := t.nonEmpty("device", `"/dev/ttyUSB0"`); !present {
			t.required("device", "the device file (e.g. device = \"/dev/ttyUSB0\")")
		} else {
			in.Device = dev
		}
	}
	if slices.Contains(uses, "baud") {
		in.Baud = int(t.integer("baud", DefaultBaud, 1, maxBaud))
	}
	if slices.Contains(uses, "kind") {
		kinds := []string{"qr", "card"}
		if typ == InputEvdev {
			kinds = append(kinds, "keypad")
		}
		if !t.has("kind") {
			t.required("kind", "what the input reads: one of "+quoteAll(kinds))
		} else {
			in.Kind = t.oneOf("kind", "", kinds...)
		}
	}
	if typ == InputMatrixKeypad {
		p.matrix(t, &in, claims)
	}
	return in
}

// checkName returns what is wrong with an input name, or "".
func checkName(s string) string {
	if s == "" {
		return `must not be empty; leave it out for the default "<type>-<index>"`
	}
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Sprintf("%s holds a control character", quote(s))
		}
	}
	return ""
}

func (p *parser) matrix(t *table, in *Input, claims lineClaims) {
	if chip, present := t.nonEmpty("chip", `"gpiochip0"`); !present {
		t.required("chip", `the GPIO chip of the rows and columns (e.g. chip = "gpiochip0")`)
	} else {
		in.Chip = chip
	}
	rows, rowsOK := t.lineOffsets("rows")
	cols, colsOK := t.lineOffsets("cols")
	keys, keysOK := t.strings("keys")
	for _, k := range []string{"rows", "cols", "keys"} {
		if !t.has(k) {
			t.required(k, "a matrix keypad needs rows, cols and keys")
		}
	}
	if rowsOK && len(rows) == 0 {
		t.errorf("rows", "is empty")
	}
	if colsOK && len(cols) == 0 {
		t.errorf("cols", "is empty")
	}
	if rowsOK && keysOK && len(keys) != len(rows) {
		t.errorf("keys", "has %d strings for %d rows; give one string per row", len(keys), len(rows))
	}
	if keysOK {
		seen := map[rune]string{}
		for i, k := range keys {
			path := indexPath(t.key("keys"), i)
			if strings.Trim(k, matrixKeys+" ") != "" {
				t.p.errorf(path, "%s holds a key other than %s (or a space for no key)", quote(k), matrixKeys)
				continue
			} else if colsOK && len(k) != len(cols) {
				t.p.errorf(path, "%s has %d keys for %d columns; give one key per column", quote(k), len(k), len(cols))
			}
			for _, r := range k {
				if r == ' ' {
					continue
				}
				if first, dup := seen[r]; dup {
					t.p.errorf(path, "key %q is already in %s", r, first)
					break
				}
				seen[r] = path
			}
		}
		if len(seen) == 0 && len(keys) > 0 {
			t.errorf("keys", "maps no key (only spaces)")
		}
	}
	in.Rows, in.Cols, in.Keys = rows, cols, keys
	if in.Chip != "" {
		for i, n := range rows {
			p.claim(claims, indexPath(t.key("rows"), i), in.Chip, n)
		}
		for i, n := range cols {
			p.claim(claims, indexPath(t.key("cols"), i), in.Chip, n)
		}
	}
}
