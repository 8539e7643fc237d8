package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	qrcode "github.com/skip2/go-qrcode"
	"golang.org/x/term"

	"kioskd/cmd/devportal/portal"
	"kioskd/kiosk"
)

// stdin is where secrets the property manager gives (a chosen PIN, a card
// number) are read from; tests replace it.
var stdin io.Reader = os.Stdin

// directOpenTimeout is how long an operation waits for the database lock
// (held by another operation, or by a server whose serve.json is gone).
const directOpenTimeout = 2 * time.Second

// adminFlags are the flags every operation has.
type adminFlags struct {
	dir     *string
	jsonOut *bool
}

func addAdminFlags(fs *flag.FlagSet) adminFlags {
	return adminFlags{
		dir:     fs.String("dir", ".", "portal directory (devportal keygen's)"),
		jsonOut: fs.Bool("json", false, "print the result as JSON"),
	}
}

// openAdmin talks to the running server's admin API when there is one
// (serve.json in the directory names it and it answers), and otherwise
// opens the portal database directly.
func openAdmin(dir string, stderr io.Writer) (portal.Admin, func(), error) {
	if c, err := portal.Dial(dir); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := c.Ping(ctx)
		cancel()
		if err == nil {
			return c, func() {}, nil
		}
		// A serve.json left by a server that died: the database is free.
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := portal.Open(portal.Options{Dir: dir, OpenTimeout: directOpenTimeout, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	return p, func() { p.Close() }, nil
}

// withAdmin runs fn against the portal of the -dir flag.
func withAdmin(af adminFlags, stderr io.Writer, fn func(ctx context.Context, a portal.Admin) error) error {
	a, closeFn, err := openAdmin(*af.dir, stderr)
	if err != nil {
		return err
	}
	defer closeFn()
	return fn(context.Background(), a)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

// readSecret reads one secret line from stdin: without echo, after a
// prompt, when stdin is a terminal.
func readSecret(prompt string, stderr io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stderr, prompt)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", fmt.Errorf("read %s: %w", strings.TrimSuffix(prompt, ": "), err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4<<10)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read %s from standard input: %w", strings.TrimSuffix(prompt, ": "), err)
	}
	s := strings.TrimSpace(line)
	if s == "" {
		return "", usagef("no %s on standard input", strings.TrimSuffix(prompt, ": "))
	}
	return s, nil
}

// --- holders ---

func runHolder(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("holder: want a subcommand: add or list")
	}
	switch args[0] {
	case "add":
		fs := newFlags("holder add", "-dir DIR -role resident|staff|courier|manager -name NAME [-json]", stderr)
		af := addAdminFlags(fs)
		role := fs.String("role", "", "resident, staff, courier or manager")
		name := fs.String("name", "", "the holder's name, e.g. \"Ana Ruiz, apt 4B\"")
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		if err := noArgs(fs); err != nil {
			return err
		}
		if err := required(fs, "role"); err != nil {
			return err
		}
		return withAdmin(af, stderr, func(ctx context.Context, a portal.Admin) error {
			h, err := a.AddHolder(ctx, portal.HolderSpec{Role: kiosk.Role(*role), Name: *name})
			if err != nil {
				return err
			}
			if *af.jsonOut {
				return printJSON(stdout, h)
			}
			fmt.Fprintf(stdout, "%s\t%s\t%s\n", h.ID, h.Role, h.Name)
			return nil
		})
	case "list":
		return runHolders(args[1:], stdout, stderr)
	}
	return usagef("holder: unknown subcommand %q (add, list)", args[0])
}

func runHolders(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("holders", "-dir DIR [-json]", stderr)
	af := addAdminFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	return withAdmin(af, stderr, func(ctx context.Context, a portal.Admin) error {
		hs, err := a.Holders(ctx)
		if err != nil {
			return err
		}
		if *af.jsonOut {
			return printJSON(stdout, hs)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tROLE\tNAME\tCREATED")
		for _, h := range hs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", h.ID, h.Role, h.Name, h.Created.Format(time.RFC3339))
		}
		return tw.Flush()
	})
}

