package portal

import (
	"fmt"
	"strings"

	"kioskd/kiosk"
	portalsync "kioskd/sync"
)

var dayNames = []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}

// maxScheduleText bounds a schedule as typed.
const maxScheduleText = 1024

// ParseSchedule parses a schedule as the property manager types it: windows
// separated by ";", each "DAYS HH:MM-HH:MM" or just "HH:MM-HH:MM" (every
// day). DAYS is a comma-separated list of days ("mon" … "sun") and ranges
// ("mon-fri", "fri-mon" wraps), or "daily", "weekdays", "weekends". A
// window whose end is not after its start runs past midnight (SPEC §2).
// Example: "mon-fri 07:00-20:00; sat 09:00-13:00". Errors name the bad
// part; "" is the empty schedule (always).
func ParseSchedule(s string) ([]portalsync.WireWindow, error) {
	if len(s) > maxScheduleText {
		return nil, fmt.Errorf("%w: schedule is longer than %d bytes", ErrInvalid, maxScheduleText)
	}
	var out []portalsync.WireWindow
	for i, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			if strings.TrimSpace(s) == "" {
				return nil, nil
			}
			return nil, fmt.Errorf("%w: schedule window %d is empty", ErrInvalid, i+1)
		}
		fields := strings.Fields(part)
		var daySpec, times string
		switch len(fields) {
		case 1:
			daySpec, times = "daily", fields[0]
		case 2:
			daySpec, times = fields[0], fields[1]
		default:
			return nil, fmt.Errorf("%w: schedule window %q: want \"DAYS HH:MM-HH:MM\"", ErrInvalid, part)
		}
		days, err := parseDays(daySpec)
		if err != nil {
			return nil, fmt.Errorf("%w: schedule window %q: %v", ErrInvalid, part, err)
		}
		from, to, ok := strings.Cut(times, "-")
		if !ok {
			return nil, fmt.Errorf("%w: schedule window %q: times are HH:MM-HH:MM", ErrInvalid, part)
		}
		w := portalsync.WireWindow{Days: days, From: from, To: to}
		if _, err := kiosk.ParseWindow(w.Days, w.From, w.To); err != nil {
			return nil, fmt.Errorf("%w: schedule window %q: %v", ErrInvalid, part, err)
		}
		out = append(out, w)
		if len(out) > maxWindows {
			return nil, fmt.Errorf("%w: more than %d schedule windows", ErrInvalid, maxWindows)
		}
	}
	return out, nil
}

// parseDays turns a day spec into day names in week order, each once.
func parseDays(spec string) ([]string, error) {
	var set [7]bool
	switch strings.ToLower(spec) {
	case "daily":
		spec = "mon-sun"
	case "weekdays":
		spec = "mon-fri"
	case "weekends":
		spec = "sat-sun"
	}
	for _, item := range strings.Split(strings.ToLower(spec), ",") {
		a, b, isRange := strings.Cut(item, "-")
		ia, ib := dayIndex(a), dayIndex(b)
		switch {
		case ia < 0:
			return nil, fmt.Errorf("%q is not a day (mon … sun)", a)
		case !isRange:
			set[ia] = true
		case ib < 0:
			return nil, fmt.Errorf("%q is not a day (mon … sun)", b)
		default:
			for d := ia; ; d = (d + 1) % 7 {
				set[d] = true
				if d == ib {
					break
				}
			}
		}
	}
	var days []string
	for i, on := range set {
		if on {
			days = append(days, dayNames[i])
		}
	}
	return days, nil
}

func dayIndex(s string) int {
	for i, n := range dayNames {
		if s == n {
			return i
		}
	}
	return -1
}

// FormatSchedule writes windows as ParseSchedule reads them.
func FormatSchedule(ws []portalsync.WireWindow) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = strings.Join(w.Days, ",") + " " + w.From + "-" + w.To
	}
	return strings.Join(parts, "; ")
}
