#!/usr/bin/env bash
# Builds llamette's native library and runs the Swift binding's XCTest suite:
#
# - cargo build --release -p llamette-ffi -p llamette-cli; the static library
#   installed with bindings/c/install.sh --static-only into
#   target/bindings-swift/prefix (llamette.pc, which the package's
#   system-library target reads through PKG_CONFIG_PATH);
# - a synthetic 110M-parameter model (llamette synth), slow enough to show
#   that a cancel lands inside a token (cached in target/bindings-swift);
# - `swift test` in bindings/swift, with `swift` from PATH if there is one,
#   else (Debian 12 has no Swift) in a Debian 13 chroot with Debian's
#   `swiftlang` (scripts/swift-chroot.sh: made once per machine, cached in
#   /var/cache/llamette-swift-trixie; needs root and debootstrap). The
#   checkout and ../shared are bind-mounted at their own paths inside it.
#   LLAMETTE_SWIFT=path or =chroot forces one way.
# - the Apple static libraries through scripts/build-xcframework.sh, for the
#   Rust targets installed (the XCFramework itself is made on a Mac only).
#
# Needs ../shared/testdata beside the checkout. Ends with swift test's
# summary, then "N passed, N failed" (XCTest's tests, plus a failed step if
# the build fails); exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
root=$(pwd -P)
pkg=$root/bindings/swift
out=$root/target/bindings-swift
shared=$(cd "$root/../shared" 2>/dev/null && pwd -P || echo "$root/../shared")
t_start=$SECONDS

failed_steps=0
note() { echo "==> $*"; }
fail_step() {
    echo "FAILED: $*"
    failed_steps=$((failed_steps + 1))
}
finish() { # finish PASSED FAILED
    echo "bindings/swift/test.sh: $((SECONDS - t_start)) s"
    echo "$1 passed, $2 failed"
    [ "$2" -eq 0 ]
    exit
}

mkdir -p "$out"

# ------------------------------------------------------------------ native library
note "cargo build --release -p llamette-ffi -p llamette-cli"
if ! cargo build --release -p llamette-ffi -p llamette-cli; then
    fail_step "cargo build"
    finish 0 1
fi
note "install the static library into $out/prefix (llamette.pc)"
rm -rf "$out/prefix"
"$root/bindings/c/install.sh" "$out/prefix" --static-only || {
    fail_step "bindings/c/install.sh"
    finish 0 1
}

slow_model=$out/synth-110m-q8_0.gguf
if [ ! -s "$slow_model" ] || [ "$slow_model" -ot target/release/llamette ]; then
    note "synthetic 110M model for the cancellation test"
    if ! target/release/llamette synth --shape 110m --type q8_0 "$slow_model.tmp" --seed 1 ||
        ! mv "$slow_model.tmp" "$slow_model"; then
        fail_step "llamette synth"
    fi
fi

q8_model=$out/stories260K-q8_0.gguf
note "stories260K quantized to Q8_0 for the load-for-speed test"
target/release/llamette quantize models/stories260K.bin "$q8_model" --type q8_0 -z models/tok512.bin ||
    fail_step "llamette quantize"

# ------------------------------------------------------------------ Apple static libraries
note "Apple static libraries (scripts/build-xcframework.sh; the XCFramework itself needs a Mac)"
"$pkg/scripts/build-xcframework.sh" --libs-only || fail_step "scripts/build-xcframework.sh --libs-only"

# ------------------------------------------------------------------ swift test
mode=${LLAMETTE_SWIFT:-auto}
if [ "$mode" = auto ]; then
    if command -v swift >/dev/null; then mode=path; else mode=chroot; fi
fi
swift_env=(
    "PKG_CONFIG_PATH=$out/prefix/lib/pkgconfig"
    "LLAMETTE_TEST_MODELS=$root/models"
    "LLAMETTE_TEST_DATA=$shared/testdata"
    "LLAMETTE_TEST_SLOW_MODEL=$slow_model"
    "LLAMETTE_TEST_Q8_MODEL=$q8_model"
)
case $mode in
path) ;;
chroot)
    ready=${LLAMETTE_SWIFT_CHROOT:-/var/cache/llamette-swift-trixie}/.llamette-swift-ready
    if ! command -v debootstrap >/dev/null && [ ! -f "$ready" ]; then
        echo "debootstrap is missing (apt-get install debootstrap)"
        fail_step "swift test: no swift on PATH and no debootstrap for the Debian 13 chroot"
        finish 0 "$failed_steps"
    fi
    ;;
*)
    echo "LLAMETTE_SWIFT=$mode: expected auto, path or chroot"
    finish 0 1
    ;;
esac
# in_swift [NAME=VALUE]... -- COMMAND...: runs COMMAND with the Swift toolchain.
in_swift() {
    local envs=() e
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    if [ "$mode" = path ]; then
        env ${envs[@]+"${envs[@]}"} "$@"
    else
        local args=(--bind "$root:$root" --cd "$root")
        [ -d "$shared" ] && args+=(--bind "$shared:$shared")
        for e in ${envs[@]+"${envs[@]}"}; do args+=(--env "$e"); done
        "$pkg/scripts/swift-chroot.sh" "${args[@]}" -- "$@"
    fi
}

# The app developers' form of the manifest: the XCFramework binary target.
note "Package.swift's Apple form (LLAMETTE_SYSTEM_LIBRARY=0): a binary target, no unsafe flags"
manifest=$out/manifest-binary.json
check_manifest() {
    python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
targets = {t["name"]: t for t in m["targets"]}
c = targets["CLlamette"]
assert c["type"] == "binary" and c["path"] == "CLlamette.xcframework", c
assert "unsafeFlags" not in json.dumps(m), "unsafe flags"
print("CLlamette: binary target at CLlamette.xcframework; products:", [p["name"] for p in m["products"]])
' "$manifest"
}
if ! in_swift LLAMETTE_SYSTEM_LIBRARY=0 -- swift package --package-path "$pkg" \
    --scratch-path "$out/manifest-check" dump-package >"$manifest" || ! check_manifest; then
    fail_step "Package.swift's binary-target form"
fi

swift_cmd=(swift test --package-path "$pkg" --scratch-path "$out/swiftpm" --disable-swift-testing)
log=$out/swift-test.log
note "swift test ($mode)"
t_swift=$SECONDS
in_swift "${swift_env[@]}" -- "${swift_cmd[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
echo "==> swift test: exit status $status, $((SECONDS - t_swift)) s"

# XCTest's total, its last "Executed N tests, with [S tests skipped and] M failures".
summary=$(grep -E 'Executed [0-9]+ tests?, with' "$log" | tail -1)
if [ -z "$summary" ]; then
    fail_step "swift test: no XCTest summary (build failure?)"
    finish 0 "$failed_steps"
fi
executed=$(sed -E 's/.*Executed ([0-9]+) tests?.*/\1/' <<<"$summary")
skipped=$(sed -nE 's/.* ([0-9]+) tests? skipped.*/\1/p' <<<"$summary")
failures=$(sed -E 's/.* ([0-9]+) failures?.*/\1/' <<<"$summary")
skipped=${skipped:-0}
passed=$((executed - skipped - failures))
[ "$skipped" -eq 0 ] || echo "bindings/swift/test.sh: $skipped skipped"
if [ "$status" -ne 0 ] && [ "$failures" -eq 0 ]; then
    fail_step "swift test exited with status $status"
fi
finish "$passed" $((failures + failed_steps))
