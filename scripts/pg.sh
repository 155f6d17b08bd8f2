#!/usr/bin/env bash
# pg.sh: a private PostgreSQL cluster for `make run` and `make test` when DATABASE_URL is unset.
#
#   scripts/pg.sh up      create (first time) and start the cluster; print the DATABASE_URL
#   scripts/pg.sh url     the same (use it to give bin/server a DATABASE_URL by hand)
#   scripts/pg.sh show    start if needed; print the URL with its password masked, for people
#   scripts/pg.sh stop    stop the cluster (data is kept)
#   scripts/pg.sh status  say whether it runs, where, and on which port
#   scripts/pg.sh destroy stop it and delete its data
#
# The cluster lives in .local/pg under the repo (git-ignored). PostgreSQL refuses to run as root,
# so when we are root it runs as the `postgres` user; that user must be able to traverse every
# parent directory of the data directory. A clone under a private home directory (/root is 0700)
# is not traversable, so we then fall back to a directory under /tmp keyed by the repo path.
# Everything the script prints on stdout is the URL; progress and errors go to stderr.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dbname="${PG_DBNAME:-partner}"

say() { printf 'pg: %s\n' "$*" >&2; }
die() { printf 'pg: error: %s\n' "$*" >&2; exit 1; }

find_bindir() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
    return 0
  fi
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
      echo "$d"
      return 0
    fi
  done
  return 1
}

ensure_binaries() {
  if bindir="$(find_bindir)"; then
    return 0
  fi
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "no PostgreSQL server binaries found; installing Debian's postgresql package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    bindir="$(find_bindir)" || die "postgresql installed but initdb/pg_ctl still not found"
    return 0
  fi
  die "PostgreSQL server binaries (initdb, pg_ctl) not found. Install them, e.g. 'sudo apt-get install postgresql' (Debian/Ubuntu), 'brew install postgresql@15' (macOS), or set DATABASE_URL to an existing server."
}

# as_pg runs a command as the cluster owner: ourselves, or `postgres` when we are root.
# It runs from /, because the postgres user may not be allowed into our working directory.
as_pg() {
  if [ "$(id -u)" -ne 0 ]; then
    "$@"
  elif command -v runuser >/dev/null 2>&1; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && su postgres -s /bin/sh -c "$(printf '%q ' "$@")")
  fi
}

