package portal

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Files of a portal directory. devportal keygen writes the first four;
// Open makes admin.token and the database.
const (
	PortalKeyFile  = "portal.key"  // Ed25519 private key seed, standard base64
	PortalPubFile  = "portal.pub"  // Ed25519 public key, standard base64 (kiosk config portal.public_key)
	SiteKeyFile    = "site.key"    // 32 random bytes, standard base64 (kiosk config portal.site_key_file)
	TokenFile      = "token"       // a device bearer token (kiosk config portal.token_file)
	AdminTokenFile = "admin.token" // bearer token of the admin API
	DBFile         = "portal.db"   // the portal's bbolt database
	ServeFile      = "serve.json"  // where a running server listens, for the command line
)

// SiteKeySize is the size of a site key (SPEC §7).
const SiteKeySize = 32

// maxKeyFileBytes bounds what is read of a key or token file.
const maxKeyFileBytes = 4 << 10

// ReadKeyFile reads a small file holding one standard base64 value, white
// space around it ignored, and decodes it. Errors name the file, never its
// content; what says what the file is for.
func ReadKeyFile(path, what string, size int) ([]byte, error) {
	data, err := readSmall(path, what)
	if err != nil {
		return nil, err
	}
	key, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(data)))
	if err != nil {
		return nil, fmt.Errorf("%s file %s is not standard base64", what, path)
	}
	if len(key) != size {
		return nil, fmt.Errorf("%s file %s holds %d bytes, want %d", what, path, len(key), size)
	}
	return key, nil
}

// ReadTokenFile reads a bearer token from a file, white space around it
// ignored. Errors name the file, never its content.
func ReadTokenFile(path, what string) (string, error) {
	data, err := readSmall(path, what)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("%s file %s is empty", what, path)
	}
	return tok, nil
}

func readSmall(path, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s file %s does not exist (devportal keygen makes one)", what, path)
		}
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if len(data) > maxKeyFileBytes {
		return nil, fmt.Errorf("%s file %s is too large to be a key", what, path)
	}
	return data, nil
}

// ReadPortalKey reads the portal's private key from a portal.key file.
func ReadPortalKey(path string) (ed25519.PrivateKey, error) {
	seed, err := ReadKeyFile(path, "portal key", ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// ReadSiteKey reads the site key from a site.key file.
func ReadSiteKey(path string) ([]byte, error) {
	return ReadKeyFile(path, "site key", SiteKeySize)
}

// NewToken returns a new random bearer token: 32 random bytes, base64url.
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("new token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// WriteSecret writes data to path with mode, replacing any file there
// without ever leaving the content readable under a looser mode.
func WriteSecret(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ensureAdminToken returns the admin token of dir, making admin.token
// (mode 0600) when it does not exist.
func ensureAdminToken(dir string) (string, error) {
	path := filepath.Join(dir, AdminTokenFile)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		tok, err := NewToken()
		if err != nil {
			return "", err
		}
		if err := WriteSecret(path, []byte(tok+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("write admin token: %w", err)
		}
	}
	return ReadTokenFile(path, "admin token")
}
