package board

// goarm is GOARM's value ("v6", "v7") on 32-bit ARM builds, set by the
// Makefile's -ldflags (-X kioskd/hw/board.goarm=v7); empty otherwise.
var goarm string
