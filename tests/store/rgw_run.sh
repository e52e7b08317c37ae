#!/bin/bash
# rgw_run.sh CMD [ARGS...] - runs CMD against a throwaway S3-compatible
# server: Ceph radosgw (beast, 127.0.0.1 only) on a single-node cluster
# (1 mon, 1 memstore OSD, no mgr, cephx off inside the cluster — every daemon
# binds to loopback only), all state in a temp dir. Creates an S3 user with
# freshly generated keys and exports
#   SBX_TEST_S3_ENDPOINT  http://127.0.0.1:PORT
#   SBX_TEST_S3_ACCESS_KEY, SBX_TEST_S3_SECRET_KEY, SBX_TEST_S3_REGION
# and always stops the daemons and removes the dir, even when CMD fails or
# the script is interrupted. Works as root (CI) and as an ordinary user.
# Packages: tools/apt.d/s3.txt (radosgw ceph-mon ceph-osd ceph-common
# uuid-runtime).
set -euo pipefail
# A cluster that fails to come up (a port taken between the check and the
# bind, a slow mon on a loaded machine) is retried from scratch, with new
# ports and a new dir, up to 3 times; the command's own exit code is never
# retried (start-up failures exit with 99 below).
if [ -z "${SBX_RGW_ATTEMPT:-}" ]; then
  for a in 1 2 3; do
    rc=0
    SBX_RGW_ATTEMPT=$a "$0" "$@" || rc=$?
    [ $rc = 99 ] || exit $rc
    echo "rgw_run.sh: cluster start-up failed (attempt $a of 3)" >&2
  done
  exit 1
fi
for b in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool uuidgen curl; do
  if ! command -v "$b" >/dev/null; then
    echo "rgw_run.sh: $b not found (apt-get install \$(cat tools/apt.d/s3.txt))" >&2
    exit 1
  fi
