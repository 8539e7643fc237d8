#!/usr/bin/env bash
# Runs the hardware tests (gpio-sim, uinput) against a real Linux kernel in a
# small VM under qemu's software emulation: see docs/testing-hw.md.
#
#   scripts/test-hw.sh [PKG[:RUNREGEX]...]
#
# Default packages: ./hw/gpio ./hw/evdev ./cmd/kioskd:^TestHW. A package
# that does not exist yet, has no test files or no test matching RUNREGEX
# is skipped with a note. Exits non-zero if a package fails to build or
# fails in the VM, if the VM's summary line is missing, or on time-out.
#
# Environment (all optional):
#   KIOSKD_HWVM_CACHE   cache of kernel, modules, gpio-sim.ko, busybox
#                       (default ${XDG_CACHE_HOME:-$HOME/.cache}/kioskd-hwvm)
#   HWVM_KERNEL         kernel ABI to use, e.g. 6.12.117+deb12-amd64
#                       (default: newest 6.12, else 6.1, found with apt-cache)
#   HWVM_TIMEOUT        wall-clock seconds for the whole VM run (default 300)
#   HWVM_TEST_TIMEOUT   -test.timeout of each test binary (default 3m)
#   HWVM_SMP, HWVM_MEM  qemu's -smp (default 1) and -m in MiB (default 1024)
#   HWVM_ACCEL          qemu accelerators (default "kvm:tcg" if /dev/kvm
#                       opens, else "tcg")
#   HWVM_KIOSKD         0: do not build ./cmd/kioskd into the image
#   HWVM_EXTRA_BINS     space-separated Go packages (./cmd/x) or files to put
#                       into the image's /usr/local/bin
#   HWVM_ENV            space-separated NAME=VALUE set for the tests
#   HWVM_LOG            console log (default .run/test-hw/console.log)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
hwvm=$root/scripts/hwvm
export GOFLAGS=${GOFLAGS:--buildvcs=false}
export DEBIAN_FRONTEND=noninteractive

cache=${KIOSKD_HWVM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kioskd-hwvm}
vm_timeout=${HWVM_TIMEOUT:-300}
test_timeout=${HWVM_TEST_TIMEOUT:-3m}
smp=${HWVM_SMP:-1}
mem=${HWVM_MEM:-1024}
log=${HWVM_LOG:-$root/.run/test-hw/console.log}
recipe=1 # bump when the way the cache is built changes

t0=$(date +%s.%N)
phase() { echo "== test-hw [$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%5.1fs", b - a }')] $*"; }
die() { echo "test-hw: $*" >&2; exit 1; }

work=$(mktemp -d /tmp/kioskd-hwvm.XXXXXX)
kpid=
trap '[ -z "$kpid" ] || kill "$kpid" 2>/dev/null; rm -rf "$work"' EXIT

# ---- apt helpers -----------------------------------------------------------
apt_updated=0
apt_update() {
	[ "$apt_updated" = 1 ] && return 0
	phase "apt-get update"
	apt-get -qq -o DPkg::Lock::Timeout=300 update >/dev/null
	apt_updated=1
}
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
# need PKG[=VER]...: apt-get install those not installed yet.
need() {
	local missing=() p
	for p in "$@"; do installed "${p%%=*}" || missing+=("$p"); done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" = 0 ] || die "need packages ${missing[*]} (run as root or install them)"
	phase "apt-get install ${missing[*]}"
	if ! apt-get -qq -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${missing[@]}" >"$work/apt.log" 2>&1; then
		apt_update
		apt-get -qq -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${missing[@]}" >"$work/apt.log" 2>&1 ||
			{ cat "$work/apt.log"; die "apt-get install ${missing[*]} failed"; }
	fi
}
candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}' | grep -v '(none)' || true; }
# resolve_kernel: sets abi (6.12.117+deb12-amd64), kver (the package
# version), series (6.12), from apt-cache: the newest 6.12 kernel whose
# image, headers and source all exist at one version, else the same for 6.1.
# (Two apt-cache calls per series: each takes a second or more.)
resolve_kernel() {
	local deps s meta img v m
	deps=$(apt-cache depends linux-image-6.12-amd64 linux-image-amd64 2>/dev/null || true)
	for s in 6.12 6.1; do
		case $s in 6.12) meta=linux-image-6.12-amd64 ;; *) meta=linux-image-amd64 ;; esac
		img=$(echo "$deps" | awk -v m="$meta" '/^[^ ]/ {cur = $1} cur == m && /Depends: linux-image-[0-9]/ {print $2; exit}')
		[ -n "$img" ] || continue
		abi=${img#linux-image-}
		m=$(apt-cache madison "$img" "linux-headers-$abi" "linux-source-$s" 2>/dev/null |
			awk -F'|' '{gsub(/ /, ""); print $1, $2}')
		v=$(echo "$m" | awk -v p="$img" '$1 == p {print $2; exit}')
		[ -n "$v" ] || continue
		if echo "$m" | grep -qxF "linux-headers-$abi $v" && echo "$m" | grep -qxF "linux-source-$s $v"; then
			kver=$v series=$s
			return 0
		fi
	done
	return 1
}

