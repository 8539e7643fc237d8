package portal

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"kioskd/kiosk"
	"kioskd/store"
	portalsync "kioskd/sync"
)

// TestAdminClient runs the property manager's operations through the
// admin HTTP API, and checks that no secret reaches the log or a listing.
func TestAdminClient(t *testing.T) {
	e := newEnv(t, nil)
	c := NewClient(e.srv.URL, e.p.AdminToken(), e.srv.Client())
	var secrets []string

	courier, err := c.AddHolder(ctx, HolderSpec{Role: kiosk.RoleCourier, Name: "ParcelCo"})
	if err != nil || courier.ID != "h-1" || courier.Role != kiosk.RoleCourier {
		t.Fatalf("holder %+v, %v", courier, err)
	}
	sched, err := ParseSchedule("mon-fri 07:00-20:00")
	if err != nil {
		t.Fatal(err)
	}
	pin, err := c.Issue(ctx, CredentialSpec{Holder: courier.ID, Type: TypePIN, Schedule: sched, Doors: []string{"main"}})
	if err != nil || len(pin.Secret) != PINLength || pin.Credential.Schedule[0].From != "07:00" {
		t.Fatalf("pin %+v, %v", pin, err)
	}
	chosen, err := c.Issue(ctx, CredentialSpec{Holder: courier.ID, Type: TypeChosenPIN, Secret: "719304"})
	if err != nil {
		t.Fatal(err)
	}
	qr, err := c.Issue(ctx, CredentialSpec{Holder: courier.ID, Type: TypeQR})
	if err != nil || !strings.HasPrefix(qr.Secret.Reveal(), "KIOSK-") {
		t.Fatalf("qr %+v, %v", qr, err)
	}
	card, err := c.Issue(ctx, CredentialSpec{Holder: courier.ID, Type: TypeCard, Secret: "0004817265"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.IssueToken(ctx, TokenSpec{Holder: courier.ID, Doors: []string{"main"}, Uses: 2, ValidFor: Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := kiosk.ParseToken([]byte(tok.Text), e.pub)
	if err != nil {
		t.Fatalf("the token does not verify under the portal key: %v", err)
	}
	if claims.ID != tok.Token.CID || claims.Holder.ID != courier.ID || claims.Uses != 2 ||
		!claims.ValidUntil.Equal(e.clock.Now().Add(time.Hour)) || !slices.Equal(claims.Doors, []string{"main"}) {
		t.Errorf("token claims %+v", claims)
	}
	dev, err := c.AddDevice(ctx, DeviceSpec{ID: "spr-0001"})
	if err != nil || len(dev.Token) < minTokenLen {
		t.Fatalf("device %+v, %v", dev, err)
	}
	secrets = append(secrets, pin.Secret.Reveal(), chosen.Secret.Reveal(), qr.Secret.Reveal(), card.Secret.Reveal(), tok.Text.Reveal(), dev.Token.Reveal())

	if _, err := c.SetStatus(ctx, qr.Credential.ID, kiosk.StatusDeactivated); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, card.Credential.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke(ctx, tok.Token.CID); err != nil {
		t.Fatal(err)
	}
	cmd, err := c.Unlock(ctx, "spr-0001", "main")
	if err != nil || cmd.Type != "unlock" || cmd.Door != "main" {
		t.Fatalf("unlock %+v, %v", cmd, err)
	}

	list, err := c.Credentials(ctx, CredentialFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var status []string
	for _, ci := range list {
		status = append(status, ci.ID+":"+string(ci.Status))
	}
	if !slices.Equal(status, []string{"c-1:active", "c-2:active", "c-3:deactivated"}) {
		t.Errorf("credentials %v", status)
	}
	if all, _ := c.Credentials(ctx, CredentialFilter{Deleted: true, Holder: courier.ID}); len(all) != 4 || !all[3].Deleted {
		t.Errorf("with deleted: %+v", all)
	}
	toks, err := c.Tokens(ctx)
	if err != nil || len(toks) != 1 || !toks[0].Revoked {
		t.Errorf("tokens %+v, %v", toks, err)
	}
	hs, _ := c.Holders(ctx)
	ds, _ := c.Devices(ctx)
	evs, err := c.Events(ctx, "spr-0001", 10)
	if len(hs) != 1 || len(ds) != 1 || err != nil || len(evs) != 0 {
		t.Errorf("holders %v devices %v events %v %v", hs, ds, evs, err)
	}

	errTests := []struct {
		name string
		call func() error
		want error
	}{
		{"unknown holder", func() error { _, err := c.Issue(ctx, CredentialSpec{Holder: "h-9", Type: TypePIN}); return err }, ErrNotFound},
		{"bad role", func() error { _, err := c.AddHolder(ctx, HolderSpec{Role: "owner"}); return err }, ErrInvalid},
		{"PIN issued before", func() error {
			_, err := c.Issue(ctx, CredentialSpec{Holder: courier.ID, Type: TypeChosenPIN, Secret: chosen.Secret})
			return err
		}, ErrConflict},
		{"device twice", func() error { _, err := c.AddDevice(ctx, DeviceSpec{ID: "spr-0001"}); return err }, ErrConflict},
		{"bad device id", func() error { _, err := c.AddDevice(ctx, DeviceSpec{ID: "spr/1"}); return err }, ErrInvalid},
		{"plain http push to a LAN address", func() error {
			_, err := c.AddDevice(ctx, DeviceSpec{ID: "spr-0002", PushURL: "http://192.168.1.20:8443"})
			return err
		}, ErrInvalid},
		{"unknown credential", func() error { return c.Delete(ctx, "c-99") }, ErrNotFound},
		{"events of an unknown device", func() error { _, err := c.Events(ctx, "spr-9", 0); return err }, ErrNotFound},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, tt.want) {
				t.Errorf("err %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := NewClient(e.srv.URL, "wrong", nil).Holders(ctx); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong admin token: %v", err)
	}

	// No secret in the log, in a listing, in the database, or in the
	// text of a SecretText.
	listings, _ := json.Marshal([]any{list, toks, ds})
	e.p.Close()
	db := readFile(t, filepath.Join(e.dir, DBFile))
	reopen(t, e)
	for _, s := range secrets {
		if strings.Contains(e.logs.String(), s) {
			t.Errorf("the log shows a secret: %s", s)
		}
		if strings.Contains(string(listings), s) {
			t.Errorf("a listing shows a secret: %s", s)
		}
		if strings.Contains(string(db), s) {
			t.Errorf("portal.db holds a secret in the clear: %s", s)
		}
	}
	if got := (SecretText("246810")).String() + " " + fmtAll(SecretText("246810")); strings.Contains(got, "246810") {
		t.Errorf("SecretText shows itself: %s", got)
	}
}

func reopen(t *testing.T, e *env) {
	t.Helper()
	p, err := Open(Options{Dir: e.dir, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.p = p
}

func TestExport(t *testing.T) {
	e := newEnv(t, nil)
	h := e.holder(kiosk.RoleResident, "Ana")
	a := e.issue(CredentialSpec{Holder: h, Type: TypePIN, Doors: []string{"main"}})
	b := e.issue(CredentialSpec{Holder: h, Type: TypeOneTime})
	gone := e.issue(CredentialSpec{Holder: h, Type: TypePIN})
	if err := e.p.Delete(ctx, gone.Credential.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Revoke(ctx, "tok-lost"); err != nil {
		t.Fatal(err)
	}
	c := NewClient(e.srv.URL, e.p.AdminToken(), e.srv.Client())

	for _, via := range []struct {
		name  string
		admin Admin
	}{{"direct", e.p}, {"admin API", c}} {
		t.Run(via.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "provision.json")
			info, err := via.admin.Export(ctx, "spr-0001", path)
			if err != nil {
				t.Fatal(err)
			}
			if info.Credentials != 2 || info.Revoked != 1 || info.Cursor != "c-5" || info.Bytes == 0 {
				t.Errorf("export %+v", info)
			}
			st, err := store.Open(store.Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			res, err := portalsync.ApplyFile(ctx, portalsync.StoreApplier(st), portalsync.FileOptions{DeviceID: "spr-0001", PublicKey: e.pub}, path)
			if err != nil {
				t.Fatalf("the kiosk rejects the export: %v", err)
			}
			if !res.Full || res.Cursor != "c-5" || res.Credentials != 2 || !res.Changed {
				t.Errorf("applied %+v", res)
			}
			for _, is := range []Issued{a, b} {
				got, err := st.Lookup(kiosk.Digest(e.siteKey, kiosk.KindPIN, []byte(is.Secret)))
				if err != nil || got == nil || got.ID != is.Credential.ID {
					t.Errorf("%s not in the kiosk's store: %v %v", is.Credential.ID, got, err)
				}
			}
			if got, _ := st.Lookup(kiosk.Digest(e.siteKey, kiosk.KindPIN, []byte(gone.Secret))); got != nil {
				t.Error("a deleted PIN was exported")
			}
			if r, err := st.Revoked("tok-lost"); err != nil || !r {
				t.Errorf("revoked list: %v %v", r, err)
			}
			// For another kiosk the same files are refused.
			st2, err := store.Open(store.Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer st2.Close()
			if _, err := portalsync.ApplyFile(ctx, portalsync.StoreApplier(st2), portalsync.FileOptions{DeviceID: "spr-0002", PublicKey: e.pub}, path); !errors.Is(err, portalsync.ErrWrongDevice) {
				t.Errorf("another device: %v", err)
			}
		})
	}
	out := t.TempDir()
	if _, err := e.p.Export(ctx, "bad id", filepath.Join(out, "x.json")); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad device id: %v", err)
	}
	if left, _ := os.ReadDir(out); len(left) != 0 {
		t.Errorf("a failed export left %v", left)
	}
}
