package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"kioskd/kiosk"
	"kioskd/kiosk/config"
	"kioskd/store"
	portalsync "kioskd/sync"
)

// runApply is `kioskctl apply NAME.json`: it checks the document file
// like a pulled document and applies it through the same path (SPEC
// §6.5). When kioskd runs, the document goes through its API (kioskd reads
// the file, so its user must be able to); when kioskd does not answer on
// its socket, kioskctl opens the store itself.
func runApply(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	fs, err := subFlags(g, "apply", "apply NAME.json",
		"Applies NAME.json, signed by NAME.json.sig, to the kiosk's store: through kioskd when\n"+
			"it runs, else directly.", stderr, args, nil)
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("apply: want one document file (NAME.json), got %d arguments", fs.NArg())
	}
	path := fs.Arg(0)

	cfg, err := config.Load(g.configPath)
	if err != nil {
		return err
	}
	if len(cfg.Portal.PublicKey) == 0 {
		return fmt.Errorf("%s: portal.public_key is not set: it is needed to check the signature of documents", cfg.Path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("apply %s: %w", path, err)
	}
	for _, p := range []string{abs, portalsync.SigPath(abs)} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("apply: %w", err)
		}
	}
	socket := g.socket
	if socket == "" {
		socket = cfg.API.Socket
	}
	done, err := applyViaAPI(ctx, g, newClient(socket), abs, stdout)
	if done || !isNotRunning(err) {
		return err
	}
	return applyDirect(ctx, g, cfg, socket, path, stdout, stderr)
}

// applyViaAPI asks the running kioskd to apply the file. done is false
// when kioskd does not answer (then err wraps errNotRunning).
func applyViaAPI(ctx context.Context, g *globals, c *client, abs string, stdout io.Writer) (done bool, err error) {
	var r applyReply
	err = c.call(ctx, http.MethodPost, "/v1/apply", map[string]string{"path": abs}, &r)
	if isNotRunning(err) {
		return false, err
	}
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Reason == "" && privatePath(abs) {
			return true, fmt.Errorf("%w\nnote: kioskd runs with PrivateTmp and ProtectHome (kioskd.service), so it cannot see files\nunder /tmp, /var/tmp, /home or /root; copy NAME.json and NAME.json.sig to a directory\nkioskd can read (the USB stick's mount point, /srv, ...) and apply from there", err)
		}
		return true, err
	}
	if g.json {
		return true, printJSON(stdout, r)
	}
	fmt.Fprintln(stdout, describe(portalsync.Result{
		Full: r.Full, Base: r.Base, Cursor: r.Cursor, Changed: r.Changed,
		Stats: store.ApplyStats{Upserted: r.Upserted, Removed: r.Removed},
	})+" (through kioskd)")
	if r.Commands > 0 {
		fmt.Fprintf(stdout, "kioskd ran the document's %d command(s) (each at most once)\n", r.Commands)
	}
	return true, nil
}

// privatePath reports whether kioskd's unit hides path from it.
func privatePath(path string) bool {
	for _, dir := range []string{"/tmp/", "/var/tmp/", "/home/", "/root/", "/run/user/"} {
		if strings.HasPrefix(path, dir) {
			return true
		}
	}
	return false
}

// applyDirect applies the file on the store itself, for when kioskd does
// not run.
func applyDirect(ctx context.Context, g *globals, cfg *config.Config, socket, path string, stdout, stderr io.Writer) (err error) {
	// The store logs what it repairs after a crash; the technician sees it.
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := store.Open(store.Options{Dir: cfg.StateDir, Logger: logger})
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("kioskd is running and holds the store in %s, but does not answer on its API socket %s (-socket, api.socket); apply through the API or stop kioskd (systemctl stop kioskd) and apply again", cfg.StateDir, socket)
	}
	if err != nil {
		return err
	}
	// Runs after the Close below: whatever the store created as root goes
	// to the state dir's owner (the kioskd user), rejected file or not.
	defer func() {
		if oerr := matchStateOwner(cfg.StateDir); oerr != nil && err == nil {
			err = oerr
		}
	}()
	defer st.Close()

	floor, err := st.ClockFloor()
	if err != nil {
		return err
	}
	// kioskctl cannot tell whether the system clock is synchronised: its
	// events say clock_synced false, as kioskd's do until it knows.
	clock := kiosk.NewClock(time.Now, nil, floor)

	res, err := portalsync.ApplyFile(ctx, portalsync.StoreApplier(st), portalsync.FileOptions{
		DeviceID:  cfg.DeviceID,
		PublicKey: cfg.Portal.PublicKey,
		MaxBytes:  cfg.Portal.MaxDocumentBytes,
		Now:       clock.Now,
	}, path)
	if err != nil {
		if reason := portalsync.RejectReason(err); reason != "" {
			return fmt.Errorf("rejected %s (%s): %w", filepath.Base(path), reason, err)
		}
		return fmt.Errorf("apply %s: %w", path, err)
	}
	if g.json {
		if err := printJSON(stdout, applyReply{
			Full: res.Full, Base: res.Base, Cursor: res.Cursor, IssuedAt: res.IssuedAt, Changed: res.Changed,
			Credentials: res.Credentials, Upserted: res.Stats.Upserted, Removed: res.Stats.Removed, Commands: len(res.Commands),
		}); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(stdout, describe(res))
	}
	if n := len(res.Commands); n > 0 {
		fmt.Fprintf(stderr, "note: the document carries %d command(s); commands are not run from files\n", n)
	}
	if err := st.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// describe says what applying a document did, in one line.
func describe(r portalsync.Result) string {
	switch {
	case r.Full && r.Changed:
		return fmt.Sprintf("applied full document %s: %d credentials, %d removed", r.Cursor, r.Stats.Upserted, r.Stats.Removed)
	case r.Full:
		return fmt.Sprintf("applied full document %s: %d credentials; the kiosk already had this set, nothing changed", r.Cursor, r.Stats.Upserted)
	case r.Changed:
		return fmt.Sprintf("applied delta %s on %s: %d upserted, %d removed", r.Cursor, r.Base, r.Stats.Upserted, r.Stats.Removed)
	default:
		return fmt.Sprintf("delta %s on %s changed nothing", r.Cursor, r.Base)
	}
}
