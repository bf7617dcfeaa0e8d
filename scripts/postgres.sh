#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for tests and benchmarks: NEVER for data you keep
# (trust authentication on loopback; with --fast also fsync off).
#
#   scripts/postgres.sh start [--fast]   initdb if needed, start if not running; prints the DSN
#   scripts/postgres.sh dsn              prints the DSN
#   scripts/postgres.sh stop             stops the cluster (keeps its directory)
#   scripts/postgres.sh destroy          stops it and removes its directory
#
# Idempotent: `start` on a running cluster only prints its DSN. Settings come from the
# environment: KURASTORE_PGTEST_DIR (default ${KURASTORE_CACHE:-~/.cache/kurastore}/pgtest,
# or /tmp/kurastore-pgtest-$UID as root, because the postgres user cannot enter /root)
# and KURASTORE_PGTEST_PORT (default 55432, or a free port when that one is taken).
# As root, the server runs as the `postgres` OS user (initdb refuses root) and the
# directory belongs to it.
# --fast (tests): fsync, synchronous_commit and full_page_writes off; a crash of the
# machine loses the cluster, which tests recreate anyway.
set -euo pipefail

cmd="${1:-start}"
fast=0
[ "${2:-}" = "--fast" ] && fast=1
cache="${KURASTORE_CACHE:-$HOME/.cache/kurastore}"
if [ "$(id -u)" = 0 ]; then
    dir="${KURASTORE_PGTEST_DIR:-/tmp/kurastore-pgtest-0}"
    run=(runuser -u postgres --)
else
    dir="${KURASTORE_PGTEST_DIR:-$cache/pgtest}"
    run=()
fi
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
if [ -z "$bin" ]; then
    echo "kurastore: PostgreSQL is not installed (run scripts/system-deps.sh)" >&2
    exit 1
fi
pgdata="$dir/data"
# The port: as asked, else the one this cluster used last, else 55432; one that is
# taken (55432 is inside Linux's ephemeral range) is replaced by a free one.
port="${KURASTORE_PGTEST_PORT:-$(cat "$dir/port" 2>/dev/null || echo 55432)}"
dsn() { echo "postgresql://postgres@127.0.0.1:$port/postgres"; }
bindable() {
    python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' \
        "$1" 2>/dev/null
}

running() {
    [ -f "$pgdata/postmaster.pid" ] && "${run[@]}" "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1
}

case "$cmd" in
start)
    if ! [ -f "$pgdata/PG_VERSION" ]; then
        mkdir -p "$dir"
        [ "${#run[@]}" -gt 0 ] && chown postgres: "$dir"
        "${run[@]}" "$bin/initdb" -D "$pgdata" -U postgres --auth=trust --no-sync \
            -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    if ! running; then
        if [ -z "${KURASTORE_PGTEST_PORT:-}" ] && ! bindable "$port"; then
            port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
        fi
        echo "$port" >"$dir/port"
        opts="-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300"
        opts="$opts -c shared_buffers=256MB -c log_min_messages=warning"
        # Room for bursts of commits and bulk loads between checkpoints; index builds.
        opts="$opts -c wal_buffers=16MB -c max_wal_size=4GB -c checkpoint_timeout=15min"
        opts="$opts -c maintenance_work_mem=256MB"
        if [ "$fast" = 1 ]; then
            opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        fi
        "${run[@]}" "$bin/pg_ctl" -D "$pgdata" -l "$dir/server.log" -w -t 60 \
            -o "$opts" start >/dev/null \
            || { tail -n 20 "$dir/server.log" >&2; exit 1; }
    fi
    dsn
    ;;
dsn)
    dsn
    ;;
stop)
    if running; then "${run[@]}" "$bin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null; fi
    ;;
destroy)
    if running; then "${run[@]}" "$bin/pg_ctl" -D "$pgdata" -m immediate -w stop >/dev/null; fi
    rm -rf "$dir"
    ;;
*)
    echo "usage: $0 start [--fast] | dsn | stop | destroy" >&2
    exit 2
    ;;
esac
