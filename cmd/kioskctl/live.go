package main

// The commands that talk to the running kioskd: status, events, unlock,
// test-relay, watch-input, sync.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

func noArgs(fs *flag.FlagSet, name string) error {
	if fs.NArg() != 0 {
		return usagef("%s takes no arguments, got %q", name, strings.Join(fs.Args(), " "))
	}
	return nil
}

// printJSON writes v indented, for --json.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// ---- status ----

func runStatus(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	fs, err := subFlags(g, "status", "status", "Shows what kioskd reports: doors, inputs, sync, store, clock, version and board.", stderr, args, nil)
	if err != nil {
		return err
	}
	if err := noArgs(fs, "status"); err != nil {
		return err
	}
	c := g.client()
	if g.json {
		var raw json.RawMessage
		if err := c.getJSON(ctx, "/v1/status", &raw); err != nil {
			return err
		}
		return printJSON(stdout, raw)
	}
	var st statusReply
	if err := c.getJSON(ctx, "/v1/status", &st); err != nil {
		return err
	}
	printStatus(stdout, &st)
	return nil
}

// ago says how long before now t was, in whole seconds ("never" for the
// zero time).
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		return "in " + (-d).String()
	}
	return d.String() + " ago"
}

func onOff(b bool, on, off string) string {
	if b {
		return on
	}
	return off
}

