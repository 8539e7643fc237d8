package portal

import (
	"bytes"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"kioskd/kiosk"
	"kioskd/store"
	portalsync "kioskd/sync"
)

func TestDeviceAuth(t *testing.T) {
	e := newEnv(t, nil)
	tokA := e.addDevice("spr-0001", "")
	tokB := e.addDevice("spr-0002", "")
	endpoints := []struct {
		method, path string
		body         []byte
	}{
		{http.MethodGet, "/v1/devices/spr-0001/sync", nil},
		{http.MethodPost, "/v1/devices/spr-0001/events", []byte(`{"events":[]}`)},
		{http.MethodPost, "/v1/devices/spr-0001/heartbeat", []byte(`{"device_id":"spr-0001"}`)},
	}
	tokens := []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong token", "not-a-token-of-anyone-here", http.StatusUnauthorized},
		{"other device's token", tokB, http.StatusForbidden},
		{"own token", tokA, http.StatusOK},
	}
	for _, ep := range endpoints {
		for _, tk := range tokens {
			t.Run(ep.path[strings.LastIndexByte(ep.path, '/')+1:]+"/"+tk.name, func(t *testing.T) {
				status, _, body := e.request(ep.method, ep.path, tk.token, ep.body)
				if status != tk.want {
					t.Errorf("status %d, want %d: %s", status, tk.want, body)
				}
			})
		}
	}
	t.Run("unregistered device with a valid token", func(t *testing.T) {
		if status, _, _ := e.request(http.MethodGet, "/v1/devices/spr-9999/sync", tokA, nil); status != http.StatusForbidden {
			t.Errorf("status %d, want 403", status)
		}
	})
	t.Run("admin API without its token", func(t *testing.T) {
		for _, tok := range []string{"", tokA} {
			if status, _, _ := e.request(http.MethodGet, "/admin/holders", tok, nil); status != http.StatusUnauthorized {
				t.Errorf("token %q: status %d, want 401", tok, status)
			}
		}
		if status, _, _ := e.request(http.MethodGet, "/admin/holders", e.p.AdminToken(), nil); status != http.StatusOK {
			t.Errorf("admin token: status %d", status)
		}
	})
	t.Run("token is kept hashed", func(t *testing.T) {
		e.p.Close()
		db := readFile(t, e.dir+"/"+DBFile)
		reopen(t, e)
		if bytes.Contains(db, []byte(tokA)) {
			t.Error("portal.db holds a device token in the clear")
		}
	})
}

// seedSet issues n credentials of every kind for one holder and returns
// their ids.
func seedSet(e *env, n int) []string {
	h := e.holder(kiosk.RoleStaff, "Sam")
	var ids []string
	for i := range n {
		var spec CredentialSpec
		switch i % 3 {
		case 0:
			spec = CredentialSpec{Holder: h, Type: TypePIN}
		case 1:
			spec = CredentialSpec{Holder: h, Type: TypeQR}
		case 2:
			spec = CredentialSpec{Holder: h, Type: TypeCard, Secret: SecretText("card-" + string(rune('a'+i%26)) + strings.Repeat("7", i))}
		}
		ids = append(ids, e.issue(spec).Credential.ID)
	}
	return ids
}

