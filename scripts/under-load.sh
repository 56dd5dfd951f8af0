#!/usr/bin/env bash
# Runs a command while a busy loop spins on every core (one per core, at
# the same priority as the command), so that timing-sensitive tests (the
# bindings' cancellation and streaming tests) are proven on a loaded
# machine too, as users' apps run beside other work.
# usage: scripts/under-load.sh COMMAND [ARGS...]
set -euo pipefail
pids=()
for _ in $(seq "$(nproc)"); do
    (while :; do :; done) &
    pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
"$@"
