// Package systemd tells systemd how kioskd is doing, over the sd_notify
// protocol: READY=1 once it serves (Type=notify), STATUS= lines for
// `systemctl status`, WATCHDOG=1 pings while the decision loop answers,
// and STOPPING=1 on the way out.
//
// The protocol itself is github.com/coreos/go-systemd/v22/daemon; this
// package wraps it in the few calls kioskd makes and adds the watchdog
// loop. Nothing here can fail the daemon: outside systemd (no
// $NOTIFY_SOCKET) every call does nothing, and a failed send is logged,
// never returned. The unit files that go with it (kioskd.service,
// sysusers, tmpfiles and udev rules) live in the same directory.
package systemd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends sd_notify messages to the service manager. The zero
// value and a nil *Notifier are valid and do nothing. Its methods are safe
// for concurrent use.
type Notifier struct {
	enabled  bool          // $NOTIFY_SOCKET was set when New ran
	watchdog time.Duration // 0: no watchdog for this process
	log      *slog.Logger
	failing  atomic.Bool // the last send failed; log only the first failure
}

// New returns a Notifier for this process. It reads $NOTIFY_SOCKET and the
// watchdog settings ($WATCHDOG_USEC, $WATCHDOG_PID) once; when the process
// does not run under systemd the Notifier does nothing. A malformed
// $WATCHDOG_USEC disables the watchdog with a warning rather than failing.
// Failures are logged to slog.Default(); see WithLogger.
func New() *Notifier {
	n := &Notifier{enabled: os.Getenv("NOTIFY_SOCKET") != ""}
	if !n.enabled {
		return n
	}
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		n.logger().Warn("systemd watchdog disabled: bad watchdog settings in the environment", "err", err)
		d = 0
	}
	n.watchdog = d
	return n
}

// WithLogger sets the logger failures go to (nil = slog.Default()) and
// returns n. Call it before the Notifier is shared.
func (n *Notifier) WithLogger(log *slog.Logger) *Notifier {
	if n != nil {
		n.log = log
	}
	return n
}

// Enabled reports whether the process runs under a service manager that
// listens for notifications.
func (n *Notifier) Enabled() bool { return n != nil && n.enabled }

// Ready tells systemd that start-up is complete (READY=1), with a status
// line when status is not empty. With Type=notify, systemd holds units
// ordered after kioskd until this arrives.
func (n *Notifier) Ready(status string) {
	msg := daemon.SdNotifyReady
	if status != "" {
		msg += "\nSTATUS=" + oneLine(status)
	}
	n.send(msg)
}

// Status sets the free-form status line `systemctl status kioskd` shows.
func (n *Notifier) Status(s string) { n.send("STATUS=" + oneLine(s)) }

// Stopping tells systemd that the daemon has begun to shut down
// (STOPPING=1), so that a slow stop is not mistaken for a hang.
func (n *Notifier) Stopping() { n.send(daemon.SdNotifyStopping) }

// WatchdogInterval returns the unit's WatchdogSec= for this process and
// true, or false when systemd expects no watchdog pings.
func (n *Notifier) WatchdogInterval() (time.Duration, bool) {
	if !n.Enabled() || n.watchdog <= 0 {
		return 0, false
	}
	return n.watchdog, true
}

// RunWatchdog pings WATCHDOG=1 every half watchdog interval for as long as
// alive answers nil, and returns when ctx is done. alive is the daemon's
// liveness check (the decision loop answering a no-op request); it gets a
// context that expires after a quarter of the interval. A round in which
// alive fails or does not return sends no ping, so a wedged daemon stops
// pinging and systemd kills and restarts it after WatchdogSec. Without a
// watchdog (see WatchdogInterval) RunWatchdog returns at once.
func (n *Notifier) RunWatchdog(ctx context.Context, alive func(context.Context) error) {
	interval, ok := n.WatchdogInterval()
	if !ok {
		return
	}
	// A ping every interval/2 with checks bounded by interval/4 keeps the
	// gap between two pings of a healthy daemon under 3/4 of the interval.
	period, timeout := interval/2, interval/4
	ticker := time.NewTicker(period)
	defer ticker.Stop()
	healthy := true
	for {
		if err := check(ctx, alive, timeout); err != nil {
			if ctx.Err() != nil {
				return
			}
			if healthy {
				n.logger().Error("liveness check failed; withholding the systemd watchdog ping", "err", err)
			}
			healthy = false
		} else {
			if !healthy {
				n.logger().Info("liveness check answers again; systemd watchdog pings resume")
			}
			healthy = true
			n.send(daemon.SdNotifyWatchdog)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// check runs alive with a deadline; a panic in alive counts as a failure.
func check(ctx context.Context, alive func(context.Context) error, timeout time.Duration) (err error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("liveness check panicked: %v", r)
		}
	}()
	return alive(cctx)
}

// send writes one notification; failures are logged once until a send
// succeeds again.
func (n *Notifier) send(state string) {
	if !n.Enabled() {
		return
	}
	if _, err := daemon.SdNotify(false, state); err != nil {
		if !n.failing.Swap(true) {
			n.logger().Warn("systemd notification failed", "socket", os.Getenv("NOTIFY_SOCKET"), "err", err)
		}
		return
	}
	n.failing.Store(false)
}

func (n *Notifier) logger() *slog.Logger {
	if n.log != nil {
		return n.log
	}
	return slog.Default()
}

// oneLine keeps a status on one line: a newline would end the STATUS=
// assignment and start another.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}