func TestFullSnapshotPaging(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.PageSize = 7 })
	e.addDevice("spr-0001", "")
	ids := seedSet(e, 30)
	if err := e.p.Revoke(ctx, "tok-old"); err != nil {
		t.Fatal(err)
	}

	first := e.pull("spr-0001", "", "")
	h := first.hdr
	if !h.Full || h.Base != "" || h.Cursor != "c-31" || h.Next == "" || len(first.creds) != 7 {
		t.Fatalf("first page: %+v with %d credentials", h, len(first.creds))
	}
	if !slices.Equal(h.Revoked, []string{"tok-old"}) {
		t.Errorf("revoked %v", h.Revoked)
	}

	// The set changes between the pages: a credential is deleted, one is
	// deactivated, one is added. The remaining pages still show the set as
	// of the first page.
	later := map[string]bool{}
	var deleted, deactivated string
	for _, c := range first.creds {
		later[c.ID] = false
	}
	for _, id := range ids {
		if _, onFirst := later[id]; !onFirst {
			if deleted == "" {
				deleted = id
			} else if deactivated == "" {
				deactivated = id
			}
		}
	}
	if err := e.p.Delete(ctx, deleted); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.SetStatus(ctx, deactivated, kiosk.StatusDeactivated); err != nil {
		t.Fatal(err)
	}
	added := e.issue(CredentialSpec{Holder: "h-1", Type: TypePIN}).Credential.ID
	if err := e.p.Revoke(ctx, "tok-new"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)

	pages := []*page{first}
	for next := h.Next; next != ""; {
		pg := e.pull("spr-0001", "", next)
		if pg.hdr.Full != true || pg.hdr.Cursor != h.Cursor || pg.hdr.Base != "" || !pg.hdr.IssuedAt.Equal(h.IssuedAt) {
			t.Fatalf("page %d header %+v, first %+v", len(pages), pg.hdr, h)
		}
		if len(pg.hdr.Revoked) != 0 || len(pg.hdr.Commands) != 0 {
			t.Errorf("page %d repeats the lists", len(pages))
		}
		pages = append(pages, pg)
		next = pg.hdr.Next
	}
	if len(pages) != 5 {
		t.Errorf("%d pages of 7 for 30 credentials, want 5", len(pages))
	}
	var prev []byte
	n := 0
	for _, pg := range pages {
		for _, c := range pg.creds {
			if prev != nil && bytes.Compare(prev, c.Digest[:]) >= 0 {
				t.Errorf("credential %s is not in ascending digest order", c.ID)
			}
			prev = slices.Clone(c.Digest[:])
			n++
		}
	}
	got := credIDs(pages)
	if n != 30 || len(got) != 30 {
		t.Fatalf("%d credentials (%d distinct), want 30", n, len(got))
	}
	if got[deleted] == nil || got[deactivated].Status != kiosk.StatusActive || got[added] != nil {
		t.Errorf("the snapshot moved with the set: deleted %v, deactivated %v, added %v",
			got[deleted] != nil, got[deactivated].Status, got[added] != nil)
	}

	// A new snapshot shows the new set.
	now := credIDs(e.pullAll("spr-0001", ""))
	if len(now) != 30 || now[deleted] != nil || now[deactivated].Status != kiosk.StatusDeactivated || now[added] == nil {
		t.Errorf("new snapshot: %d credentials, deleted %v, deactivated %v, added %v", len(now), now[deleted] != nil,
			now[deactivated], now[added] != nil)
	}
}

func TestPageTokenRejected(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.PageSize = 2 })
	e.addDevice("spr-0001", "")
	e.addDevice("spr-0002", "")
	seedSet(e, 5)
	first := e.pull("spr-0001", "", "")
	tok := first.hdr.Next
	tampered := []byte(tok)
	tampered[len(tampered)/2] ^= 1
	tests := []struct {
		name, device, tok string
		advance           time.Duration
	}{
		{"tampered", "spr-0001", string(tampered), 0},
		{"not base64", "spr-0001", "!!!", 0},
		{"another device's", "spr-0002", tok, 0},
		{"expired", "spr-0001", tok, DefaultSnapshotTTL + time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.clock.Advance(tt.advance)
			if status, _, body := e.pullRaw(tt.device, "", tt.tok); status != http.StatusGone {
				t.Errorf("status %d, want 410: %s", status, body)
			}
		})
	}
}

