package sync

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"kioskd/kiosk"
)

// ErrMalformed is returned (wrapped) when a document is not well-formed:
// not JSON, not one JSON object, a field of the wrong type, a duplicated
// top-level field, or a header field or credential that breaks SPEC §6.3
// (unknown kind, role or status, a bad digest or schedule, ...). The error
// names the field and, for a credential, its id.
var ErrMalformed = errors.New("malformed document")

// Push kinds (SPEC §6.2): the "kind" field of a pushed document.
const (
	PushFull    = "full"
	PushDelta   = "delta"
	PushHint    = "hint"
	PushCommand = "command"
)

// Header is a sync document (SPEC §6.1, §6.2) without its credentials:
// everything the reader's first pass keeps. Lists that are absent or null
// are nil.
type Header struct {
	DeviceID string    `json:"device_id"`
	IssuedAt time.Time `json:"issued_at"`
	Full     bool      `json:"full"`
	// Base is the cursor a delta applies on; empty for a full document.
	Base string `json:"base"`
	// Cursor is the portal's name of the set this document leaves.
	Cursor string `json:"cursor"`
	// Next is the page token of the next page; empty on the last page.
	Next string `json:"next"`
	// Removed lists credential ids a delta drops.
	Removed []string `json:"removed"`
	// Revoked lists signed-token cids (SPEC §2): added by a delta, the
	// complete list in a full document.
	Revoked  []string  `json:"revoked"`
	Commands []Command `json:"commands"`
	// Nonce and Kind are present on pushed documents only (SPEC §6.2).
	Nonce string `json:"nonce,omitempty"`
	Kind  string `json:"kind,omitempty"`

	// NumCredentials is the number of elements of the credentials array,
	// counted by the first pass; it is not a wire field.
	NumCredentials int `json:"-"`
}

// Command is a command from the portal (SPEC §6.2), e.g. a remote unlock:
// {"id": "cmd-1", "type": "unlock", "door": "main"}. Each command id runs
// at most once; running commands is the caller's business.
type Command struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	Door string `json:"door,omitempty"`
}

// WireHolder is the holder of a credential on the wire.
type WireHolder struct {
	ID   string `json:"id"`
	Role string `json:"role"`
	Name string `json:"name"`
}

// WireWindow is one schedule window on the wire: days from "mon" … "sun",
// from and to as "HH:MM" (SPEC §2).
type WireWindow struct {
	Days []string `json:"days"`
	From string   `json:"from"`
	To   string   `json:"to"`
}

// WireCredential is a credential as the portal sends it (SPEC §6.3).
// Unknown fields are ignored, for forward compatibility. Convert it with
// Credential, which validates it.
type WireCredential struct {
	ID     string         `json:"id"`
	Kind   string         `json:"kind"`
	Digest string         `json:"digest"`
	Rev    int64          `json:"rev"`
	Holder WireHolder     `json:"holder"`
	Status string         `json:"status"`
	Uses   int            `json:"uses"`
	Used   map[string]int `json:"used,omitempty"` // may be absent
	// ValidFrom and ValidUntil are RFC 3339 times or null (no bound).
	ValidFrom  *time.Time   `json:"valid_from"`
	ValidUntil *time.Time   `json:"valid_until"`
	Doors      []string     `json:"doors"`
	Schedule   []WireWindow `json:"schedule"`
}

