#!/bin/bash
# Generates the OpenAPI document from aisbxd's route table and validates it
# with an OpenAPI 3.1 validator from npm. usage: openapi_check.sh AISBXD
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(mktemp /tmp/sbx-openapi-XXXXXX.json)"
trap 'rm -f "$out"' EXIT
"$1" openapi > "$out"
n="$("$1" routes | wc -l)"
node "$here/openapi_validate.mjs" "$out" "$n"
