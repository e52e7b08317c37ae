#!/bin/bash
# API server benchmark with wrk (Debian package `wrk`) on loopback, keep-alive TLS.
#
# usage: bench/api/run.sh BUILD_DIR [DURATION] [CONNECTIONS]
#   env  DURATION=10      seconds per wrk run (positional 2 wins)
#        CONNECTIONS=64   wrk connections (positional 3 wins); THREADS=2 wrk threads
#        ROUNDS=3         measured rounds (healthz, API key, JWT interleaved); medians reported
#        SOAK_SECONDS=300 soak length (0 = no soak); SAMPLE_S=5 RSS sample period
#        SOAK_WARMUP=30   seconds of the soak not used for the RSS verdict
#        NPROJECTS=10     projects in the tenant (the list returns them all)
#        QUICK=1          DURATION=5 ROUNDS=1 SOAK_SECONDS=30 SAMPLE_S=2 (unless set)
#
# Starts aisbxd on a temp data dir (blob fsync off, rate limits off, threads = nproc),
# `aisbxd init` prints an admin API key and a bootstrap token; the bootstrap grant
# (POST /api/v1/auth/bootstrap) gives the same admin an EdDSA access token (JWT, 900 s)
# and a refresh token (used to get a fresh JWT before the soak and every 600 s of it).
# Measures, with wrk --latency:
#   GET /healthz                   no auth, no DB (the reference)
#   GET /api/v1/projects           Authorization: Bearer ak_... (API key)
#   GET /api/v1/projects           Authorization: Bearer <JWT>
# req/s, p50/p99, non-2xx and socket errors (any -> exit 1), server CPU, and the
# ratios authenticated/healthz. Then a soak on GET /api/v1/projects alternating the
# API key and the JWT per request, sampling aisbxd's VmRSS every SAMPLE_S seconds.
# Targets (issue): authenticated req/s >= 50 % of /healthz, p99 < 20 ms at 64
# connections on 2 cores, RSS growth (median of the last vs the first minute after
# warm-up) <= 10 %. Exit 0 only when all hold.
set -euo pipefail
B=${1:?usage: bench/api/run.sh BUILD_DIR [DURATION] [CONNECTIONS]}
if [ "${QUICK:-0}" = 1 ]; then
  : "${DURATION:=5}" "${ROUNDS:=1}" "${SOAK_SECONDS:=30}" "${SAMPLE_S:=2}"
fi
T=${2:-${DURATION:-10}}
C=${3:-${CONNECTIONS:-64}}
TH=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
SOAK=${SOAK_SECONDS:-300}
SAMPLE=${SAMPLE_S:-5}
NPROJ=${NPROJECTS:-10}
AISBXD="$B/aisbxd"
[ -x "$AISBXD" ] || { echo "no $AISBXD (cmake --build $B --target aisbxd)"; exit 1; }
command -v wrk >/dev/null || { echo "wrk not installed (apt-get install wrk)"; exit 1; }
command -v curl >/dev/null || { echo "curl not installed"; exit 1; }

dir=$(mktemp -d /tmp/sbx-bench-api-XXXXXX)
cfg="$dir.conf"
cat > "$cfg" <<CFG
blob_fsync = 0
rate_ip_per_s = 0
rate_key_per_s = 0
threads = $(nproc)
CFG
pid= sampler=
cleanup() {
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null && wait "$sampler" 2>/dev/null
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$dir" "$cfg"
}
trap cleanup EXIT
die() { echo "FAIL: $*" >&2; [ -s "$dir/server.log" ] && tail -5 "$dir/server.log" >&2; exit 1; }

init=$("$AISBXD" init --data-dir "$dir" --config "$cfg" --tenant bench)
key=$(echo "$init" | sed -n 's/^admin-api-key: //p')
boot=$(echo "$init" | sed -n 's/^bootstrap-token: //p')
[ -n "$key" ] && [ -n "$boot" ] || die "aisbxd init printed no API key / bootstrap token"
"$AISBXD" --data-dir "$dir" --listen 127.0.0.1:0 --config "$cfg" --workers 0 >"$dir/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -s "$dir/aisbxd.port" ] && break; sleep 0.1; done
[ -s "$dir/aisbxd.port" ] || die "aisbxd did not start"
port=$(cat "$dir/aisbxd.port")
url="https://127.0.0.1:$port"
api() { curl -fsS --cacert "$dir/tls-cert.pem" -H 'Content-Type: application/json' "$@"; }
jfield() { sed -n "s/.*\"$1\" *: *\"\([^\"]*\)\".*/\1/p"; }

for i in $(seq "$NPROJ"); do
  api -H "Authorization: Bearer $key" -d "{\"id\":\"p$i\",\"name\":\"bench project $i\"}" \
    "$url/api/v1/projects" >/dev/null || die "creating project p$i"
done
# JWT: the bootstrap grant sets the admin's e-mail/password and returns tokens.
resp=$(api -d "{\"token\":\"$boot\",\"email\":\"admin@bench.example\",\"password\":\"bench-password-123\"}" \
  "$url/api/v1/auth/bootstrap") || die "bootstrap grant"
