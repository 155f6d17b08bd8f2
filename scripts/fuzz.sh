#!/usr/bin/env bash
# fuzz.sh TIME: run every fuzz target of the module for TIME each, one after the other.
# Inputs that fail are written to the package's testdata/fuzz/ (commit them: `go test` replays them);
# the rest of the corpus stays in the Go build cache.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fuzztime="${1:-20s}"
found=0
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    found=1
    echo "fuzz: $pkg $target ($fuzztime)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
  done
done
[ "$found" = 1 ] || { echo "fuzz: no fuzz targets found" >&2; exit 1; }
