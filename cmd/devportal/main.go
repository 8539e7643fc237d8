// Command devportal is the reference portal of kioskd (SPEC §1, §6): for
// bench setups, demos and the integration tests. It serves the device
// protocol over HTTP from a bbolt database (package portal), offers the
// property manager's operations on the command line and as a JSON admin
// API, and makes keys and signed sync documents as files (SPEC §6.5).
//
//	devportal keygen -dir DIR
//	devportal serve -dir DIR [-listen 127.0.0.1:8080]
//	devportal device add -dir DIR -id spr-0001 [-token-file F] [-push-url URL]
//	devportal holder add -dir DIR -role courier -name ParcelCo
//	devportal pin -dir DIR -holder h-1 [-choose] [-uses N] [-schedule "mon-fri 07:00-20:00"]
//	devportal onetime -dir DIR -holder h-1 [-valid 24h]
//	devportal qr -dir DIR -holder h-1 [-signed] [-png FILE]
//	devportal card -dir DIR -holder h-1 < number
//	devportal deactivate|reactivate|delete -dir DIR -id c-1
//	devportal revoke -dir DIR -cid tok-…
//	devportal unlock -dir DIR -device spr-0001 -door main
//	devportal holders|credentials|tokens|devices|events …
//	devportal export -dir DIR -device spr-0001 -out NAME.json
//	devportal import -dir DIR -seed examples/demo-seed.toml
//	devportal mkdoc -site-key F -portal-key F -device ID -seed seed.toml -out NAME.json [-cursor c-1]
//	devportal sign -portal-key F NAME.json
//
// The operations open the database directly when no server runs on DIR;
// while devportal serve runs (it holds the database), they talk to its
// admin API, found through DIR/serve.json, with DIR/admin.token. Pushes
// are sent only by the server; changes made while it is down reach the
// kiosks at their next pull, and the server pushes them when it starts.
//
// Exit status: 0 done, 1 failed, 2 bad usage.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
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
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "devportal: %v\nRun 'devportal help' for usage.\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "devportal: %v\n", err)
		return 1
	}
}

// command is one subcommand.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

// commands are the subcommands; add new ones here.
var commands = map[string]command{
	"keygen":      {"make a portal key pair, a site key and a device token", runKeygen},
	"mkdoc":       {"make a signed full sync document from a seed file", runMkdoc},
	"sign":        {"write the signature file of a sync document", runSign},
	"serve":       {"serve the portal protocol and the admin API over HTTP", runServe},
	"device":      {"register a kiosk (device add) or list them (device list)", runDevice},
	"devices":     {"list the registered kiosks", runDevices},
	"holder":      {"create a holder (holder add) or list them (holder list)", runHolder},
	"holders":     {"list the holders", runHolders},
	"pin":         {"issue a PIN (drawn, or chosen with -choose) and show it once", runPIN},
	"onetime":     {"issue a one-time access PIN (one use, 24 h) and show it once", runOneTime},
	"qr":          {"issue a staff QR code: plain, or a signed token with -signed", runQR},
	"card":        {"register a key card or fob (number on standard input)", runCard},
	"credentials": {"list credentials (never their secrets)", runCredentials},
	"deactivate":  {"deactivate a credential", runCredOp("deactivate")},
	"reactivate":  {"reactivate a credential", runCredOp("reactivate")},
	"delete":      {"delete a credential", runCredOp("delete")},
	"revoke":      {"revoke a signed QR token by its cid", runRevoke},
	"tokens":      {"list the signed QR tokens issued", runTokens},
	"unlock":      {"open a door of a kiosk remotely", runUnlock},
	"events":      {"list a kiosk's events, newest first", runEvents},
	"export":      {"write a signed full document of the live set as files", runExport},
	"import":      {"add the holders and credentials of a seed file (known secrets, for demos)", runImport},
}

// run runs devportal with the arguments after the program name.
func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return usagef("no command")
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "-help" || name == "--help" {
		usage(stdout)
		return nil
	}
	cmd, ok := commands[name]
	if !ok {
		return usagef("unknown command %q", name)
	}
	return cmd.run(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: devportal <command> [flags]")
	fmt.Fprintln(w, "\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'devportal <command> -h' for the flags of a command.")
}

// newFlags returns a flag set for a subcommand that reports errors as
// usage errors instead of exiting.
func newFlags(name, args string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: devportal %s %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, turning flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	return nil
}

// required reports the first of the named string flags left empty.
func required(fs *flag.FlagSet, names ...string) error {
	var missing []string
	for _, n := range names {
		if fs.Lookup(n).Value.String() == "" {
			missing = append(missing, "-"+n)
		}
	}
	if len(missing) > 0 {
		return usagef("%s: missing %s", fs.Name(), strings.Join(missing, ", "))
	}
	return nil
}