// Credential validates w and converts it to the kiosk's credential.
// Errors wrap ErrMalformed and name the credential id and the field.
func (w *WireCredential) Credential() (*kiosk.Credential, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: credential %q: %s", ErrMalformed, w.ID, fmt.Sprintf(format, args...))
	}
	if w.ID == "" {
		return nil, fmt.Errorf("%w: credential without id (digest %q)", ErrMalformed, w.Digest)
	}
	c := &kiosk.Credential{
		ID:     w.ID,
		Kind:   kiosk.Kind(w.Kind),
		Rev:    w.Rev,
		Holder: kiosk.Holder{ID: w.Holder.ID, Role: kiosk.Role(w.Holder.Role), Name: w.Holder.Name},
		Status: kiosk.Status(w.Status),
		Uses:   w.Uses,
	}
	if !c.Kind.Valid() {
		return nil, bad("kind %q is not one of pin, qr, card", w.Kind)
	}
	d, err := kiosk.DecodeDigest(w.Digest)
	if err != nil {
		return nil, bad("digest: %v", err)
	}
	c.Digest = d
	if !c.Holder.Role.Valid() {
		return nil, bad("holder.role %q is not one of resident, staff, courier, manager", w.Holder.Role)
	}
	if !c.Status.Valid() {
		return nil, bad("status %q is not one of active, deactivated", w.Status)
	}
	if w.Uses < 0 {
		return nil, bad("uses %d is negative", w.Uses)
	}
	if len(w.Used) > 0 {
		c.Used = make(map[string]int, len(w.Used))
		for dev, n := range w.Used {
			if dev == "" {
				return nil, bad("used: empty device id")
			}
			if n < 0 {
				return nil, bad("used[%q] %d is negative", dev, n)
			}
			c.Used[dev] = n
		}
	}
	if w.ValidFrom != nil {
		c.ValidFrom = w.ValidFrom.UTC()
	}
	if w.ValidUntil != nil {
		c.ValidUntil = w.ValidUntil.UTC()
	}
	if len(w.Doors) > 0 {
		c.Doors = make([]string, len(w.Doors))
		for i, door := range w.Doors {
			if door == "" {
				return nil, bad("doors[%d] is empty", i)
			}
			c.Doors[i] = door
		}
	}
	if len(w.Schedule) > 0 {
		c.Schedule = make([]kiosk.Window, len(w.Schedule))
		for i, sw := range w.Schedule {
			win, err := kiosk.ParseWindow(sw.Days, sw.From, sw.To)
			if err != nil {
				return nil, bad("schedule[%d]: %v", i, err)
			}
			c.Schedule[i] = win
		}
	}
	return c, nil
}

// NewWireCredential returns the wire form of c, for encoders (devportal,
// tests). A zero ValidFrom or ValidUntil becomes null.
func NewWireCredential(c *kiosk.Credential) *WireCredential {
	w := &WireCredential{
		ID:     c.ID,
		Kind:   string(c.Kind),
		Digest: kiosk.EncodeDigest(c.Digest),
		Rev:    c.Rev,
		Holder: WireHolder{ID: c.Holder.ID, Role: string(c.Holder.Role), Name: c.Holder.Name},
		Status: string(c.Status),
		Uses:   c.Uses,
		Doors:  append([]string{}, c.Doors...),
	}
	if len(c.Used) > 0 {
		w.Used = make(map[string]int, len(c.Used))
		for dev, n := range c.Used {
			w.Used[dev] = n
		}
	}
	if !c.ValidFrom.IsZero() {
		t := c.ValidFrom.UTC()
		w.ValidFrom = &t
	}
	if !c.ValidUntil.IsZero() {
		t := c.ValidUntil.UTC()
		w.ValidUntil = &t
	}
	w.Schedule = make([]WireWindow, 0, len(c.Schedule))
	for _, win := range c.Schedule {
		ww := WireWindow{Days: make([]string, 0, len(win.Days)), From: hhmm(win.From), To: hhmm(win.To)}
		for _, d := range win.Days {
			ww.Days = append(ww.Days, kiosk.FormatDay(d))
		}
		w.Schedule = append(w.Schedule, ww)
	}
	return w
}

func hhmm(min int) string { return fmt.Sprintf("%02d:%02d", min/60, min%60) }

// readBufSize is the read buffer of each pass: large reads from the source
// (a file), whatever the decoder asks for.
const readBufSize = 64 << 10

