#!/usr/bin/env bash
# load.sh: measure the whole stack on this machine against the design's targets (design.md §6:
# >= 550 logins/s at 8 concurrent; >= 9,000 /api/me per second at 16 concurrent, p99 <= 10 ms).
#
#   scripts/load.sh            20 s of logins at 8 concurrent, then 20 s of /api/me at 16
#   LOAD_DURATION=5s scripts/load.sh
#
# It starts scripts/run.sh (the durable PostgreSQL of scripts/pg.sh, the simulator and the server
# with the demo schools 1001 and 1002) on SERVER_PORT (9180) and SIM_PORT (9181), waits until a
# launch for school 1001 answers 302, runs cmd/loadgen, then stops run.sh. run.sh's output goes
# to .local/load-run.log; loadgen's results go to stdout and .local/load-results.txt.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

server_port="${SERVER_PORT:-9180}"
sim_port="${SIM_PORT:-9181}"
duration="${LOAD_DURATION:-20s}"
app="http://localhost:$server_port"
sim="http://localhost:$sim_port"
local_dir="$repo/.local"
mkdir -p "$local_dir"
log="$local_dir/load-run.log"
results="$local_dir/load-results.txt"

say() { printf 'load: %s\n' "$*" >&2; }
die() { printf 'load: error: %s\n' "$*" >&2; exit 1; }

command -v curl >/dev/null || die "curl is needed"
command -v setsid >/dev/null || die "setsid (util-linux) is needed"

# shellcheck source=scripts/stack.sh
. scripts/stack.sh
stop_stack() {
  trap - INT TERM EXIT
  stack_stop
}
trap 'stop_stack; exit 130' INT TERM
trap stop_stack EXIT

say "building cmd/loadgen"
loadgen="$local_dir/loadgen"
go build -o "$loadgen" ./cmd/loadgen

say "starting scripts/run.sh on ports $server_port and $sim_port (log: $log)"
stack_start "$log" GATEWAY=off SERVER_PORT="$server_port" SIM_PORT="$sim_port"
stack_wait_ready "$app" "$log"
say "stack ready; load for $duration per mode (the machine's other work skews the numbers)"

printf '# %s  %s  ncpu=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  "$(git describe --always --dirty 2>/dev/null || echo dev)" "$(nproc 2>/dev/null || echo '?')" | tee "$results"
run_loadgen() {
  "$loadgen" -app "$app" -sim "$sim" "$@" 2>&1 | tee -a "$results"
  return "${PIPESTATUS[0]}"
}
status=0
run_loadgen -mode logins -c 8 -d "$duration" || status=$?
run_loadgen -mode me -c 16 -d "$duration" || status=$?
stop_stack
say "results in $results"
exit "$status"
