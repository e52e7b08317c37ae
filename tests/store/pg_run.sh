#!/bin/bash
# pg_run.sh CMD [ARGS...] - runs CMD against a throwaway PostgreSQL 15
# cluster: initdb into a temp dir, unix socket in that dir (no TCP), a random
# port number (it names the socket), fsync off. Exports SBX_TEST_PG (libpq
# conninfo) and SBX_TEST_PGDATA, and always stops the server and removes the
# dir, even when CMD fails or the script is interrupted.
# Runs initdb/postgres as the "postgres" user when started as root.
set -euo pipefail
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
if [ ! -x "$PGBIN/initdb" ]; then
  echo "pg_run.sh: PostgreSQL 15 not found in $PGBIN (apt-get install postgresql-15)" >&2
  exit 1
fi
D=$(mktemp -d /tmp/sbx_pg.XXXXXX)
PORT=$((20000 + RANDOM % 40000))
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
cleanup() {
  as_pg "$PGBIN/pg_ctl" -D "$D/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$D"
}
trap cleanup EXIT INT TERM
chmod 700 "$D"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$D"
as_pg "$PGBIN/initdb" -D "$D/data" -U postgres -A trust -E UTF8 --no-locale \
  --no-sync >"$D/initdb.log" 2>&1 || { cat "$D/initdb.log" >&2; exit 1; }
as_pg "$PGBIN/pg_ctl" -D "$D/data" -l "$D/log" -w -t 30 -o \
  "-k $D -p $PORT -c listen_addresses= -c fsync=off -c full_page_writes=off" \
  start >/dev/null || { cat "$D/log" >&2; exit 1; }
export SBX_TEST_PG="host=$D port=$PORT user=postgres dbname=postgres"
export SBX_TEST_PGDATA="$D/data"
set +e
"$@"
rc=$?
set -e
[ $rc = 0 ] || tail -20 "$D/log" >&2
exit $rc