func TestDelta(t *testing.T) {
	e := newEnv(t, nil)
	e.addDevice("spr-0001", "")
	h := e.holder(kiosk.RoleResident, "Ana")
	a := e.issue(CredentialSpec{Holder: h, Type: TypePIN})
	b := e.issue(CredentialSpec{Holder: h, Type: TypePIN})
	c := e.issue(CredentialSpec{Holder: h, Type: TypeCard, Secret: "0004817265"})
	base := e.pull("spr-0001", "", "").hdr.Cursor // c-3

	t.Run("nothing changed", func(t *testing.T) {
		pg := e.pull("spr-0001", base, "")
		if pg.hdr.Full || pg.hdr.Base != base || pg.hdr.Cursor != base || len(pg.creds)+len(pg.hdr.Removed)+len(pg.hdr.Revoked) != 0 {
			t.Errorf("empty delta %+v with %d credentials", pg.hdr, len(pg.creds))
		}
	})

	d := e.issue(CredentialSpec{Holder: h, Type: TypeQR})
	if _, err := e.p.SetStatus(ctx, b.Credential.ID, kiosk.StatusDeactivated); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Delete(ctx, c.Credential.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Revoke(ctx, "tok-1"); err != nil {
		t.Fatal(err)
	}
	// Created and deleted after the base: the kiosk never had it.
	tmp := e.issue(CredentialSpec{Holder: h, Type: TypePIN})
	if err := e.p.Delete(ctx, tmp.Credential.ID); err != nil {
		t.Fatal(err)
	}

	pg := e.pull("spr-0001", base, "")
	got := credIDs([]*page{pg})
	if pg.hdr.Full || pg.hdr.Base != base || pg.hdr.Cursor != "c-9" || pg.hdr.Next != "" {
		t.Errorf("delta header %+v", pg.hdr)
	}
	if len(got) != 2 || got[d.Credential.ID] == nil || got[b.Credential.ID].Status != kiosk.StatusDeactivated || got[a.Credential.ID] != nil {
		t.Errorf("upserts %v", got)
	}
	if !slices.Equal(pg.hdr.Removed, []string{c.Credential.ID}) || !slices.Equal(pg.hdr.Revoked, []string{"tok-1"}) {
		t.Errorf("removed %v, revoked %v", pg.hdr.Removed, pg.hdr.Revoked)
	}
}

// TestTooLargeDeltaIsFull: a delta over MaxDeltaChanges is answered with a
// full snapshot, which the kiosk takes from any request.
func TestTooLargeDeltaIsFull(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxDeltaChanges = 3 })
	e.addDevice("spr-0001", "")
	seedSet(e, 2)
	base := e.pull("spr-0001", "", "").hdr.Cursor
	seedSet(e, 4)
	pg := e.pull("spr-0001", base, "")
	if !pg.hdr.Full || pg.hdr.Base != "" || len(pg.creds) != 6 {
		t.Errorf("answer %+v with %d credentials, want a full of 6", pg.hdr, len(pg.creds))
	}
}

