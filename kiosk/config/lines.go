package config

import (
	"bytes"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// The TOML library knows where every key is but does not export it (its
// MetaData keeps key positions private and shows them only in the first
// decode error), and it names the keys of an array of tables without the
// element's index. keyLines is a small scanner that finds the line of every
// key instead, so an error can say "door[1].pulse" and its line.
//
// It runs only on documents that the TOML library has already accepted, so
// it can be lenient: it understands comments, the four kinds of strings,
// dotted and quoted keys, [tables], [[arrays of tables]], inline tables
// (also spread over lines, as TOML 1.1 allows) and arrays, and skips
// everything else. It never fails; a key it misses falls back to the line
// of its nearest parent (see lineOf).

// keyPath joins a parent path and one key the way error messages name
// keys: dots between keys, the key quoted when it is not a bare key.
func keyPath(parent, key string) string {
	k := toml.Key{key}.String()
	if parent == "" {
		return k
	}
	return parent + "." + k
}

// indexPath names element i of the array at path.
func indexPath(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// lineTable maps key paths to the 1-based line they are defined on.
type lineTable map[string]int

// lineOf returns the line of path, or of its nearest parent that has one,
// or 0 when none does.
func (lt lineTable) lineOf(path string) int {
	for path != "" {
		if n, ok := lt[path]; ok {
			return n
		}
		path = parentPath(path)
	}
	return 0
}

// parentPath strips the last key or index from path ("" when none is left).
// Quoted keys may hold dots and brackets, so it walks path from the start.
func parentPath(path string) string {
	last := 0
	inQuote := false
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '.':
			last = i
		case !inQuote && c == '[':
			last = i
		}
	}
	return path[:last]
}

const (
	// maxNesting bounds how deep a document may nest keys, arrays and
	// tables. A kioskd config needs 4 levels ("door[1].relay.line"); the
	// TOML library slows down quadratically with deep nesting (a dotted key
	// of 20 000 parts takes it half a minute), so deeper documents are
	// refused before it sees them.
	maxNesting = 32
	// recordDepth and recordElems bound what the scanner records: paths
	// deeper than recordDepth, and array elements past recordElems, are
	// skipped (their errors fall back to an outer line).
	recordDepth = 16
	recordElems = 256
)

// scan is what keyLines finds.
type scan struct {
	lines     lineTable
	depth     int // deepest nesting seen, up to maxNesting+1
	depthLine int // where that was
}

// keyLines scans a TOML document and returns the line of every key path
// (and of every table header and array element) it defines, and how deep
// the document nests. It stops at the first place nested deeper than
// maxNesting.
func keyLines(data []byte) scan {
	s := &scanner{
		s:     data,
		out:   lineTable{},
		count: map[string]int{},
	}
	for i, c := range data {
		if c == '\n' {
			s.nl = append(s.nl, i)
		}
	}
	if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		s.i = 3
	}
	s.document()
	return scan{lines: s.out, depth: s.depth, depthLine: s.depthLine}
}

type scanner struct {
	s         []byte
	i         int
	nl        []int          // offsets of newlines, to turn offsets into lines
	out       lineTable      // path -> line
	count     map[string]int // array-of-tables path -> elements seen
	depth     int            // deepest nesting seen
	depthLine int
}

func (s *scanner) eof() bool { return s.i >= len(s.s) }

// line returns the 1-based line of byte offset off.
func (s *scanner) line(off int) int {
	return sort.SearchInts(s.nl, off) + 1
}

// record remembers the first line a path appears on.
func (s *scanner) record(path string, off int) {
	if _, ok := s.out[path]; !ok {
		s.out[path] = s.line(off)
	}
}

// nest notes nesting depth d at offset off. Past maxNesting the scan stops
// (the document will be refused); it reports whether paths at depth d are
// recorded.
func (s *scanner) nest(d, off int) bool {
	if d > s.depth {
		s.depth, s.depthLine = d, s.line(off)
	}
	if d > maxNesting {
		s.i = len(s.s)
	}
	return d <= recordDepth
}

