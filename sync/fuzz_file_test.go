package sync

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"kioskd/kiosk"
	"kioskd/store"
	"kioskd/store/storetest"
)

// The signature file a fuzzed document travels with (FuzzApplyFile).
const (
	fileSigGood    = iota // the portal's signature of the body
	fileSigFuzzed         // the fuzzed text
	fileSigMissing        // no .sig file
)

// FuzzApplyFile applies arbitrary document files (SPEC §6.5) with a good,
// a fuzzed or no signature file to a real store, and checks the contract
// of ApplyFile: only a document signed by the portal is accepted; a
// rejected one changes no credential, cursor or watermark and records
// exactly one sync.rejected event naming its reason and file; an accepted
// one records one sync.applied exactly when it changed something.
func FuzzApplyFile(f *testing.F) {
	priv := testPriv()
	opts := FileOptions{DeviceID: testDevice, PublicKey: priv.Public().(ed25519.PublicKey), Now: testNow, MaxBytes: 64 << 10}
	st := storetest.Open(f)
	ap := StoreApplier(st)
	dir := f.TempDir()
	path := filepath.Join(dir, "doc.json")

	base := []*kiosk.Credential{testCred("c-1", "246810"), testCred("c-2", "583920"), testCred("c-3", "719304")}
	if _, err := ApplyFile(context.Background(), ap, opts, writeFuzzDoc(f, path, body(f, fullHeader("c-1", t0), base...), priv)); err != nil {
		f.Fatal(err)
	}
	watched := append(base, testCred("c-4", "402958"), testCred("c-9", "835164"))

	other := fullHeader("c-9", t0.Add(time.Hour))
	other.DeviceID = "spr-0002"
	dup := testCred("c-8", "246810")
	seeds := [][]byte{
		body(f, fullHeader("c-2", t0.Add(time.Minute)), append(base, testCred("c-4", "402958"))...),
		body(f, deltaHeader("c-1", "c-2", t0.Add(time.Minute)), testCred("c-4", "402958")),
		body(f, Header{IssuedAt: t0.Add(2 * time.Minute), Base: "c-1", Cursor: "c-3", Removed: []string{"c-3"}, Revoked: []string{"tok-1"}}),
		body(f, deltaHeader("c-0", "c-5", t0.Add(time.Minute)), testCred("c-9", "835164")),
		body(f, fullHeader("c-0", t0.Add(-time.Hour)), testCred("c-9", "835164")), // stale
		body(f, other, testCred("c-9", "835164")),
		body(f, deltaHeader("c-1", "c-6", t0.Add(time.Minute)), dup), // two active with one digest
		body(f, Header{IssuedAt: t0.Add(time.Minute), Base: "c-1", Cursor: "c-1"}),
		[]byte(`{"device_id":"spr-0001","full":true,"cursor":"x","credentials":[{"id":""}]}`),
		[]byte("not json"),
		nil,
	}
	if docs, err := filepath.Glob(filepath.Join("testdata", "documents", "*.json")); err == nil {
		for _, name := range docs {
			if b, err := os.ReadFile(name); err == nil {
				seeds = append(seeds, b)
			}
		}
	}
	for _, s := range seeds {
		f.Add(s, uint8(fileSigGood), "")
		f.Add(s, uint8(fileSigFuzzed), Sign(priv, s)+" ")
	}
	f.Add([]byte(`{}`), uint8(fileSigFuzzed), "not base64!")
	f.Add([]byte(`{}`), uint8(fileSigMissing), "")

	f.Fuzz(func(t *testing.T, b []byte, mode uint8, sigText string) {
		mode %= 3
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Remove(SigPath(path))
		switch mode {
		case fileSigGood:
			if err := WriteSigFile(path, Sign(priv, b)); err != nil {
				t.Fatal(err)
			}
		case fileSigFuzzed:
			if err := os.WriteFile(SigPath(path), []byte(sigText), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		before := fileSnap(t, st, watched)
		res, err := ApplyFile(context.Background(), ap, opts, path)
		evs, perr := st.Pending(before.seq, 100)
		if perr != nil {
			t.Fatal(perr)
		}
		if err != nil {
			reason := RejectReason(err)
			if reason == "" {
				t.Fatalf("error without a reject reason for a readable file: %v", err)
			}
			if after := fileSnap(t, st, watched); !reflect.DeepEqual(after.state, before.state) {
				t.Fatalf("rejected (%s) but the store changed:\n%+v\nwas\n%+v", reason, after.state, before.state)
			}
			if len(evs) != 1 || evs[0].Type != kiosk.EvSyncRejected || evs[0].Detail["reason"] != reason || evs[0].Detail["file"] != "doc.json" {
				t.Fatalf("rejected (%s): events %+v, want one sync.rejected", reason, evs)
			}
			return
		}
		if mode != fileSigGood {
			// A fuzzed .sig text may still be the right signature,
			// with white space around it.
			sig, serr := ParseSignature(sigText)
			if mode == fileSigMissing || serr != nil || !ed25519.Verify(opts.PublicKey, b, sig) {
				t.Fatalf("accepted a document without the portal's signature (mode %d)", mode)
			}
		}
		wantEvents := 0
		if res.Changed {
			wantEvents = 1
		}
		if len(evs) != wantEvents || (wantEvents == 1 && evs[0].Type != kiosk.EvSyncApplied) {
			t.Fatalf("accepted (changed %v): events %+v", res.Changed, evs)
		}
	})
}

// writeFuzzDoc writes a signed document pair and returns its path.
func writeFuzzDoc(tb testing.TB, path string, b []byte, priv ed25519.PrivateKey) string {
	tb.Helper()
	if err := WriteFile(path, b, priv); err != nil {
		tb.Fatal(err)
	}
	return path
}

// fileState is what a rejected document must leave as it was.
type fileState struct {
	sync    store.SyncState
	count   int
	creds   []*kiosk.Credential
	revoked bool
}

type fileSnapshot struct {
	state fileState
	seq   uint64
}

func fileSnap(t *testing.T, st *store.Store, watched []*kiosk.Credential) fileSnapshot {
	t.Helper()
	ss, err := st.SyncState()
	if err != nil {
		t.Fatal(err)
	}
	seq, err := st.LastSeq()
	if err != nil {
		t.Fatal(err)
	}
	s := fileSnapshot{state: fileState{sync: ss, count: st.Count()}, seq: seq}
	for _, c := range watched {
		got, err := st.Lookup(c.Digest)
		if err != nil {
			t.Fatal(err)
		}
		s.state.creds = append(s.state.creds, got)
	}
	if s.state.revoked, err = st.Revoked("tok-1"); err != nil {
		t.Fatal(err)
	}
	return s
}
