package config

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestKeyLines(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		want map[string]int
	}{
		{"tables and arrays of tables",
			"a = 1\n[portal]\nurl = \"x\"\n\n[[door]]\nid = \"a\"\n[[door]]\n  id = \"b\"\n  pulse = \"3s\"\n[api]\nsocket = \"/s\"\n",
			map[string]int{"a": 1, "portal": 2, "portal.url": 3, "door": 5, "door[0]": 5, "door[0].id": 6, "door[1]": 7, "door[1].id": 8, "door[1].pulse": 9, "api.socket": 11}},
		{"inline tables and arrays",
			"relay = { chip = \"c\", line = 17 }\nrows = [5, 6,\n  13, # a comment, with ] and [\n  19]\nx = 1\n",
			map[string]int{"relay": 1, "relay.chip": 1, "relay.line": 1, "rows": 2, "rows[0]": 2, "rows[1]": 2, "rows[2]": 3, "rows[3]": 4, "x": 5}},
		{"inline table over lines (TOML 1.1)",
			"relay = {\n  chip = \"c\",\n  line = 17,\n}\nx = 1\n",
			map[string]int{"relay": 1, "relay.chip": 2, "relay.line": 3, "x": 5}},
		{"strings that look like keys",
			"a = \"\"\"\n[door]\nb = 1\n\"\"\"\nc = '''\n[[door]]\n'''\nd = \"[x] # y = 1\"\ne = 'a\"b[c'\nf = \"\"\"q\"\"\"\"\"\ng = \"\\\"[\"\nh = 1\n",
			map[string]int{"a": 1, "c": 5, "d": 8, "e": 9, "f": 10, "g": 11, "h": 12}},
		{"dotted and quoted keys",
			"portal.url = \"x\"\n\"a.b\" . c = 1\n[ door . relay ]\n'x y' = 2\n\"esc\\u0041\" = 3\n",
			map[string]int{"portal": 1, "portal.url": 1, `"a.b"`: 2, `"a.b".c`: 2, "door.relay": 3, `door.relay."x y"`: 4, "door.relay.escA": 5}},
		{"sub-table of an array element",
			"[[door]]\nid = \"a\"\n[[door]]\nid = \"b\"\n[door.relay]\nchip = \"c\"\n[[door.x]]\ny = 1\n[[door.x]]\ny = 2\n",
			map[string]int{"door[1].relay": 5, "door[1].relay.chip": 6, "door[1].x[0]": 7, "door[1].x[0].y": 8, "door[1].x[1].y": 10}},
		{"array of inline tables",
			"door = [\n  { id = \"a\" },\n  { id = \"b\", relay = { line = 2 } },\n]\n",
			map[string]int{"door[0].id": 2, "door[1].id": 3, "door[1].relay.line": 3}},
		{"CRLF and a BOM",
			"\xef\xbb\xbfa = 1\r\n[t]\r\nb = 2 # c\r\n",
			map[string]int{"a": 1, "t": 2, "t.b": 3}},
		{"dates with a space",
			"a = 1979-05-27 07:32:00Z\nb = [1979-05-27 07:32:00, 1979-05-28]\nc = 1\n",
			map[string]int{"a": 1, "b[1]": 2, "c": 3}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var m map[string]any
			if _, err := toml.Decode(tc.doc, &m); err != nil {
				t.Fatalf("the test document is not TOML: %v", err)
			}
			got := keyLines([]byte(tc.doc)).lines
			for path, line := range tc.want {
				if got[path] != line {
					t.Errorf("line of %s = %d, want %d (all: %v)", path, got[path], line, got)
				}
			}
		})
	}
}

func TestLineOf(t *testing.T) {
	lt := lineTable{"door": 3, "door[1]": 7, "door[1].relay": 9, `"a.b[1]"`: 2}
	cases := []struct {
		path string
		want int
	}{
		{"door[1].relay.line", 9},
		{"door[1].pulse", 7},
		{"door[2].id", 3},
		{`"a.b[1]".c`, 2},
		{"portal.url", 0},
	}
	for _, tc := range cases {
		if got := lt.lineOf(tc.path); got != tc.want {
			t.Errorf("lineOf(%s) = %d, want %d", tc.path, got, tc.want)
		}
	}
}

// leafPaths lists the path of every key (and array element) in a decoded
// document, as the parser names them.
func leafPaths(prefix string, v any, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			p := keyPath(prefix, k)
			*out = append(*out, p)
			leafPaths(p, e, out)
		}
	case []map[string]any:
		for i, e := range v {
			p := indexPath(prefix, i)
			*out = append(*out, p)
			leafPaths(p, e, out)
		}
	case []any:
		for i, e := range v {
			p := indexPath(prefix, i)
			*out = append(*out, p)
			leafPaths(p, e, out)
		}
	}
}

// checkKeyLines checks that keyLines finds every key of a TOML document,
// and for a bare key a line that holds it.
func checkKeyLines(t *testing.T, doc []byte) {
	var m map[string]any
	if _, err := toml.NewDecoder(bytes.NewReader(doc)).Decode(&m); err != nil {
		return
	}
	sc := keyLines(doc)
	if sc.depth > recordDepth {
		return // deeper paths are not recorded
	}
	lt := sc.lines
	lines := strings.Split(string(doc), "\n")
	var paths []string
	leafPaths("", m, &paths)
	sort.Strings(paths)
	for _, p := range paths {
		if beyondRecordElems(p) {
			continue
		}
		n, ok := lt[p]
		if !ok {
			t.Errorf("no line for %s", p)
			continue
		}
		if n < 1 || n > len(lines) {
			t.Errorf("line of %s = %d, outside the document", p, n)
			continue
		}
		last := p[len(parentPath(p)):]
		last = strings.TrimPrefix(last, ".")
		if isBareKey(last) && !strings.Contains(lines[n-1], last) {
			t.Errorf("line %d of %s does not hold %q: %q", n, p, last, lines[n-1])
		}
	}
}

// beyondRecordElems reports whether path names an array element that the
// scanner does not record.
func beyondRecordElems(path string) bool {
	for _, m := range regexp.MustCompile(`\[(\d+)\]`).FindAllStringSubmatch(path, -1) {
		if n, _ := strconv.Atoi(m[1]); n >= recordElems {
			return true
		}
	}
	return false
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isBare(s[i]) {
			return false
		}
	}
	return true
}

// TestKeyLinesFindsEveryKey runs checkKeyLines over the test documents.
func TestKeyLinesFindsEveryKey(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.toml")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(f, func(t *testing.T) { checkKeyLines(t, data) })
	}
	for _, c := range errorCases {
		t.Run(c.name, func(t *testing.T) { checkKeyLines(t, []byte(c.doc)) })
	}
}

func FuzzKeyLines(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, doc []byte) {
		checkKeyLines(t, doc)
	})
}
