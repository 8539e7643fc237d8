package sync

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"kioskd/kiosk"
	"kioskd/store"
	"kioskd/store/storetest"
)

// writeDoc writes a signed document file pair into dir.
func writeDoc(t *testing.T, dir, name string, b []byte, priv ed25519.PrivateKey) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := WriteFile(path, b, priv); err != nil {
		t.Fatal(err)
	}
	return path
}

func fileOpts() FileOptions {
	return FileOptions{DeviceID: testDevice, PublicKey: testPriv().Public().(ed25519.PublicKey), Now: testNow}
}

// pendingEvents returns the events in the store's journal.
func pendingEvents(t *testing.T, st *store.Store) []kiosk.Event {
	t.Helper()
	evs, err := st.Pending(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestApplyFileRealStore runs the file path of SPEC §6.5 into a real
// store on disk.
func TestApplyFileRealStore(t *testing.T) {
	ctx := context.Background()
	priv := testPriv()
	dir := t.TempDir()
	st := storetest.Open(t)
	ap := StoreApplier(st)

	resident := testCred("c-1", "246810")
	courier := testCred("c-2", "583920")
	courier.Holder.Role = kiosk.RoleCourier
	courier.Schedule = []kiosk.Window{{Days: []time.Weekday{time.Monday}, From: 420, To: 1200}}
	oneTime := testCred("c-3", "719304")
	oneTime.Uses = 1

	full := writeDoc(t, dir, "full.json", body(t, Header{IssuedAt: t0, Full: true, Cursor: "c-1", Revoked: []string{"tok-1"}},
		resident, courier, oneTime), priv)
	res, err := ApplyFile(ctx, ap, fileOpts(), full)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Full || res.Cursor != "c-1" || res.Stats.Upserted != 3 || !res.Changed {
		t.Errorf("result %+v", res)
	}
	c, err := st.Lookup(resident.Digest)
	if err != nil || c == nil || c.ID != "c-1" {
		t.Fatalf("Lookup resident = %+v, %v", c, err)
	}
	if got, _ := st.Lookup(courier.Digest); got == nil || !reflect.DeepEqual(got.Schedule, courier.Schedule) {
		t.Errorf("courier = %+v", got)
	}
	if r, _ := st.Revoked("tok-1"); !r {
		t.Error("tok-1 not revoked")
	}
	evs := pendingEvents(t, st)
	if len(evs) != 1 || evs[0].Type != kiosk.EvSyncApplied || evs[0].Detail["cursor"] != "c-1" || evs[0].Detail["full"] != true {
		t.Fatalf("events after the full: %+v", evs)
	}

	// A good delta on its base.
	hd := deltaHeader("c-1", "c-2", t0.Add(time.Minute))
	hd.Removed = []string{"c-3"}
	delta := writeDoc(t, dir, "delta.json", body(t, hd, testCred("c-4", "402958")), priv)
	res, err = ApplyFile(ctx, ap, fileOpts(), delta)
	if err != nil {
		t.Fatal(err)
	}
	if res.Stats != (store.ApplyStats{Upserted: 1, Removed: 1}) || !res.Changed {
		t.Errorf("delta result %+v", res)
	}
	if got, _ := st.Lookup(oneTime.Digest); got != nil {
		t.Errorf("removed credential still found: %+v", got)
	}
	if got, _ := st.Lookup(testCred("c-4", "402958").Digest); got == nil {
		t.Error("upserted credential not found")
	}
	evs = pendingEvents(t, st)
	if len(evs) != 2 || evs[1].Type != kiosk.EvSyncApplied || evs[1].Detail["cursor"] != "c-2" {
		t.Fatalf("events after the delta: %+v", evs)
	}

	// Rejected files: nothing changes but one sync.rejected event.
	big := make([]byte, 2048)
	for i := range big {
		big[i] = ' '
	}
	other := fullHeader("c-9", t0.Add(time.Hour))
	other.DeviceID = "spr-0002"
	goodNext := body(t, fullHeader("c-9", t0.Add(time.Hour)), testCred("c-9", "835164"))
	tests := []struct {
		name   string
		write  func(t *testing.T, dir string) string
		opts   func(*FileOptions)
		reason string
	}{
		{"delta on the wrong base", func(t *testing.T, dir string) string {
			return writeDoc(t, dir, "wrongbase.json", body(t, deltaHeader("c-1", "c-3", t0.Add(time.Hour)), testCred("c-9", "835164")), priv)
		}, nil, ReasonBaseMismatch},
		{"bad signature", func(t *testing.T, dir string) string {
			p := writeDoc(t, dir, "badsig.json", goodNext, priv)
			_, other, _ := ed25519.GenerateKey(nil)
			if err := WriteSigFile(p, Sign(other, goodNext)); err != nil {
				t.Fatal(err)
			}
			return p
		}, nil, ReasonBadSignature},
		{"tampered body", func(t *testing.T, dir string) string {
			p := writeDoc(t, dir, "tampered.json", goodNext, priv)
			b := append([]byte{}, goodNext...)
			b[len(b)-3] = ' '
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, nil, ReasonBadSignature},
		{"unsigned", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "unsigned.json")
			if err := os.WriteFile(p, goodNext, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, nil, ReasonBadSignature},
		{"signature file garbage", func(t *testing.T, dir string) string {
			p := writeDoc(t, dir, "garbage-sig.json", goodNext, priv)
			if err := os.WriteFile(SigPath(p), []byte("not a signature\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, nil, ReasonBadSignature},
		{"other device", func(t *testing.T, dir string) string {
			return writeDoc(t, dir, "other.json", body(t, other, testCred("c-9", "835164")), priv)
		}, nil, ReasonWrongDevice},
		{"oversize", func(t *testing.T, dir string) string {
			return writeDoc(t, dir, "big.json", append(append([]byte{}, goodNext...), big...), priv)
		}, func(o *FileOptions) { o.MaxBytes = int64(len(goodNext)) + 100 }, ReasonTooLarge},
		{"malformed", func(t *testing.T, dir string) string {
			return writeDoc(t, dir, "malformed.json", goodNext[:len(goodNext)/2], priv)
		}, nil, ReasonMalformed},
		{"stale full", func(t *testing.T, dir string) string {
			return writeDoc(t, dir, "stale.json", body(t, fullHeader("c-0", t0.Add(-time.Hour)), testCred("c-9", "835164")), priv)
		}, nil, ReasonStale},
		{"duplicate active digests", func(t *testing.T, dir string) string {
			return writeDoc(t, dir, "dup.json", body(t, fullHeader("c-9", t0.Add(time.Hour)),
				testCred("c-8", "835164"), testCred("c-9", "835164")), priv)
		}, nil, ReasonDuplicateDigest},
		{"delta duplicating a stored digest", func(t *testing.T, dir string) string {
			return writeDoc(t, dir, "dupdelta.json", body(t, deltaHeader("c-2", "c-3", t0.Add(time.Hour)), testCred("c-9", "246810")), priv)
		}, nil, ReasonDuplicateDigest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, err := st.SyncState()
			if err != nil {
				t.Fatal(err)
			}
			nev := len(pendingEvents(t, st))
			path := tt.write(t, t.TempDir())
			opts := fileOpts()
			if tt.opts != nil {
				tt.opts(&opts)
			}
			_, err = ApplyFile(ctx, ap, opts, path)
			if got := RejectReason(err); got != tt.reason {
				t.Fatalf("err %v: reason %q, want %q", err, got, tt.reason)
			}
			after, err := st.SyncState()
			if err != nil {
				t.Fatal(err)
			}
			if after != before {
				t.Errorf("sync state changed: %+v → %+v", before, after)
			}
			if got, _ := st.Lookup(testCred("c-9", "835164").Digest); got != nil {
				t.Errorf("a rejected credential is in the store: %+v", got)
			}
			if got, _ := st.Lookup(resident.Digest); got == nil {
				t.Error("the resident's credential is gone")
			}
			evs := pendingEvents(t, st)
			if len(evs) != nev+1 {
				t.Fatalf("%d new events, want one sync.rejected", len(evs)-nev)
			}
			ev := evs[len(evs)-1]
			want := map[string]any{"reason": tt.reason, "file": filepath.Base(path)}
			if ev.Type != kiosk.EvSyncRejected || !reflect.DeepEqual(ev.Detail, want) {
				t.Errorf("event %s %v, want sync.rejected %v", ev.Type, ev.Detail, want)
			}
			if now, synced := testNow(); !ev.Time.Equal(now) || ev.ClockSynced != synced {
				t.Errorf("event time %v synced %v", ev.Time, ev.ClockSynced)
			}
		})
	}

	t.Run("missing file is no rejection", func(t *testing.T) {
		nev := len(pendingEvents(t, st))
		_, err := ApplyFile(ctx, ap, fileOpts(), filepath.Join(t.TempDir(), "nope.json"))
		if err == nil || RejectReason(err) != "" || !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err %v reason %q", err, RejectReason(err))
		}
		if len(pendingEvents(t, st)) != nev {
			t.Error("an event was recorded for a missing file")
		}
	})

	t.Run("empty delta changes nothing", func(t *testing.T) {
		nev := len(pendingEvents(t, st))
		p := writeDoc(t, t.TempDir(), "empty.json", body(t, deltaHeader("c-2", "c-2", t0.Add(2*time.Hour))), priv)
		res, err := ApplyFile(ctx, ap, fileOpts(), p)
		if err != nil || res.Changed {
			t.Fatalf("res %+v err %v", res, err)
		}
		if len(pendingEvents(t, st)) != nev {
			t.Error("an empty delta recorded an event")
		}
	})

	t.Run("same full twice", func(t *testing.T) {
		p := writeDoc(t, t.TempDir(), "full2.json", body(t, fullHeader("c-5", t0.Add(3*time.Hour)), resident), priv)
		if _, err := ApplyFile(ctx, ap, fileOpts(), p); err != nil {
			t.Fatal(err)
		}
		nev := len(pendingEvents(t, st))
		res, err := ApplyFile(ctx, ap, fileOpts(), p)
		if err != nil || res.Changed || len(pendingEvents(t, st)) != nev {
			t.Fatalf("second apply: %+v %v", res, err)
		}
	})
}

// TestApplyFileSignatureFirst checks that nothing of an unverified body is
// read as a document: a badly signed file for another device is a bad
// signature, not a wrong device.
func TestApplyFileSignatureFirst(t *testing.T) {
	st := newFakeStore()
	dir := t.TempDir()
	h := fullHeader("c-1", t0)
	h.DeviceID = "spr-0002"
	b := body(t, h)
	p := writeDoc(t, dir, "x.json", b, testPriv())
	_, other, _ := ed25519.GenerateKey(nil)
	WriteSigFile(p, Sign(other, b))
	_, err := ApplyFile(context.Background(), st, fileOpts(), p)
	if RejectReason(err) != ReasonBadSignature || st.begins != 0 {
		t.Fatalf("err %v, begins %d", err, st.begins)
	}
}

// TestSessionPagesRealStore feeds a three-page full document into a real
// store: the old set serves until the last page, then the new one.
func TestSessionPagesRealStore(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t)
	ap := StoreApplier(st)
	old := testCred("c-old", "246810")
	if _, err := apply(ap, testOpts(), body(t, fullHeader("c-1", t0), old)); err != nil {
		t.Fatal(err)
	}
	s := NewSession(ap, testOpts())
	h := fullHeader("c-2", t0.Add(time.Hour))
	var creds []*kiosk.Credential
	for i := range 30 {
		creds = append(creds, testCred(fmt.Sprintf("c-%d", i), fmt.Sprintf("7%05d", i*37)))
	}
	pages := [][]*kiosk.Credential{creds[:10], creds[10:25], creds[25:]}
	for i, p := range pages {
		ph := h
		if i < len(pages)-1 {
			ph.Next = fmt.Sprintf("p-%d", i+2)
		}
		if i == 1 {
			ph.Revoked = []string{"tok-1"}
		}
		b := body(t, ph, p...)
		next, err := s.Page(ctx, bytes.NewReader(b), int64(len(b)))
		if err != nil || next != ph.Next {
			t.Fatalf("page %d: next %q, %v", i+1, next, err)
		}
		if i < len(pages)-1 {
			if c, _ := st.Lookup(old.Digest); c == nil {
				t.Fatalf("the old set stopped serving after page %d", i+1)
			}
			if c, _ := st.Lookup(creds[0].Digest); c != nil {
				t.Fatalf("the new set serves before the last page")
			}
		}
	}
	if c, _ := st.Lookup(old.Digest); c != nil {
		t.Error("the old credential survived the full document")
	}
	for _, c := range creds {
		if got, _ := st.Lookup(c.Digest); got == nil || got.ID != c.ID {
			t.Fatalf("%s not found after the last page", c.ID)
		}
	}
	if r, _ := st.Revoked("tok-1"); !r {
		t.Error("revoked of page 2 lost")
	}
	if res := s.Result(); res.Pages != 3 || res.Credentials != 30 || res.Stats != (store.ApplyStats{Upserted: 30, Removed: 1}) {
		t.Errorf("result %+v", res)
	}
}
