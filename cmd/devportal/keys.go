package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"kioskd/cmd/devportal/portal"
)

// Key files written by keygen.
const (
	portalKeyFile = portal.PortalKeyFile
	portalPubFile = portal.PortalPubFile
	siteKeyFile   = portal.SiteKeyFile
	tokenFile     = portal.TokenFile
)

// siteKeySize is the size of a site key (SPEC §7).
const siteKeySize = portal.SiteKeySize

func runKeygen(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("keygen", "-dir DIR [-force]", stderr)
	dir := fs.String("dir", ".", "directory to write portal.key, portal.pub, site.key and token into")
	force := fs.Bool("force", false, "overwrite existing files")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("keygen: unexpected argument %q", fs.Arg(0))
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	site := make([]byte, siteKeySize)
	token := make([]byte, 32)
	if _, err := rand.Read(site); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if _, err := rand.Read(token); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	pubText := base64.StdEncoding.EncodeToString(pub)
	files := []struct {
		name string
		text string
		mode os.FileMode
	}{
		{portalKeyFile, base64.StdEncoding.EncodeToString(priv.Seed()), 0o600},
		{portalPubFile, pubText, 0o644},
		{siteKeyFile, base64.StdEncoding.EncodeToString(site), 0o600},
		{tokenFile, base64.RawURLEncoding.EncodeToString(token), 0o600},
	}
	if !*force {
		for _, f := range files {
			p := filepath.Join(*dir, f.name)
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("keygen: %s exists; use -force to replace the keys (documents signed with the old key will no longer verify)", p)
			}
		}
	}
	for _, f := range files {
		p := filepath.Join(*dir, f.name)
		if err := writeSecret(p, []byte(f.text+"\n"), f.mode); err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		fmt.Fprintf(stdout, "wrote %s\n", p)
	}
	fmt.Fprintf(stdout, "\nFor kioskd.toml [portal]:\n  public_key    = %q\n  site_key_file = %q\n  token_file    = %q\n",
		pubText, abs(filepath.Join(*dir, siteKeyFile)), abs(filepath.Join(*dir, tokenFile)))
	return nil
}

// writeSecret writes data to path with mode, replacing any file there
// without ever leaving the content readable under a looser mode.
func writeSecret(path string, data []byte, mode os.FileMode) error {
	return portal.WriteSecret(path, data, mode)
}

func abs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// readKeyFile reads a small file holding one standard base64 value, white
// space around it ignored, and decodes it. Errors name the file, never its
// content.
func readKeyFile(path, what string, size int) ([]byte, error) {
	return portal.ReadKeyFile(path, what, size)
}

// readPortalKey reads the portal's private key from a portal.key file.
func readPortalKey(path string) (ed25519.PrivateKey, error) { return portal.ReadPortalKey(path) }

// readSiteKey reads the site key from a site.key file.
func readSiteKey(path string) ([]byte, error) { return portal.ReadSiteKey(path) }