func TestUnknownCursor(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.TombstoneTTL = time.Hour })
	e.addDevice("spr-0001", "")
	ids := seedSet(e, 3) // c-1 … c-3
	old := e.pull("spr-0001", "", "").hdr.Cursor
	if err := e.p.Delete(ctx, ids[0]); err != nil { // rev 4
		t.Fatal(err)
	}
	for _, cursor := range []string{"c-99", "c--1", "c-01", "x-3", "c-", "c-99999999999999999999"} {
		t.Run(cursor, func(t *testing.T) {
			if status, _, body := e.pullRaw("spr-0001", cursor, ""); status != http.StatusGone {
				t.Errorf("status %d, want 410: %s", status, body)
			}
		})
	}
	t.Run("older than the tombstones kept", func(t *testing.T) {
		e.clock.Advance(2 * time.Hour)
		if err := e.p.prune(); err != nil {
			t.Fatal(err)
		}
		if status, _, _ := e.pullRaw("spr-0001", old, ""); status != http.StatusGone {
			t.Errorf("cursor %s from before a forgotten deletion: status %d, want 410", old, status)
		}
		// A cursor at or after the forgotten deletion still gets a delta.
		if pg := e.pull("spr-0001", "c-4", ""); pg.hdr.Full || pg.hdr.Cursor != "c-4" {
			t.Errorf("c-4: %+v", pg.hdr)
		}
		if _, err := e.p.Credentials(ctx, CredentialFilter{Deleted: true}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestKioskAppliesDocuments feeds the portal's documents to a real store
// through the kiosk's own sync session: a paged full snapshot, then a
// delta, then an empty delta.
func TestKioskAppliesDocuments(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.PageSize = 4 })
	e.addDevice("spr-0001", "")
	st, err := store.Open(store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := e.holder(kiosk.RoleCourier, "ParcelCo")
	var pins []Issued
	for range 9 {
		pins = append(pins, e.issue(CredentialSpec{Holder: h, Type: TypePIN, Schedule: []portalsync.WireWindow{{Days: []string{"mon"}, From: "07:00", To: "20:00"}}}))
	}

	apply := func(cursor string) portalsync.Result {
		t.Helper()
		s := portalsync.NewSession(portalsync.StoreApplier(st), portalsync.Options{DeviceID: "spr-0001", Now: func() (time.Time, bool) { return e.clock.Now(), true }})
		next := ""
		for {
			pg := e.pull("spr-0001", cursor, next)
			n, err := s.Page(ctx, bytes.NewReader(pg.body), int64(len(pg.body)))
			if err != nil {
				t.Fatalf("the kiosk rejects the page: %v", err)
			}
			if n == "" {
				return s.Result()
			}
			next = n
		}
	}
	lookup := func(is Issued) *kiosk.Credential {
		c, err := st.Lookup(kiosk.Digest(e.siteKey, kiosk.KindPIN, []byte(is.Secret)))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	res := apply("")
	if !res.Full || res.Pages != 3 || res.Credentials != 9 || res.Cursor != "c-9" {
		t.Fatalf("full: %+v", res)
	}
	if c := lookup(pins[0]); c == nil || c.ID != pins[0].Credential.ID || len(c.Schedule) != 1 {
		t.Fatalf("the kiosk does not find PIN %s: %+v", pins[0].Credential.ID, c)
	}

	e.clock.Advance(time.Second)
	if err := e.p.Delete(ctx, pins[1].Credential.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.SetStatus(ctx, pins[2].Credential.ID, kiosk.StatusDeactivated); err != nil {
		t.Fatal(err)
	}
	res = apply(res.Cursor)
	if res.Full || res.Stats.Removed != 1 || !res.Changed {
		t.Fatalf("delta: %+v", res)
	}
	if lookup(pins[1]) != nil {
		t.Error("a deleted PIN is still in the kiosk's store")
	}
	if c := lookup(pins[2]); c == nil || c.Status != kiosk.StatusDeactivated {
		t.Errorf("deactivated PIN: %+v", c)
	}
	if res = apply(res.Cursor); res.Changed {
		t.Errorf("empty delta changed something: %+v", res)
	}
}

func TestCommandsInDocumentsAndHeartbeat(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.addDevice("spr-0001", "")
	cmd, err := e.p.Unlock(ctx, "spr-0001", "main")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Unlock(ctx, "spr-0001", "bad door"); !errors.Is(err, ErrInvalid) {
		t.Errorf("door with a space: %v", err)
	}
	if _, err := e.p.Unlock(ctx, "spr-0404", "main"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown device: %v", err)
	}
	pg := e.pull("spr-0001", "", "")
	if len(pg.hdr.Commands) != 1 || pg.hdr.Commands[0] != cmd {
		t.Fatalf("commands %v, want %v", pg.hdr.Commands, cmd)
	}
	// Delivered: not sent again.
	if pg := e.pull("spr-0001", pg.hdr.Cursor, ""); len(pg.hdr.Commands) != 0 {
		t.Errorf("a delivered command came again: %v", pg.hdr.Commands)
	}

	cmd2, _ := e.p.Unlock(ctx, "spr-0001", "locker-1")
	status, _, body := e.request(http.MethodPost, "/v1/devices/spr-0001/heartbeat", tok, []byte(`{"device_id":"spr-0001","cursor":"c-0","uptime_s":5}`))
	if status != http.StatusOK || !bytes.Contains(body, []byte(cmd2.ID)) {
		t.Fatalf("heartbeat answer %d %s", status, body)
	}
	status, _, body = e.request(http.MethodPost, "/v1/devices/spr-0001/heartbeat", tok, []byte(`{"device_id":"spr-0001"}`))
	if status != http.StatusOK || len(body) != 0 {
		t.Errorf("heartbeat without commands: %d %q, want an empty body", status, body)
	}
	for _, bad := range []string{`[1]`, `null`, `{`, ``} {
		if status, _, _ := e.request(http.MethodPost, "/v1/devices/spr-0001/heartbeat", tok, []byte(bad)); status != http.StatusBadRequest {
			t.Errorf("heartbeat %q: status %d, want 400", bad, status)
		}
	}
	ds, _ := e.p.Devices(ctx)
	if len(ds) != 1 || ds[0].LastHeartbeat.IsZero() || !bytes.Contains(ds[0].Heartbeat, []byte(`"device_id":"spr-0001"`)) {
		t.Errorf("device %+v", ds)
	}

	// An undelivered command expires: a door never opens long after.
	_, _ = e.p.Unlock(ctx, "spr-0001", "main")
	e.clock.Advance(DefaultCommandTTL + time.Second)
	if pg := e.pull("spr-0001", "", ""); len(pg.hdr.Commands) != 0 {
		t.Errorf("an expired command was delivered: %v", pg.hdr.Commands)
	}
}
