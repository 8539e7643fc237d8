#!/usr/bin/env bash
# CI smoke test of `make run`: sets up the demo kiosk, feeds a demo PIN to
# the terminal input through a pipe, and waits (bounded) for the sim relay
# of door main to switch on; then stops the daemon with SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s bin
dir=$(mktemp -d /tmp/kioskd-smoke.XXXXXX)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
./scripts/demo-setup.sh "$dir"
mkfifo "$dir/keys.fifo"
./bin/kioskd -config "$dir/kioskd.toml" <"$dir/keys.fifo" >"$dir/log" 2>&1 &
pid=$!
exec 3>"$dir/keys.fifo"
timeout 20 grep -q -m1 'kioskd serving' <(tail -F "$dir/log" 2>/dev/null)
pin=$(sed -n 's/^# *PIN \([0-9]\{6\}\) *resident.*/\1/p' examples/demo-seed.toml | head -1)
[ -n "$pin" ] || { echo "smoke: no resident PIN found in examples/demo-seed.toml"; exit 1; }
printf '%s' "$pin" >&3
if ! timeout 20 grep -q -m1 'relay on.*door=main\|door=main.*relay on' <(tail -F "$dir/log" 2>/dev/null); then
  echo "smoke: the relay of door main did not switch on"; cat "$dir/log"; exit 1
fi
kill -TERM "$pid"; wait "$pid" || { echo "smoke: kioskd exited non-zero"; cat "$dir/log"; exit 1; }
grep -q 'reason=granted' "$dir/log" || { echo "smoke: no granted decision in the log"; exit 1; }
if grep -q "$pin" "$dir/log"; then echo "smoke: the PIN appears in the log"; exit 1; fi
echo "smoke: 1 passed, 0 failed"
