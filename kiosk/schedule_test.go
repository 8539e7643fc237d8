package kiosk_test

import (
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // zones even where the system has no zoneinfo

	"kioskd/kiosk"
)

func schedLoad(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("load zone %s: %v", name, err)
	}
	return loc
}

func schedWindow(t testing.TB, days, from, to string) kiosk.Window {
	t.Helper()
	w, err := kiosk.ParseWindow(strings.Fields(days), from, to)
	if err != nil {
		t.Fatalf("ParseWindow(%q, %q, %q): %v", days, from, to, err)
	}
	return w
}

// schedLocal returns the instant with this wall time in loc, checking the
// weekday so that a wrong calendar date in a table cannot slip through.
func schedLocal(t testing.TB, loc *time.Location, wd time.Weekday, date string, hh, mm, ss int) time.Time {
	t.Helper()
	d, err := time.ParseInLocation("2006-01-02", date, loc)
	if err != nil {
		t.Fatal(err)
	}
	tm := time.Date(d.Year(), d.Month(), d.Day(), hh, mm, ss, 0, loc)
	if tm.Weekday() != wd {
		t.Fatalf("%s is a %s, not a %s", date, tm.Weekday(), wd)
	}
	return tm
}

func TestParseWindow(t *testing.T) {
	tests := []struct {
		name     string
		days     []string
		from, to string
		want     kiosk.Window
		wantErr  string // substring of the error; "" for success
	}{
		{name: "weekdays", days: []string{"mon", "tue", "wed", "thu", "fri"}, from: "07:00", to: "20:00",
			want: kiosk.Window{Days: []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday}, From: 420, To: 1200}},
		{name: "sunday and extremes", days: []string{"sun"}, from: "00:00", to: "23:59",
			want: kiosk.Window{Days: []time.Weekday{time.Sunday}, From: 0, To: 1439}},
		{name: "duplicate day counts once", days: []string{"sat", "sat"}, from: "22:00", to: "06:00",
			want: kiosk.Window{Days: []time.Weekday{time.Saturday}, From: 1320, To: 360}},
		{name: "no days", days: nil, from: "07:00", to: "08:00", wantErr: "no days"},
		{name: "unknown day", days: []string{"mon", "funday"}, from: "07:00", to: "08:00", wantErr: `"funday"`},
		{name: "capitalised day", days: []string{"Mon"}, from: "07:00", to: "08:00", wantErr: `"Mon"`},
		{name: "hour 24", days: []string{"mon"}, from: "24:00", to: "08:00", wantErr: `from: time "24:00"`},
		{name: "minute 60", days: []string{"mon"}, from: "07:00", to: "08:60", wantErr: `to: time "08:60"`},
		{name: "one-digit hour", days: []string{"mon"}, from: "7:00", to: "08:00", wantErr: `"7:00"`},
		{name: "seconds", days: []string{"mon"}, from: "07:00:00", to: "08:00", wantErr: `"07:00:00"`},
		{name: "empty", days: []string{"mon"}, from: "07:00", to: "", wantErr: `to: time ""`},
		{name: "sign", days: []string{"mon"}, from: "+7:00", to: "08:00", wantErr: `"+7:00"`},
		{name: "dot", days: []string{"mon"}, from: "07.00", to: "08:00", wantErr: `"07.00"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kiosk.ParseWindow(tt.days, tt.from, tt.to)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.From != tt.want.From || got.To != tt.want.To || len(got.Days) != len(tt.want.Days) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got.Days {
				if got.Days[i] != tt.want.Days[i] {
					t.Fatalf("got %+v, want %+v", got, tt.want)
				}
			}
		})
	}
}

func TestFormatDayRoundTrip(t *testing.T) {
	want := []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}
	for d := time.Sunday; d <= time.Saturday; d++ {
		name := kiosk.FormatDay(d)
		if name != want[d] {
			t.Errorf("FormatDay(%v) = %q, want %q", d, name, want[d])
		}
		w, err := kiosk.ParseWindow([]string{name}, "00:00", "00:00")
		if err != nil || len(w.Days) != 1 || w.Days[0] != d {
			t.Errorf("ParseWindow(FormatDay(%v)) = %+v, %v", d, w, err)
		}
	}
	if got := kiosk.FormatDay(7); got != "" {
		t.Errorf("FormatDay(7) = %q, want empty", got)
	}
}

func TestInSchedule(t *testing.T) {
	ny := schedLoad(t, "America/New_York")
	type at struct {
		wd   time.Weekday
		date string
		h, m int
		s    int
		want bool
	}
	tests := []struct {
		name string
		ws   []kiosk.Window
		ats  []at
	}{
		{
			name: "edges of a day window",
			ws:   []kiosk.Window{schedWindow(t, "mon tue wed thu fri", "07:00", "20:00")},
			ats: []at{
				{time.Monday, "2026-06-01", 6, 59, 0, false},  // one minute before from
				{time.Monday, "2026-06-01", 6, 59, 59, false}, // one second before from
				{time.Monday, "2026-06-01", 7, 0, 0, true},    // exactly from
				{time.Monday, "2026-06-01", 19, 59, 59, true}, // last second
				{time.Monday, "2026-06-01", 20, 0, 0, false},  // exactly to
				{time.Saturday, "2026-06-06", 12, 0, 0, false},
			},
		},
		{
			name: "friday night across midnight",
			ws:   []kiosk.Window{schedWindow(t, "fri", "22:00", "06:00")},
			ats: []at{
				{time.Friday, "2026-06-05", 21, 59, 0, false},
				{time.Friday, "2026-06-05", 22, 0, 0, true},
				{time.Friday, "2026-06-05", 23, 59, 59, true},
				{time.Saturday, "2026-06-06", 0, 0, 0, true},
				{time.Saturday, "2026-06-06", 5, 59, 0, true},
				{time.Saturday, "2026-06-06", 6, 0, 0, false},
				{time.Saturday, "2026-06-06", 22, 0, 0, false}, // sat is not listed
				{time.Sunday, "2026-06-07", 5, 59, 0, false},   // belongs to sat, not listed
				{time.Thursday, "2026-06-04", 23, 0, 0, false},
				{time.Friday, "2026-06-05", 5, 0, 0, false}, // thursday's night, not listed
			},
		},
		{
			name: "friday and saturday nights",
			ws:   []kiosk.Window{schedWindow(t, "fri sat", "22:00", "06:00")},
			ats: []at{
				{time.Saturday, "2026-06-06", 22, 0, 0, true},
				{time.Sunday, "2026-06-07", 5, 59, 0, true},
				{time.Sunday, "2026-06-07", 6, 0, 0, false},
				{time.Sunday, "2026-06-07", 22, 0, 0, false},
			},
		},
		{
			name: "sunday night into monday wraps the week",
			ws:   []kiosk.Window{schedWindow(t, "sun", "23:00", "01:00")},
			ats: []at{
				{time.Sunday, "2026-06-07", 23, 30, 0, true},
				{time.Monday, "2026-06-08", 0, 59, 0, true},
				{time.Monday, "2026-06-08", 1, 0, 0, false},
				{time.Monday, "2026-06-08", 23, 30, 0, false},
			},
		},
		{
			name: "equal from and to is 24 hours",
			ws:   []kiosk.Window{schedWindow(t, "mon", "08:00", "08:00")},
			ats: []at{
				{time.Monday, "2026-06-01", 7, 59, 0, false},
				{time.Monday, "2026-06-01", 8, 0, 0, true},
				{time.Monday, "2026-06-01", 23, 59, 0, true},
				{time.Tuesday, "2026-06-02", 0, 0, 0, true},
				{time.Tuesday, "2026-06-02", 7, 59, 59, true},
				{time.Tuesday, "2026-06-02", 8, 0, 0, false},
			},
		},
		{
			name: "midnight to midnight is the whole day",
			ws:   []kiosk.Window{schedWindow(t, "mon", "00:00", "00:00")},
			ats: []at{
				{time.Sunday, "2026-05-31", 23, 59, 59, false},
				{time.Monday, "2026-06-01", 0, 0, 0, true},
				{time.Monday, "2026-06-01", 23, 59, 59, true},
				{time.Tuesday, "2026-06-02", 0, 0, 0, false},
			},
		},
		{
			name: "any of several windows",
			ws:   []kiosk.Window{schedWindow(t, "mon", "07:00", "08:00"), schedWindow(t, "mon", "17:00", "18:00")},
			ats: []at{
				{time.Monday, "2026-06-01", 7, 30, 0, true},
				{time.Monday, "2026-06-01", 12, 0, 0, false},
				{time.Monday, "2026-06-01", 17, 30, 0, true},
			},
		},
		{
			name: "empty schedule is always",
			ws:   nil,
			ats:  []at{{time.Monday, "2026-06-01", 3, 0, 0, true}, {time.Sunday, "2026-06-07", 23, 59, 0, true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, a := range tt.ats {
				tm := schedLocal(t, ny, a.wd, a.date, a.h, a.m, a.s)
				if got := kiosk.InSchedule(tt.ws, tm, ny); got != a.want {
					t.Errorf("InSchedule at %s = %v, want %v", tm.Format("Mon 2006-01-02 15:04:05 MST"), got, a.want)
				}
				// The same instant given in UTC is read in the zone.
				if got := kiosk.InSchedule(tt.ws, tm.UTC(), ny); got != a.want {
					t.Errorf("InSchedule at %s (as UTC) = %v, want %v", tm.UTC(), got, a.want)
				}
			}
		})
	}
}

func TestInScheduleUTCInput(t *testing.T) {
	ny := schedLoad(t, "America/New_York")
	tokyo := schedLoad(t, "Asia/Tokyo")
	ws := []kiosk.Window{schedWindow(t, "mon", "07:00", "20:00")}
	tests := []struct {
		in   time.Time
		want bool
	}{
		// 2026-06-01 is a Monday; New York is on EDT (UTC-4).
		{time.Date(2026, 6, 1, 10, 59, 0, 0, time.UTC), false},  // 06:59 EDT
		{time.Date(2026, 6, 1, 11, 0, 0, 0, time.UTC), true},    // 07:00 EDT
		{time.Date(2026, 6, 2, 0, 30, 0, 0, time.UTC), false},   // Tuesday in UTC, 20:30 EDT Monday: after to
		{time.Date(2026, 6, 1, 23, 59, 0, 0, time.UTC), true},   // 19:59 EDT
		{time.Date(2026, 6, 2, 0, 0, 0, 0, time.UTC), false},    // 20:00 EDT
		{time.Date(2026, 6, 1, 20, 0, 0, 0, tokyo), true},       // 07:00 EDT, given in Tokyo time
		{time.Date(2026, 12, 7, 11, 59, 0, 0, time.UTC), false}, // 06:59 EST (UTC-5), a Monday
		{time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC), true},   // 07:00 EST
	}
	for _, tt := range tests {
		t.Run(tt.in.Format(time.RFC3339), func(t *testing.T) {
			if got := kiosk.InSchedule(ws, tt.in, ny); got != tt.want {
				t.Errorf("InSchedule(%v in New York = %v) = %v, want %v", tt.in, tt.in.In(ny), got, tt.want)
			}
		})
	}
	// A nil zone is UTC.
	if !kiosk.InSchedule(ws, time.Date(2026, 6, 1, 7, 0, 0, 0, time.UTC), nil) {
		t.Error("nil zone: 07:00 UTC Monday not in a mon 07:00–20:00 window")
	}
}

// schedMinutesIn counts the minutes from start (inclusive) to end
// (exclusive), stepping in real time, that are in the schedule.
func schedMinutesIn(ws []kiosk.Window, start, end time.Time, loc *time.Location) int {
	n := 0
	for t := start; t.Before(end); t = t.Add(time.Minute) {
		if kiosk.InSchedule(ws, t, loc) {
			n++
		}
	}
	return n
}

func TestInScheduleDST(t *testing.T) {
	ny := schedLoad(t, "America/New_York")
	berlin := schedLoad(t, "Europe/Berlin")
	utc := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	type probe struct {
		at   string // RFC 3339 instant
		want bool
	}
	tests := []struct {
		name        string
		loc         *time.Location
		w           kiosk.Window
		day         string // the local day to count real minutes over
		wantMinutes int
		probes      []probe
	}{
		{
			// 2026-03-08: 02:00 EST becomes 03:00 EDT; 02:xx does not exist.
			name: "New York spring forward, window inside the missing hour",
			loc:  ny, w: schedWindow(t, "sun", "02:00", "02:30"), day: "2026-03-08", wantMinutes: 0,
			probes: []probe{{"2026-03-08T06:59:00Z", false}, {"2026-03-08T07:00:00Z", false}},
		},
		{
			name: "New York spring forward, window across the missing hour",
			loc:  ny, w: schedWindow(t, "sun", "01:00", "03:30"), day: "2026-03-08", wantMinutes: 90,
			probes: []probe{
				{"2026-03-08T05:59:00Z", false}, // 00:59 EST
				{"2026-03-08T06:00:00Z", true},  // 01:00 EST
				{"2026-03-08T06:59:00Z", true},  // 01:59 EST
				{"2026-03-08T07:00:00Z", true},  // 03:00 EDT
				{"2026-03-08T07:29:00Z", true},  // 03:29 EDT
				{"2026-03-08T07:30:00Z", false}, // 03:30 EDT
			},
		},
		{
			// 2026-11-01: 02:00 EDT becomes 01:00 EST; 01:xx happens twice.
			name: "New York fall back, window in the repeated hour",
			loc:  ny, w: schedWindow(t, "sun", "01:00", "01:30"), day: "2026-11-01", wantMinutes: 60,
			probes: []probe{
				{"2026-11-01T04:59:00Z", false}, // 00:59 EDT
				{"2026-11-01T05:00:00Z", true},  // 01:00 EDT
				{"2026-11-01T05:30:00Z", false}, // 01:30 EDT
				{"2026-11-01T06:00:00Z", true},  // 01:00 EST, again
				{"2026-11-01T06:29:00Z", true},  // 01:29 EST
				{"2026-11-01T06:30:00Z", false}, // 01:30 EST
			},
		},
		{
			name: "New York fall back, overnight window from saturday",
			loc:  ny, w: schedWindow(t, "sat", "22:00", "03:00"), day: "2026-11-01", wantMinutes: 4 * 60, // 00:00–03:00 lived as 4 h
			probes: []probe{{"2026-11-01T07:59:00Z", true}, {"2026-11-01T08:00:00Z", false}},
		},
		{
			// 2026-03-29: 02:00 CET becomes 03:00 CEST.
			name: "Berlin spring forward, window inside the missing hour",
			loc:  berlin, w: schedWindow(t, "sun", "02:00", "03:00"), day: "2026-03-29", wantMinutes: 0,
			probes: []probe{{"2026-03-29T00:59:00Z", false}, {"2026-03-29T01:00:00Z", false}},
		},
		{
			name: "Berlin spring forward, window straddling the jump",
			loc:  berlin, w: schedWindow(t, "sun", "02:15", "03:15"), day: "2026-03-29", wantMinutes: 15,
			probes: []probe{
				{"2026-03-29T00:59:00Z", false}, // 01:59 CET
				{"2026-03-29T01:00:00Z", true},  // 03:00 CEST
				{"2026-03-29T01:14:00Z", true},  // 03:14 CEST
				{"2026-03-29T01:15:00Z", false}, // 03:15 CEST
			},
		},
		{
			// 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:xx happens twice.
			name: "Berlin fall back, window over the repeated hour",
			loc:  berlin, w: schedWindow(t, "sun", "02:00", "03:00"), day: "2026-10-25", wantMinutes: 120,
			probes: []probe{
				{"2026-10-24T23:59:00Z", false}, // 01:59 CEST
				{"2026-10-25T00:00:00Z", true},  // 02:00 CEST
				{"2026-10-25T00:59:00Z", true},  // 02:59 CEST
				{"2026-10-25T01:00:00Z", true},  // 02:00 CET, again
				{"2026-10-25T01:59:00Z", true},  // 02:59 CET
				{"2026-10-25T02:00:00Z", false}, // 03:00 CET
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws := []kiosk.Window{tt.w}
			for _, p := range tt.probes {
				at := utc(p.at)
				if got := kiosk.InSchedule(ws, at, tt.loc); got != p.want {
					t.Errorf("InSchedule at %s (%s) = %v, want %v", p.at, at.In(tt.loc).Format("15:04 MST"), got, p.want)
				}
			}
			d, err := time.ParseInLocation("2006-01-02", tt.day, tt.loc)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, tt.loc)
			end := time.Date(d.Year(), d.Month(), d.Day()+1, 0, 0, 0, 0, tt.loc)
			if got := schedMinutesIn(ws, start, end, tt.loc); got != tt.wantMinutes {
				t.Errorf("minutes in schedule on %s = %d, want %d", tt.day, got, tt.wantMinutes)
			}
		})
	}
}

func FuzzParseWindow(f *testing.F) {
	f.Add("mon tue", "07:00", "20:00")
	f.Add("fri", "22:00", "06:00")
	f.Add("sun", "00:00", "00:00")
	f.Add("", "23:59", "24:00")
	f.Add("xyz", "1:2", "")
	f.Fuzz(func(t *testing.T, days, from, to string) {
		w, err := kiosk.ParseWindow(strings.Fields(days), from, to)
		if err != nil {
			return
		}
		if len(w.Days) == 0 || w.From < 0 || w.From > 1439 || w.To < 0 || w.To > 1439 {
			t.Fatalf("ParseWindow(%q, %q, %q) = %+v: out of range", days, from, to, w)
		}
		// The window re-encodes to what was given.
		if got := time.Date(2000, 1, 1, w.From/60, w.From%60, 0, 0, time.UTC).Format("15:04"); got != from {
			t.Fatalf("from %q parsed as %d (%s)", from, w.From, got)
		}
		if got := time.Date(2000, 1, 1, w.To/60, w.To%60, 0, 0, time.UTC).Format("15:04"); got != to {
			t.Fatalf("to %q parsed as %d (%s)", to, w.To, got)
		}
		for _, d := range w.Days {
			if !slices.Contains(strings.Fields(days), kiosk.FormatDay(d)) {
				t.Fatalf("day %v not in %q", d, days)
			}
		}
	})
}