# ---- kernel, modules, gpio-sim, busybox: cached per kernel -----------------
# $cache/<abi>-r<recipe>/ holds vmlinuz, busybox, modules/*.ko and "ok";
# $cache/current names the last one built, so a warm run asks apt nothing.
# Nothing of the kernel is installed on the host: the image, headers, kbuild
# and source packages are fetched with `apt-get download` and unpacked with
# `dpkg -x` into a scratch directory (installing linux-image would run
# update-initramfs for minutes). Only tools are installed.
build_kernel() { # build_kernel ABI KVER SERIES DIR
	local abi=$1 kver=$2 series=$3 dir=$4 tmp=$4.tmp.$$ d=$work/deb x m f hdr
	rm -rf "$dir".tmp.* # left by an interrupted build (we hold the lock)
	mkdir -p "$tmp/modules" "$d"
	local pkgs=("linux-image-$abi=$kver" "linux-headers-$abi=$kver")
	# The headers' common part and kbuild are named after the ABI without the
	# flavour: linux-headers-6.12.117+deb12-common, linux-kbuild-6.12.117+deb12
	# (6.1: linux-headers-6.1.0-50-common, linux-kbuild-6.1).
	local more=()
	mapfile -t more < <(apt-cache depends "linux-headers-$abi" 2>/dev/null |
		awk '/Depends: linux-(headers-.*-common|kbuild-)/ {print $2}' | sort -u)
	[ ${#more[@]} = 2 ] || die "apt-cache: no common headers and kbuild for linux-headers-$abi"
	pkgs+=("${more[@]}" "linux-source-$series=$kver" busybox-static)
	phase "apt-get download ${pkgs[*]}"
	download() { (cd "$d" && apt-get -qq download "$@") 2>&1 | grep -v 'unsandboxed as root' || true; }
	download "${pkgs[@]}"
	for x in "${pkgs[@]}"; do
		if ! ls "$d/${x%%=*}"_*.deb >/dev/null 2>&1; then
			apt_update
			download "$x"
			ls "$d/${x%%=*}"_*.deb >/dev/null 2>&1 || die "apt-get download ${x%%=*} failed"
		fi
	done
	for f in "$d"/*.deb; do
		case $f in */linux-source-*) ;; *) dpkg -x "$f" "$work/root" ;; esac
	done
	cp "$work/root/bin/busybox" "$tmp/busybox"
	cp "$work/root/boot/vmlinuz-$abi" "$tmp/vmlinuz"
	for m in fs/configfs/configfs drivers/input/misc/uinput drivers/input/evdev; do
		f=
		for x in "$work/root/lib/modules/$abi/kernel/$m".ko*; do [ -f "$x" ] && f=$x; done
		[ -n "$f" ] || die "module $m not in linux-image-$abi"
		case $f in
		*.xz) xz -dc "$f" >"$tmp/modules/${m##*/}.ko" ;;
		*.zst) zstd -qdc "$f" >"$tmp/modules/${m##*/}.ko" ;;
		*) cp "$f" "$tmp/modules/${m##*/}.ko" ;;
		esac
	done

	phase "building gpio-sim.ko out of tree (gpio-sim.c, gpiolib.h, irq_sim.c of linux-source-$series)"
	local g=$work/gpiosim s=linux-source-$series
	mkdir -p "$work/src" "$g"
	dpkg-deb --fsys-tarfile "$d/linux-source-${series}_"*.deb | tar -xO "./usr/src/$s.tar.xz" |
		tar -xJ -C "$work/src" --strip-components=1 \
			"$s/drivers/gpio/gpio-sim.c" "$s/drivers/gpio/gpiolib.h" "$s/kernel/irq/irq_sim.c"
	cp "$hwvm/Kbuild" "$g/Kbuild"
	cp "$work/src/drivers/gpio/gpio-sim.c" "$g/gpio-sim-main.c"
	cp "$work/src/drivers/gpio/gpiolib.h" "$work/src/kernel/irq/irq_sim.c" "$g/"
	# irq_to_desc is not exported to modules; generic_handle_irq is.
	sed -i 's/handle_simple_irq(irq_to_desc(\([a-z_]*\)))/generic_handle_irq(\1)/' "$g/irq_sim.c"
	! grep -q 'irq_to_desc' "$g/irq_sim.c" || die "irq_sim.c: irq_to_desc left after patching (see scripts/hwvm/Kbuild)"
	# The headers' Makefile includes the common part by absolute path.
	hdr=$work/root/usr/src/linux-headers-$abi
	sed -i "s|^include /usr/src/|include $work/root/usr/src/|" "$hdr/Makefile"
	make -s -C "$hdr" M="$g" modules >"$work/kbuild.log" 2>&1 ||
		{ cat "$work/kbuild.log"; die "gpio-sim build failed"; }
	cp "$g/gpio-sim.ko" "$tmp/modules/gpio-sim.ko"
	echo "$kver" >"$tmp/ok"
	rm -rf "$dir" && mv "$tmp" "$dir"
	rm -rf "$work/root" "$work/src" "$d"
}

