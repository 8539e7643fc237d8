package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"kioskd/kiosk"
	"kioskd/kiosk/config"
	"kioskd/store"
	portalsync "kioskd/sync"
)

// runApply is `kioskctl apply NAME.json`: it checks the document file
// like a pulled document and applies it through the same path (SPEC
// §6.5), opening the store directly. kioskd must not be running: it holds
// the store.
func runApply(g *globals, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("apply", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: kioskctl [-config PATH] apply NAME.json")
		fmt.Fprintln(stderr, "Applies NAME.json, signed by NAME.json.sig, to the kiosk's store.")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
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
	// The store logs what it repairs after a crash; the technician sees it.
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := store.Open(store.Options{Dir: cfg.StateDir, Logger: logger})
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("kioskd is running and holds the store in %s; stop it (systemctl stop kioskd) and apply again — applying through the running daemon is not supported yet", cfg.StateDir)
	}
	if err != nil {
		return err
	}
	defer st.Close()

	floor, err := st.ClockFloor()
	if err != nil {
		return err
	}
	// kioskctl cannot tell whether the system clock is synchronised: its
	// events say clock_synced false, as kioskd's do until it knows.
	clock := kiosk.NewClock(time.Now, nil, floor)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
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
	fmt.Fprintln(stdout, describe(res))
	if n := len(res.Commands); n > 0 {
		fmt.Fprintf(stdout, "note: the document carries %d command(s); commands are not run from files\n", n)
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
