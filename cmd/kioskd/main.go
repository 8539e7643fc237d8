// Command kioskd is the daemon of a Smart Package Room kiosk: it reads
// keypads, scanners and card readers, decides against the local credential
// store, pulses door and locker relays, and records every event.
//
// Usage:
//
//	kioskd [-config /etc/kioskd/kioskd.toml]
//
// SIGINT or SIGTERM stop it cleanly: relays are released inactive and the
// store is closed.
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
	"syscall"
)

// Set at build time with -ldflags "-X main.version=… -X main.buildTime=…".
var (
	version   = "dev"
	buildTime = "" // RFC 3339; the clock floor never goes below it
)

func main() {
	if err := mainErr(os.Args[1:], os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "kioskd:", err)
		}
		os.Exit(1)
	}
}

func mainErr(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("kioskd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/kioskd/kioskd.toml", "configuration file")
	showVersion := fs.Bool("version", false, "print the version and exit")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintln(stderr, "kioskd", version)
		return nil
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return run(ctx, Options{ConfigPath: *cfgPath, Log: log})
}
