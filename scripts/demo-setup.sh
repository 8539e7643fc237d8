#!/usr/bin/env bash
# Prepares a demo kiosk in DIR (default .run): keys, a config for simulated
# hardware, and a signed full credential document from examples/demo-seed.toml.
#
#   demo-setup.sh DIR file     the credentials come from a document file
#                              applied with `kioskctl apply` (no portal)
#   demo-setup.sh DIR portal   the credentials live in a devportal in
#                              DIR/portal (imported from the seed); the kiosk
#                              pulls them at start and gets pushes
#
# Ports of the portal mode: PORTAL_PORT (default 8080), PUSH_PORT (8443).
# Needs bin/ built (make bin).
set -euo pipefail
dir=${1:-.run}
mode=${2:-file}
portal_port=${PORTAL_PORT:-8080}
push_port=${PUSH_PORT:-8443}
cd "$(dirname "$0")/.."
mkdir -p "$dir/state"
abs=$(cd "$dir" && pwd)
if [ ! -f "$dir/portal/portal.pub" ]; then
  ./bin/devportal keygen -dir "$dir/portal" >/dev/null
fi
pub=$(tr -d ' \n' <"$dir/portal/portal.pub")

portal_keys=""
if [ "$mode" = portal ]; then
  portal_keys="url                = \"http://127.0.0.1:$portal_port\"
token_file         = \"$abs/portal/token\"
sync_interval      = \"30s\"
heartbeat_interval = \"1m\"
push_listen        = \"127.0.0.1:$push_port\""
fi

cat >"$dir/kioskd.toml" <<TOML
# Demo kiosk on simulated hardware (made by scripts/demo-setup.sh).
device_id = "demo-0001"
state_dir = "$abs/state"
timezone  = "America/New_York"
hardware  = "sim"

[portal]
site_key_file = "$abs/portal/site.key"
public_key    = "$pub"
$portal_keys

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
socket = "$abs/kioskd.sock"
TOML

if [ "$mode" = portal ]; then
  if ! ./bin/devportal devices -dir "$dir/portal" 2>/dev/null | grep -q demo-0001; then
    ./bin/devportal device add -dir "$dir/portal" -id demo-0001 -token-file "$dir/portal/token" \
      -push-url "http://127.0.0.1:$push_port" >/dev/null
    ./bin/devportal import -dir "$dir/portal" -seed examples/demo-seed.toml >/dev/null
  fi
else
  ./bin/devportal mkdoc -site-key "$dir/portal/site.key" -portal-key "$dir/portal/portal.key" \
    -device demo-0001 -seed examples/demo-seed.toml -out "$dir/demo.json"
  ./bin/kioskctl -config "$dir/kioskd.toml" apply "$dir/demo.json"
fi
