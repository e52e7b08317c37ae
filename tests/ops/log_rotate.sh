#!/bin/sh
# log_rotate.sh AISBXD - size-based rotation of log_file (log_max_bytes,
# log_keep): with a 4000-byte cap and 2 kept files, 120 requests leave
# aisbxd.log, .1 and .2 (no .3), each at most the cap plus one line, every
# line one whole JSON object, and the newest request in aisbxd.log.
set -eu
bin=$1
ops_name=ops_logrot
. "$(dirname "$0")/lib.sh"
printf 'log_file = %s/aisbxd.log\nlog_max_bytes = 4000\nlog_keep = 2\n' \
  "$tmp" >"$tmp/conf"
ops_start "$tmp/conf"
n=0
while [ $n -lt 120 ]; do
  curl -sk "$base/healthz" >/dev/null
  n=$((n + 1))
done
curl -sk "$base/readyz" >/dev/null
sleep 0.3
for f in aisbxd.log aisbxd.log.1 aisbxd.log.2; do
  [ -f "$tmp/$f" ] || fail "$f missing: $(ls "$tmp")"
  sz=$(stat -c %s "$tmp/$f")
  [ "$sz" -le 5000 ] || fail "$f has $sz bytes (cap 4000 + one line)"
done
[ ! -e "$tmp/aisbxd.log.3" ] || fail "more than log_keep old files"
[ "$(stat -c %a "$tmp/aisbxd.log")" = 600 ] || fail "log file mode"
grep -q '"route":"/readyz"' "$tmp/aisbxd.log" || fail "newest line not in aisbxd.log"
python3 -c '
import json, sys
n = 0
for p in sys.argv[1:]:
    for l in open(p):
        json.loads(l)
        n += 1
assert n >= 20, n
' "$tmp/aisbxd.log" "$tmp/aisbxd.log.1" "$tmp/aisbxd.log.2" ||
  fail "a line is not JSON"
kill -0 "$pid" || fail "rotation stopped the server"
echo "ok: log_file rotated by size"
