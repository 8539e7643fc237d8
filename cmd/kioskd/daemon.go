package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"kioskd/hw/evdev"
	"kioskd/hw/gpio"
	"kioskd/hw/serial"
	"kioskd/hw/sim"
	"kioskd/hw/sysclock"
	"kioskd/kiosk"
	"kioskd/kiosk/config"
	"kioskd/store"
	portalsync "kioskd/sync"
	"kioskd/systemd"
)

// Options are what run needs besides the config file. Zero values are the
// production defaults; tests set the hooks.
type Options struct {
	ConfigPath string
	Log        *slog.Logger // nil = slog.Default()
	// Bank holds the simulated lines when hardware = "sim"; nil = a new
	// bank. Tests pass their own to watch relays and poke contacts.
	Bank *sim.Bank
	// Terminal is what the terminal input reads; nil = the controlling
	// terminal.
	Terminal io.Reader
	// SysClock and Synced replace the system clock (tests); nil = the
	// real ones.
	SysClock func() time.Time
	Synced   func() bool
	// Ready, if set, is called once the daemon is serving.
	Ready func(*Daemon)
}

// Daemon is a running kioskd, as tests and the local API see it.
type Daemon struct {
	Config *config.Config
	Store  *store.Store
	Engine *kiosk.Engine
	Clock  *kiosk.Clock
	Bank   *sim.Bank
	// Syncer is the portal link; nil when no portal is configured.
	Syncer *portalsync.Syncer
	// PushAddr is the bound push listener address; "" when none.
	PushAddr string

	lockBoards *lockBoards // RS-485 lock boards; empty when none
}

// floorEvery is how often the clock floor is persisted while running.
const floorEvery = time.Minute

// statusEvery is how often the systemd STATUS line is refreshed.
var statusEvery = 15 * time.Second

// statusLine is the one-line state shown by `systemctl status kioskd`:
// doors, inputs, credentials, and the portal sync's cursor, age and
// backlog.
func statusLine(d *Daemon, doors, inputs int) string {
	line := fmt.Sprintf("serving: %d doors, %d inputs, %d credentials", doors, inputs, d.Store.Count())
	if d.Syncer == nil {
		return line + "; no portal"
	}
	ss := d.Syncer.Status()
	age := "never synced"
	if !ss.LastPull.IsZero() {
		age = "synced " + time.Since(ss.LastPull).Round(time.Second).String() + " ago"
	}
	line += fmt.Sprintf("; cursor %q, %s, backlog %d", ss.Cursor, age, ss.Backlog)
	if ss.LastError != "" {
		line += fmt.Sprintf(", %d failed pulls", ss.Failures)
	}
	return line
}

