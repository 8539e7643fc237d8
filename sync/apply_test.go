package sync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"kioskd/kiosk"
	"kioskd/store"
)

const testDevice = "spr-0001"

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// testNow is the clock of the tests: a fixed time, synchronised.
func testNow() (time.Time, bool) { return t0.Add(time.Hour), true }

func testOpts() Options { return Options{DeviceID: testDevice, Now: testNow} }

// body encodes a document for the tests.
func body(t testing.TB, h Header, creds ...*kiosk.Credential) []byte {
	t.Helper()
	if h.DeviceID == "" {
		h.DeviceID = testDevice
	}
	d := &Document{Header: h}
	for _, c := range creds {
		d.Credentials = append(d.Credentials, *NewWireCredential(c))
	}
	b, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func apply(st Applier, opts Options, b []byte) (Result, error) {
	return Apply(context.Background(), st, opts, bytes.NewReader(b), int64(len(b)))
}

func fullHeader(cursor string, at time.Time) Header {
	return Header{IssuedAt: at, Full: true, Cursor: cursor}
}

func deltaHeader(base, cursor string, at time.Time) Header {
	return Header{IssuedAt: at, Base: base, Cursor: cursor}
}

// loaded returns a fake store holding c-1, c-2, c-3 at cursor c-1.
func loaded(t *testing.T) *fakeStore {
	t.Helper()
	st := newFakeStore()
	_, err := apply(st, testOpts(), body(t, fullHeader("c-1", t0), testCred("c-1", "246810"), testCred("c-2", "583920"), testCred("c-3", "719304")))
	if err != nil {
		t.Fatal(err)
	}
	st.events = nil
	st.begins, st.puts, st.commits, st.aborts, st.deltas = 0, 0, 0, 0, 0
	return st
}

func wantApplied(t *testing.T, evs []*kiosk.Event, cursor string, full bool, upserted, removed int) {
	t.Helper()
	if len(evs) != 1 {
		t.Fatalf("events = %v, want one sync.applied", evs)
	}
	ev := evs[0]
	want := map[string]any{"cursor": cursor, "full": full, "upserted": upserted, "removed": removed}
	if ev.Type != kiosk.EvSyncApplied || !reflect.DeepEqual(ev.Detail, want) {
		t.Errorf("event %s %v, want sync.applied %v", ev.Type, ev.Detail, want)
	}
	if now, _ := testNow(); !ev.Time.Equal(now) || !ev.ClockSynced || ev.Time.Location() != time.UTC {
		t.Errorf("event time %v synced %v, want %v from the injected clock", ev.Time, ev.ClockSynced, now)
	}
}

func TestApplyFull(t *testing.T) {
	st := newFakeStore()
	b := body(t, Header{IssuedAt: t0, Full: true, Cursor: "c-1", Revoked: []string{"tok-1"},
		Commands: []Command{{ID: "cmd-1", Type: "unlock", Door: "main"}}},
		testCred("c-1", "246810"), testCred("c-2", "583920"))
	res, err := apply(st, testOpts(), b)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.creds) != 2 || !st.revoked["tok-1"] || st.state.Cursor != "c-1" || !st.state.Newest.Equal(t0) {
		t.Errorf("store: %d credentials, revoked %v, state %+v", len(st.creds), st.revoked, st.state)
	}
	if !res.Full || res.Cursor != "c-1" || res.Credentials != 2 || res.Pages != 1 || !res.Changed ||
		res.Stats != (store.ApplyStats{Upserted: 2}) || len(res.Commands) != 1 {
		t.Errorf("result %+v", res)
	}
	wantApplied(t, st.events, "c-1", true, 2, 0)

	t.Run("same cursor changes nothing", func(t *testing.T) {
		st.events = nil
		res, err := apply(st, testOpts(), b)
		if err != nil {
			t.Fatal(err)
		}
		if res.Changed || len(st.events) != 0 || st.commits != 2 {
			t.Errorf("changed %v, events %v, commits %d: a full on the live cursor is committed without sync.applied", res.Changed, st.events, st.commits)
		}
	})
	t.Run("new cursor replaces the set", func(t *testing.T) {
		st.events = nil
		res, err := apply(st, testOpts(), body(t, fullHeader("c-2", t0.Add(time.Minute)), testCred("c-3", "719304")))
		if err != nil {
			t.Fatal(err)
		}
		if len(st.creds) != 1 || st.creds["c-3"] == nil || len(st.revoked) != 0 || !res.Changed {
			t.Errorf("store %v revoked %v", st.creds, st.revoked)
		}
		wantApplied(t, st.events, "c-2", true, 1, 2)
	})
	t.Run("unsorted document", func(t *testing.T) {
		st.events = nil
		var cs []*kiosk.Credential
		for i := range 50 {
			cs = append(cs, testCred(fmt.Sprintf("c-%d", i), fmt.Sprintf("9%05d", i*7919)))
		}
		if _, err := apply(st, testOpts(), body(t, fullHeader("c-3", t0.Add(2*time.Minute)), cs...)); err != nil {
			t.Fatal(err)
		}
		if len(st.creds) != 50 {
			t.Errorf("%d credentials", len(st.creds))
		}
	})
}

