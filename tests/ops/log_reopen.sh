#!/bin/sh
# log_reopen.sh AISBXD - structured logs to log_file survive logrotate:
# after the file is moved away and aisbxd gets SIGHUP, new lines go to a
# new file at the old path (mode 0600) and the moved file keeps the old
# ones; every line is one JSON object (python3 json parses each).
set -eu
bin=$1
command -v curl >/dev/null || { echo "curl not installed" >&2; exit 77; }
tmp=$(mktemp -d /tmp/ops_log_XXXXXX)
# started as root, aisbxd runs as run_as_user, who must own the log dir to
# create the new file after the rotation (docs/security.md)
[ "$(id -u)" != 0 ] || chown nobody "$tmp"
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
"$bin" init --data-dir "$tmp/dd" --tenant acme >/dev/null || fail init
printf 'log_file = %s/aisbxd.log\nrun_as_user = nobody\n' "$tmp" >"$tmp/conf"
"$bin" --data-dir "$tmp/dd" --config "$tmp/conf" --listen 127.0.0.1:0 \
  --workers 0 >/dev/null 2>"$tmp/err" &
pid=$!
i=0
while [ ! -s "$tmp/dd/aisbxd.port" ]; do
  i=$((i + 1))
  [ $i -lt 100 ] || fail "server did not start: $(cat "$tmp/err")"
  sleep 0.1
done
base=https://127.0.0.1:$(cat "$tmp/dd/aisbxd.port")
curl -sk "$base/healthz" >/dev/null
sleep 0.2
grep -q '"route":"/healthz"' "$tmp/aisbxd.log" || fail "no request line"
mv "$tmp/aisbxd.log" "$tmp/aisbxd.log.1"
kill -HUP "$pid"
sleep 0.3
curl -sk "$base/readyz" >/dev/null
sleep 0.2
[ -f "$tmp/aisbxd.log" ] || fail "no new log file after SIGHUP"
[ "$(stat -c %a "$tmp/aisbxd.log")" = 600 ] || fail "log file mode"
grep -q '"route":"/readyz"' "$tmp/aisbxd.log" || fail "new line not in new file"
! grep -q '"route":"/readyz"' "$tmp/aisbxd.log.1" || fail "new line in old file"
grep -q '"route":"/healthz"' "$tmp/aisbxd.log.1" || fail "old line lost"
kill -0 "$pid" || fail "SIGHUP stopped the server"
python3 -c '
import json, sys
for p in sys.argv[1:]:
    for l in open(p):
        json.loads(l)
' "$tmp/aisbxd.log" "$tmp/aisbxd.log.1" || fail "a line is not JSON"
echo "ok: log_file reopened on SIGHUP"