# warm: the cache holds the kernel to use (sets abi).
warm() {
	abi=${HWVM_KERNEL:-}
	if [ -z "$abi" ] && [ -f "$cache/current" ]; then abi=$(cat "$cache/current"); fi
	[ -n "$abi" ] && [ -f "$cache/$abi-r$recipe/ok" ]
}
cold() {
	if warm; then need qemu-system-x86 cpio; return 0; fi
	# Everything in one apt-get call: each call costs seconds of dpkg.
	need qemu-system-x86 cpio build-essential xz-utils gcc-12 libelf1 libssl3 pahole
	# One cold build at a time; whoever waited finds the cache warm.
	phase "waiting for the cache lock $cache/.lock"
	exec 9>"$cache/.lock"
	flock 9
	warm && return 0
	phase "cold cache: building kernel, modules and gpio-sim into $cache"
	if [ -n "${HWVM_KERNEL:-}" ]; then
		abi=$HWVM_KERNEL
		kver=$(candidate "linux-image-$abi")
		[ -n "$kver" ] || { apt_update; kver=$(candidate "linux-image-$abi"); }
		[ -n "$kver" ] || die "HWVM_KERNEL=$abi: no package linux-image-$abi"
		series=$(echo "$abi" | cut -d. -f1-2)
	elif ! resolve_kernel; then
		apt_update
		resolve_kernel || die "no Debian kernel with image, headers and source at one version found by apt-cache"
	fi
	phase "kernel $abi (package $kver, source linux-source-$series)"
	build_kernel "$abi" "$kver" "$series" "$cache/$abi-r$recipe"
	[ -n "${HWVM_KERNEL:-}" ] || echo "$abi" >"$cache/current"
	phase "cache ready"
}
mkdir -p "$cache"
kpid=
if warm && command -v qemu-system-x86_64 >/dev/null && command -v cpio >/dev/null; then
	:
