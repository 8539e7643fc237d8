#!/usr/bin/env bash
# test-deb.sh [DEB...] — check kioskd's Debian packages; CI runs it.
#
# Without arguments it builds the packages first (scripts/build-deb.sh,
# version 0.0.0+test, into a scratch directory). For every package:
#   - lintian reports no error and no warning;
#   - the contents: every expected file, with its mode and owner, the
#     control fields, conffiles, md5sums that check out, binaries for the
#     right machine, static; the binaries run (natively, or under
#     qemu-user when it is installed: armhf on an ARMv6 CPU, armel on an
#     ARMv5 one, as Raspberry Pi OS and Debian armel promise);
# and once, for the package of this machine:
#   - the unit passes `systemd-analyze verify` and scores 2.0 or lower in
#     `systemd-analyze security --offline=true`;
#   - the shipped config is refused by the shipped kioskctl for the two
#     things a technician must set (device_id, a door);
#   - every system call the packaged kioskd makes (under strace, on
#     simulated hardware: start, a decision, the API, stop) is
#     allowed by the unit's SystemCallFilter=;
#   - dpkg installs, reinstalls and purges it into a scratch root
#     (--root with chrootless maintainer scripts and DPKG_ROOT): the kioskd
#     user in groups gpio, dialout and input, /var/lib/kioskd owned by it,
#     the service enabled, a modified conffile kept, loose secrets made
#     root-only, everything gone after purge but the user; and the host's
#     own /etc is left alone.
# It installs what it needs (lintian, systemd, init-system-helpers, strace) with
# apt-get when missing; TEST_DEB_QEMU=1 installs qemu-user too. Run as
# root (the dpkg part needs it).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }
say() { echo "test-deb: $*"; }

# Tools, installed only when missing (idempotent, no apt-get update
# otherwise).
need=()
command -v lintian >/dev/null || need+=(lintian)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v systemd-sysusers >/dev/null || need+=(systemd)
command -v deb-systemd-helper >/dev/null || need+=(init-system-helpers)
command -v strace >/dev/null || need+=(strace)
if [ "${TEST_DEB_QEMU:-}" = 1 ]; then
  command -v qemu-arm >/dev/null || need+=(qemu-user)
fi
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/kioskd-test-deb.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

