#!/bin/bash
# The main job on the embedded defaults: installs dependencies, builds, starts
# the whole sandbox - aisbxd (SQLite, local encrypted blob store, TLS) with
# its local sandboxed workers - registers the demo model and dataset in a
# demo project through the API, runs an AutoAttack-standard evaluation job
# on them through the API, prints its robust accuracy and the job's URL, and
# leaves the server running until Ctrl-C.
#
#   ./run.sh                # keep serving after the job (Ctrl-C stops)
#   ./run.sh --once         # exit after the job (CI)
#   AISBX_DATA=DIR ./run.sh # data directory (default ./.aisbx; as root, when
#                           # nobody cannot reach it: /var/lib/aisbx-demo/...)
#   AISBX_EPS, AISBX_N      # the evaluation's eps (default 0.3) and samples
set -euo pipefail
cd "$(dirname "$0")"
once=0
for a in "$@"; do
  case "$a" in
  --once) once=1 ;;
  *) echo "usage: ./run.sh [--once]" >&2; exit 2 ;;
  esac
done
tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

data=${AISBX_DATA:-$PWD/.aisbx}
eps=${AISBX_EPS:-0.3}
n=${AISBX_N:-100}
mkdir -p "$data"
# started as root, aisbxd confines itself and runs as nobody (docs/security.md
# "Server confinement"): its data dir must be reachable by that user. The
# files in it stay 0600; the directory is searchable, not listable.
chmod 711 "$data"
if [ "$(id -u)" = 0 ] && ! runuser -u nobody -- test -x "$data" 2>/dev/null; then
  alt=/var/lib/aisbx-demo/$(printf %s "$data" | sha256sum | cut -c1-12)
  echo "run.sh: $data is not reachable by the unprivileged user aisbxd runs as (a parent directory is private); using $alt" >&2
  data=$alt
  mkdir -p "$data"
  chmod 711 /var/lib/aisbx-demo "$data"
fi
if [ ! -f "$data/admin-api-key" ]; then
  # first start: tenant, keys, admin; the API key is printed once: keep it
  # in a 0600 file of the data dir for this demo
  umask 077
  build/aisbxd init --data-dir "$data/server" >"$data/init.txt"
  sed -n 's/^admin-api-key: //p' "$data/init.txt" >"$data/admin-api-key"
  umask 022
fi
key=$(cat "$data/admin-api-key")
log="$data/aisbxd.log"
rm -f "$data/server/aisbxd.port"
build/aisbxd --data-dir "$data/server" --listen 127.0.0.1:${AISBX_PORT:-0} >>"$log" 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM
for _ in $(seq 100); do
  [ -s "$data/server/aisbxd.port" ] && break
  kill -0 "$server" 2>/dev/null || { echo "aisbxd did not start; see $log" >&2; tail -20 "$log" >&2; exit 1; }
  sleep 0.1
done
port=$(cat "$data/server/aisbxd.port")
base="https://127.0.0.1:$port"
ca="$data/server/tls-cert.pem"
api() { # METHOD PATH [curl args...]: the answer body; fails on HTTP >= 400
  local m=$1 p=$2
  shift 2
  curl -sS --fail-with-body --cacert "$ca" -H "Authorization: Bearer $key" -X "$m" "$base$p" "$@"
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

proj=demo
if ! api GET "/api/v1/projects/$proj" >/dev/null 2>&1; then
  api POST /api/v1/projects -H 'Content-Type: application/json' \
    -d "{\"id\":\"$proj\",\"name\":\"Demo\"}" >/dev/null
fi
model=$(api POST "/api/v1/projects/$proj/models?name=mnist_cnn.onnx" \
  -H 'Content-Type: application/octet-stream' --data-binary @tests/fixtures/mnist_cnn.onnx | json 'd["id"]')
dataset=$(api POST "/api/v1/projects/$proj/datasets?name=demo_mnist.npz" \
  -H 'Content-Type: application/octet-stream' --data-binary @tests/fixtures/demo_mnist.npz | json 'd["id"]')
spec="{\"kind\":\"evaluation\",\"suite\":\"autoattack-standard\",\"norm\":\"inf\",\"eps\":$eps,\"n\":$n,\"seed\":0}"
job=$(api POST "/api/v1/projects/$proj/jobs" -H 'Content-Type: application/json' \
  -d "{\"model_id\":\"$model\",\"dataset_id\":\"$dataset\",\"spec\":$spec}" | json 'd["id"]')
url="$base/api/v1/projects/$proj/jobs/$job"
echo "job $job: AutoAttack-standard, Linf eps $eps, $n MNIST samples -> $url"
state=queued
last=""
while :; do
  j=$(api GET "/api/v1/projects/$proj/jobs/$job")
  state=$(echo "$j" | json 'd["state"]')
  line=$(echo "$j" | json '"%s %5.1f%% %s" % (d["state"], 100*(d.get("progress") or {}).get("fraction",0), (d.get("progress") or {}).get("phase",""))')
  [ "$line" != "$last" ] && echo "  $line" && last=$line
  case "$state" in succeeded | failed | cancelled | timed_out) break ;; esac
  sleep 0.5
done
if [ "$state" != succeeded ]; then
  echo "job $job ended $state: $(echo "$j" | json 'd.get("message","")')" >&2
  exit 1
fi
api GET "/api/v1/projects/$proj/jobs/$job/results" | json '"clean accuracy %.4f, robust accuracy %.4f" % (d["clean_accuracy"], d["robust_accuracy"])'
echo "results: $url/results (adversarial examples: $url/results/adversarial.npy, gallery: $url/results/gallery/0.png)"
echo "API key for curl: $data/admin-api-key; CA certificate: $ca"
if [ $once = 1 ]; then
  exit 0
fi
echo "aisbxd is serving on $base with its local workers; Ctrl-C stops it."
wait "$server"
