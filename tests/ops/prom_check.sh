#!/bin/sh
# prom_check.sh AISBXD SRCDIR - the alert rules, their unit tests, /metrics
# and the Grafana dashboard, checked against a real aisbxd (issue 14 item 3):
#  1. promtool check rules + promtool test rules (deploy/prometheus)
#  2. a server started here answers /metrics (operator token) after some
#     traffic; `promtool check metrics` finds nothing to complain about
#  3. every aisbxd_* name used by alerts.yml and deploy/grafana/*.json is a
#     name that /metrics exports (histograms: _bucket, _sum, _count), and
#     the name check itself rejects an unknown name
# Exit 77 when promtool is missing (a failure unless ADV_ALLOW_SKIP=1).
set -eu
bin=$1
src=$2
command -v promtool >/dev/null || { echo "promtool not installed (Debian package prometheus, tools/apt.d/ops.txt)" >&2; exit 77; }
command -v curl >/dev/null || { echo "curl not installed" >&2; exit 77; }
tmp=$(mktemp -d /tmp/ops_prom_XXXXXX)
chmod 711 "$tmp" # aisbxd started as root runs as nobody (docs/security.md)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# 1. the rules
promtool check rules "$src/deploy/prometheus/alerts.yml" || fail "check rules"
(cd "$src/deploy/prometheus" && promtool test rules alerts_test.yml) || fail "test rules"

# 2. a server, some traffic, its /metrics
"$bin" init --data-dir "$tmp/dd" --tenant acme >"$tmp/init" || fail "init"
key=$(sed -n 's/^admin-api-key: //p' "$tmp/init")
head -c 48 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/tok"
chmod 600 "$tmp/tok"
printf 'metrics_token_file = %s\n' "$tmp/tok" >"$tmp/conf"
"$bin" --data-dir "$tmp/dd" --config "$tmp/conf" --listen 127.0.0.1:0 \
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
curl -sk "$base/healthz" >/dev/null
curl -sk "$base/api/v1/projects" >/dev/null # 401
curl -sk -X POST -H 'Content-Type: application/json' \
  -d '{"grant_type":"password","tenant":"acme","email":"nobody@example.org","password":"wrong-password-1"}' \
  "$base/api/v1/auth/token" >/dev/null
# a job that no worker takes (the server runs none): the queue gauges
api() { # METHOD PATH [curl args]: the response body
  m=$1 p=$2
  shift 2
  curl -sfk -X "$m" -H "Authorization: Bearer $key" "$@" "$base$p"
}
api POST /api/v1/projects -H 'Content-Type: application/json' \
  -d '{"id":"p1","name":"P1"}' >/dev/null || fail "project"
mid=$(api POST '/api/v1/projects/p1/models?name=m' \
  -H 'Content-Type: application/octet-stream' --data-binary 'model bytes' |
  sed 's/.*"id":"\([^"]*\)".*/\1/') || fail "model"
did=$(api POST '/api/v1/projects/p1/datasets?name=d' \
  -H 'Content-Type: application/octet-stream' --data-binary 'data bytes' |
  sed 's/.*"id":"\([^"]*\)".*/\1/') || fail "dataset"
api POST /api/v1/projects/p1/jobs -H 'Content-Type: application/json' \
  -d "{\"attack\":\"fgsm\",\"model_id\":\"$mid\",\"dataset_id\":\"$did\"}" \
  >/dev/null || fail "job"
sleep 1.1 # the oldest queued job is at least a second old
curl -sfk -H "Authorization: Bearer $(cat "$tmp/tok")" "$base/metrics" \
  >"$tmp/metrics" || fail "GET /metrics"
grep -q '^aisbxd_login_failures_total 1$' "$tmp/metrics" ||
  fail "the refused login is not counted"
grep -q '^aisbxd_jobs_queued 1$' "$tmp/metrics" || fail "queued job not counted"
age=$(sed -n 's/^aisbxd_job_queue_oldest_age_seconds //p' "$tmp/metrics")
[ "$age" -ge 1 ] && [ "$age" -lt 60 ] || fail "oldest queued age $age"
grep -q '^aisbxd_job_shards_running 0$' "$tmp/metrics" || fail "running shards"
lint=$(promtool check metrics <"$tmp/metrics" 2>&1) || fail "check metrics: $lint"
[ -z "$lint" ] || fail "check metrics: $lint"

# 3. names used by the rules and the dashboard must be exported
awk '/^# TYPE /{ n=$3; t=$4; print n;
  if (t == "histogram") { print n "_bucket"; print n "_sum"; print n "_count" } }
  /^[a-z]/{ sub(/[{ ].*/, ""); print }' "$tmp/metrics" | sort -u >"$tmp/exported"
check_names() { # FILE...: prints the unknown aisbxd_* names
  grep -oh 'aisbxd_[a-z0-9_]*' "$@" | sort -u | comm -23 - "$tmp/exported"
}
for need in aisbxd_login_failures_total aisbxd_security_events_total \
  aisbxd_sandbox_violations_total aisbxd_job_queue_oldest_age_seconds \
  aisbxd_job_shards_lease_expired aisbxd_tls_cert_expiry_timestamp_seconds \
  aisbxd_jwt_signing_key_age_seconds aisbxd_requests_total; do
  grep -qx "$need" "$tmp/exported" || fail "$need not exported"
done
bad=$(check_names "$src/deploy/prometheus/alerts.yml" "$src"/deploy/grafana/*.json)
[ -z "$bad" ] || fail "used but not exported: $bad"
n=$(grep -oh 'aisbxd_[a-z0-9_]*' "$src"/deploy/grafana/*.json | sort -u | wc -l)
[ "$n" -ge 10 ] || fail "dashboard uses only $n metrics"
echo '{"expr":"rate(aisbxd_no_such_metric_total[5m])"}' >"$tmp/fake.json"
[ "$(check_names "$tmp/fake.json")" = aisbxd_no_such_metric_total ] ||
  fail "the name check does not catch an unknown name"
echo "ok: rules, rule tests, /metrics lint, $n dashboard metrics exported"