func run(ctx context.Context, opts Options) (err error) {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	cfg, err := config.Load(opts.ConfigPath)
	if err != nil {
		return err
	}
	siteKey, err := cfg.ReadSiteKey()
	if err != nil {
		return err
	}

	st, err := store.Open(store.Options{Dir: cfg.StateDir, Logger: log})
	if err != nil {
		return fmt.Errorf("open store in %s: %w", cfg.StateDir, err)
	}
	defer func() {
		if cerr := st.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close store: %w", cerr))
		}
	}()

	floor, err := st.ClockFloor()
	if err != nil {
		return fmt.Errorf("read clock floor: %w", err)
	}
	if bt, perr := time.Parse(time.RFC3339, buildTime); perr == nil {
		floor = kiosk.Later(floor, bt)
	}
	synced := opts.Synced
	if synced == nil {
		synced = sysclock.Synced
	}
	clock := kiosk.NewClock(opts.SysClock, synced, floor)

	d := &Daemon{Config: cfg, Store: st, Clock: clock, Bank: opts.Bank}
	api, err := newAPI(d, log) // binds the local API socket (kioskctl)
	if err != nil {
		return err
	}
	defer api.close() // removes the socket if the start fails before run
	boards, err := openLockBoards(cfg, log)
	if err != nil {
		return err
	}
	d.lockBoards = boards
	defer func() { // after the doors below are closed: their sensors poll the buses
		if cerr := boards.close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	doors, err := openDoors(cfg, d, boards, log)
	if err != nil {
		return err
	}
	defer func() {
		for _, dc := range doors {
			if cerr := dc.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
	}()

	inputs, specs, err := openInputs(cfg, opts, log)
	if err != nil {
		return err
	}

	engine, err := kiosk.NewEngine(kiosk.EngineConfig{
		Device:       cfg.DeviceID,
		Location:     cfg.Location,
		SiteKey:      siteKey,
		TokenKey:     cfg.Portal.PublicKey,
		Lockout:      kiosk.LockoutPolicy{MaxFailures: cfg.Lockout.MaxFailures, Window: cfg.Lockout.Window, Duration: cfg.Lockout.Duration},
		PINLength:    cfg.Keypad.PINLength,
		EntryTimeout: cfg.Keypad.EntryTimeout,
		Inputs:       specs,
		Doors:        doors,
		Store:        st,
		Clock:        clock,
		Log:          log,
		Decided:      api.decided,
	})
	if err != nil {
		return err
	}
	d.Engine = engine

	link, err := newPortalLink(cfg, st, engine, clock, time.Now(), log)
	if err != nil {
		return err
	}
	if link != nil {
		d.Syncer, d.PushAddr = link.syncer, link.PushAddr()
		defer link.closeListener() // a start that fails below must not keep the port
	}

	record := func(typ string, detail map[string]any) error {
		t, s := clock.Now()
		return st.Record(&kiosk.Event{Time: t, ClockSynced: s, Type: typ, Detail: detail})
	}
	if err := record(kiosk.EvDeviceStarted, map[string]any{"version": version}); err != nil {
		return fmt.Errorf("record start: %w", err)
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, dc := range doors {
		dc.Start(runCtx)
	}
	events := make(chan kiosk.InputEvent, 64)
	var wg sync.WaitGroup
	for _, in := range inputs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := in.Run(runCtx, events); err != nil && runCtx.Err() == nil {
				log.Error("input stopped", "input", in.Name(), "err", err)
			}
		}()
	}
	engineDone := make(chan error, 1)
	go func() { engineDone <- engine.Run(runCtx, events) }()
	if link != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			link.run(runCtx, log)
		}()
	}

	wg.Add(1)
	go func() {
		defer wg.Done()
		api.run(runCtx)
	}()

	log.Info("kioskd serving", "version", version, "device", cfg.DeviceID,
		"hardware", cfg.Hardware, "credentials", st.Count(), "doors", len(doors), "inputs", len(inputs),
		"portal", cfg.Portal.URL != "", "push", d.PushAddr)
	notify := systemd.New().WithLogger(log)
	notify.Ready(statusLine(d, len(doors), len(inputs)))
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Pings only while the decision loop answers: a wedged loop gets
		// the daemon restarted by systemd.
		notify.RunWatchdog(runCtx, func(ctx context.Context) error { return engine.Do(ctx, func() {}) })
	}()
	if opts.Ready != nil {
		opts.Ready(d)
	}

	ticker := time.NewTicker(floorEvery)
	defer ticker.Stop()
	statusTicker := time.NewTicker(statusEvery)
	defer statusTicker.Stop()
	engineStopped := false
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-engineDone:
			if ctx.Err() != nil {
				engineStopped = true
				break loop // stopping: the engine saw it first
			}
			return fmt.Errorf("decision loop stopped: %w", err)
		case <-statusTicker.C:
			notify.Status(statusLine(d, len(doors), len(inputs)))
		case <-ticker.C:
			if err := st.RaiseClockFloor(clock.Floor()); err != nil {
				log.Error("persist clock floor", "err", err)
			}
		}
	}

	log.Info("kioskd stopping")
	notify.Stopping()
	if err := record(kiosk.EvDeviceStopping, nil); err != nil {
		log.Error("record stop", "err", err)
	}
	cancel()
	if !engineStopped {
		<-engineDone
	}
	wg.Wait()
	if err := st.RaiseClockFloor(clock.Floor()); err != nil {
		log.Error("persist clock floor", "err", err)
	}
	return nil
}