// --- credentials ---

// credFlags are the options of an issued credential.
type credFlags struct {
	holder, validFrom, validUntil, doors, schedule *string
	uses                                           *int
	valid                                          *time.Duration
}

func addCredFlags(fs *flag.FlagSet, schedule bool) credFlags {
	cf := credFlags{
		holder:     fs.String("holder", "", "holder id (devportal holder add makes one)"),
		uses:       fs.Int("uses", 0, "use limit: 0 = unlimited"),
		validFrom:  fs.String("valid-from", "", "start of validity, RFC 3339 (e.g. 2026-12-01T08:00:00Z)"),
		validUntil: fs.String("valid-until", "", "end of validity, RFC 3339"),
		valid:      fs.Duration("valid", 0, "validity from -valid-from (or now), e.g. 72h; instead of -valid-until"),
		doors:      fs.String("doors", "", "comma-separated door ids; empty = every room door"),
	}
	if schedule {
		cf.schedule = fs.String("schedule", "", `weekly windows, e.g. "mon-fri 07:00-20:00; sat 09:00-13:00"; empty = always`)
	}
	return cf
}

func parseTimeFlag(name, s string) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return nil, usagef("-%s: %v", name, err)
	}
	return &t, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func (cf credFlags) spec(typ string) (portal.CredentialSpec, error) {
	spec := portal.CredentialSpec{Holder: *cf.holder, Type: typ, Uses: *cf.uses,
		ValidFor: portal.Duration(*cf.valid), Doors: splitList(*cf.doors)}
	var err error
	if spec.ValidFrom, err = parseTimeFlag("valid-from", *cf.validFrom); err != nil {
		return spec, err
	}
	if spec.ValidUntil, err = parseTimeFlag("valid-until", *cf.validUntil); err != nil {
		return spec, err
	}
	if spec.ValidUntil != nil && *cf.valid != 0 {
		return spec, usagef("-valid and -valid-until exclude each other")
	}
	if cf.schedule != nil {
		if spec.Schedule, err = portal.ParseSchedule(*cf.schedule); err != nil {
			return spec, usagef("-schedule: %v", err)
		}
	}
	return spec, nil
}

// issue issues a credential and shows its secret once.
func issue(af adminFlags, spec portal.CredentialSpec, secretName string, stdout, stderr io.Writer) (portal.Issued, error) {
	var is portal.Issued
	err := withAdmin(af, stderr, func(ctx context.Context, a portal.Admin) error {
		var err error
		is, err = a.Issue(ctx, spec)
		return err
	})
	if err != nil {
		return is, err
	}
	if *af.jsonOut {
		return is, printJSON(stdout, is)
	}
	printCredential(stdout, is.Credential)
	fmt.Fprintf(stdout, "%s: %s\n", secretName, is.Secret.Reveal())
	fmt.Fprintln(stdout, "Shown once: the portal keeps only its digest.")
	return is, nil
}

func printCredential(w io.Writer, c portal.CredentialInfo) {
	fmt.Fprintf(w, "%s (%s) for %s %s", c.ID, c.Type, c.Holder.ID, c.Holder.Role)
	if c.Holder.Name != "" {
		fmt.Fprintf(w, " %q", c.Holder.Name)
	}
	fmt.Fprintf(w, ", %s, rev %d", c.Status, c.Rev)
	if c.Uses > 0 {
		fmt.Fprintf(w, ", %d use(s)", c.Uses)
	}
	if c.ValidFrom != nil {
		fmt.Fprintf(w, ", from %s", c.ValidFrom.Format(time.RFC3339))
	}
	if c.ValidUntil != nil {
		fmt.Fprintf(w, ", until %s", c.ValidUntil.Format(time.RFC3339))
	}
	if len(c.Doors) > 0 {
		fmt.Fprintf(w, ", doors %s", strings.Join(c.Doors, ","))
	}
	if len(c.Schedule) > 0 {
		fmt.Fprintf(w, ", schedule %q", portal.FormatSchedule(c.Schedule))
	}
	fmt.Fprintln(w)
}

