#!/usr/bin/env bash
# run.sh (make run): everything needed to click through the product on one machine:
#   1. PostgreSQL: DATABASE_URL, or the private cluster of scripts/pg.sh;
#   2. the Untis Platform simulator (cmd/platformsim) on SIM_PORT (8081);
#   3. the partner server (cmd/server) on SERVER_PORT (8080), configured against the simulator, in
#      embed mode unless EMBED_MODE=false (then the simulator's iFrame buttons explain why not), and
#      in gateway mode in front of the example partner app (cmd/exampleapp on EXAMPLE_PORT, default
#      SIM_PORT+1 = 8082), which shows who is signed in and verifies X-Untis-Identity against the
#      server's JWKS, lists the school's teachers through the platform API (INTERNAL_PORT) and
#      receives the school lifecycle events (EVENTS_URL, signed with EVENTS_SECRET).
#      UPSTREAM_URL=http://127.0.0.1:3000 make run puts the gateway in front of your own app
#      instead (with your GATEWAY_PUBLIC_PATHS); GATEWAY=off make run serves the server's built-in
#      app, without a gateway;
#   4. the two demo schools: cmd/demosync makes simulator and server agree on each one and says
#      truthfully where it stands (activated through the simulator's signed webhooks).
# Generated local secrets (encryption key, internal API token, events secret, simulator keys) and
# the simulator's state (each demo school's status and credentials) live in .local/ (git-ignored),
# so a second `make run` keeps the same keys and the same data. Ctrl-C stops the simulator and the server; PostgreSQL keeps running
# (`make db-stop` stops it).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

server_port="${SERVER_PORT:-8080}"
sim_port="${SIM_PORT:-8081}"
server_url="http://localhost:$server_port"
embed_mode="${EMBED_MODE:-true}"
sim_url="http://localhost:$sim_port"
# What the server is in front of: the example app (default), the app at UPSTREAM_URL, or nothing
# (GATEWAY=off: the built-in app).
example_port="${EXAMPLE_PORT:-$((sim_port + 1))}"
upstream=""
example_url=""
case "${GATEWAY:-on}" in
off | false | 0 | no) upstream="" ;;
on | true | 1 | yes)
  if [ -n "${UPSTREAM_URL:-}" ]; then
    upstream="$UPSTREAM_URL"
  else
    example_url="http://127.0.0.1:$example_port"
    upstream="$example_url"
  fi
  ;;
*) echo "run: error: GATEWAY=${GATEWAY} is neither on nor off" >&2; exit 1 ;;
esac
public_paths="${GATEWAY_PUBLIC_PATHS-}"
if [ -z "$upstream" ]; then
  public_paths=""
elif [ -n "$example_url" ] && [ -z "$public_paths" ]; then
  public_paths="/public/" # the example app's public page and its assets
fi
internal_port="${INTERNAL_PORT:-$((sim_port + 2))}" # the platform API for the partner's app (internal listener)
# Where the server POSTs the school lifecycle events: an EVENTS_URL given to make run, else the
# example app's receiver (straight to the app, not through the gateway), else nowhere (the server
# keeps them for EVENTS_RETRY_FOR, for a receiver configured later).
events_url="${EVENTS_URL:-}"
if [ -z "$events_url" ] && [ -n "$example_url" ]; then
  events_url="$example_url/untis/events"
fi
local_dir="$repo/.local"
mkdir -p "$local_dir" "$repo/bin"

