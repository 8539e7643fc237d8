#!/usr/bin/env bash
# make run: the reference portal (devportal) and a kiosk on simulated
# hardware. Type a PIN on this terminal; manage credentials on the portal
# from another terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.run
portal_port=${PORTAL_PORT:-8080}
./scripts/demo-setup.sh "$dir" portal
./bin/devportal serve -dir "$dir/portal" -listen "127.0.0.1:$portal_port" >"$dir/devportal.log" 2>&1 &
portal_pid=$!
trap 'kill $portal_pid 2>/dev/null; wait $portal_pid 2>/dev/null' EXIT
for _ in $(seq 50); do
  grep -q . "$dir/portal/serve.json" 2>/dev/null && break
  kill -0 $portal_pid 2>/dev/null || { echo "devportal did not start:"; cat "$dir/devportal.log"; exit 1; }
  sleep 0.1
done
cat <<TXT

The reference portal runs on http://127.0.0.1:$portal_port (log: $dir/devportal.log).
Demo credentials (examples/demo-seed.toml):
$(sed -n '/^# What to try/,/^# Make the keys/p' examples/demo-seed.toml | sed '1d;$d' | sed 's/^#//')

Type a PIN on this terminal (digits; # submits a short entry; * clears);
Ctrl-C stops. Watch for "relay on" (the door opens) or the denial reason.

From another terminal, be the property manager (the kiosk gets changes by push at once):
  bin/devportal holders -dir $dir/portal
  bin/devportal pin -dir $dir/portal -holder h-1        # a new PIN for a holder, shown once
  bin/devportal onetime -dir $dir/portal -holder h-1    # a one-time PIN, valid 24 h
  bin/devportal credentials -dir $dir/portal
  bin/devportal deactivate -dir $dir/portal -id ID
  bin/devportal unlock -dir $dir/portal -device demo-0001 -door main
  bin/devportal events -dir $dir/portal -device demo-0001

TXT
./bin/kioskd -config "$dir/kioskd.toml"
