#!/bin/bash
# no_skip.sh CMD [ARGS...] - runs CMD; its exit status 77 ("skipped": a peer
# or tool is not installed) becomes a failure unless ADV_ALLOW_SKIP=1, so a
# missing dependency can never make CI green. The tests using it keep
# SKIP_RETURN_CODE 77 for developers who set ADV_ALLOW_SKIP=1.
# (C tests get the same rule from tests/harness.h.)
rc=0
"$@" || rc=$?
if [ "$rc" = 77 ]; then
  case "${ADV_ALLOW_SKIP:-}" in
  "" | 0)
    echo "no_skip.sh: '$1' asked to be skipped (exit 77): a missing" \
      "dependency is a failure (ADV_ALLOW_SKIP=1 allows skipping on a" \
      "developer machine)" >&2
    exit 1
    ;;
  esac
fi
exit "$rc"
