package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// addSeeds seeds a fuzz test with the test documents: the files under
// testdata and every document of the error table.
func addSeeds(f *testing.F) {
	files, err := filepath.Glob("testdata/*.toml")
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed files: %v", err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, c := range errorCases {
		f.Add([]byte(c.doc))
	}
}

// FuzzParse checks that Parse never panics, that a config it accepts is
// consistent, and that what it refuses is an ErrConfig naming the file on
// every line.
func FuzzParse(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.toml")
		if err != nil {
			if c != nil {
				t.Fatal("Parse returned a Config and an error")
			}
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error does not wrap ErrConfig: %v", err)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz.toml:") {
					t.Fatalf("error line does not name the file: %q", line)
				}
			}
			return
		}
		if err := checkConsistent(c); err != nil {
			t.Fatalf("Parse accepted an inconsistent config: %v\n%s", err, data)
		}
	})
}
