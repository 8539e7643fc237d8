// Command kioskctl is the technician's tool on a kiosk (SPEC §1): status,
// live events, relay tests, watching keypad and scanner input, a pull from
// the portal, applying sync documents that travelled as files (SPEC §6.5),
// checking the config and a doctor that checks the whole installation.
//
//	kioskctl [-config PATH] [-socket PATH] [--json] COMMAND [ARGS]
//
// Most commands talk to the running kioskd over its local API socket
// (api.socket in the config, /run/kioskd/kioskd.sock by default; -socket
// overrides it). check-config and most of doctor need no daemon; apply
// goes through kioskd when it runs and opens the store itself when not.
// Output is for people by default; --json prints what kioskd answered,
// as JSON (one object per line for streams), for scripts.
//
// Exit status: 0 done, 1 failed (or a problem found), 2 bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"kioskd/kiosk/config"
)

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	os.Exit(exitCode(err, os.Stderr))
}

// usageError is a command line that cannot be run: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// errProblems is returned by commands that found problems and already
// said which (check-config, doctor): exit status 1, nothing more printed.
var errProblems = errors.New("problems found")

// exitCode prints err, if any, and returns the exit status for it.
func exitCode(err error, stderr io.Writer) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "kioskctl: %v\nRun 'kioskctl help' for usage.\n", err)
		return 2
	case errors.Is(err, errProblems):
		return 1
	default:
		fmt.Fprintf(stderr, "kioskctl: %v\n", err)
		return 1
	}
}

// globals are the flags before the subcommand.
type globals struct {
	configPath string
	socket     string // -socket; "" = api.socket of the config
	json       bool
	stderr     io.Writer
}

// socketPath returns the API socket: -socket, else the config's
// api.socket, else (config unreadable) the default, with a warning.
func (g *globals) socketPath() string {
	if g.socket != "" {
		return g.socket
	}
	cfg, err := config.Load(g.configPath)
	if err != nil {
		fmt.Fprintf(g.stderr, "kioskctl: warning: %v\nkioskctl: trying the default socket %s (use -socket PATH)\n", err, config.DefaultSocket)
		return config.DefaultSocket
	}
	return cfg.API.Socket
}

// client returns an API client on the socket.
func (g *globals) client() *client { return newClient(g.socketPath()) }

// command is one subcommand.
type command struct {
	usage   string
	summary string
	run     func(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error
}

// commands are the subcommands; add new ones here.
var commands = map[string]command{
	"status":       {"status", "show doors, inputs, sync, store, clock, version and board", runStatus},
	"events":       {"events [--follow] [--after N]", "print the events not yet accepted by the portal; --follow waits for new ones", runEvents},
	"unlock":       {"unlock DOOR", "pulse a door's relay (recorded as door.unlocked, source technician)", runUnlock},
	"test-relay":   {"test-relay DOOR", "pulse a door's relay as a test (door.unlocked with detail test)", runTestRelay},
	"watch-input":  {"watch-input", "show keys and codes as the inputs read them (digits masked)", runWatchInput},
	"sync":         {"sync [--wait 30s]", "pull from the portal now and wait for the result", runSync},
	"apply":        {"apply NAME.json", "check a signed sync document file (NAME.json with NAME.json.sig) and apply it", runApply},
	"check-config": {"check-config [PATH]", "check the config file, naming the line and key of every problem", runCheckConfig},
	"doctor":       {"doctor", "check the installation: config, state dir, devices, secrets, clock, portal, kioskd", runDoctor},
}

// run runs kioskctl with the arguments after the program name.
func run(args []string, stdout, stderr io.Writer) error {
	g := &globals{stderr: stderr}
	fs := flag.NewFlagSet("kioskctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&g.configPath, "config", config.DefaultPath, "kioskd's config file")
	fs.StringVar(&g.socket, "socket", "", "kioskd's API socket (default: api.socket of the config)")
	fs.BoolVar(&g.json, "json", false, "print JSON for scripts instead of text")
	fs.Usage = func() { usage(stderr, fs) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	if fs.NArg() == 0 {
		usage(stderr, fs)
		return usagef("no command")
	}
	name := fs.Arg(0)
	if name == "help" {
		usage(stdout, fs)
		return nil
	}
	cmd, ok := commands[name]
	if !ok {
		return usagef("unknown command %q", name)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cmd.run(ctx, g, fs.Args()[1:], stdout, stderr)
}

func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintln(w, "Usage: kioskctl [-config PATH] [-socket PATH] [--json] <command> [arguments]")
	fmt.Fprintln(w, "\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-31s %s\n", commands[n].usage, commands[n].summary)
	}
	fmt.Fprintln(w, "\nThe events journal holds only what the portal has not accepted yet:")
	fmt.Fprintln(w, "accepted events are deleted from the board, so a gap in seq numbers")
	fmt.Fprintln(w, "means events already uploaded.")
	fmt.Fprintln(w, "\nFlags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// subFlags parses a subcommand's flags; usageLine and help describe it.
// --json is accepted after the command too.
func subFlags(g *globals, name, usageLine, help string, stderr io.Writer, args []string, define func(*flag.FlagSet)) (*flag.FlagSet, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&g.json, "json", g.json, "print JSON for scripts instead of text")
	if define != nil {
		define(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: kioskctl [-config PATH] [-socket PATH] [--json] %s\n%s\n", usageLine, help)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, &usageError{err.Error()}
	}
	return fs, nil
}