// DocReader reads a sync document from a seekable source in two passes,
// so that a document of any size is read with little memory.
// NewDocReader's first pass reads the header fields and skips the
// credentials array value by value; Credentials' second pass streams the
// credentials to a callback, one at a time.
//
// Unknown top-level fields, and unknown fields of a credential, are
// ignored, so that a portal may add fields without breaking older kiosks
// (forward compatibility). Field names match exactly (case-sensitive). A
// name given twice in one object, or text that is not valid UTF-8, is
// malformed: the two passes, and any two readers, must not be able to
// disagree on what a signed document says.
//
// The source must not change between the passes; callers read verified
// bodies from a file only they write, or from a file whose writer they
// trust as much as the portal key.
type DocReader struct {
	src  io.ReaderAt
	size int64
	hdr  Header
	// credOff is the offset just past the '[' of the credentials array
	// and credEnd the offset just past its ']'; both 0 when the document
	// has no credentials array.
	credOff, credEnd int64
}

// NewDocReader runs the first pass over the size bytes of src: it checks
// that the whole document is well-formed JSON, one object with nothing
// after it, and reads its header. Errors wrap ErrMalformed, except read
// errors of src, which are returned wrapped as they are.
func NewDocReader(src io.ReaderAt, size int64) (*DocReader, error) {
	r := &DocReader{src: src, size: size}
	er := &errReader{r: bufio.NewReaderSize(io.NewSectionReader(src, 0, size), readBufSize)}
	dec := jsontext.NewDecoder(er)
	if err := r.readHeader(dec); err != nil {
		return nil, er.wrap(err)
	}
	return r, nil
}

// Header returns the header read by the first pass.
func (r *DocReader) Header() *Header { return &r.hdr }

func (r *DocReader) readHeader(dec *jsontext.Decoder) error {
	if err := expectKind(dec, '{', "document"); err != nil {
		return err
	}
	for {
		switch dec.PeekKind() {
		case '}':
			if _, err := dec.ReadToken(); err != nil {
				return err
			}
			// Nothing may follow the document but white space.
			if _, err := dec.ReadToken(); err != io.EOF {
				if err == nil {
					err = fmt.Errorf("%w: data after the document at offset %d", ErrMalformed, dec.InputOffset())
				}
				return err
			}
			return nil
		case 0:
			_, err := dec.ReadToken() // the decoder's error
			return err
		}
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		key := tok.String()
		h := &r.hdr
		switch key {
		case "device_id":
			err = decodeField(dec, key, &h.DeviceID)
		case "issued_at":
			err = decodeField(dec, key, &h.IssuedAt)
		case "full":
			err = decodeField(dec, key, &h.Full)
		case "base":
			err = decodeField(dec, key, &h.Base)
		case "cursor":
			err = decodeField(dec, key, &h.Cursor)
		case "next":
			err = decodeField(dec, key, &h.Next)
		case "removed":
			err = decodeIDs(dec, key, &h.Removed)
		case "revoked":
			err = decodeIDs(dec, key, &h.Revoked)
		case "commands":
			if err = decodeField(dec, key, &h.Commands); err == nil {
				for i, c := range h.Commands {
					if c.ID == "" || c.Type == "" {
						return fmt.Errorf("%w: commands[%d]: id and type are required", ErrMalformed, i)
					}
				}
			}
		case "nonce":
			err = decodeField(dec, key, &h.Nonce)
		case "kind":
			err = decodeField(dec, key, &h.Kind)
		case "credentials":
			err = r.skipCredentials(dec)
		default:
			err = dec.SkipValue()
		}
		if err != nil {
			return err
		}
	}
}

// skipCredentials counts the elements of the credentials array, checking
// that each is well-formed JSON, and notes where the array lies.
func (r *DocReader) skipCredentials(dec *jsontext.Decoder) error {
	if dec.PeekKind() == 'n' { // null: no credentials
		_, err := dec.ReadToken()
		return err
	}
	if err := expectKind(dec, '[', "credentials"); err != nil {
		return err
	}
	r.credOff = dec.InputOffset()
	for {
		switch dec.PeekKind() {
		case ']':
			if _, err := dec.ReadToken(); err != nil {
				return err
			}
			r.credEnd = dec.InputOffset()
			return nil
		case '{':
		case 0:
			_, err := dec.ReadToken()
			return fmt.Errorf("credentials[%d]: %w", r.hdr.NumCredentials, err)
		default:
			return fmt.Errorf("%w: credentials[%d] is not an object", ErrMalformed, r.hdr.NumCredentials)
		}
		if err := dec.SkipValue(); err != nil {
			return fmt.Errorf("credentials[%d]: %w", r.hdr.NumCredentials, err)
		}
		r.hdr.NumCredentials++
	}
}

