#!/usr/bin/env bash
# server.sh: bin/server's commands against what `make run` runs: its database (DATABASE_URL, or
# the private cluster of scripts/pg.sh), its keys (.local/env) and its simulator and addresses
# (.local/run.env, written by make run at each start). Without them a command stops at the first
# variable it lacks, or asks the real platform about a demo school.
#
#   scripts/server.sh check-tenant 1001
#   scripts/server.sh events list --all
#   scripts/server.sh operator unlock operator@example.com
#   scripts/server.sh rotate-identity-key
#
# A variable already set in the environment wins over the files.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

die() { printf 'server.sh: error: %s\n' "$*" >&2; exit 1; }

for f in .local/env .local/run.env; do
  [ -f "$f" ] || die "$f is missing: start 'make run' once (it writes the local keys and settings), then run this again"
done
# Each NAME=value line of the files, unless NAME is set already; '#' lines are comments.
# (The line is split by hand: read with IFS='=' would drop a value's trailing '=', base64's padding.)
while IFS= read -r line; do
  case "$line" in '' | '#'*) continue ;; esac
  name="${line%%=*}"
  if [ -z "${!name+set}" ]; then
    export "$name=${line#*=}"
  fi
done < <(cat .local/env .local/run.env)
if [ -z "${DATABASE_URL:-}" ]; then
  DATABASE_URL="$(scripts/pg.sh url)"
  export DATABASE_URL
fi
[ -x bin/server ] || "${MAKE:-make}" --no-print-directory -s build >&2
exec bin/server "$@"