choose_dir() {
  local local_dir="$repo/.local/pg"
  if [ -n "${PG_DATA_DIR:-}" ]; then
    datadir="$PG_DATA_DIR"
  elif [ "$(id -u)" -ne 0 ]; then
    datadir="$local_dir"
  else
    id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user to run PostgreSQL as (install Debian's postgresql package, or run as a normal user)"
    mkdir -p "$repo/.local"
    if [ -d "$local_dir" ] || runuser -u postgres -- test -x "$repo/.local" 2>/dev/null; then
      datadir="$local_dir"
    else
      local key
      key="$(printf '%s' "$repo" | sha256sum | cut -c1-12)"
      datadir="/tmp/untis-partner-pg-$key"
      fallback_note="the postgres user cannot reach $repo, so the cluster lives in $datadir"
    fi
  fi
  # State that must survive between calls lives beside the cluster, readable only by its owner
  # (and root): the port and the superuser password.
  statedir="$datadir.state"
}

port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

init_cluster() {
  mkdir -p "$datadir" "$statedir"
  chmod 700 "$datadir" "$statedir"
  local port=54329
  while ! port_free "$port"; do
    port=$((port + 1))
    [ "$port" -lt 54500 ] || die "no free port between 54329 and 54500"
  done
  echo "$port" >"$statedir/port"
  head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$statedir/password"
  local pwfile
  pwfile="$(mktemp)"
  cp "$statedir/password" "$pwfile"
  if [ "$(id -u)" -eq 0 ]; then
    chown -R postgres: "$datadir" "$pwfile"
  fi
  say "creating a private PostgreSQL cluster in $datadir (port $port)"
  [ -z "${fallback_note:-}" ] || say "$fallback_note"
  as_pg "$bindir/initdb" -D "$datadir" -U postgres --auth=scram-sha-256 --pwfile="$pwfile" \
    --encoding=UTF8 --locale=C.UTF-8 >"$statedir/initdb.log" 2>&1 \
    || { rm -f "$pwfile"; cat "$statedir/initdb.log" >&2; die "initdb failed"; }
  rm -f "$pwfile"
  # Loopback only, sockets inside the data directory (no need for /var/run/postgresql), enough
  # connections for parallel test packages. fsync stays on: the cluster is durable like a real one,
  # and the test helper turns synchronous_commit off per test database instead.
  cat >>"$datadir/postgresql.conf" <<EOF

# --- added by scripts/pg.sh ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$datadir'
max_connections = 300
shared_buffers = 128MB
log_min_messages = warning
log_min_duration_statement = -1
EOF
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$datadir/postgresql.conf"
  fi
}

running() {
  [ -f "$datadir/PG_VERSION" ] && as_pg "$bindir/pg_ctl" -D "$datadir" status >/dev/null 2>&1
}

start_cluster() {
  if running; then
    return 0
  fi
  local port
  port="$(cat "$statedir/port")"
  if ! port_free "$port"; then
    die "port $port (saved in $statedir/port) is taken by another program; stop it or run 'scripts/pg.sh destroy'"
  fi
  say "starting PostgreSQL on 127.0.0.1:$port"
  # The server must not inherit our lock (fd 9) or the caller's pipes: it outlives this script.
  as_pg "$bindir/pg_ctl" -D "$datadir" -l "$datadir/server.log" -w -t 60 start </dev/null >/dev/null 2>&1 9>&- \
    || { tail -n 20 "$datadir/server.log" >&2 || true; die "pg_ctl start failed (log: $datadir/server.log)"; }
}

url() {
  local port pw
  port="$(cat "$statedir/port")"
  pw="$(cat "$statedir/password")"
  printf 'postgres://postgres:%s@127.0.0.1:%s/%s?sslmode=disable\n' "$pw" "$port" "$dbname"
}

ensure_database() {
  local port
  port="$(cat "$statedir/port")"
  # psql is the client; use it through the socket as the cluster owner (trust is not configured,
  # so pass the password).
  local psql="$bindir/psql"
  [ -x "$psql" ] || psql="$(command -v psql || true)"
  [ -n "$psql" ] || die "psql not found next to initdb"
  if ! PGPASSWORD="$(cat "$statedir/password")" "$psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atqc \
    "SELECT 1 FROM pg_database WHERE datname = '$dbname'" | grep -q 1; then
    PGPASSWORD="$(cat "$statedir/password")" "$psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qc \
      "CREATE DATABASE \"$dbname\"" >&2
  fi
}

# lock makes callers take turns, before anything else happens (apt-get, initdb, pg_ctl): `make run`
# and `make test` may start together, and every test binary of a plain `go test ./...` calls us.
lock() {
  mkdir -p "$repo/.local"
  exec 9>"$repo/.local/pg.lock"
  flock 9
}

up() {
  ensure_binaries
  choose_dir
  if [ ! -f "$datadir/PG_VERSION" ]; then
    init_cluster
  fi
  start_cluster
  ensure_database
  url
}

cmd="${1:-up}"
fallback_note=""
lock
case "$cmd" in
  up | url) up ;;
  show)
    up | sed -E 's#//([^:@/]*):[^@]*@#//\1:***@#'
    say "scripts/pg.sh url prints it with the password, e.g. DATABASE_URL=\$(scripts/pg.sh url) bin/server migrate version"
    ;;
  stop)
    ensure_binaries
    choose_dir
    if running; then
      as_pg "$bindir/pg_ctl" -D "$datadir" -m fast -w stop >/dev/null
      say "stopped ($datadir)"
    else
      say "not running ($datadir)"
    fi
    ;;
  status)
    ensure_binaries
    choose_dir
    if running; then
      say "running in $datadir on 127.0.0.1:$(cat "$statedir/port")"
    else
      say "not running ($datadir)"
      exit 3
    fi
    [ -z "${fallback_note:-}" ] || say "$fallback_note"
    ;;
  destroy)
    ensure_binaries
    choose_dir
    if running; then
      as_pg "$bindir/pg_ctl" -D "$datadir" -m immediate -w stop >/dev/null || true
    fi
    rm -rf "$datadir" "$statedir"
    say "deleted $datadir"
    ;;
  *) die "usage: scripts/pg.sh up|url|show|stop|status|destroy" ;;
esac
