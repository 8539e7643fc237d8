// Package board says what board kioskd runs on — its model from the
// device tree, whether it is a Raspberry Pi, the OS and the CPU
// architecture — for `kioskctl status` and `kioskctl doctor` (SPEC §1:
// a Raspberry-Pi-class board). It reads what periph.io's host packages
// read (/proc/device-tree, /proc/cpuinfo, /etc/os-release) and never
// touches a GPIO register: detection is safe on any machine, board or
// not, and needs no privilege.
package board

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"periph.io/x/host/v3/distro"
	"periph.io/x/host/v3/rpi"
)

// Info describes the machine.
type Info struct {
	// Model is the device tree's model ("Raspberry Pi 4 Model B Rev 1.4"),
	// else /proc/cpuinfo's "Model" or "Hardware" line, else the DMI
	// product name (PCs, VMs), else the CPU's model name, else "unknown".
	Model string `json:"model"`
	// RaspberryPi reports a Raspberry Pi (its firmware driver is bound,
	// or the model says so).
	RaspberryPi bool `json:"raspberry_pi"`
	// Compatible is the device tree's compatible list, most specific
	// first; empty off a device-tree machine (a PC).
	Compatible []string `json:"compatible,omitempty"`
	// OS is /etc/os-release's PRETTY_NAME ("Debian GNU/Linux 12
	// (bookworm)"); empty when unknown.
	OS string `json:"os,omitempty"`
	// Arch is the CPU architecture kioskd was built for (GOARCH, with
	// GOARM's variant where it applies).
	Arch string `json:"arch"`
}

// Detect identifies the machine. It never fails: what it cannot read is
// left empty or "unknown".
func Detect() Info {
	return detect(source{
		dtModel:    distro.DTModel,
		compatible: distro.DTCompatible,
		cpuinfo:    distro.CPUInfo,
		osRelease:  distro.OSRelease,
		rpiPresent: rpi.Present,
		dmiProduct: func() string { return readTrimmed("/sys/class/dmi/id/product_name") },
	})
}

// String names the board in one line for status and logs: the model of a
// Raspberry Pi, else "not a Raspberry Pi (model, arch)".
func (i Info) String() string {
	if i.RaspberryPi {
		if i.Model == "unknown" {
			return "Raspberry Pi (model unknown)"
		}
		return i.Model
	}
	return fmt.Sprintf("not a Raspberry Pi (%s, %s/%s)", i.Model, runtime.GOOS, i.Arch)
}

func readTrimmed(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return clean(string(b))
}

// source is where detect reads from; tests replace it.
type source struct {
	dtModel    func() string
	compatible func() []string
	cpuinfo    func() map[string]string
	osRelease  func() map[string]string
	rpiPresent func() bool
	dmiProduct func() string // PCs and VMs: the DMI product name
}

func detect(s source) Info {
	info := Info{Model: "unknown", Arch: arch()}
	if m := clean(s.dtModel()); m != "" {
		info.Model = m
	} else {
		ci := s.cpuinfo()
		for _, k := range []string{"Model", "Hardware"} {
			if m := clean(ci[k]); m != "" {
				info.Model = m
				break
			}
		}
		if info.Model == "unknown" && s.dmiProduct != nil {
			if m := clean(s.dmiProduct()); m != "" {
				info.Model = m
			}
		}
		if m := clean(ci["model name"]); info.Model == "unknown" && m != "" {
			info.Model = m // x86 without DMI (containers): the CPU
		}
	}
	for _, c := range s.compatible() {
		if c = clean(c); c != "" {
			info.Compatible = append(info.Compatible, c)
		}
	}
	info.RaspberryPi = s.rpiPresent() || strings.HasPrefix(info.Model, "Raspberry Pi")
	for _, c := range info.Compatible {
		if strings.HasPrefix(c, "raspberrypi,") {
			info.RaspberryPi = true
		}
	}
	info.OS = strings.Trim(clean(s.osRelease()["PRETTY_NAME"]), `"`)
	return info
}

// clean trims a value read from the kernel: white space and the NUL that
// ends device-tree strings; periph answers "<unknown>" when absent.
func clean(s string) string {
	s = strings.TrimSpace(strings.TrimRight(s, "\x00"))
	if s == "<unknown>" || s == "unknown" {
		return ""
	}
	return s
}

func arch() string {
	if runtime.GOARCH == "arm" {
		return "arm" + goarm
	}
	return runtime.GOARCH
}
