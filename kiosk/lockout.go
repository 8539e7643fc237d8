package kiosk

import "time"

// Lockout defaults of SPEC §7 [lockout], used for zero fields of
// LockoutPolicy.
const (
	lockDefaultMaxFailures = 5
	lockDefaultWindow      = 10 * time.Minute
	lockDefaultDuration    = 5 * time.Minute
	// lockMaxLength caps the doubling of further lockouts (SPEC §2).
	lockMaxLength = time.Hour
	// lockChainReset is how long an input must go without a lockout for
	// the doubling to start again from Duration.
	lockChainReset = 24 * time.Hour
)

// LockoutPolicy is the per-input lockout rule of SPEC §2: an input that
// reaches MaxFailures denied entries within Window is locked for Duration;
// each further lockout doubles the length, up to 1 h, and the doubling
// resets after 24 h without a lockout.
//
// The methods are pure: they take a LockoutState and the effective time
// and return the new state for the caller to persist (keyed by the
// input's name, so it survives a restart).
type LockoutPolicy struct {
	// MaxFailures is the number of denied entries within Window that
	// starts a lockout. Zero (or less) means 5.
	MaxFailures int
	// Window is how far back failures count. Zero (or less) means 10 min.
	Window time.Duration
	// Duration is the length of the first lockout of a chain. Zero (or
	// less) means 5 min. Further lockouts double it, up to 1 h; a
	// Duration above 1 h is used as it is and not doubled.
	Duration time.Duration
}

func (p LockoutPolicy) lockNormalized() LockoutPolicy {
	if p.MaxFailures <= 0 {
		p.MaxFailures = lockDefaultMaxFailures
	}
	if p.Window <= 0 {
		p.Window = lockDefaultWindow
	}
	if p.Duration <= 0 {
		p.Duration = lockDefaultDuration
	}
	return p
}

// Locked reports whether the input is locked out at now: every entry is
// then denied locked_out without being looked up.
func (p LockoutPolicy) Locked(s LockoutState, now time.Time) bool {
	return now.Before(s.Until)
}

// Fail records one denied entry at now and returns the new state. When
// this failure reaches MaxFailures within Window a lockout starts:
// started is true, length is how long it lasts, next.Until is its end,
// and the failures that caused it are cleared.
//
// The caller must not pass denials that happen while the input is locked
// (Locked is true): SPEC §2 says those neither extend the lockout nor
// count as failures. Fail enforces this too: called while locked it
// returns s unchanged.
//
// The length of a lockout is Duration for the first of a chain and
// doubles with each further one (5, 10, 20, 40, 60, 60 min with the
// defaults). The chain resets — the next lockout is Duration again — when
// 24 h have passed without a lockout. The 24 h are measured from the END
// of the previous lockout, not its start: the safer reading, since a long
// lockout cannot eat into the quiet period.
func (p LockoutPolicy) Fail(s LockoutState, now time.Time) (next LockoutState, started bool, length time.Duration) {
	if p.Locked(s, now) {
		return s, false, 0
	}
	p = p.lockNormalized()
	cutoff := now.Add(-p.Window)
	kept := make([]time.Time, 0, len(s.Failures)+1)
	for _, f := range s.Failures {
		// A failure exactly Window ago still counts (the safer reading).
		if !f.Before(cutoff) {
			kept = append(kept, f)
		}
	}
	kept = append(kept, now)
	next = s
	if len(kept) < p.MaxFailures {
		next.Failures = kept
		return next, false, 0
	}
	level := s.Level
	if level < 0 || s.Until.IsZero() || !now.Before(s.Until.Add(lockChainReset)) {
		level = 0
	}
	level++
	length = p.lockLength(level)
	next = LockoutState{
		Until:     now.Add(length),
		Level:     level,
		LastStart: now,
	}
	return next, true, length
}

// lockLength returns the length of the level-th lockout of a chain
// (level >= 1): Duration doubled level-1 times, capped at 1 h (or at
// Duration when that is longer).
func (p LockoutPolicy) lockLength(level int) time.Duration {
	limit := max(lockMaxLength, p.Duration)
	d := p.Duration
	for i := 1; i < level && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// Grant returns the state after a granted entry: the failure count is
// reset, while the lockout history (Until, Level, LastStart) is kept so
// that the doubling chain still applies.
func (p LockoutPolicy) Grant(s LockoutState) LockoutState {
	s.Failures = nil
	return s
}