// Credentials runs the second pass: it decodes the credentials one at a
// time, validates and converts each, and calls fn with it, stopping at the
// first error. Errors wrap ErrMalformed (naming the credential and the
// field), or are fn's, or a read error of the source.
func (r *DocReader) Credentials(fn func(*kiosk.Credential) error) error {
	return r.WireCredentials(func(i int, w *WireCredential) error {
		c, err := w.Credential()
		if err != nil {
			return fmt.Errorf("credentials[%d]: %w", i, err)
		}
		return fn(c)
	})
}

// WireCredentials is Credentials without the conversion: it calls fn with
// each credential's wire form and its index in the array.
func (r *DocReader) WireCredentials(fn func(i int, w *WireCredential) error) error {
	if r.credEnd == 0 {
		return nil
	}
	// The second pass reads the array alone: a '[' of its own, then the
	// bytes after the document's '['.
	er := &errReader{r: io.MultiReader(strings.NewReader("["),
		bufio.NewReaderSize(io.NewSectionReader(r.src, r.credOff, r.credEnd-r.credOff), readBufSize))}
	dec := jsontext.NewDecoder(er)
	if err := expectKind(dec, '[', "credentials"); err != nil {
		return er.wrap(err)
	}
	n := 0
	for dec.PeekKind() == '{' {
		raw, err := dec.ReadValue()
		if err != nil {
			return er.wrap(fmt.Errorf("credentials[%d]: %w", n, err))
		}
		w := new(WireCredential)
		if err := json.Unmarshal(raw, w); err != nil {
			var id struct {
				ID string `json:"id"`
			}
			json.Unmarshal(raw, &id)
			return fmt.Errorf("%w: credentials[%d]: credential %q: %w", ErrMalformed, n, id.ID, err)
		}
		if err := fn(n, w); err != nil {
			return err
		}
		n++
	}
	if err := expectKind(dec, ']', "credentials"); err != nil {
		return er.wrap(err)
	}
	if n != r.hdr.NumCredentials || dec.InputOffset() != r.credEnd-r.credOff+1 {
		return fmt.Errorf("read document: credentials changed between passes (%d then %d)", r.hdr.NumCredentials, n)
	}
	return nil
}