func runPIN(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("pin", "-dir DIR -holder H [-choose] [-uses N] [-valid-from T] [-valid-until T | -valid D] [-doors a,b] [-schedule S] [-json]", stderr)
	af := addAdminFlags(fs)
	cf := addCredFlags(fs, true)
	choose := fs.Bool("choose", false, "read a chosen PIN (staff and couriers) from standard input instead of drawing one")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if err := required(fs, "holder"); err != nil {
		return err
	}
	typ := portal.TypePIN
	if *choose {
		typ = portal.TypeChosenPIN
	}
	spec, err := cf.spec(typ)
	if err != nil {
		return err
	}
	if *choose {
		pin, err := readSecret("PIN: ", stderr)
		if err != nil {
			return err
		}
		spec.Secret = portal.SecretText(pin)
	}
	_, err = issue(af, spec, "PIN", stdout, stderr)
	return err
}

func runOneTime(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("onetime", "-dir DIR -holder H [-valid 24h | -valid-until T] [-valid-from T] [-doors a,b] [-schedule S] [-json]", stderr)
	af := addAdminFlags(fs)
	cf := addCredFlags(fs, true)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if err := required(fs, "holder"); err != nil {
		return err
	}
	if *cf.uses > 1 {
		return usagef("onetime: a one-time PIN has one use")
	}
	spec, err := cf.spec(portal.TypeOneTime)
	if err != nil {
		return err
	}
	_, err = issue(af, spec, "PIN", stdout, stderr)
	return err
}

func runCard(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("card", "-dir DIR -holder H [options] < number", stderr)
	af := addAdminFlags(fs)
	cf := addCredFlags(fs, true)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if err := required(fs, "holder"); err != nil {
		return err
	}
	spec, err := cf.spec(portal.TypeCard)
	if err != nil {
		return err
	}
	num, err := readSecret("card number: ", stderr)
	if err != nil {
		return err
	}
	spec.Secret = portal.SecretText(num)
	_, err = issue(af, spec, "card", stdout, stderr)
	return err
}

func runQR(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("qr", "-dir DIR -holder H [-signed] [-png FILE] [-show] [options]", stderr)
	af := addAdminFlags(fs)
	cf := addCredFlags(fs, true)
	signed := fs.Bool("signed", false, "make a signed offline token (KQ1) instead of a plain QR credential; default validity 30 days")
	pngPath := fs.String("png", "", "also write the QR code as a PNG image to this file")
	show := fs.Bool("show", false, "also draw the QR code on the terminal")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if err := required(fs, "holder"); err != nil {
		return err
	}
	var text string
	if *signed {
		if *cf.schedule != "" {
			return usagef("qr: a signed token has no schedule")
		}
		spec, err := cf.spec(portal.TypeQR)
		if err != nil {
			return err
		}
		ts := portal.TokenSpec{Holder: spec.Holder, Doors: spec.Doors, ValidFrom: spec.ValidFrom,
			ValidUntil: spec.ValidUntil, ValidFor: spec.ValidFor, Uses: spec.Uses}
		var it portal.IssuedToken
		err = withAdmin(af, stderr, func(ctx context.Context, a portal.Admin) error {
			var err error
			it, err = a.IssueToken(ctx, ts)
			return err
		})
		if err != nil {
			return err
		}
		text = it.Text.Reveal()
		if *af.jsonOut {
			if err := printJSON(stdout, it); err != nil {
				return err
			}
		} else {
			t := it.Token
			fmt.Fprintf(stdout, "token %s for %s %s, until %s", t.CID, t.Holder, t.Role, time.Unix(t.EXP, 0).UTC().Format(time.RFC3339))
			if t.Uses > 0 {
				fmt.Fprintf(stdout, ", %d use(s)", t.Uses)
			}
			if len(t.Doors) > 0 {
				fmt.Fprintf(stdout, ", doors %s", strings.Join(t.Doors, ","))
			}
			fmt.Fprintf(stdout, "\nQR text: %s\nShown once; revoke it with: devportal revoke -cid %s\n", text, t.CID)
		}
	} else {
		spec, err := cf.spec(portal.TypeQR)
		if err != nil {
			return err
		}
		is, err := issue(af, spec, "QR text", stdout, stderr)
		if err != nil {
			return err
		}
		text = is.Secret.Reveal()
	}
	if *pngPath != "" || *show {
		q, err := qrcode.New(text, qrcode.Medium)
		if err != nil {
			return fmt.Errorf("qr: encode: %w", err)
		}
		if *pngPath != "" {
			png, err := q.PNG(384)
			if err != nil {
				return fmt.Errorf("qr: encode: %w", err)
			}
			if err := writeSecret(*pngPath, png, 0o600); err != nil {
				return fmt.Errorf("qr: write %s: %w", *pngPath, err)
			}
			fmt.Fprintf(stderr, "wrote %s\n", *pngPath)
		}
		if *show {
			fmt.Fprint(stderr, q.ToSmallString(false))
		}
	}
	return nil
}

