#!/usr/bin/env bash
# Throwaway PostgreSQL on 127.0.0.1 for the distributed-tuning test (tests/compress/test_tune_postgres.py).
#
#   bash .ci/postgres.sh          # install (Debian, as root) if needed, init + start, create db and user
#   eval "$(bash .ci/postgres.sh)"  # ... and export ATALAIA_PG_URL in this shell (also written to .ci/pg_url)
#   bash .ci/postgres.sh stop     # stop the server (the data folder is kept; start again re-uses it)
#
# Idempotent: a running cluster is re-used. The cluster lives in $ATALAIA_PG_DIR (default /tmp/atalaia-pg),
# owned by the `postgres` system user; it listens on 127.0.0.1 only, on $ATALAIA_PG_PORT (default 55432, or the
# next free port). Progress goes to stderr; the only stdout line is the `export ATALAIA_PG_URL=...` line.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PGDIR=${ATALAIA_PG_DIR:-/tmp/atalaia-pg}
DATA=$PGDIR/data
DB=atalaia_test
DBUSER=atalaia
DBPASS=${ATALAIA_PG_PASSWORD:-atalaia-test-pw}
log() { echo "[postgres.sh] $*" >&2; }

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
BIN=$(find_bin)
if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ] || [ ! -x "$BIN/pg_ctl" ]; then
  if [ "$(id -u)" != 0 ]; then log "PostgreSQL server binaries not found and not root: install 'postgresql'"; exit 1; fi
  log "installing Debian postgresql"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  BIN=$(find_bin)
fi
run_pg() { if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi; }

if [ "${1:-start}" = stop ]; then
  if [ -f "$DATA/PG_VERSION" ] && run_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    run_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >&2
  fi
  exit 0
fi

id postgres >/dev/null 2>&1 || useradd --system --home-dir "$PGDIR" --shell /usr/sbin/nologin postgres
mkdir -p "$PGDIR"
chown postgres: "$PGDIR"
chmod 700 "$PGDIR"

if [ ! -f "$DATA/PG_VERSION" ]; then
  log "initdb $DATA"
  run_pg "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 >/dev/null
fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if run_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  PORT=$(cat "$PGDIR/port")
  log "already running on 127.0.0.1:$PORT"
else
  rm -f "$DATA/postmaster.pid"  # stale after a SIGKILL / reboot (pg_ctl status said: not running)
  PORT=${ATALAIA_PG_PORT:-55432}
  for _ in $(seq 1 50); do port_free "$PORT" && break; PORT=$((PORT + 1)); done
  echo "$PORT" > "$PGDIR/port"
  log "starting on 127.0.0.1:$PORT"
  run_pg "$BIN/pg_ctl" -D "$DATA" -l "$PGDIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $PGDIR -c max_connections=200" start >&2
fi

psql_su() { run_pg "$BIN/psql" -h "$PGDIR" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
if [ "$(psql_su -c "SELECT 1 FROM pg_roles WHERE rolname='$DBUSER'")" != 1 ]; then
  psql_su -c "CREATE ROLE $DBUSER LOGIN PASSWORD '$DBPASS'" >&2
else
  psql_su -c "ALTER ROLE $DBUSER PASSWORD '$DBPASS'" >&2
fi
if [ "$(psql_su -c "SELECT 1 FROM pg_database WHERE datname='$DB'")" != 1 ]; then
  psql_su -c "CREATE DATABASE $DB OWNER $DBUSER" >&2
fi

# the Python driver the URL names (pinned in pyproject's dev extra); install it into the repo venv if missing
PY="$HERE/../.venv/bin/python"
if [ -x "$PY" ] && ! "$PY" -c "import psycopg2" 2>/dev/null; then
  log "installing psycopg2-binary into .venv"
  "$PY" -m pip install -q "psycopg2-binary==2.9.13" >&2
fi

URL="postgresql+psycopg2://$DBUSER:$DBPASS@127.0.0.1:$PORT/$DB"
echo "$URL" > "$HERE/pg_url"
log "ready: $DB on 127.0.0.1:$PORT (URL also in .ci/pg_url)"
echo "export ATALAIA_PG_URL=$URL"