func TestApplyDelta(t *testing.T) {
	st := loaded(t)
	upd := testCred("c-2", "583920")
	upd.Status = kiosk.StatusDeactivated
	h := deltaHeader("c-1", "c-2", t0.Add(time.Minute))
	h.Removed = []string{"c-3", "c-404"}
	h.Revoked = []string{"tok-7"}
	h.Commands = []Command{{ID: "cmd-2", Type: "unlock", Door: "main"}}
	res, err := apply(st, testOpts(), body(t, h, upd, testCred("c-4", "402958")))
	if err != nil {
		t.Fatal(err)
	}
	if st.state.Cursor != "c-2" || st.creds["c-2"].Status != kiosk.StatusDeactivated || st.creds["c-3"] != nil ||
		st.creds["c-4"] == nil || !st.revoked["tok-7"] {
		t.Errorf("store %v revoked %v state %+v", st.creds, st.revoked, st.state)
	}
	if res.Full || res.Base != "c-1" || res.Cursor != "c-2" || !res.Changed || len(res.Commands) != 1 {
		t.Errorf("result %+v", res)
	}
	wantApplied(t, st.events, "c-2", false, 2, 1)

	tests := []struct {
		name    string
		h       Header
		creds   []*kiosk.Credential
		changed bool
	}{
		{"empty delta", deltaHeader("c-2", "c-2", t0.Add(2*time.Minute)), nil, false},
		{"revoked only", Header{IssuedAt: t0.Add(3 * time.Minute), Base: "c-2", Cursor: "c-3", Revoked: []string{"tok-8"}}, nil, true},
		{"removing the absent", Header{IssuedAt: t0.Add(4 * time.Minute), Base: "c-3", Cursor: "c-3", Removed: []string{"c-404"}}, nil, false},
		{"cursor moves", deltaHeader("c-3", "c-4", t0.Add(5*time.Minute)), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st.events = nil
			res, err := apply(st, testOpts(), body(t, tt.h, tt.creds...))
			if err != nil {
				t.Fatal(err)
			}
			if res.Changed != tt.changed || (len(st.events) == 1) != tt.changed || st.state.Cursor != tt.h.Cursor {
				t.Errorf("changed %v, events %v, cursor %s; want changed %v", res.Changed, st.events, st.state.Cursor, tt.changed)
			}
		})
	}
}