jwt=$(echo "$resp" | jfield access_token)
rtok=$(echo "$resp" | jfield refresh_token)
[ -n "$jwt" ] && [ -n "$rtok" ] || die "no tokens from the bootstrap grant: $resp"
refresh_jwt() { # refresh-token grant (rotates the refresh token)
  local r
  r=$(api -d "{\"grant_type\":\"refresh_token\",\"refresh_token\":\"$rtok\"}" \
    "$url/api/v1/auth/token") || die "refresh grant"
  jwt=$(echo "$r" | jfield access_token)
  rtok=$(echo "$r" | jfield refresh_token)
  [ -n "$jwt" ] && [ -n "$rtok" ] || die "no tokens from the refresh grant: $r"
}
# the three credentials must work and the list must hold all projects
api "$url/healthz" >/dev/null || die "GET /healthz failed"
api -H "Authorization: Bearer $key" "$url/api/v1/projects" >/dev/null || die "API key refused"
api -H "Authorization: Bearer $jwt" "$url/api/v1/projects" >/dev/null || die "JWT refused"
n=$(api -H "Authorization: Bearer $jwt" "$url/api/v1/projects" | grep -o '"id"' | wc -l)
[ "$n" -ge "$NPROJ" ] || die "GET /api/v1/projects returned $n projects, want $NPROJ"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }
HZ=$(getconf CLK_TCK)
to_ms() { # wrk duration (123.45us / 1.23ms / 1.02s / 1.5m) -> ms
  awk -v d="$1" 'BEGIN { v = d + 0; u = d; sub(/^[0-9.]+/, "", u)
    if (u == "us") v /= 1000; else if (u == "s") v *= 1000; else if (u == "m") v *= 60000
    printf "%.2f", v }'
}
# wrk_run OUTFILE SECONDS PATH [wrk args...]; checks errors, prints "rps p50 p99 cpu%"
wrk_run() {
  local f=$1 secs=$2 path=$3; shift 3
  local c0 c1 t0 t1
  c0=$(cpu_ticks); t0=$(date +%s.%N)
  wrk -t"$TH" -c"$C" -d"${secs}s" --latency "$@" "$url$path" >"$f" 2>&1 || die "wrk failed: $(cat "$f")"
  c1=$(cpu_ticks); t1=$(date +%s.%N)
  local non2xx sock
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$f"); non2xx=${non2xx:-0}
  sock=$(awk '/Socket errors/ {print}' "$f")
  [ "$non2xx" = 0 ] || { cat "$f" >&2; die "$path: $non2xx non-2xx responses"; }
  [ -z "$sock" ] || { cat "$f" >&2; die "$path: $sock"; }
  awk '/Requests\/sec/ {print $2}' "$f" | grep -q . || die "no wrk result: $(cat "$f")"
  printf '%s %s %s %s\n' "$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$f")" \
    "$(to_ms "$(awk '$1 == "50%" {print $2}' "$f")")" \
    "$(to_ms "$(awk '$1 == "99%" {print $2}' "$f")")" \
    "$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v s="$t0" -v e="$t1" \
      'BEGIN {printf "%.0f", 100 * (b - a) / hz / (e - s)}')"
}
median() { sort -n | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo "aisbxd API bench: $(nproc) cores (server threads $(nproc), wrk $TH threads, shared)," \
  "$C connections, ${T}s x $ROUNDS rounds, TLS keep-alive on loopback"
echo "load before: $(uptime | sed 's/.*load average/load average/')"
echo "RSS idle: $(rss_kb) KiB"
res="$dir/res.txt"; : >"$res"
printf '%-5s %-30s %10s %9s %9s %8s\n' round endpoint "req/s" "p50 ms" "p99 ms" "srv CPU"
for r in $(seq "$ROUNDS"); do
  for e in health apikey jwt; do
    case $e in
      health) name="GET /healthz"; line=$(wrk_run "$dir/w.txt" "$T" /healthz) ;;
      apikey) name="GET /api/v1/projects (API key)"
              line=$(wrk_run "$dir/w.txt" "$T" /api/v1/projects -H "Authorization: Bearer $key") ;;
      jwt)    name="GET /api/v1/projects (JWT)"
              line=$(wrk_run "$dir/w.txt" "$T" /api/v1/projects -H "Authorization: Bearer $jwt") ;;
    esac
    echo "$e $line" >>"$res"
    read -r rps p50 p99 cpu <<<"$line"
    printf '%-5s %-30s %10s %9s %9s %7s%%\n' "$r" "$name" "$rps" "$p50" "$p99" "$cpu"
  done