func (s *scanner) document() {
	// The current [table] or [[array]] element: its path, depth, and
	// whether keys under it are recorded.
	table, depth, rec := "", 0, true
	for !s.eof() {
		start := s.i
		s.skipSpace(true)
		if s.eof() {
			break
		}
		if s.s[s.i] == '[' {
			table, depth, rec = s.header()
		} else {
			s.keyval(table, depth, rec)
		}
		s.skipToLineEnd()
		if s.i == start {
			s.i++ // malformed input: always make progress
		}
	}
}

// header reads a [table] or [[array]] header and returns its path, depth
// and whether keys under it are recorded.
func (s *scanner) header() (string, int, bool) {
	off := s.i
	array := bytes.HasPrefix(s.s[s.i:], []byte("[["))
	if array {
		s.i += 2
	} else {
		s.i++
	}
	keys := s.key()
	depth := len(keys)
	if array {
		depth++
	}
	if !s.nest(depth, off) || len(keys) == 0 {
		if len(keys) > recordDepth {
			s.resolve(keys[:recordDepth], off) // record what can be
		}
		return "", depth, false
	}
	if !array {
		return s.resolve(keys, off), depth, true
	}
	parent := s.resolve(keys[:len(keys)-1], off)
	name := keyPath(parent, keys[len(keys)-1])
	s.record(name, off)
	n := s.count[name]
	s.count[name] = n + 1
	path := indexPath(name, n)
	s.record(path, off)
	return path, depth, true
}

// resolve turns the keys of a header into a path, naming the last element
// of every array of tables on the way, and records each prefix.
func (s *scanner) resolve(keys []string, off int) string {
	path := ""
	for _, k := range keys {
		path = keyPath(path, k)
		if n, ok := s.count[path]; ok {
			path = indexPath(path, n-1)
		}
		s.record(path, off)
	}
	return path
}

// keyval reads `key = value` under the table at prefix, of depth depth;
// rec says whether to record paths.
func (s *scanner) keyval(prefix string, depth int, rec bool) {
	off := s.i
	keys := s.key()
	if len(keys) == 0 {
		return
	}
	// Record the key's paths as deep as recordDepth.
	path := prefix
	for i, k := range keys {
		if !rec || depth+i+1 > recordDepth {
			rec, path = false, ""
			break
		}
		path = keyPath(path, k)
		s.record(path, off)
	}
	depth += len(keys)
	s.nest(depth, off)
	s.skipSpace(false)
	if s.eof() || s.s[s.i] != '=' {
		return
	}
	s.i++
	s.skipSpace(false)
	s.value(path, depth, rec)
}

// value skips one value, recording the keys of inline tables and the
// elements of arrays under path when rec is set.
func (s *scanner) value(path string, depth int, rec bool) {
	if s.eof() {
		return
	}
	switch c := s.s[s.i]; c {
	case '{':
		s.i++
		for !s.eof() {
			start := s.i
			s.skipSpace(true)
			if s.eof() {
				return
			}
			switch s.s[s.i] {
			case '}':
				s.i++
				return
			case ',':
				s.i++
			default:
				s.keyval(path, depth, rec)
			}
			if s.i == start {
				s.i++
			}
		}
	case '[':
		s.i++
		erec := s.nest(depth+1, s.i) && rec
		for n := 0; !s.eof(); {
			start := s.i
			s.skipSpace(true)
			if s.eof() {
				return
			}
			switch s.s[s.i] {
			case ']':
				s.i++
				return
			case ',':
				s.i++
			default:
				elem := ""
				if erec && n < recordElems {
					elem = indexPath(path, n)
					s.record(elem, s.i)
				}
				s.value(elem, depth+1, erec && n < recordElems)
				n++
			}
			if s.i == start {
				s.i++
			}
		}
	case '"', '\'':
		s.str()
	default:
		// A number, boolean or date: runs to a delimiter. (A date may hold
		// a space, so spaces do not end it.)
		for !s.eof() && !strings.ContainsRune(",]}#\r\n", rune(s.s[s.i])) {
			s.i++
		}
	}
}