func TestApplyRejected(t *testing.T) {
	later := t0.Add(time.Minute)
	dup := testCred("c-9", "246810") // the digest of c-1
	bad := testCred("c-5", "111111")
	badWire := NewWireCredential(bad)
	badWire.Holder.Role = "landlord"
	withBad := func(h Header) []byte {
		d := &Document{Header: h}
		d.DeviceID = testDevice
		d.Credentials = []WireCredential{*NewWireCredential(testCred("c-6", "602714")), *badWire}
		b, _ := d.Marshal()
		return b
	}
	tests := []struct {
		name   string
		opts   func(*Options)
		doc    func(t *testing.T) []byte
		reason string
		begins int // full loads begun (then aborted)
	}{
		{"other device", nil, func(t *testing.T) []byte {
			h := fullHeader("c-2", later)
			h.DeviceID = "spr-0002"
			return body(t, h, testCred("c-7", "520163"))
		}, ReasonWrongDevice, 0},
		{"no device", nil, func(t *testing.T) []byte {
			return []byte(`{"issued_at":"2026-11-20T10:00:00Z","full":true,"cursor":"c-2","credentials":[]}`)
		}, ReasonWrongDevice, 0},
		{"not JSON", nil, func(t *testing.T) []byte { return []byte("PK\x03\x04") }, ReasonMalformed, 0},
		{"no issued_at", nil, func(t *testing.T) []byte { return body(t, Header{Full: true, Cursor: "c-2"}) }, ReasonMalformed, 0},
		{"no cursor", nil, func(t *testing.T) []byte { return body(t, Header{Full: true, IssuedAt: later}) }, ReasonMalformed, 0},
		{"delta without base", nil, func(t *testing.T) []byte { return body(t, deltaHeader("", "c-2", later)) }, ReasonMalformed, 0},
		{"bad credential in a full", nil, func(t *testing.T) []byte { return withBad(fullHeader("c-2", later)) }, ReasonMalformed, 1},
		{"bad credential in a delta", nil, func(t *testing.T) []byte { return withBad(deltaHeader("c-1", "c-2", later)) }, ReasonMalformed, 0},
		{"more pages", nil, func(t *testing.T) []byte {
			h := fullHeader("c-2", later)
			h.Next = "p-2"
			return body(t, h, testCred("c-7", "520163"))
		}, ReasonMalformed, 0},
		{"stale full", nil, func(t *testing.T) []byte {
			return body(t, fullHeader("c-0", t0.Add(-time.Second)), testCred("c-7", "520163"))
		}, ReasonStale, 0},
		{"delta on another base", nil, func(t *testing.T) []byte {
			return body(t, deltaHeader("c-0", "c-2", later), testCred("c-7", "520163"))
		}, ReasonBaseMismatch, 0},
		{"duplicate digest in a full", nil, func(t *testing.T) []byte {
			return body(t, fullHeader("c-2", later), testCred("c-1", "246810"), dup)
		}, ReasonDuplicateDigest, 1},
		{"duplicate digest against the stored set", nil, func(t *testing.T) []byte {
			return body(t, deltaHeader("c-1", "c-2", later), dup)
		}, ReasonDuplicateDigest, 0},
		{"duplicate id in a full", nil, func(t *testing.T) []byte {
			return body(t, fullHeader("c-2", later), testCred("c-1", "246810"), testCred("c-1", "520163"))
		}, ReasonMalformed, 1},
		{"delta too large", func(o *Options) { o.MaxDeltaChanges = 2 }, func(t *testing.T) []byte {
			h := deltaHeader("c-1", "c-2", later)
			h.Removed = []string{"c-2"}
			return body(t, h, testCred("c-7", "520163"), testCred("c-8", "630815"))
		}, ReasonTooLarge, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := loaded(t)
			before := st.creds
			opts := testOpts()
			if tt.opts != nil {
				tt.opts(&opts)
			}
			_, err := apply(st, opts, tt.doc(t))
			if got := RejectReason(err); got != tt.reason {
				t.Fatalf("err %v: reason %q, want %q", err, got, tt.reason)
			}
			if !reflect.DeepEqual(st.creds, before) || st.state.Cursor != "c-1" || st.commits != 0 {
				t.Errorf("the store changed: cursor %s, %d commits", st.state.Cursor, st.commits)
			}
			if st.begins != tt.begins || st.aborts != tt.begins || st.loading != nil {
				t.Errorf("%d full loads begun, %d aborted, want %d of each", st.begins, st.aborts, tt.begins)
			}
			if len(st.events) != 0 {
				t.Errorf("events %v: Apply records no rejection, its callers do", st.events)
			}
		})
	}
}