func runCredentials(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("credentials", "-dir DIR [-holder H] [-deleted] [-json]", stderr)
	af := addAdminFlags(fs)
	holder := fs.String("holder", "", "only this holder's credentials")
	deleted := fs.Bool("deleted", false, "include deleted credentials still remembered")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	return withAdmin(af, stderr, func(ctx context.Context, a portal.Admin) error {
		cs, err := a.Credentials(ctx, portal.CredentialFilter{Holder: *holder, Deleted: *deleted})
		if err != nil {
			return err
		}
		if *af.jsonOut {
			return printJSON(stdout, cs)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTYPE\tHOLDER\tROLE\tSTATUS\tUSES\tUSED\tVALID UNTIL\tDOORS\tSCHEDULE\tREV")
		for _, c := range cs {
			status := string(c.Status)
			if c.Deleted {
				status = "deleted"
			}
			used := 0
			for _, n := range c.Used {
				used += n
			}
			until := "-"
			if c.ValidUntil != nil {
				until = c.ValidUntil.Format(time.RFC3339)
			}
			doors := strings.Join(c.Doors, ",")
			if doors == "" {
				doors = "(rooms)"
			}
			sched := portal.FormatSchedule(c.Schedule)
			if sched == "" {
				sched = "always"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%d\n", c.ID, c.Type, c.Holder.ID, c.Holder.Role,
				status, c.Uses, used, until, doors, sched, c.Rev)
		}
		return tw.Flush()
	})
}

// runCredOp makes deactivate, reactivate and delete.
func runCredOp(op string) func(args []string, stdout, stderr io.Writer) error {
	return func(args []string, stdout, stderr io.Writer) error {
		fs := newFlags(op, "-dir DIR -id CREDENTIAL", stderr)
		af := addAdminFlags(fs)
		id := fs.String("id", "", "credential id")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if err := noArgs(fs); err != nil {
			return err
		}
		if err := required(fs, "id"); err != nil {
			return err
		}
		return withAdmin(af, stderr, func(ctx context.Context, a portal.Admin) error {
			if op == "delete" {
				if err := a.Delete(ctx, *id); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "deleted %s\n", *id)
				return nil
			}
			status := kiosk.StatusActive
			if op == "deactivate" {
				status = kiosk.StatusDeactivated
			}
			c, err := a.SetStatus(ctx, *id, status)
			if err != nil {
				return err
			}
			if *af.jsonOut {
				return printJSON(stdout, c)
			}
			printCredential(stdout, c)
			return nil
		})
	}
}

