package main

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"kioskd/kiosk"
)

// allReasons are the reason codes of SPEC §2, so that every decision
// counter exists from the start (a rate over a series that appears only
// with its first increment misses that increment).
var allReasons = []kiosk.Reason{
	kiosk.Granted, kiosk.Unknown, kiosk.Deactivated, kiosk.UsedUp, kiosk.NotYetValid, kiosk.Expired,
	kiosk.OutsideSchedule, kiosk.WrongDoor, kiosk.LockedOut, kiosk.BadToken, kiosk.Revoked,
}

// decisionBuckets are the bounds of kioskd_decision_seconds: SPEC §8 wants
// p99 under 1 ms, so the buckets are fine below it and coarse above.
var decisionBuckets = []float64{0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}

// metrics are kioskd's Prometheus metrics, in a registry of their own
// (not the global default, which libraries may write to).
//
// Counters count since this start. Gauges are read from the daemon when
// scraped. kioskd_pulses_total counts door.unlocked events as the journal
// shows them (every source: credential, remote, exit button, technician);
// an event the uploader has already had accepted and deleted before the
// counter read it is not counted, which needs the portal to answer faster
// than a local goroutine wakes. kioskd_input_rejected_total counts the
// InputRejected events of the engine's tap.
type metrics struct {
	reg       *prometheus.Registry
	decisions *prometheus.CounterVec
	failed    prometheus.Counter
	grants    prometheus.Counter
	latency   prometheus.Histogram
	pulses    *prometheus.CounterVec
	rejected  *prometheus.CounterVec

	d       *Daemon
	fromSeq uint64 // the journal's last seq when the metrics were made
}

// newMetrics makes the metrics of d. fromSeq is the journal's last seq
// now: door.unlocked events after it are counted.
func newMetrics(d *Daemon, started time.Time, fromSeq uint64) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kioskd_decisions_total", Help: "Access decisions by reason code.",
		}, []string{"reason"}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kioskd_decision_errors_total", Help: "Decisions the store could not record (denied, fail safe).",
		}),
		grants: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kioskd_grants_total", Help: "Access decisions that granted.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kioskd_decision_seconds",
			Help:    "Time from a submission to the relays on (or the decision recorded), in seconds.",
			Buckets: decisionBuckets,
		}),
		pulses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kioskd_pulses_total", Help: "Relay pulses (door.unlocked events) by door, all sources.",
		}, []string{"door"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kioskd_input_rejected_total", Help: "Input discarded by an input (garbage bytes, overlong codes).",
		}, []string{"input"}),
		d:       d,
		fromSeq: fromSeq,
	}
	for _, r := range allReasons {
		m.decisions.WithLabelValues(string(r))
	}
	for _, dc := range d.Config.Doors {
		m.pulses.WithLabelValues(dc.ID)
	}
	for _, in := range d.Config.Inputs {
		m.rejected.WithLabelValues(in.Name)
	}
	m.reg.MustRegister(m.decisions, m.failed, m.grants, m.latency, m.pulses, m.rejected)

	gauge := func(name, help string, labels prometheus.Labels, f func() float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f))
	}
	gauge("kioskd_sync_age_seconds", "Age of the credential set: since the last successful pull or the live set's issued_at, whichever is later; +Inf before the first document.", nil, func() float64 {
		now, _ := d.Clock.Now()
		ss, err := d.Store.SyncState()
		if err != nil {
			return math.NaN()
		}
		var lastPull time.Time
		if d.Syncer != nil {
			lastPull = d.Syncer.Status().LastPull
		}
		age, ok := syncAge(now, lastPull, ss.IssuedAt)
		if !ok {
			return math.Inf(1)
		}
		return age
	})
	gauge("kioskd_event_backlog", "Events not yet accepted by the portal.", nil, func() float64 {
		n, err := d.Store.Backlog()
		if err != nil {
			return math.NaN()
		}
		return float64(n)
	})
	gauge("kioskd_credentials", "Live credentials in the store.", nil, func() float64 {
		return float64(d.Store.Count())
	})
	gauge("kioskd_clock_synced", "1 while the system clock is synchronised, else 0 (decisions then use the clock floor).", nil, func() float64 {
		_, synced := d.Clock.Now()
		return boolFloat(synced)
	})
	for _, in := range d.Config.Inputs {
		name := in.Name
		gauge("kioskd_input_connected", "1 while the input's device is open and reading, else 0.", prometheus.Labels{"input": name}, func() float64 {
			if d.Engine == nil {
				return 0
			}
			return boolFloat(d.Engine.Connected(name))
		})
	}
	gauge("kioskd_start_time_seconds", "When kioskd started, in Unix seconds.", nil, func() float64 {
		return float64(started.UnixNano()) / 1e9
	})
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kioskd_build_info", Help: "Always 1; the version is a label.", ConstLabels: prometheus.Labels{"version": version},
	})
	info.Set(1)
	m.reg.MustRegister(info)
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// handler serves the metrics in the Prometheus text format.
func (m *metrics) handler(log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// decided counts one decision (the engine's Decided hook).
func (m *metrics) decided(o kiosk.Outcome) {
	m.decisions.WithLabelValues(string(o.Reason)).Inc()
	if o.Reason == kiosk.Granted && o.Err == nil {
		m.grants.Inc()
	}
	if o.Err != nil {
		m.failed.Inc()
	}
	m.latency.Observe(o.Latency.Seconds())
}

// run feeds the counters that follow the engine and the journal until
// ctx is done.
func (m *metrics) run(ctx context.Context, log *slog.Logger) {
	d := m.d
	if d.Engine == nil {
		log.Error("metrics: no engine; input counters stay at zero")
		return
	}
	taps, cancelTap := d.Engine.Tap(256)
	defer cancelTap()
	wake, cancelSub := d.Store.Subscribe()
	defer cancelSub()
	after := m.fromSeq
	readJournal := func() {
		for {
			evs, err := d.Store.Pending(after, eventBatch)
			if err != nil {
				log.Error("metrics: read the journal", "err", err)
				return
			}
			for _, ev := range evs {
				after = ev.Seq
				if ev.Type == kiosk.EvDoorUnlocked {
					m.pulses.WithLabelValues(ev.Door).Inc()
				}
			}
			if len(evs) < eventBatch {
				return
			}
		}
	}
	readJournal()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-taps:
			if ev.Type == kiosk.InputRejected {
				m.rejected.WithLabelValues(ev.Input).Inc()
			}
		case <-wake:
			readJournal()
		}
	}
}