// key reads a dotted key and returns its parts (nil when there is none).
func (s *scanner) key() []string {
	var keys []string
	for {
		s.skipSpace(false)
		if s.eof() {
			return keys
		}
		var k string
		switch s.s[s.i] {
		case '"', '\'':
			k = s.str()
		default:
			start := s.i
			for !s.eof() && isBare(s.s[s.i]) {
				s.i++
			}
			if s.i == start {
				return keys
			}
			k = string(s.s[start:s.i])
		}
		keys = append(keys, k)
		s.skipSpace(false)
		if s.eof() || s.s[s.i] != '.' {
			return keys
		}
		s.i++
	}
}

func isBare(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// str reads a string of any of the four kinds at s.i and returns its value
// (escapes decoded for basic strings, so quoted keys match the decoder's).
func (s *scanner) str() string {
	q := s.s[s.i]
	triple := []byte{q, q, q}
	multi := bytes.HasPrefix(s.s[s.i:], triple)
	if multi {
		s.i += 3
	} else {
		s.i++
	}
	var b strings.Builder
	for !s.eof() {
		c := s.s[s.i]
		switch {
		case c == q && !multi:
			s.i++
			return b.String()
		case c == q && bytes.HasPrefix(s.s[s.i:], triple):
			s.i += 3
			// Up to two more quotes belong to the content.
			for k := 0; k < 2 && !s.eof() && s.s[s.i] == q; k++ {
				b.WriteByte(q)
				s.i++
			}
			return b.String()
		case c == '\n' && !multi:
			return b.String() // unterminated: stop at the line's end
		case c == '\\' && q == '"':
			s.escape(&b)
		default:
			b.WriteByte(c)
			s.i++
		}
	}
	return b.String()
}

var (
	simpleEscapes = map[byte]byte{'b': '\b', 't': '\t', 'n': '\n', 'f': '\f', 'r': '\r', 'e': 0x1b, '"': '"', '\\': '\\'}
	hexEscapes    = map[byte]int{'x': 2, 'u': 4, 'U': 8}
)

// escape decodes one backslash escape of a basic string at s.i.
func (s *scanner) escape(b *strings.Builder) {
	s.i++ // the backslash
	if s.eof() {
		return
	}
	c := s.s[s.i]
	s.i++
	if r, ok := simpleEscapes[c]; ok {
		b.WriteByte(r)
		return
	}
	digits := hexEscapes[c]
	if digits > 0 && s.i+digits <= len(s.s) {
		if v, err := strconv.ParseUint(string(s.s[s.i:s.i+digits]), 16, 32); err == nil {
			s.i += digits
			b.WriteRune(rune(v))
			return
		}
	}
	// A line-ending backslash in a multi-line string trims the white space
	// that follows; other escapes are invalid and were refused by the
	// decoder. Either way only the newlines matter here, and offsets keep
	// them.
	if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
		for !s.eof() && strings.ContainsRune(" \t\r\n", rune(s.s[s.i])) {
			s.i++
		}
		return
	}
	if c < utf8.RuneSelf {
		b.WriteByte(c)
	}
}

// skipSpace skips blanks; with newlines, also newlines and comments.
func (s *scanner) skipSpace(newlines bool) {
	for !s.eof() {
		switch s.s[s.i] {
		case ' ', '\t':
			s.i++
		case '\r', '\n':
			if !newlines {
				return
			}
			s.i++
		case '#':
			if !newlines {
				return
			}
			s.skipToLineEnd()
		default:
			return
		}
	}
}

// skipToLineEnd skips the rest of the line (a comment, or anything the
// scanner did not understand), leaving s.i on the newline.
func (s *scanner) skipToLineEnd() {
	for !s.eof() && s.s[s.i] != '\n' {
		s.i++
	}
}
