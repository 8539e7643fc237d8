#!/usr/bin/env bash
# Prepares a demo kiosk in DIR (default .run): keys, a config for simulated
# hardware, and a signed full credential document from examples/demo-seed.toml
# applied to the store. Needs bin/ built (make bin).
set -euo pipefail
dir=${1:-.run}
cd "$(dirname "$0")/.."
mkdir -p "$dir"
if [ ! -f "$dir/keys/portal.pub" ]; then
  ./bin/devportal keygen -dir "$dir/keys" >/dev/null
fi
pub=$(tr -d ' \n' <"$dir/keys/portal.pub")
cat >"$dir/kioskd.toml" <<TOML
# Demo kiosk on simulated hardware (made by scripts/demo-setup.sh).
device_id = "demo-0001"
state_dir = "$PWD/$dir/state"
timezone  = "America/New_York"
hardware  = "sim"

[portal]
site_key_file = "$PWD/$dir/keys/site.key"
public_key    = "$pub"

[keypad]
pin_length    = 6
entry_timeout = "10s"

[[input]]
name = "console"
type = "terminal"

[[door]]
id          = "main"
kind        = "room"
relay       = { chip = "gpiochip0", line = 17 }
pulse       = "3s"
contact     = { chip = "gpiochip0", line = 27 }
exit_button = { chip = "gpiochip0", line = 22 }
buzzer      = { chip = "gpiochip0", line = 23 }
led_green   = { chip = "gpiochip0", line = 24 }
led_red     = { chip = "gpiochip0", line = 25 }

[[door]]
id    = "locker-1"
kind  = "locker"
relay = { chip = "gpiochip1", line = 0 }
pulse = "2s"

[api]
socket = "$PWD/$dir/kioskd.sock"
TOML
mkdir -p "$dir/state"
./bin/devportal mkdoc -site-key "$dir/keys/site.key" -portal-key "$dir/keys/portal.key" \
  -device demo-0001 -seed examples/demo-seed.toml -out "$dir/demo.json"
./bin/kioskctl -config "$dir/kioskd.toml" apply "$dir/demo.json"
