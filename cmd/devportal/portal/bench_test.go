package portal

import (
	"bytes"
	"crypto/rand"
	"net/http"
	"os"
	"strconv"
	"testing"

	"kioskd/kiosk"
	portalsync "kioskd/sync"
)

// bulkLoad writes n credentials with random digests straight into the
// database, as a large portal's set.
func bulkLoad(tb testing.TB, p *Portal, n int) {
	tb.Helper()
	const batch = 20_000
	now := p.now()
	for start := 0; start < n; start += batch {
		err := p.update(func(w *wtx) error {
			for i := start; i < min(start+batch, n); i++ {
				var d [kiosk.DigestSize]byte
				rand.Read(d[:])
				rec := &credRecord{Wire: portalsync.WireCredential{
					ID: "c-" + strconv.Itoa(i+1), Kind: "pin", Digest: kiosk.EncodeDigest(d),
					Holder: portalsync.WireHolder{ID: "h-" + strconv.Itoa(i/4+1), Role: "resident", Name: "Resident " + strconv.Itoa(i/4+1)},
					Status: "active", Doors: []string{"main"},
					Schedule: []portalsync.WireWindow{{Days: []string{"mon", "tue", "wed", "thu", "fri"}, From: "07:00", To: "20:00"}},
				}, Type: TypePIN, Created: now}
				if err := w.putCred(rec, nil); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkFullSnapshot serves a whole full snapshot of 100 000
// credentials (1 000 000 with KIOSKD_BENCH_LARGE=1) over loopback HTTP in
// pages of 10 000, each page signed and then verified as a kiosk would.
func BenchmarkFullSnapshot(b *testing.B) {
	n := 100_000
	if os.Getenv("KIOSKD_BENCH_LARGE") != "" {
		n = 1_000_000
	}
	e := newEnv(b, nil)
	e.addDevice("spr-0001", "")
	bulkLoad(b, e.p, n)
	b.ResetTimer()
	for b.Loop() {
		got, bytes := 0, 0
		next := ""
		for {
			status, h, body := e.pullRaw("spr-0001", "", next)
			if status != http.StatusOK {
				b.Fatalf("status %d", status)
			}
			pg := verifyOnly(b, e, h, body)
			got += pg.NumCredentials
			bytes += len(body)
			if next = pg.Next; next == "" {
				break
			}
		}
		if got != n {
			b.Fatalf("%d credentials, want %d", got, n)
		}
		b.ReportMetric(float64(bytes)/float64(n), "bytes/cred")
	}
}

// verifyOnly checks a page's signature and header, without decoding the
// credentials.
func verifyOnly(tb testing.TB, e *env, h http.Header, body []byte) *portalsync.Header {
	sig, err := portalsync.ParseSignature(h.Get(portalsync.SignatureHeader))
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := portalsync.VerifyReader(e.pub, sig, bytes.NewReader(body), 0); err != nil {
		tb.Fatal(err)
	}
	r, err := portalsync.NewDocReader(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		tb.Fatal(err)
	}
	return r.Header()
}
