#!/bin/bash
# check-format.sh [--whole-files] [BASE] - enforces .clang-format on changed
# code. Every .c and .h file added or changed since BASE (default: the
# commit recorded in .ci/format-base), committed or not, and every untracked
# one is checked: the lines changed since BASE (all lines of a new file)
# must be exactly what clang-format makes of them. --whole-files checks the
# changed files entirely. Prints a diff per offending file and exits 1;
# exits 0 when all are clean. Run by test.sh and as the CTest "meta.format".
#
# Why changed lines by default: most files predate .clang-format; checking
# the lines you change makes all new code conform without forcing a
# reformat of whole files that other people are editing at the same time
# (a reformat is a merge conflict). clang-format -i on a file you own
# passes both modes.
# Fix: clang-format -i FILE (the version CI uses: Debian 12's 14.x)
set -euo pipefail
whole=0
if [ "${1:-}" = --whole-files ]; then
  whole=1
  shift
fi
top=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
cd "$top"
base=${1:-$(sed -e 's/#.*//' .ci/format-base | tr -d ' \n')}
cf=${CLANG_FORMAT:-clang-format}
if ! command -v "$cf" >/dev/null; then
  echo "check-format: $cf not found (apt-get install clang-format)" >&2
  exit 1
fi
if ! git cat-file -e "$base^{commit}" 2>/dev/null; then
  echo "check-format: base commit $base is not in this clone" \
    "(a shallow clone? git fetch --unshallow)" >&2
  exit 1
fi
ver=$("$cf" --version | sed -n 's/.*version \([0-9]*\).*/\1/p')
[ "$ver" = 14 ] || echo "check-format: warning: clang-format $ver, CI uses 14" >&2

untracked=$(git ls-files --others --exclude-standard -- '*.c' '*.h')
mapfile -t files < <({
  git diff --name-only --diff-filter=d "$base" -- '*.c' '*.h'
  echo "$untracked"
} | grep -v '^$' | sort -u)

# The changed lines of every file, from ONE git diff (a diff per file cost
# ~0.2 s each, minutes for a few hundred files): largs[FILE] holds its
# clang-format --lines=A:B arguments; a file added since base has all its
# lines there. Untracked files and --whole-files are checked whole.
declare -A largs
while IFS=$'\t' read -r f a; do
  largs[$f]+="$a "
done < <(git diff -U0 "$base" -- '*.c' '*.h' | awk '
  /^\+\+\+ b\// { f = substr($0, 7) }
  /^@@ / {
    if (!match($0, /\+[0-9]+(,[0-9]+)?/)) next
    n = split(substr($0, RSTART + 1, RLENGTH - 1), p, ",")
    c = n > 1 ? p[2] : 1
    if (c > 0) printf "%s\t--lines=%d:%d\n", f, p[1], p[1] + c - 1
  }')

# line_args FILE: clang-format --lines=A:B arguments for the lines of FILE
# changed since base; nothing when only deletions; "all" for an untracked
# file or --whole-files.
line_args() {
  if [ $whole = 1 ] || grep -qxF -- "$1" <<<"$untracked"; then
    echo all
    return
  fi
  [ -n "${largs[$1]:-}" ] && printf '%s\n' ${largs[$1]}
  return 0
}

bad=0
for f in "${files[@]}"; do
  [ -f "$f" ] || continue
  mapfile -t args < <(line_args "$f")
  [ ${#args[@]} = 0 ] && continue
  [ "${args[0]}" = all ] && args=()
  if ! out=$("$cf" --style=file "${args[@]}" "$f" |
    diff -u --label "$f" --label "$f (clang-format)" "$f" -); then
    echo "$out" | head -n 40
    echo "check-format: $f: changed lines are not clang-format clean" \
      "(clang-format -i $f, or clang-format -i --lines=A:B)" >&2
    bad=$((bad + 1))
  fi
done
mode="changed lines"
[ $whole = 1 ] && mode="whole files"
echo "check-format: ${#files[@]} changed .c/.h file(s) since ${base:0:12} ($mode), $bad not clean"
[ "$bad" = 0 ]
