package board

import (
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func TestDetect(t *testing.T) {
	none := func() map[string]string { return nil }
	cases := []struct {
		name string
		src  source
		want Info
	}{
		{"raspberry pi 4", source{
			dtModel:    func() string { return "Raspberry Pi 4 Model B Rev 1.4\x00" },
			compatible: func() []string { return []string{"raspberrypi,4-model-b", "brcm,bcm2711"} },
			cpuinfo:    none,
			osRelease:  func() map[string]string { return map[string]string{"PRETTY_NAME": `"Debian GNU/Linux 12 (bookworm)"`} },
			rpiPresent: func() bool { return true },
		}, Info{Model: "Raspberry Pi 4 Model B Rev 1.4", RaspberryPi: true,
			Compatible: []string{"raspberrypi,4-model-b", "brcm,bcm2711"}, OS: "Debian GNU/Linux 12 (bookworm)"}},
		{"pi without the firmware driver bound is still a pi by its model", source{
			dtModel:    func() string { return "Raspberry Pi Zero 2 W Rev 1.0" },
			compatible: func() []string { return nil },
			cpuinfo:    none, osRelease: none,
			rpiPresent: func() bool { return false },
		}, Info{Model: "Raspberry Pi Zero 2 W Rev 1.0", RaspberryPi: true}},
		{"another arm board", source{
			dtModel:    func() string { return "Xunlong Orange Pi Zero" },
			compatible: func() []string { return []string{"xunlong,orangepi-zero", "allwinner,sun8i-h2-plus"} },
			cpuinfo:    none, osRelease: none,
			rpiPresent: func() bool { return false },
		}, Info{Model: "Xunlong Orange Pi Zero", Compatible: []string{"xunlong,orangepi-zero", "allwinner,sun8i-h2-plus"}}},
		{"a pc: no device tree, model from DMI", source{
			dtModel:    func() string { return "<unknown>" },
			compatible: func() []string { return []string{} },
			cpuinfo:    func() map[string]string { return map[string]string{"model name": "AMD EPYC 7B13"} },
			dmiProduct: func() string { return "AMD EPYC 7B13\n" },
			osRelease:  func() map[string]string { return map[string]string{"PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"} },
			rpiPresent: func() bool { return false },
		}, Info{Model: "AMD EPYC 7B13", OS: "Debian GNU/Linux 12 (bookworm)"}},
		{"a container: no device tree, no DMI, model from cpuinfo", source{
			dtModel:    func() string { return "<unknown>" },
			compatible: func() []string { return nil },
			cpuinfo:    func() map[string]string { return map[string]string{"model name": "AMD EPYC"} },
			osRelease:  none,
			rpiPresent: func() bool { return false },
		}, Info{Model: "AMD EPYC"}},
		{"nothing readable", source{
			dtModel: func() string { return "" }, compatible: func() []string { return nil },
			cpuinfo: none, osRelease: none, rpiPresent: func() bool { return false },
		}, Info{Model: "unknown"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.src.dmiProduct == nil {
				tc.src.dmiProduct = func() string { return "" }
			}
			tc.want.Arch = arch()
			if got := detect(tc.src); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("detect = %+v\nwant     %+v", got, tc.want)
			}
		})
	}
}

// On the machine running the tests: Detect reads the real files and
// never fails; off ARM it is never a Raspberry Pi.
func TestDetectHere(t *testing.T) {
	info := Detect()
	if info.Model == "" || info.Arch == "" {
		t.Fatalf("Detect = %+v: empty model or arch", info)
	}
	if runtime.GOARCH == "amd64" && info.RaspberryPi {
		t.Fatalf("Detect on amd64 says Raspberry Pi: %+v", info)
	}
	if runtime.GOARCH == "amd64" && !strings.HasPrefix(info.String(), "not a Raspberry Pi (") {
		t.Fatalf("String = %q", info.String())
	}
	t.Logf("this machine: %+v", info)
}

func TestString(t *testing.T) {
	for _, tc := range []struct {
		in   Info
		want string
	}{
		{Info{Model: "Raspberry Pi 4 Model B Rev 1.4", RaspberryPi: true, Arch: "arm64"}, "Raspberry Pi 4 Model B Rev 1.4"},
		{Info{Model: "unknown", RaspberryPi: true, Arch: "armv6"}, "Raspberry Pi (model unknown)"},
		{Info{Model: "Standard PC (Q35 + ICH9, 2009)", Arch: "amd64"}, "not a Raspberry Pi (Standard PC (Q35 + ICH9, 2009), " + runtime.GOOS + "/amd64)"},
	} {
		if got := tc.in.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.in, got, tc.want)
		}
	}
}
