#!/bin/sh
# Runs a command as an unprivileged user (uid/gid 65534) to show the sandbox
# also holds for a worker without root: user namespaces, no cgroup (the
# memory cap falls back to RLIMIT_AS). Exit 77 (skipped) when not root or
# when the build tree is not reachable by that user.
[ "$(id -u)" = 0 ] || exit 77
command -v setpriv >/dev/null 2>&1 || exit 77
drop="setpriv --reuid=65534 --regid=65534 --clear-groups"
for f in "$@"; do
  case "$f" in /*) $drop test -r "$f" || exit 77 ;; esac
done
exec $drop "$@"