func printStatus(w io.Writer, st *statusReply) {
	now := st.Clock.Now
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "device:\t%s (kioskd %s, up %s)\n", st.DeviceID, st.Version, (time.Duration(st.UptimeS) * time.Second).String())
	fmt.Fprintf(tw, "config:\t%s\n", st.Config)
	fmt.Fprintf(tw, "board:\t%s\n", st.Board)
	fmt.Fprintf(tw, "hardware:\t%s\n", st.Hardware)
	floor := "none yet"
	if !st.Clock.Floor.IsZero() {
		floor = st.Clock.Floor.Format(time.RFC3339)
	}
	fmt.Fprintf(tw, "clock:\t%s %s (floor %s)\n", now.Format(time.RFC3339),
		onOff(st.Clock.Synced, "synchronised", "NOT synchronised: decisions use the later of clock and floor"), floor)
	fmt.Fprintf(tw, "credentials:\t%d\n", st.Credentials)
	fmt.Fprintf(tw, "backlog:\t%d events not yet accepted by the portal\n", st.Backlog)
	s := st.Sync
	age := "no document yet"
	if s.AgeS != nil {
		age = "age " + (time.Duration(*s.AgeS) * time.Second).String()
	}
	cursor := s.Cursor
	if cursor == "" {
		cursor = "(none)"
	}
	if s.Portal == "" {
		fmt.Fprintf(tw, "sync:\toffline (no portal; documents from files); cursor %s, %s\n", cursor, age)
	} else {
		fmt.Fprintf(tw, "sync:\t%s; cursor %s, %s; last pull %s\n", s.Portal, cursor, age, ago(now, s.LastPull))
		if s.LastError != "" {
			fmt.Fprintf(tw, "\tpull failing (%d in a row): %s\n", s.Failures, s.LastError)
		}
		fmt.Fprintf(tw, "\tlast upload %s, last heartbeat %s\n", ago(now, s.LastUpload), ago(now, s.LastHeartbeat))
		if s.UploadError != "" {
			fmt.Fprintf(tw, "\tupload failing: %s\n", s.UploadError)
		}
		if s.HeartbeatError != "" {
			fmt.Fprintf(tw, "\theartbeat failing: %s\n", s.HeartbeatError)
		}
		if s.PushAddr != "" {
			fmt.Fprintf(tw, "push:\tlistening on %s\n", s.PushAddr)
		}
	}
	tw.Flush()

	fmt.Fprintln(w, "doors:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, d := range st.Doors {
		door := "no contact"
		if d.Contact {
			door = onOff(d.Open, "OPEN", "closed")
		}
		fmt.Fprintf(tw, "  %s\t%s\trelay %s\t%s\tpulse %s\n", d.ID, d.Kind, onOff(d.RelayOn, "ON", "off"), door,
			(time.Duration(d.PulseMS) * time.Millisecond).String())
	}
	tw.Flush()
	fmt.Fprintln(w, "inputs:")
	if len(st.Inputs) == 0 {
		fmt.Fprintln(w, "  (none configured)")
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, in := range st.Inputs {
		state := onOff(in.Connected, "connected", "DISCONNECTED")
		if !in.LockedUntil.IsZero() {
			state += ", LOCKED OUT until " + in.LockedUntil.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", in.Name, in.Type, state, in.Device)
	}
	tw.Flush()
	for _, e := range st.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
}

// ---- events ----

func runEvents(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	var follow bool
	var after uint64
	fs, err := subFlags(g, "events", "events [--follow] [--after N]",
		"Prints the journal: the events kioskd has recorded and the portal has not accepted yet.\n"+
			"Accepted events are deleted from the board, so this is not the whole history; a gap\n"+
			"in seq numbers means events already uploaded. --follow then prints new events as\n"+
			"they happen, until Ctrl-C.",
		stderr, args, func(fs *flag.FlagSet) {
			fs.BoolVar(&follow, "follow", false, "wait for new events")
			fs.Uint64Var(&after, "after", 0, "start after this seq")
		})
	if err != nil {
		return err
	}
	if err := noArgs(fs, "events"); err != nil {
		return err
	}
	q := url.Values{}
	q.Set("after", fmt.Sprint(after))
	if follow {
		q.Set("follow", "1")
	}
	last := after
	return g.client().stream(ctx, "/v1/events?"+q.Encode(), func(line []byte) error {
		if g.json {
			_, err := fmt.Fprintf(stdout, "%s\n", line)
			return err
		}
		var ev event
		if err := json.Unmarshal(line, &ev); err != nil {
			return fmt.Errorf("read event from kioskd: %w", err)
		}
		if ev.Seq > last+1 {
			fmt.Fprintf(stdout, "(events %s already accepted by the portal and deleted)\n", seqRange(last+1, ev.Seq-1))
		}
		last = ev.Seq
		_, err := fmt.Fprintln(stdout, formatEvent(&ev))
		return err
	})
}

// clean quotes s when it holds a control character, so that every event
// stays on one line of the terminal.
func clean(s string) string {
	if strings.ContainsFunc(s, unicode.IsControl) {
		return strconv.Quote(s)
	}
	return s
}

func seqRange(a, b uint64) string {
	if a == b {
		return fmt.Sprint(a)
	}
	return fmt.Sprintf("%d–%d", a, b)
}

// formatEvent writes an event on one line: seq, time, type, then the
// fields it has.
func formatEvent(ev *event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%6d  %s  %-19s", ev.Seq, ev.Time.UTC().Format("2006-01-02T15:04:05.000Z"), clean(ev.Type))
	for _, f := range []struct{ k, v string }{
		{"door", ev.Door}, {"input", ev.Input}, {"reason", string(ev.Reason)}, {"credential", ev.CredentialID},
		{"holder", ev.HolderID}, {"role", string(ev.Role)}, {"source", ev.Source},
	} {
		if f.v != "" {
			fmt.Fprintf(&b, " %s=%s", f.k, clean(f.v))
		}
	}
	if len(ev.Detail) > 0 {
		keys := make([]string, 0, len(ev.Detail))
		for k := range ev.Detail {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v, _ := json.Marshal(ev.Detail[k])
			fmt.Fprintf(&b, " %s=%s", clean(k), v)
		}
	}
	if !ev.ClockSynced {
		b.WriteString(" (clock not synchronised)")
	}
	return b.String()
}

// ---- unlock, test-relay ----

func runUnlock(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	return doorCommand(ctx, g, "unlock", "/v1/unlock", "Pulses the relay of DOOR once, as a remote unlock by a technician (door.unlocked, source technician).", args, stdout, stderr)
}

func runTestRelay(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	return doorCommand(ctx, g, "test-relay", "/v1/test-relay", "Pulses the relay of DOOR once to test it (door.unlocked, source technician, detail test).", args, stdout, stderr)
}

func doorCommand(ctx context.Context, g *globals, name, path, help string, args []string, stdout, stderr io.Writer) error {
	fs, err := subFlags(g, name, name+" DOOR", help, stderr, args, nil)
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("%s: want one door id, got %d arguments", name, fs.NArg())
	}
	var r unlockReply
	if err := g.client().call(ctx, http.MethodPost, path, map[string]string{"door": fs.Arg(0)}, &r); err != nil {
		return err
	}
	if g.json {
		return printJSON(stdout, r)
	}
	pulse := time.Duration(r.PulseMS) * time.Millisecond
	if r.Test {
		fmt.Fprintf(stdout, "relay of %s pulsed for %s (test; recorded as door.unlocked)\n", r.Door, pulse)
	} else {
		fmt.Fprintf(stdout, "%s unlocked: relay pulsed for %s (recorded as door.unlocked, source technician)\n", r.Door, pulse)
	}
	return nil
}