done
med() { awk -v e="$1" -v k="$2" '$1 == e {print $k}' "$res" | median; }
h_rps=$(med health 2); h_p99=$(med health 4)
fail=0
echo
echo "medians over $ROUNDS round(s):"
printf '%-30s %10s %9s %9s %12s %12s\n' endpoint "req/s" "p50 ms" "p99 ms" "rps/healthz" "p99/healthz"
for e in health apikey jwt; do
  case $e in
    health) name="GET /healthz" ;; apikey) name="GET /api/v1/projects (API key)" ;;
    jwt) name="GET /api/v1/projects (JWT)" ;;
  esac
  rps=$(med $e 2); p50=$(med $e 3); p99=$(med $e 4)
  rr=$(awk -v a="$rps" -v b="$h_rps" 'BEGIN {printf "%.2f", a / b}')
  pr=$(awk -v a="$p99" -v b="$h_p99" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
  printf '%-30s %10s %9s %9s %12s %12s\n' "$name" "$rps" "$p50" "$p99" "$rr" "$pr"
  if [ $e != health ]; then
    awk -v r="$rr" 'BEGIN {exit !(r >= 0.5)}' || { echo "  MISS: $name req/s ratio $rr < 0.50"; fail=1; }
    awk -v p="$p99" 'BEGIN {exit !(p < 20)}' || { echo "  MISS: $name p99 $p99 ms >= 20 ms"; fail=1; }
  fi
done

if [ "$SOAK" -gt 0 ]; then
  refresh_jwt # a fresh 900 s token; refreshed again every 600 s of soak
  warm=${SOAK_WARMUP:-$((SOAK / 10 < 30 ? SOAK / 10 : 30))}
  echo
  echo "soak: ${SOAK}s GET /api/v1/projects, API key and JWT alternating per request," \
    "$C connections; VmRSS every ${SAMPLE}s, first ${warm}s = warm-up"
  rss="$dir/rss.txt"
  start=$(date +%s.%N)
  ( while kill -0 "$pid" 2>/dev/null; do
      printf '%s %s\n' "$(awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN {printf "%.1f", n - s}')" "$(rss_kb)"
      sleep "$SAMPLE"
    done ) >"$rss" &
  sampler=$!
  left=$SOAK tot=0 agg="$dir/soak.txt"; : >"$agg"
  while [ "$left" -gt 0 ]; do
    chunk=$((left > 600 ? 600 : left))
    cat >"$dir/alt.lua" <<LUA
local h = { "Bearer $key", "Bearer $jwt" }
local i = 0
request = function()
  i = i + 1
  wrk.headers["Authorization"] = h[i % 2 + 1]
  return wrk.format("GET", "/api/v1/projects")
end
LUA
    line=$(wrk_run "$dir/w.txt" "$chunk" /api/v1/projects -s "$dir/alt.lua")
    echo "$chunk $line" >>"$agg"
    left=$((left - chunk))
    [ "$left" -gt 0 ] && refresh_jwt
  done
  sleep 1
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true; sampler=
  read -r _ s_rps s_p50 s_p99 s_cpu < <(tail -1 "$agg")
  echo "soak wrk (last chunk): $s_rps req/s, p50 $s_p50 ms, p99 $s_p99 ms, server CPU $s_cpu%, 0 errors"
  awk -v w="$warm" -v soak="$SOAK" '
    function med(x, k,   i, j, y) { # insertion sort (mawk has no asort)
      for (i = 2; i <= k; i++) { y = x[i]; for (j = i - 1; j >= 1 && x[j] > y; j--) x[j + 1] = x[j]; x[j + 1] = y }
      return k % 2 ? x[(k + 1) / 2] : (x[k / 2] + x[k / 2 + 1]) / 2
    }
    $1 >= w && $1 <= soak { n++; t[n] = $1; v[n] = $2 }
    END {
      if (n < 2) { print "too few RSS samples"; exit 1 }
      win = 60; if ((soak - w) < 3 * win) win = (soak - w) / 3
      max = 0; for (i = 1; i <= n; i++) if (v[i] > max) max = v[i]
      for (i = 1; i <= n; i++) { if (t[i] < w + win) a[++na] = v[i]; if (t[i] > soak - win) b[++nb] = v[i] }
      ma = med(a, na); mb = med(b, nb)
      sx = sy = sxx = sxy = 0
      for (i = 1; i <= n; i++) { sx += t[i]; sy += v[i]; sxx += t[i] * t[i]; sxy += t[i] * v[i] }
      slope = (n * sxy - sx * sy) / (n * sxx - sx * sx) * 60
      g = 100 * (mb - ma) / ma
      printf "RSS after warm-up (%d samples): first %d KiB, last %d KiB, max %d KiB\n", n, v[1], v[n], max
      printf "RSS median first %.0fs %.0f KiB, last %.0fs %.0f KiB: growth %+.1f %% (fit %+.0f KiB/min)\n", win, ma, win, mb, g, slope
      exit (g > 10 ? 2 : 0)
    }' "$rss" || { rc=$?; [ $rc = 2 ] && echo "  FAIL: RSS grew > 10 %" || echo "  FAIL: RSS evaluation"; fail=1; }
fi
echo "load after: $(uptime | sed 's/.*load average/load average/')"
kill "$pid"; wait "$pid" || die "aisbxd exited non-zero on SIGTERM"; pid=
[ $fail = 0 ] && echo "PASS: all targets met" || echo "FAIL: target(s) missed"
exit $fail
