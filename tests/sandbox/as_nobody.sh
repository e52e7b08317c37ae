#!/bin/bash
# Runs a command as an unprivileged user (uid/gid 65534) to show the sandbox
# also holds for a worker without root: user namespaces, no cgroup (the
# memory cap falls back to RLIMIT_AS). Exit 77 (skipped) when not root.
# Binaries given by absolute path that this user cannot read (a build tree
# below a private directory such as /root) are copied to a temp dir it can.
[ "$(id -u)" = 0 ] || exit 77
command -v setpriv >/dev/null 2>&1 || exit 77
drop="setpriv --reuid=65534 --regid=65534 --clear-groups"
tmp=
args=()
for f in "$@"; do
  case "$f" in
  /*)
    if ! $drop test -r "$f"; then
      [ -n "$tmp" ] || { tmp=$(mktemp -d) && chmod 755 "$tmp"; }
      cp "$f" "$tmp/" && chmod 755 "$tmp/$(basename "$f")"
      f=$tmp/$(basename "$f")
    fi
    ;;
  esac
  args+=("$f")
done
rc=0
$drop "${args[@]}" || rc=$?
[ -z "$tmp" ] || rm -rf "$tmp"
exit $rc
