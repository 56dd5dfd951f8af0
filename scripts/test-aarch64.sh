#!/usr/bin/env bash
# Runs the core crate's tests for aarch64 under qemu-user (the NEON and
# NEON+dotprod kernel sets; `-cpu max` in .cargo/config.toml gives the
# emulated CPU the dot product extension). Installs what is missing:
# the rustup target, Debian's aarch64 cross linker and qemu-user.
# Usage: scripts/test-aarch64.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu

if ! rustup target list --installed | grep -qx "$target"; then
    echo "test-aarch64: adding the $target rustup target"
    rustup target add "$target"
fi

missing=()
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
if [ ${#missing[@]} -gt 0 ]; then
    echo "test-aarch64: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The linker and the qemu runner come from .cargo/config.toml.
grep -q "^\[target.$target\]" .cargo/config.toml || {
    echo "test-aarch64: .cargo/config.toml has no [target.$target] section" >&2
    exit 1
}

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test -p llamette --target "$target" "$@" 2>&1 | tee "$log" || status=$?
echo "test-aarch64: summary for $target (qemu-aarch64 -cpu max):"
grep -E '^test result:' "$log" | awk '
    { for (i = 1; i <= NF; i++) { if ($i == "passed;") p += $(i - 1); if ($i == "failed;") f += $(i - 1) } }
    END { printf "%d passed, %d failed\n", p, f }'
exit $status
