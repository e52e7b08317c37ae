#!/bin/sh
# check-include-cycles.sh DIR [-v] - fails when the modules of DIR depend on
# each other in a cycle, or when a file of DIR reaches outside it with a
# relative include ("../store/db.h": another library's private header).
#
# A module is a file name without its extension: x.c and x.h are module x.
# Module x depends on module y when x.c or x.h has `#include "y.h"` and y.h
# is a file of DIR. System and public headers (<...>, "sbx/...") are not
# modules of DIR. -v prints the dependency graph.
#
# So that the include graph is the real dependency graph (no catch-all
# header that every file includes), every non-static function x.c defines
# must be declared in x.h, its own module's header; the compiler
# (-Werror=implicit-function-declaration) makes every caller include it.
#
# Exit: 0 no cycle, 1 a cycle, an escaping include or a function declared
# outside its module (printed), 2 usage.
set -eu
dir=${1:-}
verbose=${2:-}
if [ -z "$dir" ] || [ ! -d "$dir" ]; then
  echo "usage: $0 DIR [-v]" >&2
  exit 2
fi
cd "$dir"
status=0
# includes that climb out of the directory
if grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"\.\./' ./*.c ./*.h \
  2>/dev/null; then
  echo "FAIL: relative includes reach outside $dir (use a public header)" >&2
  status=1
fi
# non-static functions of x.c (a definition: the name at the start of a
# line after its return type) must be declared in x.h
for f in ./*.c; do
  [ -e "$f" ] || continue
  m=${f%.c}
  for fn in $(sed -n 's/^[a-z][a-z0-9_ ]*[ *]\(sbx_[a-z0-9_]*\)(.*[^;]$/\1/p' "$f"); do
    case "$fn" in sbx__*) ;; *) continue ;; esac
    if [ ! -e "$m.h" ] || ! grep -q "\b$fn(" "$m.h"; then
      echo "FAIL: $fn is defined in $f but not declared in $m.h" >&2
      status=1
    fi
  done
done
# the edges "x y", one per line
edges=$(for f in ./*.c ./*.h; do
  [ -e "$f" ] || continue
  m=$(basename "$f"); m=${m%.*}
  sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"/]*\)\.h".*/\1/p' "$f" |
    while read -r h; do
      if [ -e "./$h.h" ] && [ "$h" != "$m" ]; then echo "$m $h"; fi
    done
done | sort -u)
if [ "$verbose" = "-v" ]; then
  echo "$edges"
fi
# depth-first search for a back edge; prints the first cycle found
cycle=$(printf '%s\n' "$edges" | awk '
  NF == 2 { n[$1]++; adj[$1, n[$1]] = $2; node[$1] = 1; node[$2] = 1 }
  function dfs(u,   i, v, k, s) {
    state[u] = 1; stack[++depth] = u
    for (i = 1; i <= n[u]; i++) {
      v = adj[u, i]
      if (state[v] == 1) {          # back edge: the cycle is on the stack
        s = ""
        for (k = depth; k >= 1; k--) { s = stack[k] " -> " s; if (stack[k] == v) break }
        print s v
        return 1
      }
      if (state[v] == 0 && dfs(v)) return 1
    }
    depth--; state[u] = 2
    return 0
  }
  END { for (u in node) if (state[u] == 0 && dfs(u)) exit 0 }')
if [ -n "$cycle" ]; then
  echo "FAIL: include cycle between modules of $dir: $cycle" >&2
  status=1
fi
if [ "$status" = 0 ]; then
  echo "ok: $(printf '%s\n' "$edges" | grep -c . || true) module dependencies in $dir, no cycle"
fi
exit "$status"
