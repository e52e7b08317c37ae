#!/bin/sh
# fake_worker.sh - stands in for aisbx-worker in test_jobs (local_workers):
# takes the command line aisbxd gives its local workers, makes one real
# claim with the token file and CA it was handed, records
# "<name> <claim status> <token file mode>" in $SBX_FAKE_WORKER_DIR/<pid>,
# then waits to be stopped.
dir=${SBX_FAKE_WORKER_DIR:?}
while [ $# -gt 1 ]; do
  case "$1" in
  --server) url=$2 ;;
  --token-file) tf=$2 ;;
  --ca-file) ca=$2 ;;
  --name) name=$2 ;;
  esac
  shift 2
done
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" \
  -H "Authorization: Bearer $(cat "$tf")" -H 'Content-Type: application/json' \
  -d '{"wait":0}' "$url/api/v1/worker/claim")
echo "$name $code $(stat -c %a "$tf")" > "$dir/$$.tmp"
mv "$dir/$$.tmp" "$dir/$$"
exec sleep 1000
