# stack.sh: sourced (not run) by load.sh and bench-gateway.sh, which measure the stack of make run:
# it starts scripts/run.sh in the background, waits until it serves, and stops it again. The
# caller defines say and die and stays in the repository's root.

stack_pid=""

# stack_start LOG [NAME=VALUE ...]: scripts/run.sh with the given settings, in a process group of
# its own (setsid), its output in LOG. loadgen signs in hundreds of times a second from one
# address, far past the launch limits a school needs (README "Configuration"), so they are off
# for a measurement unless set.
stack_start() {
  local log="$1"
  shift
  LAUNCH_LIMIT_PER_CLIENT="${LAUNCH_LIMIT_PER_CLIENT:-0}" LAUNCH_LIMIT_PER_SCHOOL="${LAUNCH_LIMIT_PER_SCHOOL:-0}" \
    env "$@" setsid scripts/run.sh >"$log" 2>&1 </dev/null &
  stack_pid=$!
}

# stack_wait_ready APP LOG [CHECK ...]: waits up to 120 s until a launch for demo school 1001 at
# APP starts a sign-in (302: the server runs and stored the school) and the command CHECK, when
# given, succeeds. Otherwise it shows LOG's end and dies.
stack_wait_ready() {
  local app="$1" log="$2" code=""
  shift 2
  for _ in $(seq 1 240); do
    code="$(curl -s -o /dev/null -w '%{http_code}' "$app/launch?tenant_id=1001" || true)"
    if [ "$code" = "302" ] && { [ $# -eq 0 ] || "$@"; }; then
      return 0
    fi
    kill -0 "$stack_pid" 2>/dev/null || break
    sleep 0.5
  done
  printf '%s\n' "---- $log ----" >&2
  tail -n 60 "$log" >&2 || true
  if kill -0 "$stack_pid" 2>/dev/null; then
    die "a launch for school 1001 did not answer 302 within 120 s (last answer: ${code:-none})"
  fi
  die "run.sh exited before the stack was ready"
}

# stack_stop: TERM to run.sh's process group (run.sh, the simulator, the server and whatever else
# it started), KILL after 10 s.
stack_stop() {
  if [ -n "$stack_pid" ] && kill -0 "$stack_pid" 2>/dev/null; then
    say "stopping run.sh"
    kill -TERM -- "-$stack_pid" 2>/dev/null || true
    local i
    for i in $(seq 1 40); do
      kill -0 "$stack_pid" 2>/dev/null || break
      sleep 0.25
    done
    if kill -0 "$stack_pid" 2>/dev/null; then
      kill -KILL -- "-$stack_pid" 2>/dev/null || true
    fi
    wait "$stack_pid" 2>/dev/null || true
  fi
  stack_pid=""
}
