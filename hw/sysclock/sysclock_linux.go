package sysclock

import "golang.org/x/sys/unix"

// synced asks adjtimex(2): the clock is synchronised unless the kernel
// flags it STA_UNSYNC or the call reports TIME_ERROR.
func synced() bool {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return false
	}
	return state != unix.TIME_ERROR && tx.Status&unix.STA_UNSYNC == 0
}
