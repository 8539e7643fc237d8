#!/usr/bin/env bash
# make run: a demo kiosk on simulated hardware. Type a PIN on this terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/demo-setup.sh .run
echo
echo "Demo credentials (examples/demo-seed.toml):"
sed -n '/^# What to try/,/^# Make the keys/p' examples/demo-seed.toml | sed '1d;$d' | sed 's/^#//' 
echo
echo "Type a PIN on this terminal (digits, # to submit, * to clear); Ctrl-C stops."
echo "Watch the log for 'relay on' (door opens) or the denial reason."
echo
exec ./bin/kioskd -config .run/kioskd.toml
