// Package hwtest decides whether a test that needs a kernel facility the
// build machines lack (gpio-sim, uinput) skips or fails.
//
// On a developer machine or in CI's container there is no gpio-sim and no
// /dev/uinput, so such tests skip with a message that points at `make
// test-hw`. Inside the VM that `make test-hw` boots, the environment
// variable KIOSKD_HW=require is set, and the same tests fail instead of
// skipping: a driver test that silently skipped in the VM would prove
// nothing.
package hwtest

import (
	"os"
	"testing"

	"github.com/warthog618/go-gpiosim"
)

// EnvVar is the variable that, set to "require", turns Unavailable's skip
// into a failure.
const EnvVar = "KIOSKD_HW"

// Required reports whether hardware tests must run (KIOSKD_HW=require).
func Required() bool { return os.Getenv(EnvVar) == "require" }

// Unavailable ends the test because the kernel facility named by what is
// missing (err says why): a skip on ordinary machines, a fatal error
// inside the hardware-test VM.
func Unavailable(t testing.TB, what string, err error) {
	t.Helper()
	if Required() {
		t.Fatalf("%s unavailable, but %s=require: %v", what, EnvVar, err)
	}
	t.Skipf("%s unavailable here (run `make test-hw` to test against the kernel in a VM): %v", what, err)
}

// GPIOSim creates a gpio-sim chip of the given number of lines through
// configfs, closed when the test ends; without gpio-sim it calls
// Unavailable.
func GPIOSim(t testing.TB, lines int) *gpiosim.Simpleton {
	t.Helper()
	s, err := gpiosim.NewSimpleton(lines)
	if err != nil {
		if s != nil {
			s.Close()
		}
		Unavailable(t, "gpio-sim (configfs and the gpio-sim module)", err)
	}
	t.Cleanup(s.Close)
	return s
}
