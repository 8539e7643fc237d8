package portal

import (
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"kioskd/kiosk"
	portalsync "kioskd/sync"
)

// fakeKiosk is a push listener beside the real kiosk's: it verifies each
// push as the kiosk does (signature, then parse) and hands it to the test.
type fakeKiosk struct {
	t      *testing.T
	pub    ed25519.PublicKey
	srv    *httptest.Server
	pushes chan *page

	mu     sync.Mutex
	status int    // answer status; 0 means 200
	cursor string // cursor answered; "same" means the pushed document's
}

func newFakeKiosk(t *testing.T, pub ed25519.PublicKey) *fakeKiosk {
	k := &fakeKiosk{t: t, pub: pub, pushes: make(chan *page, 16), cursor: "same"}
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/push" {
			t.Errorf("push to %s %s", r.Method, r.URL.Path)
			http.NotFound(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
			return
		}
		pg := verify(t, pub, r.Header.Get(portalsync.SignatureHeader), body)
		k.mu.Lock()
		status, cursor := k.status, k.cursor
		k.mu.Unlock()
		if status == 0 {
			status = http.StatusOK
		}
		if cursor == "same" {
			cursor = pg.hdr.Cursor
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"cursor": cursor})
		k.pushes <- pg
	}))
	t.Cleanup(k.srv.Close)
	return k
}

func (k *fakeKiosk) answer(status int, cursor string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.status, k.cursor = status, cursor
}

// next waits for the next push.
func (k *fakeKiosk) next() *page {
	k.t.Helper()
	select {
	case pg := <-k.pushes:
		return pg
	case <-time.After(10 * time.Second):
		k.t.Fatal("no push within 10 s")
		return nil
	}
}

func TestPush(t *testing.T) {
	e := newEnv(t, nil)
	k := newFakeKiosk(t, e.pub)
	e.addDevice("spr-0001", k.srv.URL)
	h := e.holder(kiosk.RoleResident, "Ana")
	first := e.issue(CredentialSpec{Holder: h, Type: TypePIN})
	base := e.pull("spr-0001", "", "").hdr.Cursor // the portal now knows the kiosk's cursor

	e.p.Start(t.Context())
	// Start pushes what the kiosk lacks: nothing.
	added := e.issue(CredentialSpec{Holder: h, Type: TypeQR})
	pg := k.next()
	hd := pg.hdr
	if hd.Kind != portalsync.PushDelta || hd.Full || hd.Base != base || hd.Cursor != "c-2" || hd.Nonce == "" ||
		!hd.IssuedAt.Equal(e.clock.Now()) || len(pg.creds) != 1 || pg.creds[0].ID != added.Credential.ID {
		t.Fatalf("push %+v with %v", hd, pg.creds)
	}
	nonce := hd.Nonce

	// The kiosk answered 200 {"cursor": "c-2"}: the next delta is on c-2.
	if err := e.p.Delete(ctx, first.Credential.ID); err != nil {
		t.Fatal(err)
	}
	pg = k.next()
	if pg.hdr.Kind != portalsync.PushDelta || pg.hdr.Base != "c-2" || pg.hdr.Cursor != "c-3" ||
		len(pg.hdr.Removed) != 1 || pg.hdr.Removed[0] != first.Credential.ID || pg.hdr.Nonce == nonce {
		t.Fatalf("second push %+v", pg.hdr)
	}

	// A remote unlock is pushed as a command document.
	cmd, err := e.p.Unlock(ctx, "spr-0001", "main")
	if err != nil {
		t.Fatal(err)
	}
	pg = k.next()
	if pg.hdr.Kind != portalsync.PushCommand || len(pg.hdr.Commands) != 1 || pg.hdr.Commands[0] != cmd {
		t.Fatalf("command push %+v", pg.hdr)
	}
	// Delivered by the push (marked once the kiosk answered 200): the next
	// pull does not carry it again.
	waitFor(t, func() bool {
		var n int
		e.p.db.View(func(tx *bolt.Tx) error {
			cmds, _, err := pendingCommands(tx, "spr-0001", e.clock.Now(), DefaultCommandTTL)
			n = len(cmds)
			return err
		})
		return n == 0
	})
	if pg := e.pull("spr-0001", "c-3", ""); len(pg.hdr.Commands) != 0 {
		t.Errorf("a pushed command came again in a pull: %v", pg.hdr.Commands)
	}

	// 409: the kiosk is elsewhere; the portal notes its cursor and sends
	// nothing more (the kiosk pulls by itself).
	k.answer(http.StatusConflict, "c-1")
	e.issue(CredentialSpec{Holder: h, Type: TypePIN})
	if pg := k.next(); pg.hdr.Kind != portalsync.PushDelta || pg.hdr.Base != "c-3" {
		t.Fatalf("push %+v", pg.hdr)
	}
	waitFor(t, func() bool {
		ds, _ := e.p.Devices(ctx)
		return ds[0].Cursor == "c-1" && ds[0].PushStatus != ""
	})
	select {
	case pg := <-k.pushes:
		t.Errorf("a push after a 409: %+v", pg.hdr)
	default:
	}
}

func TestPushHint(t *testing.T) {
	e := newEnv(t, nil)
	k := newFakeKiosk(t, e.pub)
	e.addDevice("spr-0001", k.srv.URL) // never pulled: its cursor is unknown
	k.answer(http.StatusOK, "")        // nor does the kiosk know one yet
	e.p.Start(t.Context())
	// At start the portal nudges the kiosks whose cursor it does not know.
	if pg := k.next(); pg.hdr.Kind != portalsync.PushHint || pg.hdr.Cursor != "c-0" {
		t.Fatalf("push at start %+v, want a hint", pg.hdr)
	}
	h := e.holder(kiosk.RoleStaff, "Sam")
	e.issue(CredentialSpec{Holder: h, Type: TypePIN})
	pg := k.next()
	if pg.hdr.Kind != portalsync.PushHint || len(pg.creds) != 0 || pg.hdr.Cursor != "c-1" || pg.hdr.Nonce == "" {
		t.Fatalf("push %+v, want a hint", pg.hdr)
	}
}

// waitFor polls cond until it holds, with a deadline; the pushes it waits
// for end in a database write that has no channel of its own.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		<-tick.C
	}
}