// errReader remembers the first read error of its reader other than EOF,
// so that a decoder failure can be told apart: a read error is the
// source's fault, anything else is the document's.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// wrap classifies a decoding error: a read error of the source is returned
// as a read error; anything else is malformed.
func (e *errReader) wrap(err error) error {
	switch {
	case e.err != nil:
		return fmt.Errorf("read document: %w", e.err)
	case errors.Is(err, ErrMalformed):
		return err
	case err == io.EOF:
		return fmt.Errorf("%w: empty or truncated", ErrMalformed)
	default:
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
}

// expectKind reads the next token, which must be the delimiter k.
func expectKind(dec *jsontext.Decoder, k jsontext.Kind, what string) error {
	tok, err := dec.ReadToken()
	if err != nil {
		if err == io.EOF {
			return fmt.Errorf("%w: %s: unexpected end", ErrMalformed, what)
		}
		return err
	}
	if tok.Kind() != k {
		return fmt.Errorf("%w: %s: want %v, got %v at offset %d", ErrMalformed, what, k, tok.Kind(), dec.InputOffset())
	}
	return nil
}

func decodeField(dec *jsontext.Decoder, key string, v any) error {
	if err := json.UnmarshalDecode(dec, v); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

func decodeIDs(dec *jsontext.Decoder, key string, v *[]string) error {
	if err := decodeField(dec, key, v); err != nil {
		return err
	}
	for i, id := range *v {
		if id == "" {
			return fmt.Errorf("%w: %s[%d] is empty", ErrMalformed, key, i)
		}
	}
	return nil
}

// DocWriter writes a sync document as a stream: the header, then the
// credentials one at a time, so that devportal can write documents of any
// size. Output is compact JSON with one credential per line; maps are
// written in key order, so equal documents are equal bytes.
type DocWriter struct {
	w   *bufio.Writer
	h   Header
	n   int
	err error
}

// marshalOpts are the options of everything DocWriter writes.
var marshalOpts = json.Deterministic(true)

// NewDocWriter writes the header fields of h up to the credentials array.
// The lists of h (removed, revoked, commands) and its push fields are
// written by Close; absent lists are written as [].
func NewDocWriter(w io.Writer, h *Header) (*DocWriter, error) {
	d := &DocWriter{w: bufio.NewWriterSize(w, 64<<10), h: *h}
	d.w.WriteString("{")
	d.field("device_id", h.DeviceID)
	d.w.WriteString(",")
	d.field("issued_at", h.IssuedAt)
	d.w.WriteString(",")
	d.field("full", h.Full)
	d.w.WriteString(",")
	d.field("base", h.Base)
	d.w.WriteString(",")
	d.field("cursor", h.Cursor)
	d.w.WriteString(",")
	d.field("next", h.Next)
	d.w.WriteString(`,"credentials":[`)
	if d.err != nil {
		return nil, d.err
	}
	return d, nil
}

func (d *DocWriter) field(k string, v any) {
	d.value(k)
	d.w.WriteString(":")
	d.value(v)
}

func (d *DocWriter) value(v any) {
	if d.err != nil {
		return
	}
	b, err := json.Marshal(v, marshalOpts)
	if err != nil {
		d.err = fmt.Errorf("encode document: %w", err)
		return
	}
	d.w.Write(b)
}

// Write appends one credential.
func (d *DocWriter) Write(c *WireCredential) error {
	if d.err != nil {
		return d.err
	}
	if d.n > 0 {
		d.w.WriteString(",")
	}
	d.w.WriteString("\n")
	d.n++
	d.value(c)
	return d.err
}

// Close ends the credentials array, writes the lists and push fields and
// flushes. It does not close the underlying writer.
func (d *DocWriter) Close() error {
	if d.err != nil {
		return d.err
	}
	if d.n > 0 {
		d.w.WriteString("\n")
	}
	d.w.WriteString("],")
	orEmpty := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	cmds := d.h.Commands
	if cmds == nil {
		cmds = []Command{}
	}
	d.field("removed", orEmpty(d.h.Removed))
	d.w.WriteString(",")
	d.field("revoked", orEmpty(d.h.Revoked))
	d.w.WriteString(",")
	d.field("commands", cmds)
	if d.h.Nonce != "" {
		d.w.WriteString(",")
		d.field("nonce", d.h.Nonce)
	}
	if d.h.Kind != "" {
		d.w.WriteString(",")
		d.field("kind", d.h.Kind)
	}
	d.w.WriteString("}\n")
	if d.err != nil {
		return d.err
	}
	if err := d.w.Flush(); err != nil {
		d.err = fmt.Errorf("write document: %w", err)
	}
	return d.err
}

// Document is a whole sync document in memory, for small documents
// (deltas, pushes, tests). Large documents go through DocReader and
// DocWriter instead.
type Document struct {
	Header
	Credentials []WireCredential
}

// Marshal encodes d as DocWriter does.
func (d *Document) Marshal() ([]byte, error) {
	var b bytes.Buffer
	w, err := NewDocWriter(&b, &d.Header)
	if err != nil {
		return nil, err
	}
	for i := range d.Credentials {
		if err := w.Write(&d.Credentials[i]); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// ParseDocument reads a whole document held in memory, with the same
// rules as DocReader: credentials are validated but kept in wire form.
func ParseDocument(data []byte) (*Document, error) {
	r, err := NewDocReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, err
	}
	d := &Document{Header: *r.Header()}
	err = r.WireCredentials(func(i int, w *WireCredential) error {
		if _, err := w.Credential(); err != nil {
			return fmt.Errorf("credentials[%d]: %w", i, err)
		}
		d.Credentials = append(d.Credentials, *w)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}
