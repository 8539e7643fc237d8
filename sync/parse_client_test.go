package sync

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	date := now.Format(http.TimeFormat)
	for _, tc := range []struct {
		name, v, date string
		want          time.Duration
		ok            bool
	}{
		{"seconds", "120", "", 120 * time.Second, true},
		{"zero", "0", "", 0, true},
		{"spaces", " 5 ", "", 5 * time.Second, true},
		{"huge", "99999999999999999999999", "", maxRetryAfter, true},
		{"negative", "-5", "", 0, false},
		{"fraction", "1.5", "", 0, false},
		{"empty", "", "", 0, false},
		{"word", "soon", "", 0, false},
		{"date from Date header", now.Add(time.Minute).Format(http.TimeFormat), date, time.Minute, true},
		{"date in the past", now.Add(-time.Minute).Format(http.TimeFormat), date, 0, true},
		{"date without Date header", now.Add(time.Minute).Format(http.TimeFormat), "", time.Minute, true},
		{"RFC 850 date", now.Add(time.Hour).Format("Monday, 02-Jan-06 15:04:05 GMT"), date, time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, ok := parseRetryAfter(tc.v, tc.date, now)
			if d != tc.want || ok != tc.ok {
				t.Errorf("parseRetryAfter(%q) = %v, %v, want %v, %v", tc.v, d, ok, tc.want, tc.ok)
			}
		})
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	for _, s := range []string{"0", "7", "3600", "86400", "1e3", "-1", "Fri, 20 Nov 2026 12:01:00 GMT", "Friday, 20-Nov-26 12:01:00 GMT", "Fri Nov 20 12:01:00 2026", ""} {
		f.Add(s, "Fri, 20 Nov 2026 12:00:00 GMT")
	}
	f.Fuzz(func(t *testing.T, v, date string) {
		d, ok := parseRetryAfter(v, date, now)
		if !ok {
			if d != 0 {
				t.Errorf("not ok but %v", d)
			}
			return
		}
		if d < 0 {
			t.Errorf("negative %v", d)
		}
		if n, err := strconv.ParseUint(v, 10, 64); err == nil && time.Duration(n) <= maxRetryAfter/time.Second && d != time.Duration(n)*time.Second {
			t.Errorf("%q: %v", v, d)
		}
	})
}

func TestParseAnswers(t *testing.T) {
	for _, tc := range []struct {
		body string
		ok   bool
		n    int
	}{
		{`{"accepted": []}`, true, 0},
		{`{"accepted": ["a-1", "a-2"], "extra": true}`, true, 2},
		{`{"accepted": null}`, false, 0},
		{`{}`, false, 0},
		{``, false, 0},
		{`{"accepted": [1]}`, false, 0},
		{`{"accepted": ["a"], "accepted": ["b"]}`, false, 0},
	} {
		ids, err := parseAccepted([]byte(tc.body))
		if (err == nil) != tc.ok || len(ids) != tc.n {
			t.Errorf("parseAccepted(%s) = %v, %v", tc.body, ids, err)
		}
	}
	for _, tc := range []struct {
		body string
		ok   bool
		n    int
	}{
		{``, true, 0},
		{" \n", true, 0},
		{`{}`, true, 0},
		{`{"commands": []}`, true, 0},
		{`{"commands": [{"id": "c", "type": "unlock", "door": "main"}]}`, true, 1},
		{`{"commands": [{"id": "c"}]}`, false, 0},
		{`{"commands": [{"type": "unlock"}]}`, false, 0},
		{`{"commands": {}}`, false, 0},
		{`[]`, false, 0},
	} {
		cmds, err := parseCommands([]byte(tc.body))
		if (err == nil) != tc.ok || len(cmds) != tc.n {
			t.Errorf("parseCommands(%q) = %v, %v", tc.body, cmds, err)
		}
	}
}

func FuzzPortalAnswers(f *testing.F) {
	for _, s := range []string{`{"accepted": ["a-1"]}`, `{"commands": [{"id": "c", "type": "unlock", "door": "main"}]}`, ``, `{}`, `null`, `{"accepted": null, "commands": null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if ids, err := parseAccepted(b); err != nil && ids != nil {
			t.Errorf("ids %v with error %v", ids, err)
		}
		cmds, err := parseCommands(b)
		if err != nil {
			return
		}
		for _, c := range cmds {
			if c.ID == "" || c.Type == "" {
				t.Errorf("command %+v accepted", c)
			}
		}
	})
}