func TestApplyNotRejections(t *testing.T) {
	t.Run("store failure mid-load", func(t *testing.T) {
		st := loaded(t)
		st.putErr = errInjected
		_, err := apply(st, testOpts(), body(t, fullHeader("c-2", t0.Add(time.Minute)), testCred("c-7", "520163")))
		if !errors.Is(err, errInjected) || RejectReason(err) != "" {
			t.Fatalf("err %v, reason %q: a store failure is no rejection", err, RejectReason(err))
		}
		if st.aborts != 1 || st.state.Cursor != "c-1" {
			t.Errorf("aborts %d cursor %s", st.aborts, st.state.Cursor)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		st := loaded(t)
		var cs []*kiosk.Credential
		for i := range 10_000 {
			cs = append(cs, testCred(fmt.Sprintf("c-%d", i), fmt.Sprint(i)))
		}
		b := body(t, fullHeader("c-2", t0.Add(time.Minute)), cs...)
		ctx, cancel := context.WithCancel(context.Background())
		st.putErr = nil
		n := 0
		s := NewSession(&cancelAfter{fakeStore: st, n: &n, at: 100, cancel: cancel}, testOpts())
		_, err := s.Page(ctx, bytes.NewReader(b), int64(len(b)))
		if !errors.Is(err, context.Canceled) || RejectReason(err) != "" {
			t.Fatalf("err %v", err)
		}
		if st.aborts != 1 || st.state.Cursor != "c-1" || len(st.creds) != 3 {
			t.Errorf("aborts %d cursor %s", st.aborts, st.state.Cursor)
		}
	})
}

// cancelAfter cancels a context after at Puts.
type cancelAfter struct {
	*fakeStore
	n      *int
	at     int
	cancel func()
}

func (c *cancelAfter) BeginFull() (FullLoad, error) {
	l, err := c.fakeStore.BeginFull()
	if err != nil {
		return nil, err
	}
	return &cancelLoad{FullLoad: l, c: c}, nil
}

type cancelLoad struct {
	FullLoad
	c *cancelAfter
}

func (l *cancelLoad) Put(c *kiosk.Credential) error {
	if *l.c.n++; *l.c.n == l.c.at {
		l.c.cancel()
	}
	return l.FullLoad.Put(c)
}

func TestSessionPages(t *testing.T) {
	page := func(t *testing.T, h Header, next string, creds ...*kiosk.Credential) []byte {
		h.Next = next
		return body(t, h, creds...)
	}
	feed := func(s *Session, b []byte) (string, error) {
		return s.Page(context.Background(), bytes.NewReader(b), int64(len(b)))
	}

	t.Run("full over three pages", func(t *testing.T) {
		st := loaded(t)
		h := fullHeader("c-9", t0.Add(time.Hour))
		s := NewSession(st, testOpts())
		p1 := h
		p1.Revoked = []string{"tok-1"}
		next, err := feed(s, page(t, p1, "p-2", testCred("c-10", "111")))
		if err != nil || next != "p-2" {
			t.Fatalf("page 1: %q %v", next, err)
		}
		p2 := h
		p2.Removed = []string{"c-1"} // meaningless in a full: ignored
		next, err = feed(s, page(t, p2, "p-3", testCred("c-11", "222"), testCred("c-12", "333")))
		if err != nil || next != "p-3" {
			t.Fatalf("page 2: %q %v", next, err)
		}
		if st.state.Cursor != "c-1" || len(st.creds) != 3 || st.commits != 0 {
			t.Fatalf("the live set changed before the last page")
		}
		if s.Result().Cursor != "" {
			t.Errorf("Result before the last page = %+v", s.Result())
		}
		p3 := h
		p3.Revoked = []string{"tok-2"}
		next, err = feed(s, page(t, p3, "", testCred("c-13", "444")))
		if err != nil || next != "" {
			t.Fatalf("page 3: %q %v", next, err)
		}
		res := s.Result()
		if st.state.Cursor != "c-9" || len(st.creds) != 4 || !st.revoked["tok-1"] || !st.revoked["tok-2"] || st.begins != 1 {
			t.Errorf("store %v revoked %v", st.creds, st.revoked)
		}
		if res.Pages != 3 || res.Credentials != 4 || !res.Changed {
			t.Errorf("result %+v", res)
		}
		wantApplied(t, st.events, "c-9", true, 4, 3)
		if _, err := feed(s, page(t, p3, "")); err == nil {
			t.Error("a page after the last was accepted")
		}
	})

	t.Run("delta over two pages", func(t *testing.T) {
		st := loaded(t)
		h := deltaHeader("c-1", "c-2", t0.Add(time.Hour))
		s := NewSession(st, testOpts())
		p1 := h
		p1.Removed = []string{"c-1"}
		if next, err := feed(s, page(t, p1, "p-2", testCred("c-10", "111"))); err != nil || next != "p-2" {
			t.Fatalf("page 1: %q %v", next, err)
		}
		if st.deltas != 0 {
			t.Fatal("delta applied before its last page")
		}
		p2 := h
		p2.Removed = []string{"c-2"}
		if next, err := feed(s, page(t, p2, "", testCred("c-11", "222"))); err != nil || next != "" {
			t.Fatalf("page 2: %q %v", next, err)
		}
		if st.deltas != 1 || len(st.creds) != 3 || st.creds["c-1"] != nil || st.creds["c-11"] == nil {
			t.Errorf("store %v", st.creds)
		}
		wantApplied(t, st.events, "c-2", false, 2, 2)
	})

	t.Run("delta cap counts every page", func(t *testing.T) {
		st := loaded(t)
		opts := testOpts()
		opts.MaxDeltaChanges = 2
		s := NewSession(st, opts)
		h := deltaHeader("c-1", "c-2", t0.Add(time.Hour))
		if _, err := feed(s, page(t, h, "p-2", testCred("c-10", "111"))); err != nil {
			t.Fatal(err)
		}
		if _, err := feed(s, page(t, h, "p-3", testCred("c-11", "222"))); err != nil {
			t.Fatal(err)
		}
		_, err := feed(s, page(t, h, "", testCred("c-12", "333")))
		if RejectReason(err) != ReasonTooLarge || st.deltas != 0 {
			t.Fatalf("err %v, %d deltas", err, st.deltas)
		}
	})

	mismatch := []struct {
		name string
		mod  func(h *Header)
	}{
		{"cursor", func(h *Header) { h.Cursor = "c-10" }},
		{"issued_at", func(h *Header) { h.IssuedAt = h.IssuedAt.Add(time.Second) }},
		{"full", func(h *Header) { h.Full, h.Base = false, "c-1" }},
		{"device", func(h *Header) { h.DeviceID = "spr-0002" }},
	}
	for _, m := range mismatch {
		t.Run("page with another "+m.name, func(t *testing.T) {
			st := loaded(t)
			h := fullHeader("c-9", t0.Add(time.Hour))
			s := NewSession(st, testOpts())
			if _, err := feed(s, page(t, h, "p-2", testCred("c-10", "111"))); err != nil {
				t.Fatal(err)
			}
			m.mod(&h)
			_, err := feed(s, page(t, h, "", testCred("c-11", "222")))
			if RejectReason(err) == "" {
				t.Fatalf("err %v, want a rejection", err)
			}
			if st.aborts != 1 || st.commits != 0 || st.state.Cursor != "c-1" || len(st.creds) != 3 {
				t.Errorf("aborts %d commits %d cursor %s", st.aborts, st.commits, st.state.Cursor)
			}
			if _, err := feed(s, page(t, h, "")); err == nil {
				t.Error("a failed session accepted another page")
			}
		})
	}

	t.Run("abort", func(t *testing.T) {
		st := loaded(t)
		s := NewSession(st, testOpts())
		if _, err := feed(s, page(t, fullHeader("c-9", t0.Add(time.Hour)), "p-2", testCred("c-10", "111"))); err != nil {
			t.Fatal(err)
		}
		if err := s.Abort(); err != nil {
			t.Fatal(err)
		}
		if st.aborts != 1 || st.loading != nil || st.state.Cursor != "c-1" {
			t.Errorf("aborts %d", st.aborts)
		}
	})

	t.Run("stale at commit", func(t *testing.T) {
		st := loaded(t)
		s := NewSession(st, testOpts())
		h := fullHeader("c-9", t0.Add(time.Hour))
		if _, err := feed(s, page(t, h, "p-2", testCred("c-10", "111"))); err != nil {
			t.Fatal(err)
		}
		st.state.Newest = t0.Add(2 * time.Hour) // a newer document came meanwhile
		_, err := feed(s, page(t, h, ""))
		if RejectReason(err) != ReasonStale || st.state.Cursor != "c-1" {
			t.Fatalf("err %v cursor %s", err, st.state.Cursor)
		}
	})
}
