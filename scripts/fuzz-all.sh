#!/usr/bin/env bash
# fuzz-all.sh [TIME] — runs every fuzz target of the project for TIME each
# (default 20s), one after the other, with `go test -fuzz`. Targets are
# discovered from the sources (every `func Fuzz` in a _test.go file), not
# listed by hand. For the short bounded run CI does, see fuzz-ci.sh.
#
# Environment:
#   FUZZ_MATCH    regexp of target names to run (default: all)
#   FUZZ_PKGS     package directories to consider (default: all)
#   FUZZ_HARVEST  N > 0: after each target, copy inputs the fuzzer found
#                 (from $(go env GOCACHE)/fuzz/<import path>/<FuzzName>/)
#                 into <package>/testdata/fuzz/<FuzzName>/ until that
#                 directory holds N files, smallest first and none over
#                 FUZZ_HARVEST_MAX bytes (default 65536), so that plain
#                 `go test` replays them as regression seeds. Files
#                 already there (committed corpus, crashers) are kept.
set -euo pipefail
t=${1:-20s}
cd "$(dirname "$0")/.."
match=${FUZZ_MATCH:-.}
harvest=${FUZZ_HARVEST:-0}
maxbytes=${FUZZ_HARVEST_MAX:-65536}
module=$(go list -m)
cachedir=$(go env GOCACHE)/fuzz

if [ -n "${FUZZ_PKGS:-}" ]; then
  dirs=$FUZZ_PKGS
else
  dirs=$(grep -rlE --include='*_test.go' '^func Fuzz[A-Z0-9_a-z]*\(' . \
    | grep -v '/testdata/' | xargs -r -n1 dirname | sort -u)
fi

# harvest PKG DIR NAME copies new cached inputs of one target into DIR.
harvest() {
  local src=$cachedir/$1/$3 dst=$2/testdata/fuzz/$3
  [ -d "$src" ] || return 0
  mkdir -p "$dst"
  local have added=0
  have=$(find "$dst" -type f | wc -l)
  while read -r size f; do
    [ "$have" -ge "$harvest" ] && break
    [ "$size" -gt "$maxbytes" ] && continue
    [ -e "$dst/$(basename "$f")" ] && continue
    cp "$f" "$dst/"
    have=$((have + 1)) added=$((added + 1))
  done < <(find "$src" -type f -printf '%s %p\n' | sort -n)
  echo "   harvested $added new inputs into $dst ($have files)"
}

for dir in $dirs; do
  dir=${dir#./}
  pkg=$module/$dir
  for f in $(go test -list '^Fuzz' "./$dir" | grep -E '^Fuzz' | grep -E -- "$match" || true); do
    echo "== $pkg $f ($t)"
    go test -run='^$' -fuzz="^$f\$" -fuzztime="$t" "./$dir"
    if [ "$harvest" -gt 0 ]; then
      harvest "$pkg" "$dir" "$f"
    fi
  done
done