// openDoors requests every door's lines, relays already inactive. A
// missing relay stops the start.
func openDoors(cfg *config.Config, d *Daemon, boards *lockBoards, log *slog.Logger) (doors []*kiosk.DoorController, err error) {
	var lines lineOpener
	switch cfg.Hardware {
	case config.HardwareSim:
		if d.Bank == nil {
			d.Bank = sim.NewBank(log)
		}
		lines = simLines{d.Bank}
	default:
		gl := newGPIOLines(log)
		defer gl.closeChips() // requested lines outlive their chip's handle
		lines = gl
	}
	defer func() {
		if err != nil {
			for _, dc := range doors {
				_ = dc.Close()
			}
		}
	}()
	now := func() (time.Time, bool) { return d.Clock.Now() }
	for _, dcfg := range cfg.Doors {
		spec := kiosk.DoorSpec{
			Door:          kiosk.Door{ID: dcfg.ID, Kind: kiosk.DoorKind(dcfg.Kind)},
			Pulse:         dcfg.Pulse,
			HeldOpenAfter: dcfg.HeldOpenAfter,
		}
		consumer := "kioskd-" + dcfg.ID
		if dcfg.Lock != nil {
			if spec.Relay, spec.Contact, err = boards.lock(*dcfg.Lock, dcfg.Contact == nil); err != nil {
				return doors, fmt.Errorf("door %s lock: %w", dcfg.ID, err)
			}
		} else if spec.Relay, err = lines.output(dcfg.Relay, consumer+"-relay"); err != nil {
			return doors, fmt.Errorf("door %s relay: %w", dcfg.ID, err)
		}
		if dcfg.Contact != nil {
			if spec.Contact, err = lines.input(*dcfg.Contact, consumer+"-contact"); err != nil {
				_ = spec.Relay.Close()
				return doors, fmt.Errorf("door %s contact: %w", dcfg.ID, err)
			}
		}
		if dcfg.ExitButton != nil {
			if spec.ExitButton, err = lines.input(*dcfg.ExitButton, consumer+"-exit"); err != nil {
				_ = spec.Relay.Close()
				return doors, fmt.Errorf("door %s exit_button: %w", dcfg.ID, err)
			}
		}
		var ind [3]kiosk.OutputLine
		for i, l := range []*config.Line{dcfg.Buzzer, dcfg.LEDGreen, dcfg.LEDRed} {
			if l == nil {
				continue
			}
			if ind[i], err = lines.output(*l, consumer+[]string{"-buzzer", "-led-green", "-led-red"}[i]); err != nil {
				_ = spec.Relay.Close()
				return doors, fmt.Errorf("door %s feedback line: %w", dcfg.ID, err)
			}
		}
		if ind[0] != nil || ind[1] != nil || ind[2] != nil {
			spec.Indicator = kiosk.NewIndicator(ind[0], ind[1], ind[2])
		}
		doors = append(doors, kiosk.NewDoor(spec, d.Store.Record, now, log))
	}
	return doors, nil
}

// openInputs builds every configured input. Devices are opened by the
// inputs themselves when they run, so a missing scanner degrades (it shows
// as disconnected and is retried) instead of stopping the start.
func openInputs(cfg *config.Config, opts Options, log *slog.Logger) ([]kiosk.Input, []kiosk.InputSpec, error) {
	var inputs []kiosk.Input
	var specs []kiosk.InputSpec
	for _, ic := range cfg.Inputs {
		spec := kiosk.InputSpec{Name: ic.Name, Doors: ic.Doors, Kind: kiosk.Kind(ic.Kind)}
		var in kiosk.Input
		switch ic.Type {
		case "serial-keypad":
			in = serial.NewKeypad(serial.Options{Name: ic.Name, Device: ic.Device, Baud: ic.Baud, Log: log})
		case "serial-scanner":
			in = serial.NewScanner(serial.Options{Name: ic.Name, Device: ic.Device, Baud: ic.Baud, Log: log})
		case config.InputTerminal:
			in = sim.NewTerminal(ic.Name, opts.Terminal, log)
		case config.InputMatrixKeypad:
			m, err := gpio.NewMatrix(gpio.MatrixOptions{Name: ic.Name, Chip: ic.Chip, Rows: ic.Rows, Cols: ic.Cols, Keys: ic.Keys, Log: log})
			if err != nil {
				return nil, nil, fmt.Errorf("%s: input %q: %w", cfg.Path, ic.Name, err)
			}
			in = m
		case config.InputEvdev:
			e, err := evdev.New(evdev.Options{Name: ic.Name, Device: ic.Device, Kind: ic.Kind, Log: log})
			if err != nil {
				return nil, nil, fmt.Errorf("%s: input %q: %w", cfg.Path, ic.Name, err)
			}
			in = e
		default:
			return nil, nil, fmt.Errorf("%s: input %q: unknown type %q", cfg.Path, ic.Name, ic.Type) // config.Parse prevents it
		}
		inputs = append(inputs, in)
		specs = append(specs, spec)
	}
	return inputs, specs, nil
}