else
	# The cold part (apt, downloads, gpio-sim) runs while Go compiles.
	cold > >(sed -u 's/^/  [kernel] /') 2>&1 &
	kpid=$!
fi

# ---- Go test binaries ------------------------------------------------------
[ $# -gt 0 ] || set -- ./hw/gpio ./hw/evdev './cmd/kioskd:^TestHW'
stage=$work/initramfs
mkdir -p "$stage"/{bin,dev,proc,sys,tmp,run,usr/local/bin,hwvm/modules,hwvm/tests.d}
: >"$stage/hwvm/tests"
declare -a results=()   # "pkg STATUS note"
hostfail=0
note() { results+=("$1|$2|$3"); }

phase "go test -c (static) for: $*"
i=0
for arg in "$@"; do
	pkg=${arg%%:*} run=
	[ "$pkg" != "$arg" ] && run=${arg#*:}
	i=$((i + 1))
	if ! dir=$(go list -e -f '{{.Dir}}' "$pkg" 2>/dev/null) || [ -z "$dir" ] || [ ! -d "$dir" ]; then
		echo "test-hw: $pkg: no such package (yet); skipped"
		note "$pkg" SKIP "no such package"
		continue
	fi
	ntest=$(go list -e -f '{{len .TestGoFiles}} {{len .XTestGoFiles}}' "$pkg" 2>/dev/null | awk '{print $1 + $2}')
	if [ "${ntest:-0}" = 0 ]; then
		echo "test-hw: $pkg: no test files; skipped"
		note "$pkg" SKIP "no test files"
		continue
	fi
	bin=$stage/hwvm/tests.d/$i.test
	if ! CGO_ENABLED=0 go test -c -ldflags='-s -w' -o "$bin" "$pkg"; then
		echo "test-hw: $pkg: test build FAILED"
		note "$pkg" FAIL "test build failed"
		hostfail=1
		continue
	fi
	if [ ! -f "$bin" ]; then
		note "$pkg" SKIP "no test binary"
		continue
	fi
	if [ -z "$(timeout 60 "$bin" -test.list "${run:-.}" 2>/dev/null | grep -E '^(Test|Example|Fuzz)' || true)" ]; then
		echo "test-hw: $pkg: no test matches ${run:-.}; skipped"
		note "$pkg" SKIP "no test matches ${run:-.}"
		rm -f "$bin"
		continue
	fi
	# The package's directory (testdata included) is the tests' working dir.
	rel=${dir#"$root"/}
	mkdir -p "$stage/src/$rel"
	[ -d "$dir/testdata" ] && cp -r "$dir/testdata" "$stage/src/$rel/"
	echo "$pkg|/hwvm/tests.d/$i.test|$run|/src/$rel" >>"$stage/hwvm/tests"
done

if [ "${HWVM_KIOSKD:-1}" != 0 ]; then
	phase "go build ./cmd/kioskd (KIOSKD_BIN in the VM)"
	if ! CGO_ENABLED=0 go build -ldflags='-s -w' -o "$stage/usr/local/bin/kioskd" ./cmd/kioskd; then
		note "./cmd/kioskd (KIOSKD_BIN)" FAIL "build failed"
		hostfail=1
	fi
fi
for x in ${HWVM_EXTRA_BINS:-}; do
	if [ -f "$x" ]; then
		cp "$x" "$stage/usr/local/bin/"
	elif ! CGO_ENABLED=0 go build -ldflags='-s -w' -o "$stage/usr/local/bin/" "$x"; then
		note "$x (HWVM_EXTRA_BINS)" FAIL "build failed"
		hostfail=1
	fi
done
for kv in ${HWVM_ENV:-}; do printf 'export %q\n' "$kv" >>"$stage/hwvm/env"; done
echo "$test_timeout" >"$stage/hwvm/timeout"

# ---- initramfs and VM ------------------------------------------------------
if [ -n "$kpid" ]; then
	wait "$kpid" || die "preparing the kernel failed (see the [kernel] lines above)"
	kpid=
fi
warm || die "kernel cache $cache not ready"
kdir=$cache/$abi-r$recipe
phase "kernel $abi from $kdir"
mkdir -p "$(dirname "$log")"
con=$work/console.log # parsed privately: several runs may share $log
: >"$con"
nrun=$(grep -c . "$stage/hwvm/tests" || true)
summary=
if [ "$nrun" -gt 0 ]; then
	cp "$kdir/busybox" "$stage/bin/busybox"
	cp "$kdir"/modules/*.ko "$stage/hwvm/modules/"
	install -m 0755 "$hwvm/init.sh" "$stage/init"
	(cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet) >"$work/initrd.cpio"
	phase "initramfs $(du -m "$work/initrd.cpio" | cut -f1) MiB; booting qemu (TCG, -smp $smp, -m $mem, time box ${vm_timeout}s); console log $log"

	accel=${HWVM_ACCEL:-}
	if [ -z "$accel" ]; then
		accel=tcg
		if [ -w /dev/kvm ] && command -v python3 >/dev/null &&
			python3 -c 'import fcntl,os; f=os.open("/dev/kvm",os.O_RDWR); fcntl.ioctl(f,0xAE01,0)' 2>/dev/null; then
			accel=kvm:tcg
		fi
	fi
	accel_args=()
	IFS=: read -ra accels <<<"$accel"
	for a in "${accels[@]}"; do accel_args+=(-accel "$a"); done
	set +e
	timeout -k 5 "$vm_timeout" qemu-system-x86_64 "${accel_args[@]}" -m "$mem" -smp "$smp" \
		-nodefaults -display none -no-reboot -serial stdio \
		-kernel "$kdir/vmlinuz" -initrd "$work/initrd.cpio" \
		-append "console=ttyS0 panic=-1 loglevel=4 rdinit=/init" </dev/null 2>&1 |
		tr -d '\r' | tee "$con"
	vmrc=${PIPESTATUS[0]}
	set -e
	[ "$vmrc" = 124 ] || [ "$vmrc" = 137 ] && echo "test-hw: VM TIMED OUT after ${vm_timeout}s"
	cp "$con" "$log"
	summary=$(grep '^HWVM-SUMMARY' "$con" | tail -1 || true)
	while read -r _ pkg st rest; do
		note "$pkg" "$st" "$rest"
	done < <(grep '^HWVM-RESULT' "$con" || true)
	# A package the VM was given but never reported on (crash, time-out).
	while IFS='|' read -r pkg _; do
		grep -q "^HWVM-RESULT $pkg " "$con" || note "$pkg" FAIL "no result line from the VM"
	done <"$stage/hwvm/tests"
	[ -n "$summary" ] || note "(vm)" FAIL "no HWVM-SUMMARY line (exit $vmrc); see $log"
else
	phase "no test binary to run; VM not booted"
fi

# ---- report ----------------------------------------------------------------
phase "done"
echo "== test-hw results (kernel $abi)"
failed=$hostfail passed=0 skipped=0
for r in "${results[@]}"; do
	IFS='|' read -r pkg st rest <<<"$r"
	printf '  %-4s %-28s %s\n' "$st" "$pkg" "$rest"
	case $st in PASS) passed=$((passed + 1)) ;; SKIP) skipped=$((skipped + 1)) ;; *) failed=1 ;; esac
done
if [ "$failed" = 0 ]; then
	echo "test-hw: ok ($passed package(s) passed, $skipped skipped)"
else
	echo "test-hw: FAILED"
fi
if [ -n "$summary" ]; then
	eval "$(echo "$summary" | tr ' ' '\n' | grep -E '^(pass|fail|skip)=[0-9]+$' | sed 's/^/t_/')"
	[ "${t_skip:-0}" = 0 ] || echo "test-hw: NOTE ${t_skip} test(s) skipped inside the VM: grep -- '--- SKIP' $log"
	echo "test-hw: ${t_pass:-0} passed, ${t_fail:-0} failed, ${t_skip:-0} skipped"
fi
[ "$failed" = 0 ]
