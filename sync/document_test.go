package sync

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"kioskd/kiosk"
)

var testSiteKey = bytes.Repeat([]byte{7}, 32)

// testCred returns an active resident PIN credential whose digest is that
// of secret under testSiteKey.
func testCred(id, secret string) *kiosk.Credential {
	return &kiosk.Credential{
		ID:     id,
		Kind:   kiosk.KindPIN,
		Digest: kiosk.Digest(testSiteKey, kiosk.KindPIN, []byte(secret)),
		Rev:    1,
		Holder: kiosk.Holder{ID: "h-" + id, Role: kiosk.RoleResident, Name: "Holder " + id},
		Status: kiosk.StatusActive,
	}
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "documents", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseDocumentFull(t *testing.T) {
	d, err := ParseDocument(readTestdata(t, "full.json"))
	if err != nil {
		t.Fatal(err)
	}
	h := d.Header
	if h.DeviceID != "spr-0001" || !h.Full || h.Cursor != "c-1041" || h.Base != "" || h.Next != "" ||
		!h.IssuedAt.Equal(time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("header = %+v", h)
	}
	if h.NumCredentials != 3 || len(d.Credentials) != 3 {
		t.Fatalf("NumCredentials = %d, credentials = %d, want 3", h.NumCredentials, len(d.Credentials))
	}
	if !reflect.DeepEqual(h.Revoked, []string{"tok-1", "tok-2"}) || len(h.Removed) != 0 {
		t.Errorf("revoked %q removed %q", h.Revoked, h.Removed)
	}

	c, err := d.Credentials[0].Credential()
	if err != nil {
		t.Fatal(err)
	}
	var digest [kiosk.DigestSize]byte
	for i := range digest {
		digest[i] = byte(i)
	}
	want := &kiosk.Credential{
		ID: "c-17", Kind: kiosk.KindPIN, Digest: digest, Rev: 12,
		Holder:     kiosk.Holder{ID: "h-4", Role: kiosk.RoleCourier, Name: "UPS"},
		Status:     kiosk.StatusActive,
		Used:       map[string]int{"spr-0001": 0},
		ValidUntil: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		Doors:      []string{"main"},
		Schedule: []kiosk.Window{{
			Days: []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday},
			From: 7 * 60, To: 20 * 60,
		}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("credential\n got %+v\nwant %+v", c, want)
	}

	c2, err := d.Credentials[1].Credential()
	if err != nil {
		t.Fatal(err)
	}
	if c2.Status != kiosk.StatusDeactivated || c2.Uses != 1 || c2.Used != nil ||
		!c2.ValidFrom.Equal(time.Date(2025, 12, 31, 23, 0, 0, 0, time.UTC)) || !c2.ValidUntil.IsZero() ||
		c2.Doors != nil || c2.Schedule != nil {
		t.Errorf("second credential = %+v", c2)
	}
	c3, _ := d.Credentials[2].Credential()
	if c3.Holder.Name != `Ana é "quoted"` || c3.Schedule[0].From != 22*60 || c3.Schedule[0].To != 6*60 {
		t.Errorf("third credential = %+v", c3)
	}
}

func TestParseDocumentForwardCompatible(t *testing.T) {
	d, err := ParseDocument(readTestdata(t, "future-fields.json"))
	if err != nil {
		t.Fatalf("unknown fields must be ignored: %v", err)
	}
	if d.DeviceID != "spr-0001" || d.Cursor != "c-7" || len(d.Credentials) != 1 || d.Removed != nil {
		t.Errorf("document = %+v", d)
	}
}

func TestParseDocumentPush(t *testing.T) {
	d, err := ParseDocument(readTestdata(t, "push-hint.json"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Kind != PushHint || d.Nonce != "n-8c1f" || d.NumCredentials != 0 {
		t.Errorf("header = %+v", d.Header)
	}
}

func TestParseDocumentMalformed(t *testing.T) {
	good := func(mod func(m map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal(readTestdata(t, "full.json"), &m); err != nil {
			t.Fatal(err)
		}
		mod(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	cred := func(mod func(c map[string]any)) string {
		return good(func(m map[string]any) { mod(m["credentials"].([]any)[0].(map[string]any)) })
	}
	tests := []struct {
		name string
		doc  string
		want string // in the error; NUL separates parts that must come in order
	}{
		{"empty", "", "unexpected end"},
		{"white space", " \n", "unexpected end"},
		{"not JSON", "hello", "invalid character"},
		{"array", "[]", "want {"},
		{"string", `"x"`, "want {"},
		{"truncated", `{"device_id":"spr-0001","credentials":[{"id":"c-1"`, "unexpected EOF"},
		{"trailing data", `{"device_id":"x"} {}`, "data after the document"},
		{"trailing garbage", `{"device_id":"x"}]`, "invalid character"},
		{"duplicate field", `{"cursor":"a","cursor":"b"}`, `duplicate object member name "cursor"`},
		{"duplicate credentials", `{"credentials":[],"credentials":[]}`, `duplicate object member name "credentials"`},
		{"device_id number", `{"device_id":5}`, "device_id"},
		{"duplicate credential field", `{"credentials":[{"id":"a","id":"b"}]}`, `duplicate object member name "id"`},
		{"invalid UTF-8", "{\"device_id\":\"spr-\xff\"}", "invalid UTF-8"},
		{"credential null", `{"credentials":[null]}`, "credentials[0] is not an object"},
		{"full string", `{"full":"yes"}`, "full"},
		{"issued_at not RFC 3339", `{"issued_at":"yesterday"}`, "issued_at"},
		{"credentials object", `{"credentials":{}}`, "credentials: want ["},
		{"credential not an object", `{"credentials":[5]}`, "credentials[0]"},
		{"removed empty id", `{"removed":[""]}`, "removed[0] is empty"},
		{"revoked number", `{"revoked":[1]}`, "revoked"},
		{"command without id", `{"commands":[{"type":"unlock"}]}`, "commands[0]"},
		{"bad kind", cred(func(c map[string]any) { c["kind"] = "iris" }), `credential "c-17": kind "iris"`},
		{"bad role", cred(func(c map[string]any) { c["holder"].(map[string]any)["role"] = "owner" }), `credential "c-17": holder.role "owner"`},
		{"bad status", cred(func(c map[string]any) { c["status"] = "deleted" }), `credential "c-17": status "deleted"`},
		{"no status", cred(func(c map[string]any) { delete(c, "status") }), `credential "c-17": status ""`},
		{"short digest", cred(func(c map[string]any) { c["digest"] = "AAEC" }), `credential "c-17": digest`},
		{"padded digest", cred(func(c map[string]any) { c["digest"] = c["digest"].(string) + "=" }), `credential "c-17": digest`},
		{"standard base64 digest", cred(func(c map[string]any) { c["digest"] = "+" + c["digest"].(string)[1:] }), `credential "c-17": digest`},
		{"no id", cred(func(c map[string]any) { delete(c, "id") }), "credential without id"},
		{"negative uses", cred(func(c map[string]any) { c["uses"] = -1 }), `credential "c-17": uses -1`},
		{"negative used", cred(func(c map[string]any) { c["used"] = map[string]any{"spr-0001": -2} }), `used["spr-0001"]`},
		{"bad valid_until", cred(func(c map[string]any) { c["valid_until"] = "2026-12-01" }), `credential "c-17": json: ` + "\x00" + `within "/valid_until"`},
		{"uses a string", cred(func(c map[string]any) { c["uses"] = "3" }), `credential "c-17": json: ` + "\x00" + `within "/uses"`},
		{"holder a string", cred(func(c map[string]any) { c["holder"] = "h-4" }), `credential "c-17": json: ` + "\x00" + `within "/holder"`},
		{"empty door", cred(func(c map[string]any) { c["doors"] = []any{"main", ""} }), `credential "c-17": doors[1] is empty`},
		{"bad day", cred(func(c map[string]any) {
			c["schedule"] = []any{map[string]any{"days": []any{"monday"}, "from": "07:00", "to": "20:00"}}
		}), `credential "c-17": schedule[0]`},
		{"bad hour", cred(func(c map[string]any) {
			c["schedule"] = []any{map[string]any{"days": []any{"mon"}, "from": "24:00", "to": "20:00"}}
		}), `credential "c-17": schedule[0]`},
		{"window without days", cred(func(c map[string]any) {
			c["schedule"] = []any{map[string]any{"days": []any{}, "from": "07:00", "to": "20:00"}}
		}), `credential "c-17": schedule[0]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseDocument([]byte(tt.doc))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseDocument = %v, want ErrMalformed", err)
			}
			// want holds the parts the error must say, in order, split
			// by NUL.
			msg := err.Error()
			for _, part := range strings.Split(tt.want, "\x00") {
				i := strings.Index(msg, part)
				if i < 0 {
					t.Fatalf("error %q does not say %q", err, part)
				}
				msg = msg[i+len(part):]
			}
		})
	}
}

// failingReaderAt fails every read at or past off.
type failingReaderAt struct {
	r   io.ReaderAt
	off int64
}

var errDisk = errors.New("disk gone")

func (f failingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.off {
		if off >= f.off {
			return 0, errDisk
		}
		n, _ := f.r.ReadAt(p[:f.off-off], off)
		return n, errDisk
	}
	return f.r.ReadAt(p, off)
}

func TestDocReaderReadErrorIsNotMalformed(t *testing.T) {
	data := readTestdata(t, "full.json")
	for _, at := range []int64{0, 10, int64(len(data)) / 2} {
		_, err := NewDocReader(failingReaderAt{bytes.NewReader(data), at}, int64(len(data)))
		if !errors.Is(err, errDisk) || errors.Is(err, ErrMalformed) {
			t.Errorf("read error at %d: err = %v, want the read error, not malformed", at, err)
		}
	}
}

func TestDocReaderSourceChangedBetweenPasses(t *testing.T) {
	data := readTestdata(t, "full.json")
	r, err := NewDocReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	r.src = bytes.NewReader(bytes.Replace(data, []byte(`},
{"id":"c-19"`), []byte(`}]  
,{"id":"c-19"`), 1))
	err = r.Credentials(func(*kiosk.Credential) error { return nil })
	if err == nil {
		t.Fatal("a source that changed between the passes went unnoticed")
	}
}

func TestDocumentRoundTrip(t *testing.T) {
	c := testCred("c-1", "246810")
	c.Used = map[string]int{"spr-0001": 2}
	c.ValidFrom = time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	c.ValidUntil = time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	c.Doors = []string{"main", "locker-1"}
	c.Uses = 5
	c.Holder.Name = `<Tom & "Jerry">`
	c.Schedule = []kiosk.Window{
		{Days: []time.Weekday{time.Monday, time.Sunday}, From: 0, To: 1439},
		{Days: []time.Weekday{time.Saturday}, From: 22 * 60, To: 6 * 60},
	}
	c2 := testCred("c-2", "735291")
	c2.Kind, c2.Status = kiosk.KindQR, kiosk.StatusDeactivated
	c2.Digest = kiosk.Digest(testSiteKey, kiosk.KindQR, []byte("STAFF"))
	doc := &Document{
		Header: Header{
			DeviceID: "spr-0001", IssuedAt: time.Date(2026, 11, 20, 10, 0, 0, 123, time.UTC),
			Full: false, Base: "c-1", Cursor: "c-2", Next: "p2",
			Removed: []string{"c-9"}, Revoked: []string{"tok-1"},
			Commands: []Command{{ID: "cmd-1", Type: "unlock", Door: "main"}},
			Nonce:    "n-1", Kind: PushDelta,
		},
		Credentials: []WireCredential{*NewWireCredential(c), *NewWireCredential(c2)},
	}
	body, err := doc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(body) {
		t.Fatalf("Marshal wrote invalid JSON:\n%s", body)
	}
	got, err := ParseDocument(body)
	if err != nil {
		t.Fatalf("ParseDocument: %v\n%s", err, body)
	}
	doc.NumCredentials = 2
	if !reflect.DeepEqual(got.Header, doc.Header) {
		t.Errorf("header\n got %+v\nwant %+v", got.Header, doc.Header)
	}
	for i, want := range []*kiosk.Credential{c, c2} {
		back, err := got.Credentials[i].Credential()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, want) {
			t.Errorf("credential %d\n got %+v\nwant %+v", i, back, want)
		}
	}
	// Absent lists are written as [], absent push fields not at all.
	empty, err := (&Document{Header: Header{DeviceID: "d", Cursor: "c"}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"credentials":[]`, `"removed":[]`, `"revoked":[]`, `"commands":[]`} {
		if !bytes.Contains(empty, []byte(s)) {
			t.Errorf("empty document %s lacks %s", empty, s)
		}
	}
	if bytes.Contains(empty, []byte("nonce")) || bytes.Contains(empty, []byte(`"kind"`)) {
		t.Errorf("empty document %s has push fields", empty)
	}
	// The wire form of a credential without bounds has null times.
	w, _ := json.Marshal(NewWireCredential(c2))
	if !bytes.Contains(w, []byte(`"valid_from":null,"valid_until":null`)) || bytes.Contains(w, []byte(`"used"`)) {
		t.Errorf("wire credential %s", w)
	}
}

// TestDocReaderStreams reads a document of many credentials and checks
// that neither pass holds them: the bytes allocated per credential stay
// far below what holding them would need.
func TestDocReaderStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a large document")
	}
	const n = 50_000
	path := filepath.Join(t.TempDir(), "big.json")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewDocWriter(f, &Header{DeviceID: "d", IssuedAt: time.Now(), Full: true, Cursor: "c-1"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := w.Write(NewWireCredential(testCred(fmt.Sprintf("c-%d", i), fmt.Sprint(i)))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	r, err := NewDocReader(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	if r.Header().NumCredentials != n {
		t.Fatalf("NumCredentials = %d", r.Header().NumCredentials)
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	count := 0
	var early, late uint64
	err = r.Credentials(func(c *kiosk.Credential) error {
		if c.ID != fmt.Sprintf("c-%d", count) {
			return fmt.Errorf("credential %d is %s", count, c.ID)
		}
		switch count {
		case 1000:
			early = heap()
		case n - 1:
			late = heap()
		}
		count++
		return nil
	})
	if err != nil || count != n {
		t.Fatalf("Credentials: %v, %d read", err, count)
	}
	// Holding 49 000 credentials would take well over 10 MB.
	if late > early+4<<20 {
		t.Errorf("heap grew from %d to %d bytes while streaming: credentials are held", early, late)
	}
}

// FuzzDocument feeds arbitrary bytes to the two-pass reader. Whatever it
// accepts must be valid JSON; a document it reads whole must survive
// Marshal and a second parse unchanged.
func FuzzDocument(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "documents", "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed corpus: %v", err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"credentials":[{},{"id":"x"}]}`))
	f.Add([]byte(`{"a":{"b":[[],{}]},"credentials":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewDocReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		doc, err := ParseDocument(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if doc.NumCredentials != r.Header().NumCredentials || len(doc.Credentials) != doc.NumCredentials {
			t.Fatalf("credential counts differ: %d, %d, %d", doc.NumCredentials, r.Header().NumCredentials, len(doc.Credentials))
		}
		body, err := doc.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseDocument(body)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", body, err)
		}
		norm := func(d *Document) *Document {
			c := *d
			c.Credentials = nil
			for _, w := range d.Credentials {
				kc, err := w.Credential()
				if err != nil {
					t.Fatal(err)
				}
				c.Credentials = append(c.Credentials, *NewWireCredential(kc))
			}
			c.IssuedAt = c.IssuedAt.UTC()
			return &c
		}
		a, b := norm(doc), norm(again)
		b2, _ := b.Marshal()
		a2, _ := a.Marshal()
		if !bytes.Equal(a2, b2) {
			t.Fatalf("round trip changed the document:\n%s\n%s", a2, b2)
		}
	})
}