func runRevoke(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("revoke", "-dir DIR -cid TOKEN-ID", stderr)
	af := addAdminFlags(fs)
	cid := fs.String("cid", "", "id of the signed QR token to revoke")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if err := required(fs, "cid"); err != nil {
		return err
	}
	return withAdmin(af, stderr, func(ctx context.Context, a portal.Admin) error {
		if err := a.Revoke(ctx, *cid); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %s\n", *cid)
		return nil
	})
}

func runTokens(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("tokens", "-dir DIR [-json]", stderr)
	af := addAdminFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	return withAdmin(af, stderr, func(ctx context.Context, a portal.Admin) error {
		ts, err := a.Tokens(ctx)
		if err != nil {
			return err
		}
		if *af.jsonOut {
			return printJSON(stdout, ts)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CID\tHOLDER\tROLE\tUSES\tEXPIRES\tDOORS\tREVOKED")
		for _, t := range ts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%v\n", t.CID, t.Holder, t.Role, t.Uses,
				time.Unix(t.EXP, 0).UTC().Format(time.RFC3339), strings.Join(t.Doors, ","), t.Revoked)
		}
		return tw.Flush()
	})
}

// --- devices ---

func runDevice(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("device: want a subcommand: add or list")
	}
	switch args[0] {
	case "add":
		return runDeviceAdd(args[1:], stdout, stderr)
	case "list":
		return runDevices(args[1:], stdout, stderr)
	}
	return usagef("device: unknown subcommand %q (add, list)", args[0])
}

func runDeviceAdd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("device add", "-dir DIR -id DEVICE [-token-file F] [-push-url URL] [-update]", stderr)
	af := addAdminFlags(fs)
	id := fs.String("id", "", "the kiosk's device_id, e.g. spr-0001")
	tokenPath := fs.String("token-file", "", "the kiosk's bearer token file (its portal.token_file); made with a new token when missing; omitted: a new token is printed once")
	pushURL := fs.String("push-url", "", "the kiosk's push listener, e.g. http://127.0.0.1:8443 (plain http only to loopback)")
	update := fs.Bool("update", false, "change a registered device: its push URL (none given: no pushes), and its token when -token-file is given")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if err := required(fs, "id"); err != nil {
		return err
	}
	spec := portal.DeviceSpec{ID: *id, PushURL: *pushURL, Update: *update}
	wroteToken := false
	if *tokenPath != "" {
		if _, err := os.Stat(*tokenPath); err == nil {
			tok, err := portal.ReadTokenFile(*tokenPath, "device token")
			if err != nil {
				return err
			}
			spec.Token = portal.SecretText(tok)
		} else if errors.Is(err, os.ErrNotExist) {
			tok, err := portal.NewToken()
			if err != nil {
				return err
			}
			spec.Token, wroteToken = portal.SecretText(tok), true
		} else {
			return fmt.Errorf("device add: %w", err)
		}
	}
	return withAdmin(af, stderr, func(ctx context.Context, a portal.Admin) error {
		d, err := a.AddDevice(ctx, spec)
		if err != nil {
			return err
		}
		if wroteToken {
			if err := writeSecret(*tokenPath, []byte(spec.Token.Reveal()+"\n"), 0o600); err != nil {
				return fmt.Errorf("device add: write token: %w", err)
			}
		}
		if *af.jsonOut {
			return printJSON(stdout, d)
		}
		fmt.Fprintf(stdout, "device %s registered", d.Device.ID)
		if d.Device.PushURL != "" {
			fmt.Fprintf(stdout, ", pushes to %s", d.Device.PushURL)
		}
		fmt.Fprintln(stdout)
		switch {
		case wroteToken:
			fmt.Fprintf(stdout, "token written to %s (the kiosk's portal.token_file)\n", *tokenPath)
		case d.Token != "":
			fmt.Fprintf(stdout, "token: %s\nShown once: the portal keeps only its hash.\n", d.Token.Reveal())
		}
		return nil
	})
}