if [ $# -gt 0 ]; then
  debs=("$@")
else
  OUT=$scratch/out scripts/build-deb.sh 0.0.0+test
  debs=("$scratch"/out/*.deb)
fi

hostarch=$(dpkg --print-architecture)

# Expected entries of every package: mode owner/group path.
expected="\
0755 root/root ./usr/sbin/kioskd
0755 root/root ./usr/bin/kioskctl
0644 root/root ./lib/systemd/system/kioskd.service
0644 root/root ./usr/lib/sysusers.d/kioskd.conf
0644 root/root ./usr/lib/tmpfiles.d/kioskd.conf
0644 root/root ./lib/udev/rules.d/60-kioskd.rules
0755 root/root ./etc/kioskd/
0644 root/root ./etc/kioskd/kioskd.toml
0644 root/root ./usr/share/doc/kioskd/copyright
0644 root/root ./usr/share/doc/kioskd/changelog.gz
0644 root/root ./usr/share/doc/kioskd/README.md
0644 root/root ./usr/share/man/man8/kioskd.8.gz
0644 root/root ./usr/share/man/man1/kioskctl.1.gz
0644 root/root ./usr/share/lintian/overrides/kioskd"

# mode OCTAL-OF "drwxr-xr-x": the numeric mode of a tar listing's mode.
mode() {
  local s=${1:1} m=0 i
  for ((i = 0; i < 9; i++)); do
    m=$((m * 2))
    [ "${s:i:1}" != - ] && m=$((m + 1))
  done
  printf '%04o' "$m"
}

# elf_machine FILE: e_machine of an ELF file, in hex.
elf_machine() { od -An -tx2 -j18 -N2 "$1" | tr -d ' '; }

# runs ARCH BIN: run BIN -version natively or under qemu-user, on the
# oldest CPU the architecture's Debian port (or Raspberry Pi OS) promises.
runs() {
  local arch=$1 bin=$2 cmd=()
  case $arch in
    "$hostarch") cmd=("$bin") ;;
    arm64) command -v qemu-aarch64 >/dev/null && cmd=(qemu-aarch64 -cpu cortex-a53 "$bin") ;;
    armhf) command -v qemu-arm >/dev/null && cmd=(qemu-arm -cpu arm1176 "$bin") ;;
    armel) command -v qemu-arm >/dev/null && cmd=(qemu-arm -cpu arm926 "$bin") ;;
    amd64) command -v qemu-x86_64 >/dev/null && cmd=(qemu-x86_64 "$bin") ;;
  esac
  if [ ${#cmd[@]} -eq 0 ]; then
    say "  $arch: not run (no qemu-user; TEST_DEB_QEMU=1 installs it)"
    return
  fi
  out=$("${cmd[@]}" -version 2>&1) || fail "$arch: ${cmd[*]} -version: $out"
  [[ $out == "kioskd "* ]] || fail "$arch: kioskd -version printed: $out"
  say "  $arch: runs (${cmd[0]}${cmd[1]:+ ${cmd[1]} ${cmd[2]}}): $out"
}

host_deb=
for deb in "${debs[@]}"; do
  base=$(basename "$deb")
  say "$base"
  arch=$(dpkg-deb -f "$deb" Architecture)
  [[ $base == kioskd_*_"$arch".deb ]] || fail "$base: file name does not match Architecture $arch"
  [ "$(dpkg-deb -f "$deb" Package)" = kioskd ] || fail "$base: Package is not kioskd"
  [ "$arch" = "$hostarch" ] && host_deb=$deb

  # lintian: no error, no warning (overrides are in the package).
  if ! out=$(lintian --fail-on error,warning "$deb" 2>&1); then
    echo "$out"
    fail "$base: lintian reports errors or warnings"
  fi
  grep -v 'running with root privileges' <<<"$out" | sed 's/^/  lintian: /' || true

  # Contents, modes, owners.
  listing=$(dpkg-deb -c "$deb")
  while read -r want_mode want_owner path; do
    line=$(awk -v p="$path" '$6 == p' <<<"$listing")
    [ -n "$line" ] || fail "$base: $path is missing"
    read -r perms owner _ <<<"$line"
    [ "$(mode "$perms")" = "$want_mode" ] || fail "$base: $path has mode $(mode "$perms"), want $want_mode"
    [ "$owner" = "$want_owner" ] || fail "$base: $path is owned by $owner, want $want_owner"
  done <<<"$expected"
  if awk '$2 != "root/root"' <<<"$listing" | grep -q .; then fail "$base: files not owned by root"; fi

  x=$scratch/x-$arch
  rm -rf "$x"; mkdir -p "$x"
  dpkg-deb -x "$deb" "$x"
  dpkg-deb -e "$deb" "$x/DEBIAN"
  [ "$(cat "$x/DEBIAN/conffiles")" = /etc/kioskd/kioskd.toml ] || fail "$base: conffiles"
  for s in postinst prerm postrm; do
    [ -x "$x/DEBIAN/$s" ] || fail "$base: $s is not executable"
  done
  (cd "$x" && md5sum --quiet -c DEBIAN/md5sums) || fail "$base: md5sums do not match"
  nsums=$(wc -l <"$x/DEBIAN/md5sums")
  nfiles=$(cd "$x" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' | wc -l)
  [ "$nsums" -eq "$nfiles" ] || fail "$base: md5sums lists $nsums files, the package has $nfiles"
  gzip -t "$x/usr/share/doc/kioskd/changelog.gz" || fail "$base: changelog.gz"
  zcat "$x/usr/share/doc/kioskd/changelog.gz" | head -1 | grep -q "^kioskd ($(dpkg-deb -f "$deb" Version))" ||
    fail "$base: changelog does not name the package version"
  grep -q 'go.etcd.io/bbolt' "$x/usr/share/doc/kioskd/copyright" || fail "$base: copyright lacks the module licenses"

  case $arch in amd64) m=003e ;; arm64) m=00b7 ;; armhf | armel) m=0028 ;; *) fail "$base: unknown arch $arch" ;; esac
  for bin in usr/sbin/kioskd usr/bin/kioskctl; do
    [ "$(elf_machine "$x/$bin")" = "$m" ] || fail "$base: $bin is not built for $arch"
    if grep -q 'ld-linux' "$x/$bin"; then fail "$base: $bin is dynamically linked"; fi
  done
  runs "$arch" "$x/usr/sbin/kioskd"
done

if [ -z "$host_deb" ]; then
  say "no package for this machine ($hostarch): unit, config and install checks skipped"
  exit 0
fi
x=$scratch/x-$hostarch
say "unit, config and install checks on $(basename "$host_deb")"

# The unit: verify (with the packaged binary and man pages) and score.
unit=$scratch/kioskd.service
sed "s|^ExecStart=/usr/sbin/kioskd|ExecStart=$x/usr/sbin/kioskd|" "$x/lib/systemd/system/kioskd.service" >"$unit"
grep -q "^ExecStart=$x/usr/sbin/kioskd " "$unit" || fail "unit: ExecStart is not /usr/sbin/kioskd"
out=$(MANPATH=$x/usr/share/man systemd-analyze verify "$unit" 2>&1) || fail "unit: systemd-analyze verify: $out"
[ -z "$out" ] || fail "unit: systemd-analyze verify complains: $out"
out=$(systemd-analyze security --offline=true --threshold=20 "$unit" 2>&1) ||
  fail "unit: exposure above 2.0: $(tail -1 <<<"$out")"
say "  $(tail -1 <<<"$out" | sed 's/^→ //')"

# The shipped config, as kioskctl sees it: refused, naming what to set.
if out=$("$x/usr/bin/kioskctl" check-config "$x/etc/kioskd/kioskd.toml" 2>&1); then
  fail "kioskctl check-config accepts the shipped config without a device id"
fi
if ! grep -q device_id <<<"$out" || ! grep -q door <<<"$out"; then
  fail "kioskctl check-config on the shipped config does not name device_id and door: $out"
fi

# The system call filter of the unit lets kioskd run: the packaged
# kioskd on simulated hardware, under strace, starts, decides on a typed
# PIN, answers on its API socket, and stops; every system call
# it made must be allowed by the unit's SystemCallFilter= lines.
# expand NAME...: the system calls of filter groups (@...) and names.
expand() {
  local n m
  for n in "$@"; do
    if [[ $n == @* ]]; then
      for m in $(systemd-analyze syscall-filter "$n" | tail -n +2 | sed 's/#.*//'); do expand "$m"; done
    else
      echo "$n"
    fi
  done
}
if strace -f -o /dev/null true 2>/dev/null; then
  allowed=$scratch/allowed
  : >"$allowed"
  first=1
  while read -r value; do
    if [[ $value == "~"* ]]; then
      [ $first = 0 ] || fail "unit: SystemCallFilter= starts with a deny list; this check expects an allow list"
      # shellcheck disable=SC2086 # word splitting wanted: a list of names
      expand ${value#"~"} | sort -u >"$scratch/deny"
      sort -u "$allowed" | comm -23 - "$scratch/deny" >"$allowed.new"
    else
      # shellcheck disable=SC2086
      { cat "$allowed"; expand $value; } | sort -u >"$allowed.new"
    fi
    mv "$allowed.new" "$allowed"
    first=0
  done < <(sed -n 's/^SystemCallFilter=//p' "$unit")
  [ -s "$allowed" ] || fail "unit: no SystemCallFilter="
  s=$scratch/sim
  mkdir -p "$s"
  head -c 32 /dev/urandom | base64 >"$s/site.key"
  cat >"$s/kioskd.toml" <<TOML
device_id = "test-0001"
state_dir = "$s/state"
hardware = "sim"
[portal]
site_key_file = "$s/site.key"
[[input]]
name = "console"
type = "terminal"
[[door]]
id = "main"
relay = { chip = "sim0", line = 0 }
[api]
socket = "$s/kioskd.sock"
TOML
  mkfifo "$s/keys"
  strace -f -qq -o "$s/trace" "$x/usr/sbin/kioskd" -config "$s/kioskd.toml" <"$s/keys" >"$s/log" 2>&1 &
  tracer=$!
  exec 3>"$s/keys"
  timeout 20 grep -q -m1 'kioskd serving' <(tail -F "$s/log" 2>/dev/null) || { cat "$s/log"; fail "syscalls: kioskd did not start"; }
  printf '1234#' >&3
  timeout 20 grep -q -m1 'reason=unknown' <(tail -F "$s/log" 2>/dev/null) || { cat "$s/log"; fail "syscalls: no decision"; }
  "$x/usr/bin/kioskctl" -socket "$s/kioskd.sock" status >/dev/null 2>&1 || true
  kill -TERM "$(ps -o pid= --ppid "$tracer")"
  wait "$tracer" || { cat "$s/log"; fail "syscalls: kioskd did not stop cleanly"; }
  exec 3>&-
  sed -nE 's/^[0-9]+ +([a-z0-9_]+)\(.*/\1/p; s/^[0-9]+ +<\.\.\. ([a-z0-9_]+) resumed.*/\1/p' "$s/trace" | sort -u >"$s/used"
  denied=$(comm -23 "$s/used" "$allowed" | tr '\n' ' ')
  [ -z "$denied" ] || fail "unit: SystemCallFilter= denies system calls kioskd makes: $denied"
  say "  system calls: the $(wc -l <"$s/used") kioskd made are all allowed by the unit"
else
  say "  system calls: not checked (strace missing or not permitted here)"
fi

# Install, reinstall, purge into a scratch root, maintainer scripts
# included (chrootless, DPKG_ROOT set by dpkg).
if [ "$(id -u)" != 0 ]; then
  say "not root: install test skipped"
  exit 0
fi
host_before=$(ls -la /etc/systemd/system/multi-user.target.wants/ 2>/dev/null; getent passwd kioskd || true)
r=$scratch/root
mkdir -p "$r/var/lib/dpkg/info" "$r/var/lib/dpkg/updates" "$r/etc"
: >"$r/var/lib/dpkg/status"
dpkgr() { dpkg --root="$r" --force-script-chrootless --force-depends --force-confold --log=/dev/null "$@" >"$scratch/dpkg.log" 2>&1 || { cat "$scratch/dpkg.log"; fail "dpkg $*"; }; }

dpkgr -i "$host_deb"
grep -q '^kioskd:x:[0-9]*:[0-9]*:.*:/var/lib/kioskd:/usr/sbin/nologin$' "$r/etc/passwd" || fail "install: no kioskd user: $(grep kioskd "$r/etc/passwd" || true)"
for g in gpio dialout input; do
  grep -Eq "^$g:x:[0-9]+:(.*,)?kioskd(,|$)" "$r/etc/group" || fail "install: kioskd is not in group $g"
done
uid=$(awk -F: '$1 == "kioskd" { print $3 }' "$r/etc/passwd")
[ "$(stat -c '%a %u' "$r/var/lib/kioskd")" = "700 $uid" ] || fail "install: /var/lib/kioskd is $(stat -c '%a %u' "$r/var/lib/kioskd"), want 700 $uid"
[ "$(readlink "$r/etc/systemd/system/multi-user.target.wants/kioskd.service")" = /lib/systemd/system/kioskd.service ] ||
  fail "install: kioskd.service is not enabled"
while read -r want_mode _ path; do
  [ -e "$r/$path" ] || fail "install: $path missing"
  [ "$(stat -c '%04a' "$r/$path")" = "$want_mode" ] || fail "install: $path has mode $(stat -c '%04a' "$r/$path")"
done <<<"$expected"
dpkg --root="$r" -s kioskd | grep -q '^Status: install ok installed' || fail "install: not installed"

# Reinstall (an upgrade's path): a changed conffile is kept, loose secrets
# become root-only.
echo '# local change' >>"$r/etc/kioskd/kioskd.toml"
echo secret >"$r/etc/kioskd/token"; chmod 0644 "$r/etc/kioskd/token"
dpkgr -i "$host_deb"
grep -q '^# local change' "$r/etc/kioskd/kioskd.toml" || fail "reinstall: the changed conffile was replaced"
[ "$(stat -c '%a' "$r/etc/kioskd/token")" = 600 ] || fail "reinstall: /etc/kioskd/token is still $(stat -c '%a' "$r/etc/kioskd/token")"
[ "$(grep -c '^kioskd:' "$r/etc/passwd")" = 1 ] || fail "reinstall: kioskd user duplicated"

dpkgr --purge kioskd
for p in usr/sbin/kioskd etc/kioskd var/lib/kioskd lib/systemd/system/kioskd.service \
         etc/systemd/system/multi-user.target.wants/kioskd.service; do
  [ ! -e "$r/$p" ] || fail "purge: $p is still there"
done
grep -q '^kioskd:' "$r/etc/passwd" || fail "purge: the kioskd user was removed (Debian keeps system users)"

host_after=$(ls -la /etc/systemd/system/multi-user.target.wants/ 2>/dev/null; getent passwd kioskd || true)
[ "$host_before" = "$host_after" ] || fail "the install test touched the host's /etc"
say "install, reinstall, purge: ok"
say "all packages pass"