if [ -t 2 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold="" plain=""; fi
say() { printf '%srun:%s %s\n' "$bold" "$plain" "$*" >&2; }
die() { printf 'run: error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "Go is not installed (https://go.dev/dl/); it is the only thing to install by hand"
if ! command -v curl >/dev/null; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    say "installing curl"
    apt-get update -qq && apt-get install -y -qq curl >/dev/null
  else
    die "curl is needed: install it (e.g. sudo apt-get install curl)"
  fi
fi
ports=("$server_port" "$sim_port" "$internal_port")
[ -n "$example_url" ] && ports+=("$example_port")
for port in "${ports[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is already in use (another make run?); stop it, or choose other ports: SERVER_PORT=9080 SIM_PORT=9081 EXAMPLE_PORT=9082 INTERNAL_PORT=9083 make run"
  fi
done

# 1. The database.
if [ -z "${DATABASE_URL:-}" ]; then
  DATABASE_URL="$(scripts/pg.sh up)"
fi
export DATABASE_URL

# 2. Local secrets, generated once.
env_file="$local_dir/env"
if [ ! -f "$env_file" ]; then
  say "generating local secrets in $env_file"
  umask 077
  printf 'ENCRYPTION_KEYS=local1:%s\n' "$(head -c 32 /dev/urandom | base64)" >"$env_file"
fi
# The internal API's bearer token (the partner app's key to the platform API), also added to an
# env file from before it existed.
if ! grep -q '^INTERNAL_API_TOKEN=' "$env_file"; then
  (umask 077 && printf 'INTERNAL_API_TOKEN=%s\n' "$(head -c 32 /dev/urandom | base64 | tr -d '\n')" >>"$env_file")
fi
# The Standard Webhooks secret the server signs the school lifecycle events with, and the example
# app verifies them with (also added to an env file from before it existed).
if ! grep -q '^EVENTS_SECRET=' "$env_file"; then
  (umask 077 && printf 'EVENTS_SECRET=whsec_%s\n' "$(head -c 32 /dev/urandom | base64 | tr -d '\n')" >>"$env_file")
fi
# shellcheck disable=SC1090
set -a; . "$env_file"; set +a

say "building"
"${MAKE:-make}" --no-print-directory -s build

webhook_key="$local_dir/sim-webhook-key.pem"
signing_key="$local_dir/sim-signing-key.pem"
UNTIS_WEBHOOK_KEYS="$(bin/platformsim webhook-public-key -webhook-key-file "$webhook_key")"
export UNTIS_WEBHOOK_KEYS
# What scripts/server.sh gives bin/server's commands (check-tenant, events, operator, ...), so they
# work on this run's schools: its simulator, addresses and webhook key (public; the secrets stay
# in .local/env).
cat >"$local_dir/run.env" <<RUNENV
# written by scripts/run.sh at its last start; read by scripts/server.sh
PUBLIC_URL=$server_url
UNTIS_API_URL=$sim_url
EVENTS_URL=$events_url
UNTIS_WEBHOOK_KEYS=$UNTIS_WEBHOOK_KEYS
RUNENV

pids=()
cleanup() {
  trap - INT TERM EXIT
  local alive=() pid
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null && alive+=("$pid")
  done
  if [ "${#alive[@]}" -gt 0 ]; then
    kill -TERM "${alive[@]}" 2>/dev/null || true
    wait "${alive[@]}" 2>/dev/null || true
  fi
  if [ "${#pids[@]}" -gt 0 ]; then
    say "stopped the server, the simulator${example_url:+ and the example app} (PostgreSQL keeps running; make db-stop stops it)"
  fi
  pids=()
}
stopping=""
trap 'stopping=1; cleanup; exit 0' INT TERM
trap cleanup EXIT

# 3. The simulator, the example app, then the server.
bin/platformsim -addr "127.0.0.1:$sim_port" -base-url "$sim_url" -partner-url "$server_url" \
  -webhook-key-file "$webhook_key" -signing-key-file "$signing_key" -state-file "$local_dir/sim-state.json" &
pids+=($!)

if [ -n "$example_url" ]; then
  # It expects the server's defaults: iss and aud PUBLIC_URL, keys at PUBLIC_URL/.well-known/jwks.json.
  # An IDENTITY_JWT_AUDIENCE given to make run goes to both. It reads the school's teachers from the
  # platform API with INTERNAL_API_TOKEN and verifies the events with EVENTS_SECRET, both from the
  # environment (.local/env, exported above): a secret in a flag would show in ps.
  bin/exampleapp -addr "127.0.0.1:$example_port" -issuer "$server_url" -audience "${IDENTITY_JWT_AUDIENCE:-$server_url}" \
    -api-url "http://127.0.0.1:$internal_port" &
  pids+=($!)
fi

INTERNAL_LISTEN_ADDR="127.0.0.1:$internal_port" EVENTS_URL="$events_url" \
PUBLIC_URL="$server_url" UNTIS_API_URL="$sim_url" LISTEN_ADDR="127.0.0.1:$server_port" EMBED_MODE="$embed_mode" \
  UPSTREAM_URL="$upstream" GATEWAY_PUBLIC_PATHS="$public_paths" \
  LOG_FORMAT="${LOG_FORMAT:-text}" SHUTDOWN_DELAY="${SHUTDOWN_DELAY:-0s}" bin/server serve &
pids+=($!)

wait_for() { # url what
  local i
  for i in $(seq 1 120); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null || die "$2 exited during start-up (see its log above)"
    done
    sleep 0.5
  done
  die "$2 did not become ready at $1 within 60 s"
}
wait_for "$sim_url/sim/api/tenants" "the simulator"
[ -n "$example_url" ] && wait_for "$example_url/healthz" "the example app"
wait_for "$server_url/readyz" "the server"

# 4. The demo schools. Simulator and server must agree on each one (is the app activated, with
# which credentials), however the last run ended: a reset or reactivation on the simulator page, a
# deactivation, a wiped database, a mistyped manual entry. cmd/demosync compares both sides (the
# credentials in constant time, never printed; then a token from the platform) and repairs a
# difference the way the platform would, with the simulator's signed webhooks. It says where each
# school stands, and fails when sign-in to one would fail without anyone having chosen it.
sync_report="$local_dir/demosync.txt"
if UNTIS_API_URL="$sim_url" bin/demosync -sim "$sim_url" -tenants 1001,1002 >"$sync_report"; then
  schools_ok=1
else
  schools_ok=""
fi
# 5. A console account for the operator's side (/admin). The password is a local demo value,
# printed below; a real deployment creates its operators with `server operator add`.
demo_operator="operator@example.com"
demo_operator_password="demo-console-password"
printf '%s\n' "$demo_operator_password" | bin/server operator add "$demo_operator" >/dev/null ||
  die "the demo console account could not be created (see above)"

db_shown="$(printf '%s' "$DATABASE_URL" | sed -E 's#//([^:@/]*):[^@]*@#//\1:***@#; s#\?.*##')"
if [ -n "$schools_ok" ]; then
  headline="Ready."
else
  headline="Started, but sign-in to a demo school will fail: see NOT READY above."
fi
case "$embed_mode" in
true | 1 | TRUE | True) mode_line="entry points open in an iFrame or a new tab (EMBED_MODE=true; EMBED_MODE=false make run: new tab only)" ;;
*) mode_line="entry points open in a new tab only (EMBED_MODE=$embed_mode; the simulator's iFrame buttons say why)" ;;
esac
if [ -n "$example_url" ]; then
  app_line="
    Example partner app:      $example_url    (cmd/exampleapp, the upstream; open it through $server_url/ after a launch)"
  gateway_line="gateway in front of the example app: every path but the server's own goes to it (GATEWAY=off make run: the built-in app)"
