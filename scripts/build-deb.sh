#!/usr/bin/env bash
# build-deb.sh VERSION — build kioskd's Debian packages from static Go
# binaries, one per architecture, into dist/deb/ (or $OUT):
#
#   kioskd_VERSION_amd64.deb  kioskd_VERSION_arm64.deb
#   kioskd_VERSION_armhf.deb  kioskd_VERSION_armel.deb
#
# Each holds /usr/sbin/kioskd, /usr/bin/kioskctl, the systemd unit, the
# sysusers.d, tmpfiles.d and udev files of systemd/, the commented default
# config /etc/kioskd/kioskd.toml (a conffile), man pages, copyright (with
# the licenses of every Go module linked in), changelog and md5sums. The
# reference portal (devportal) is a bench tool and is not packaged.
#
# VERSION may carry a leading "v" and git-describe suffixes
# (v1.2.0-3-gabc1234 becomes 1.2.0+3+gabc1234); one that does not start
# with a digit becomes 0~VERSION. Environment:
#   ARCHES          architectures to build (default: amd64 arm64 armhf armel)
#   OUT             output directory (default: dist/deb)
#   GOARM_ARMHF     GOARM of the armhf build (default 6: Raspberry Pi OS's
#                   armhf runs on ARMv6 boards, Pi 1 and Zero, where a
#                   GOARM=7 binary dies of SIGILL)
#   GOARM_ARMEL     GOARM of the armel build (default 5: Debian's armel
#                   baseline is ARMv5TE, without hardware floating point)
#   DEB_MAINTAINER  the Maintainer field
#   SOURCE_DATE_EPOCH  timestamps and kioskd's build time (default: the
#                   last commit's time), so that builds are reproducible
# Needs: go, dpkg-deb, gzip.
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022

die() { echo "build-deb: $*" >&2; exit 1; }
if [ $# -ne 1 ] || [ -z "$1" ]; then die "usage: scripts/build-deb.sh VERSION"; fi
for tool in dpkg-deb gzip md5sum; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install dpkg gzip coreutils)"
done

GO=${GO:-go}
ARCHES=${ARCHES:-amd64 arm64 armhf armel}
OUT=${OUT:-dist/deb}
GOARM_ARMHF=${GOARM_ARMHF:-6}
GOARM_ARMEL=${GOARM_ARMEL:-5}
MAINTAINER=${DEB_MAINTAINER:-kioskd maintainers <maintainers@users.noreply.r-seed-e611f2a4.example>}

raw=${1#v}
version=${raw//-/+}
case $version in [0-9]*) ;; *) version="0~$version" ;; esac
[[ $version =~ ^[0-9][A-Za-z0-9.+~]*$ ]] || die "VERSION $1 does not make a Debian version ($version)"

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH
buildtime=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w -X main.version=$raw -X main.buildTime=$buildtime"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

