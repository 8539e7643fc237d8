package kiosk

import (
	"fmt"
	"time"
)

// schedDayNames maps time.Weekday (Sunday = 0) to the day names of SPEC
// §2 schedules.
var schedDayNames = [7]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// ParseWindow parses one schedule window of SPEC §6.3: days from "mon"
// "tue" "wed" "thu" "fri" "sat" "sun" (lower case, at least one; a day
// listed twice counts once) and from/to as "HH:MM" between 00:00 and
// 23:59. Errors name the bad value.
func ParseWindow(days []string, from, to string) (Window, error) {
	if len(days) == 0 {
		return Window{}, fmt.Errorf("schedule window: no days")
	}
	w := Window{Days: make([]time.Weekday, 0, len(days))}
	var seen [7]bool
	for _, name := range days {
		d, ok := schedParseDay(name)
		if !ok {
			return Window{}, fmt.Errorf("schedule window: day %q is not one of mon tue wed thu fri sat sun", name)
		}
		if !seen[d] {
			seen[d] = true
			w.Days = append(w.Days, d)
		}
	}
	var err error
	if w.From, err = schedParseHHMM(from); err != nil {
		return Window{}, fmt.Errorf("schedule window: from: %w", err)
	}
	if w.To, err = schedParseHHMM(to); err != nil {
		return Window{}, fmt.Errorf("schedule window: to: %w", err)
	}
	return w, nil
}

func schedParseDay(name string) (time.Weekday, bool) {
	for i, n := range schedDayNames {
		if n == name {
			return time.Weekday(i), true
		}
	}
	return 0, false
}

// schedParseHHMM parses exactly "HH:MM", 00:00..23:59, into minutes after
// midnight.
func schedParseHHMM(s string) (int, error) {
	digit := func(c byte) bool { return '0' <= c && c <= '9' }
	if len(s) != 5 || s[2] != ':' || !digit(s[0]) || !digit(s[1]) || !digit(s[3]) || !digit(s[4]) {
		return 0, fmt.Errorf("time %q is not HH:MM", s)
	}
	h := int(s[0]-'0')*10 + int(s[1]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	if h > 23 || m > 59 {
		return 0, fmt.Errorf("time %q is out of range 00:00..23:59", s)
	}
	return h*60 + m, nil
}

// FormatDay returns the schedule name of a weekday ("mon", "tue", …), for
// encoders; it returns "" for a value that is no weekday.
func FormatDay(d time.Weekday) string {
	if d < time.Sunday || d > time.Saturday {
		return ""
	}
	return schedDayNames[d]
}

// InSchedule reports whether t falls in one of the windows ws, read on the
// wall clock of loc (the kiosk's configured zone; nil means UTC). An empty
// schedule means always.
//
// Semantics (SPEC §2): From is inclusive and To exclusive, at minute
// resolution of the local wall clock. A window whose To is not after its
// From runs past midnight into the next day (equal: a full 24 h) and
// belongs to the day it starts on: a fri 22:00–06:00 window covers
// saturday 05:59 but not sunday 05:59 unless sat is listed too.
//
// Because windows are wall-clock times, daylight saving time moves them
// with the clocks: on a spring-forward day a window's minutes in the hour
// that does not exist are skipped (a 02:00–02:30 window never opens that
// night in America/New_York), and on a fall-back day the repeated hour is
// inside a window both times it is lived.
func InSchedule(ws []Window, t time.Time, loc *time.Location) bool {
	if len(ws) == 0 {
		return true
	}
	if loc == nil {
		loc = time.UTC
	}
	lt := t.In(loc)
	today := lt.Weekday()
	yesterday := (today + 6) % 7
	m := lt.Hour()*60 + lt.Minute()
	for _, w := range ws {
		if w.To > w.From {
			// Same-day window.
			if m >= w.From && m < w.To && schedHasDay(w.Days, today) {
				return true
			}
			continue
		}
		// Overnight window (To <= From): the part from From to midnight
		// on its own day, and the part from midnight to To on the next.
		if m >= w.From && schedHasDay(w.Days, today) {
			return true
		}
		if m < w.To && schedHasDay(w.Days, yesterday) {
			return true
		}
	}
	return false
}

func schedHasDay(days []time.Weekday, d time.Weekday) bool {
	for _, x := range days {
		if x == d {
			return true
		}
	}
	return false
}