elif [ -n "$upstream" ]; then
  app_line="
    Your app (upstream):      $upstream"
  gateway_line="gateway in front of UPSTREAM_URL=$upstream (public paths: ${public_paths:-none})"
else
  app_line=""
  gateway_line="the built-in app (GATEWAY=off; make run: the gateway in front of the example app)"
fi
if [ -n "$example_url" ] && [ "$events_url" = "$example_url/untis/events" ]; then
  events_line="POSTed to $events_url, signed with EVENTS_SECRET of .local/env (the example app shows them at /events)"
elif [ -n "$events_url" ]; then
  events_line="POSTed to $events_url (EVENTS_URL), signed with EVENTS_SECRET of .local/env"
else
  events_line="not sent (no EVENTS_URL): kept for a receiver configured later"
fi
cat >&2 <<READY

  $headline
    Untis Platform simulator: $sim_url    <- start here: pick a school and a user, click an entry point
    Partner server:           $server_url    (health: $server_url/readyz, metrics: $server_url/metrics)$app_line
    Operator console:         $server_url/admin    (local demo account: $demo_operator / $demo_operator_password)
    Manual activation:        $server_url/activate    (onboarding without a webhook)
    Platform API (your app):  http://127.0.0.1:$internal_port/v1/schools    (Authorization: Bearer \$(grep ^INTERNAL_API_TOKEN= .local/env | cut -d= -f2-))
    Lifecycle events:         $events_line
    Database:                 $db_shown
    Server commands:          scripts/server.sh check-tenant 1001    (bin/server with this run's database, keys and simulator)
    Mode:                     $mode_line
    App:                      $gateway_line
  Demo schools:
$(sed 's/^/    /' "$sync_report")
  Press Ctrl-C to stop.

READY
# Ctrl-C reaches the whole process group: the server, the simulator and the example app stop on
# their own (exit 0) and wait returns before our trap runs; that is a normal stop, not a crash.
if wait -n "${pids[@]}" && [ -z "$stopping" ]; then
  cleanup
  exit 0
fi
[ -n "$stopping" ] && exit 0
die "a process exited unexpectedly (see its log above); stopping"