work=$(mktemp -d "${TMPDIR:-/tmp}/kioskd-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT"

# copyright ROOT: the header, then the license of the Go toolchain's
# standard library and of every module linked into the binaries.
copyright() {
  local root=$1 out=$1/usr/share/doc/kioskd/copyright mod dir lic notice
  cat packaging/copyright.head >"$out"
  {
    printf '\n%s\n' '-----------------------------------------------------------------------'
    printf 'Go standard library, %s\n\n' "$($GO env GOVERSION)"
    cat "$($GO env GOROOT)/LICENSE"
  } >>"$out"
  for mod in $($GO version -m "$root/usr/sbin/kioskd" "$root/usr/bin/kioskctl" |
               awk '$1 == "dep" { print $2 "@" $3 }' | sort -u); do
    dir=$($GO mod download -json "$mod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [ -d "$dir" ] || die "cannot find the source of $mod"
    lic=
    for f in LICENSE LICENSE.txt LICENSE.md LICENCE COPYING; do
      if [ -f "$dir/$f" ]; then lic=$dir/$f; break; fi
    done
    [ -n "$lic" ] || die "$mod has no license file; add its license to packaging/copyright.head"
    {
      printf '\n%s\n' '-----------------------------------------------------------------------'
      printf '%s\n\n' "$mod"
      if grep -q 'Apache License' "$lic" && grep -q 'Version 2.0' "$lic"; then
        printf 'Licensed under the Apache License, Version 2.0;\nsee /usr/share/common-licenses/Apache-2.0.\n'
        for notice in NOTICE NOTICE.txt NOTICE.md; do
          if [ -f "$dir/$notice" ]; then printf '\nNOTICE:\n\n'; cat "$dir/$notice"; break; fi
        done
      else
        cat "$lic"
      fi
    } >>"$out"
  done
}

# changelog ROOT: a one-entry native changelog, compressed.
changelog() {
  local date
  date=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
  cat >"$work/changelog" <<TXT
kioskd ($version) unstable; urgency=medium

  * Build of kioskd $raw, commit $commit.

 -- $MAINTAINER  $date
TXT
  gzip -9n <"$work/changelog" >"$1/usr/share/doc/kioskd/changelog.gz"
}

for arch in $ARCHES; do
  case $arch in
    amd64) goarch=amd64 goarm= ;;
    arm64) goarch=arm64 goarm= ;;
    armhf) goarch=arm goarm=$GOARM_ARMHF ;;
    armel) goarch=arm goarm=$GOARM_ARMEL ;;
    *) die "unknown architecture $arch (amd64, arm64, armhf, armel)" ;;
  esac
  root=$work/$arch
  install -d "$root/DEBIAN" "$root/usr/sbin" "$root/usr/bin" \
    "$root/lib/systemd/system" "$root/lib/udev/rules.d" \
    "$root/usr/lib/sysusers.d" "$root/usr/lib/tmpfiles.d" \
    "$root/etc/kioskd" "$root/usr/share/doc/kioskd" \
    "$root/usr/share/man/man1" "$root/usr/share/man/man8" \
    "$root/usr/share/lintian/overrides"

  echo "build-deb: $arch (GOARCH=$goarch${goarm:+ GOARM=$goarm})"
  CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm \
    $GO build -trimpath -ldflags "$ldflags${goarm:+ -X kioskd/hw/board.goarm=v$goarm}" -o "$root/usr/sbin/kioskd" ./cmd/kioskd
  CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm \
    $GO build -trimpath -ldflags "$ldflags${goarm:+ -X kioskd/hw/board.goarm=v$goarm}" -o "$root/usr/bin/kioskctl" ./cmd/kioskctl
  chmod 0755 "$root/usr/sbin/kioskd" "$root/usr/bin/kioskctl"

  install -m 0644 systemd/kioskd.service "$root/lib/systemd/system/kioskd.service"
  install -m 0644 systemd/kioskd.sysusers "$root/usr/lib/sysusers.d/kioskd.conf"
  install -m 0644 systemd/kioskd.tmpfiles "$root/usr/lib/tmpfiles.d/kioskd.conf"
  install -m 0644 systemd/60-kioskd.rules "$root/lib/udev/rules.d/60-kioskd.rules"
  install -m 0644 packaging/kioskd.toml "$root/etc/kioskd/kioskd.toml"
  install -m 0644 README.md "$root/usr/share/doc/kioskd/README.md"
  install -m 0644 packaging/lintian-overrides "$root/usr/share/lintian/overrides/kioskd"
  gzip -9n <packaging/man/kioskd.8 >"$root/usr/share/man/man8/kioskd.8.gz"
  gzip -9n <packaging/man/kioskctl.1 >"$root/usr/share/man/man1/kioskctl.1.gz"
  chmod 0644 "$root/usr/share/man/man8/kioskd.8.gz" "$root/usr/share/man/man1/kioskctl.1.gz"
  copyright "$root"
  changelog "$root"

  install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
  echo /etc/kioskd/kioskd.toml >"$root/DEBIAN/conffiles"
  (cd "$root" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\n' | LC_ALL=C sort |
     xargs -d '\n' md5sum) >"$root/DEBIAN/md5sums"
  # Installed-Size as dpkg-gencontrol counts it: KiB per file, rounded up,
  # plus one per directory.
  size=$(find "$root" -path "$root/DEBIAN" -prune -o \( -type f -printf 'f %s\n' \) -o \( -type d -printf 'd 0\n' \) |
         awk '$1 == "f" { s += int(($2 + 1023) / 1024) } $1 == "d" { s += 1 } END { print s }')
  sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
      -e "s|@MAINTAINER@|$MAINTAINER|" packaging/control.in >"$root/DEBIAN/control"
  chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

  find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  deb=$OUT/kioskd_${version}_${arch}.deb
  dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
  echo "build-deb: $deb"
done
