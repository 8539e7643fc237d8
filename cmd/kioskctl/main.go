// Command kioskctl is the technician's tool on a kiosk (SPEC §1). For now
// it applies sync documents that travelled as files (SPEC §6.5); status,
// live events, relay tests, input watching, check-config and doctor come
// as further subcommands.
//
//	kioskctl [-config PATH] apply NAME.json
//
// Exit status: 0 done (a document applied), 1 rejected or failed, 2 bad
// usage.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"

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

// exitCode prints err, if any, and returns the exit status for it.
func exitCode(err error, stderr io.Writer) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "kioskctl: %v\nRun 'kioskctl help' for usage.\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "kioskctl: %v\n", err)
		return 1
	}
}

// globals are the flags before the subcommand.
type globals struct {
	configPath string
}

// command is one subcommand.
type command struct {
	usage   string
	summary string
	run     func(g *globals, args []string, stdout, stderr io.Writer) error
}

// commands are the subcommands; add new ones here.
var commands = map[string]command{
	"apply": {"apply NAME.json", "check a signed sync document file (NAME.json with NAME.json.sig) and apply it to the store", runApply},
}

// run runs kioskctl with the arguments after the program name.
func run(args []string, stdout, stderr io.Writer) error {
	g := &globals{}
	fs := flag.NewFlagSet("kioskctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&g.configPath, "config", config.DefaultPath, "kioskd's config file")
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
	return cmd.run(g, fs.Args()[1:], stdout, stderr)
}

func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintln(w, "Usage: kioskctl [-config PATH] <command> [arguments]")
	fmt.Fprintln(w, "\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-18s %s\n", commands[n].usage, commands[n].summary)
	}
	fmt.Fprintln(w, "\nFlags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
}
