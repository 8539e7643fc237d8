// Package sysclock tells whether the system clock is synchronised, so that
// kioskd can tell trusted time (an NTP-disciplined clock) from the guess a
// board without a real-time clock boots with.
package sysclock

// Synced reports whether the kernel considers the system clock
// synchronised. It never fails: where the answer cannot be had it reports
// false, the safe answer (the clock floor then rules).
func Synced() bool { return synced() }
