package lockboard

// Reconnected returns a channel closed at the bus's next reconnect, so a
// test can wait for it without sleeping.
func Reconnected(b *Bus) <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.connected
}

// Poller reports whether the board's status poller runs, and a channel
// closed when it has returned (nil when none runs).
func Poller(b *Board) (running bool, done <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopPoll == nil {
		return false, b.pollDone
	}
	return true, b.pollDone
}