// ---- watch-input ----

func runWatchInput(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	fs, err := subFlags(g, "watch-input", "watch-input",
		"Shows what the keypads, scanners and card readers read, until Ctrl-C. Digits are shown\n"+
			"as • (the digits of a PIN are the PIN); *, # and A–D as they are, with the number of\n"+
			"digits in the entry. Codes show only their length. kioskd still decides on what is\n"+
			"typed or scanned meanwhile.",
		stderr, args, nil)
	if err != nil {
		return err
	}
	if err := noArgs(fs, "watch-input"); err != nil {
		return err
	}
	return g.client().stream(ctx, "/v1/watch-input", func(line []byte) error {
		if g.json {
			_, err := fmt.Fprintf(stdout, "%s\n", line)
			return err
		}
		var l watchLine
		if err := json.Unmarshal(line, &l); err != nil {
			return fmt.Errorf("read from kioskd: %w", err)
		}
		_, err := fmt.Fprintln(stdout, formatWatch(&l))
		return err
	})
}

func digits(n int) string {
	if n == 1 {
		return "1 digit"
	}
	return fmt.Sprintf("%d digits", n)
}

// formatWatch writes a watch-input line for people.
func formatWatch(l *watchLine) string {
	if l.Type == "watching" {
		cleaned := make([]string, len(l.Inputs))
		for i, n := range l.Inputs {
			cleaned[i] = clean(n)
		}
		names := strings.Join(cleaned, ", ")
		if names == "" {
			names = "(no inputs configured)"
		}
		return "watching " + names + " (Ctrl-C to stop; digits shown as •)"
	}
	t := l.Time.Local().Format("15:04:05.000")
	l.Input, l.Key, l.Detail, l.Type = clean(l.Input), clean(l.Key), clean(l.Detail), clean(l.Type)
	switch l.Type {
	case "key":
		var what string
		switch {
		case l.Cleared:
			what = "entry cleared"
		case l.Submitted:
			what = "submitted " + digits(l.Entry)
		case l.Key == "#":
			what = "empty entry: nothing to submit"
		case l.Key == "•":
			what = digits(l.Entry)
		default:
			what = "ignored by the entry (" + digits(l.Entry) + ")"
		}
		return fmt.Sprintf("%s  %-12s key %s  %s", t, l.Input, l.Key, what)
	case "code":
		return fmt.Sprintf("%s  %-12s code (%s)", t, l.Input, l.Detail)
	default:
		s := fmt.Sprintf("%s  %-12s %s", t, l.Input, l.Type)
		if l.Detail != "" {
			s += ": " + l.Detail
		}
		return s
	}
}

// ---- sync ----

func runSync(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	var wait time.Duration
	fs, err := subFlags(g, "sync", "sync [--wait 30s]",
		"Asks kioskd to pull from the portal now and waits until a pull finishes (0: do not wait).",
		stderr, args, func(fs *flag.FlagSet) {
			fs.DurationVar(&wait, "wait", 30*time.Second, "how long to wait for the pull")
		})
	if err != nil {
		return err
	}
	if err := noArgs(fs, "sync"); err != nil {
		return err
	}
	if wait < 0 {
		return usagef("sync: --wait %v: want 0 or more", wait)
	}
	var a syncAnswer
	err = g.client().call(ctx, http.MethodPost, "/v1/sync?wait="+url.QueryEscape(wait.String()), nil, &a)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	if g.json {
		return printJSON(stdout, a)
	}
	if !a.Done {
		fmt.Fprintln(stdout, "pull requested (see kioskctl status)")
		return nil
	}
	fmt.Fprintf(stdout, "pull done: cursor %s, %d credentials, %d events not yet uploaded\n", a.Status.Cursor, a.Status.Credentials, a.Status.Backlog)
	return nil
}

// isNotRunning reports whether err says that nothing answers on the
// socket.
func isNotRunning(err error) bool { return errors.Is(err, errNotRunning) }
