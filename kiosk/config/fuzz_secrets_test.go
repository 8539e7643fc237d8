package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzSecretFiles reads arbitrary site key and token files (SPEC §7:
// white space around the content is ignored; the site key is 32 bytes in
// standard base64). What is accepted is exactly the trimmed content; what
// is refused is an ErrConfig; no error ever shows the secret.
func FuzzSecretFiles(f *testing.F) {
	dir := f.TempDir()
	c := Default()
	c.Portal.SiteKeyFile = filepath.Join(dir, "site.key")
	c.Portal.TokenFile = filepath.Join(dir, "token")
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	for _, s := range []string{key, key + "\n", "  " + key + " \r\n", key[:40], key + "AAAA", "Zm9v", "", " \n\t", "tok-7F3K9QZXW2\n", "tok with space", "t\x00k", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, name := range []string{c.Portal.SiteKeyFile, c.Portal.TokenFile} {
			if err := os.WriteFile(name, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		trimmed := bytes.TrimSpace(data)
		// A secret of 12 bytes or more must not appear in the error (the
		// file's path aside, which the error names).
		leaks := func(err error) bool {
			msg := strings.ReplaceAll(strings.ReplaceAll(err.Error(), c.Portal.SiteKeyFile, ""), c.Portal.TokenFile, "")
			return len(trimmed) >= 12 && strings.Contains(msg, string(trimmed))
		}

		k, err := c.ReadSiteKey()
		if err != nil {
			if !errors.Is(err, ErrConfig) && len(data) <= maxSecretBytes {
				t.Fatalf("site key error does not wrap ErrConfig: %v", err)
			}
			if leaks(err) {
				t.Fatalf("site key error shows the key: %v", err)
			}
		} else {
			want, derr := base64.StdEncoding.DecodeString(string(trimmed))
			if derr != nil || len(k) != SiteKeySize || !bytes.Equal(k, want) {
				t.Fatalf("site key %x from %q (decodes to %x, %v)", k, data, want, derr)
			}
		}

		tok, err := c.ReadToken()
		if err != nil {
			if !errors.Is(err, ErrConfig) && len(data) <= maxSecretBytes {
				t.Fatalf("token error does not wrap ErrConfig: %v", err)
			}
			if leaks(err) {
				t.Fatalf("token error shows the token: %v", err)
			}
			return
		}
		if tok != string(trimmed) || tok == "" {
			t.Fatalf("token %q from %q", tok, data)
		}
		for _, r := range []byte(tok) {
			if r < 0x21 || r > 0x7e {
				t.Fatalf("token %q holds a byte that is not printable ASCII", tok)
			}
		}
	})
}