done
D=$(mktemp -d /tmp/sbx_rgw.XXXXXX)
PIDS=()
CHILD=
cleanup() {
  local p i t2
  t2=$(date +%s%N)
  if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then # interrupted
    kill -TERM "$CHILD" 2>/dev/null || true
    wait "$CHILD" 2>/dev/null || true
  fi
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do # radosgw, osd, then mon
    kill -TERM "${PIDS[i]}" 2>/dev/null || true
  done
  # everything is throwaway (memstore): 1 s of grace, then SIGKILL
  for _ in $(seq 10); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do
    if kill -0 "$p" 2>/dev/null; then
      [ -n "${RGW_RUN_DEBUG:-}" ] && echo "rgw_run.sh: SIGKILL $(cat /proc/$p/comm 2>/dev/null)" >&2
      kill -KILL "$p" 2>/dev/null || true
    fi
  done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [ ${#PIDS[@]} = 0 ] ||
    echo "rgw_run.sh: cluster stopped in $((($(date +%s%N) - t2) / 1000000)) ms" >&2
  rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
chmod 700 "$D"
mkdir -p "$D/mon" "$D/osd0" "$D/rgw" "$D/log" "$D/run"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 40000))
    port_free "$p" && port_free $((p + 1)) && { echo "$p"; return; }
  done
  echo "rgw_run.sh: no free port" >&2
  return 1
}
MONPORT=$(pick_port)
RGWPORT=$(pick_port)
FSID=$(uuidgen)
cat >"$D/ceph.conf" <<CONF
[global]
fsid = $FSID
mon host = v1:127.0.0.1:$MONPORT
ms bind msgr2 = false
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
run dir = $D/run
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
pid file = $D/run/\$name.pid
keyring = $D/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
# radosgw creates its pools one osdmap epoch at a time; the default 1 s Paxos
# interval makes that ~12 s, 0.1 s makes the whole start ~2 s
paxos propose interval = 0.1
paxos min wait = 0.01
osd crush chooseleaf type = 0
# the OSD's own crush updates at start-up are fatal when they race its first
# monmap ("wrong fsid"); the script places the OSD in the crush map instead
osd crush update on start = false
osd class update on start = false
osd objectstore = memstore
memstore device bytes = 1073741824
osd data = $D/osd\$id
mon data = $D/mon
[client.rgw.sbx]
rgw frontends = beast endpoint=127.0.0.1:$RGWPORT
rgw data = $D/rgw
rgw dns name = 127.0.0.1
CONF
C=(-c "$D/ceph.conf")
fail() {
  echo "rgw_run.sh: $1" >&2
  tail -n 15 "$D"/log/*.log >&2 2>/dev/null || true
  echo "rgw_run.sh: $1" >&2
  exit 99 # start-up failure: retried by the outer invocation
}
t0=$(date +%s%N)
monmaptool --create --add a "v1:127.0.0.1:$MONPORT" --fsid "$FSID" \
  "$D/monmap" >/dev/null || fail "monmaptool failed"
ceph-mon "${C[@]}" --mkfs -i a --monmap "$D/monmap" || fail "ceph-mon --mkfs failed"
ceph-mon "${C[@]}" -i a -f >"$D/log/mon.out" 2>&1 &
PIDS+=($!)
# 'ceph osd new' also waits for the mon to form its quorum of one
OSDUUID=$(uuidgen)
OSDID=$(timeout 60 ceph "${C[@]}" --connect-timeout 30 osd new "$OSDUUID") ||
  fail "ceph osd new failed"
timeout 60 ceph "${C[@]}" --connect-timeout 30 osd crush add "osd.$OSDID" 1.0 \
  root=default >/dev/null 2>&1 || fail "ceph osd crush add failed"
# the OSD's on-disk identity must be the uuid registered with 'osd new'
ceph-osd "${C[@]}" -i "$OSDID" --mkfs --osd-uuid "$OSDUUID" \
  >"$D/log/osd-mkfs.out" 2>&1 || fail "ceph-osd --mkfs failed"
ceph-osd "${C[@]}" -i "$OSDID" -f >"$D/log/osd.out" 2>&1 &
PIDS+=($!)
radosgw "${C[@]}" -n client.rgw.sbx -f >"$D/log/rgw.out" 2>&1 &
PIDS+=($!)
ok=0
for _ in $(seq 600); do # up to 60 s
  if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$RGWPORT/"; then
    ok=1
    break
  fi
  for i in "${!PIDS[@]}"; do
    kill -0 "${PIDS[i]}" 2>/dev/null && continue
    n=$(echo mon osd rgw | cut -d' ' -f$((i + 1)))
    tail -n 20 "$D/log/$n.out" >&2 2>/dev/null || true
    fail "$n daemon exited during start-up"
  done
  sleep 0.1
done
[ $ok = 1 ] || fail "radosgw did not answer on 127.0.0.1:$RGWPORT"
# fresh credentials for this run only (20 + 40 characters like AWS keys)
AK=SBX$(od -An -N9 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F | cut -c1-17)
SK=$(head -c 30 /dev/urandom | base64 | tr -d '\n')
[ ${#AK} = 20 ] && [ ${#SK} = 40 ] || fail "key generation failed"
timeout 60 radosgw-admin "${C[@]}" user create --uid=sbxtest \
  --display-name="sbx test" --access-key="$AK" --secret-key="$SK" \
  >/dev/null 2>"$D/log/user-create.err" || fail "radosgw-admin user create failed"
t1=$(date +%s%N)
echo "rgw_run.sh: radosgw up on 127.0.0.1:$RGWPORT in $(((t1 - t0) / 1000000)) ms" >&2
export SBX_TEST_S3_ENDPOINT="http://127.0.0.1:$RGWPORT"
export SBX_TEST_S3_ACCESS_KEY="$AK"
export SBX_TEST_S3_SECRET_KEY="$SK"
export SBX_TEST_S3_REGION="${SBX_TEST_S3_REGION:-us-east-1}"
set +e
"$@" & # in the background: a trapped signal interrupts 'wait' at once
CHILD=$!
wait "$CHILD"
rc=$?
set -e
[ $rc = 0 ] || tail -n 20 "$D/log/client.rgw.sbx.log" >&2 2>/dev/null || true
exit $rc
