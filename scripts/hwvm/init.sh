#!/bin/busybox sh
# /init of the hardware-test VM that scripts/test-hw.sh boots.
#
# Mounts the kernel's file systems (proc, sysfs, devtmpfs, devpts, configfs,
# tmpfs on /tmp), loads configfs, gpio-sim, uinput and
# evdev, then runs each test binary listed in /hwvm/tests (one line each:
# NAME|BINARY|RUNREGEX|DIR) with -test.v, printing its output on the
# console. After each package it prints one machine-readable line
#   HWVM-RESULT <pkg> <PASS|FAIL> exit=N pass=N fail=N skip=N secs=N
# and at the end
#   HWVM-SUMMARY packages=N ok=N failed=N pass=N fail=N skip=N
# which the host reads; then it powers the VM off. pass/fail/skip count
# "--- PASS/FAIL/SKIP" lines, subtests included.
/bin/busybox --install -s /bin
export PATH=/usr/local/bin:/bin
export HOME=/tmp TMPDIR=/tmp

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
[ -e /dev/ptmx ] || ln -s pts/ptmx /dev/ptmx
mount -t tmpfs tmpfs /dev/shm

modok=1
for m in configfs gpio-sim uinput evdev; do
	if ! out=$(insmod "/hwvm/modules/$m.ko" 2>&1); then
		echo "HWVM-ERROR insmod $m: $out"
		modok=0
	fi
done
mount -t configfs configfs /sys/kernel/config || { echo "HWVM-ERROR mount configfs"; modok=0; }
echo "HWVM-MODULES ok=$modok uptime=$(cut -d" " -f1 /proc/uptime)s $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')"

# The test environment: hardware tests must not skip in here.
export KIOSKD_HW=require
[ -x /usr/local/bin/kioskd ] && export KIOSKD_BIN=/usr/local/bin/kioskd
[ -f /hwvm/env ] && . /hwvm/env
timeout=$(cat /hwvm/timeout 2>/dev/null || echo 3m)

n=0 ok=0 failed=0 tp=0 tf=0 ts=0
while IFS='|' read -r name bin run dir; do
	[ -n "$name" ] || continue
	n=$((n + 1))
	echo "HWVM-RUN $name"
	cd "$dir" || cd /
	start=$(date +%s)
	set -- -test.v -test.timeout="$timeout" -test.count=1
	[ -n "$run" ] && set -- "$@" -test.run="$run"
	{ "$bin" "$@"; echo $? >/tmp/.hwvm-rc; } 2>&1 | tee /tmp/.hwvm-out
	rc=$(cat /tmp/.hwvm-rc)
	secs=$(($(date +%s) - start))
	p=$(grep -c -e '--- PASS:' /tmp/.hwvm-out)
	f=$(grep -c -e '--- FAIL:' /tmp/.hwvm-out)
	s=$(grep -c -e '--- SKIP:' /tmp/.hwvm-out)
	tp=$((tp + p)) tf=$((tf + f)) ts=$((ts + s))
	if [ "$rc" = 0 ]; then st=PASS ok=$((ok + 1)); else st=FAIL failed=$((failed + 1)); fi
	echo "HWVM-RESULT $name $st exit=$rc pass=$p fail=$f skip=$s secs=$secs"
	cd /
done </hwvm/tests

echo "HWVM-SUMMARY packages=$n ok=$ok failed=$failed pass=$tp fail=$tf skip=$ts modules=$modok uptime=$(cut -d" " -f1 /proc/uptime)s"
sync
poweroff -f
