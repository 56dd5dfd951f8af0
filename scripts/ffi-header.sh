#!/usr/bin/env bash
# Regenerates include/llamette.h from ffi/src with the pinned cbindgen.
# With --check, generates into a temporary file and fails if the committed
# header differs (CI runs this through bindings/c/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
want=$(sed -n 's/^# cbindgen-version: *//p' ffi/cbindgen.toml)
have=$(cbindgen --version 2>/dev/null | awk '{print $2}') || true
if [ "$have" != "$want" ]; then
    echo "ffi-header: cbindgen $want is needed (found: ${have:-none});" \
        "cargo install cbindgen --version $want --locked" >&2
    exit 2
fi
if [ "${1:-}" = "--check" ]; then
    tmp=$(mktemp)
    trap 'rm -f "$tmp"' EXIT
    cbindgen --quiet --config ffi/cbindgen.toml --crate llamette-ffi --output "$tmp" ffi
    if ! diff -u include/llamette.h "$tmp"; then
        echo "ffi-header: include/llamette.h is stale; run scripts/ffi-header.sh" >&2
        exit 1
    fi
    echo "ffi-header: include/llamette.h is up to date"
else
    cbindgen --quiet --config ffi/cbindgen.toml --crate llamette-ffi --output include/llamette.h ffi
    echo "ffi-header: wrote include/llamette.h"
fi
