# lib.sh - sourced by the shell ops tests (log_reopen.sh, log_rotate.sh,
# prom_check.sh): a temp dir removed at exit with the server started in it,
# fail(), and ops_start CONF: `aisbxd init` (output in $tmp/init) and an
# aisbxd on 127.0.0.1 with a free port; sets $pid, $port and $base.
# Needs $bin (the aisbxd binary) and $ops_name (the temp dir prefix).
command -v curl >/dev/null || { echo "curl not installed" >&2; exit 77; }
tmp=$(mktemp -d "/tmp/${ops_name}_XXXXXX")
# started as root, aisbxd runs as run_as_user (nobody here): it must reach
# its data dir below $tmp and create the log files in $tmp (reopen after a
# rotation; docs/security.md "Server confinement")
[ "$(id -u)" != 0 ] || chown nobody "$tmp"
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

ops_start() {
  "$bin" init --data-dir "$tmp/dd" --tenant acme >"$tmp/init" || fail init
  "$bin" --data-dir "$tmp/dd" --config "$1" --listen 127.0.0.1:0 \
    --workers 0 >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  i=0
  while [ ! -s "$tmp/dd/aisbxd.port" ]; do
    i=$((i + 1))
    [ $i -lt 100 ] || fail "server did not start: $(cat "$tmp/err")"
    sleep 0.1
  done
  port=$(cat "$tmp/dd/aisbxd.port")
  base=https://127.0.0.1:$port
}
