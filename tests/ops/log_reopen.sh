#!/bin/sh
# log_reopen.sh AISBXD - structured logs to log_file survive logrotate:
# after the file is moved away and aisbxd gets SIGHUP, new lines go to a
# new file at the old path (mode 0600) and the moved file keeps the old
# ones; every line is one JSON object (python3 json parses each).
set -eu
bin=$1
ops_name=ops_log
. "$(dirname "$0")/lib.sh"
printf 'log_file = %s/aisbxd.log\n' "$tmp" >"$tmp/conf"
ops_start "$tmp/conf"
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
