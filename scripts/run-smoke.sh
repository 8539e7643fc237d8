#!/usr/bin/env bash
# CI smoke test of what `make run` gives a newcomer, in both demo modes:
#  1. file:   a signed document applied with kioskctl; a demo PIN typed on
#             the terminal input (through a pipe) opens door main;
#  2. portal: devportal serves the demo set; the kiosk pulls it; a PIN newly
#             issued on the portal reaches the kiosk (push) and opens the door.
# Every wait is bounded; the daemons are stopped with SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s bin
dir=$(mktemp -d /tmp/kioskd-smoke.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
passed=0

waitlog() { # waitlog FILE PATTERN WHAT
  if ! timeout 20 grep -q -m1 "$2" <(tail -F "$1" 2>/dev/null); then
    echo "smoke: $3"; echo "--- $1"; cat "$1"; exit 1
  fi
}

start_kioskd() { # start_kioskd DIR: kioskd reading keys from DIR/keys.fifo
  mkfifo "$1/keys.fifo"
  ./bin/kioskd -config "$1/kioskd.toml" <"$1/keys.fifo" >"$1/log" 2>&1 &
  kpid=$!; pids+=("$kpid")
  exec 3>"$1/keys.fifo"
  waitlog "$1/log" 'kioskd serving' "kioskd did not start"
}

stop_kioskd() { # stop_kioskd DIR PIN
  kill -TERM "$kpid"; wait "$kpid" || { echo "smoke: kioskd exited non-zero"; cat "$1/log"; exit 1; }
  exec 3>&-
  grep -q 'reason=granted' "$1/log" || { echo "smoke: no granted decision in the log"; exit 1; }
  if grep -q "$2" "$1/log"; then echo "smoke: the PIN appears in the log"; exit 1; fi
}

# 1. file mode
f="$dir/file"; mkdir -p "$f"
./scripts/demo-setup.sh "$f" file >/dev/null
pin=$(sed -n 's/^# *PIN \([0-9]\{6\}\) *resident.*/\1/p' examples/demo-seed.toml | head -1)
[ -n "$pin" ] || { echo "smoke: no resident PIN found in examples/demo-seed.toml"; exit 1; }
start_kioskd "$f"
printf '%s' "$pin" >&3
waitlog "$f/log" 'relay on.*door=main\|door=main.*relay on' "file mode: the relay of door main did not switch on"
stop_kioskd "$f" "$pin"
passed=$((passed + 1))

# 2. portal mode, on free ports
p="$dir/portal-mode"; mkdir -p "$p"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export PORTAL_PORT=$(port) PUSH_PORT=$(port)
./scripts/demo-setup.sh "$p" portal >/dev/null
./bin/devportal serve -dir "$p/portal" -listen "127.0.0.1:$PORTAL_PORT" >"$p/devportal.log" 2>&1 &
pids+=("$!")
waitlog "$p/devportal.log" 'serving\|listening' "devportal did not start"
start_kioskd "$p"
waitlog "$p/log" 'msg=pulled.*credentials=8' "portal mode: the kiosk did not pull the demo set"
newpin=$(./bin/devportal pin -dir "$p/portal" -holder h-ana | sed -n 's/^PIN: //p')
[ -n "$newpin" ] || { echo "smoke: devportal pin printed no PIN"; exit 1; }
waitlog "$p/devportal.log" 'msg=pushed.*kind=delta' "portal mode: the portal did not push the new PIN"
printf '%s' "$newpin" >&3
waitlog "$p/log" 'reason=granted' "portal mode: the new PIN was not granted"
stop_kioskd "$p" "$newpin"
passed=$((passed + 1))

echo "smoke: $passed passed, 0 failed"