func runDevices(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("devices", "-dir DIR [-json]", stderr)
	af := addAdminFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	return withAdmin(af, stderr, func(ctx context.Context, a portal.Admin) error {
		ds, err := a.Devices(ctx)
		if err != nil {
			return err
		}
		if *af.jsonOut {
			return printJSON(stdout, ds)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tCURSOR\tLAST SYNC\tLAST HEARTBEAT\tPUSH URL\tLAST PUSH")
		ts := func(t time.Time) string {
			if t.IsZero() {
				return "-"
			}
			return t.Format(time.RFC3339)
		}
		for _, d := range ds {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, orDash(d.Cursor), ts(d.LastSync), ts(d.LastHeartbeat),
				orDash(d.PushURL), orDash(d.PushStatus))
		}
		return tw.Flush()
	})
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runUnlock(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("unlock", "-dir DIR -device ID -door DOOR", stderr)
	af := addAdminFlags(fs)
	device := fs.String("device", "", "device id")
	door := fs.String("door", "", "door id, e.g. main")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if err := required(fs, "device", "door"); err != nil {
		return err
	}
	return withAdmin(af, stderr, func(ctx context.Context, a portal.Admin) error {
		cmd, err := a.Unlock(ctx, *device, *door)
		if err != nil {
			return err
		}
		if *af.jsonOut {
			return printJSON(stdout, cmd)
		}
		fmt.Fprintf(stdout, "queued %s: unlock %s on %s (pushed when the server runs and the kiosk has a push URL; else at its next sync or heartbeat, within %s)\n",
			cmd.ID, cmd.Door, *device, portal.DefaultCommandTTL)
		return nil
	})
}

func runEvents(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("events", "-dir DIR -device ID [-limit N] [-json]", stderr)
	af := addAdminFlags(fs)
	device := fs.String("device", "", "device id")
	limit := fs.Int("limit", 50, "most events to list, newest first")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if err := required(fs, "device"); err != nil {
		return err
	}
	return withAdmin(af, stderr, func(ctx context.Context, a portal.Admin) error {
		evs, err := a.Events(ctx, *device, *limit)
		if err != nil {
			return err
		}
		if *af.jsonOut {
			return printJSON(stdout, evs)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tTIME\tTYPE\tDOOR\tINPUT\tCREDENTIAL\tHOLDER\tREASON\tSOURCE")
		for _, raw := range evs {
			var e kiosk.Event
			if err := json.Unmarshal(raw, &e); err != nil {
				fmt.Fprintf(tw, "?\t?\t(unreadable event)\n")
				continue
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Format(time.RFC3339Nano), e.Type,
				orDash(e.Door), orDash(e.Input), orDash(e.CredentialID), orDash(e.HolderID), orDash(string(e.Reason)), orDash(e.Source))
		}
		return tw.Flush()
	})
}

func runExport(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("export", "-dir DIR -device ID -out NAME.json", stderr)
	af := addAdminFlags(fs)
	device := fs.String("device", "", "device_id the document is for")
	out := fs.String("out", "", "document file to write; its signature goes to the same name plus .sig")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if err := required(fs, "device", "out"); err != nil {
		return err
	}
	return withAdmin(af, stderr, func(ctx context.Context, a portal.Admin) error {
		info, err := a.Export(ctx, *device, *out)
		if err != nil {
			return err
		}
		if *af.jsonOut {
			return printJSON(stdout, info)
		}
		fmt.Fprintf(stdout, "wrote %s (full document %s for %s: %d credentials, %d revoked, %d bytes) and %s.sig\n",
			info.Path, info.Cursor, *device, info.Credentials, info.Revoked, info.Bytes, info.Path)
		return nil
	})
}

// pubText is the portal's public key as kioskd.toml wants it.
func pubText(p *portal.Portal) string { return base64.StdEncoding.EncodeToString(p.PublicKey()) }
