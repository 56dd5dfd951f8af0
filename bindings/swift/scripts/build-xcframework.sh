#!/usr/bin/env bash
# Builds llamette's static libraries for Apple platforms and assembles
# CLlamette.xcframework, the binary target of bindings/swift/Package.swift.
#
#   bindings/swift/scripts/build-xcframework.sh [--libs-only] [--no-default-model] [--output DIR]
#
# Rust targets (each `cargo rustc --release -p llamette-ffi --lib
# --crate-type staticlib --target T`; a static library needs no Apple linker,
# so this step also runs on Linux):
#
#   aarch64-apple-ios       iPhone, iPad
#   aarch64-apple-ios-sim   simulator on Apple silicon  } one fat library
#   x86_64-apple-ios        simulator on Intel (optional) }
#   aarch64-apple-darwin    macOS on Apple silicon } one universal
#   x86_64-apple-darwin     macOS on Intel         } library
#
# Then, on a Mac (lipo and xcodebuild from Xcode): one library per platform,
# `xcodebuild -create-xcframework` with the header and a module map in
# Headers/CLlamette/ (a subdirectory, so that it does not collide with other
# XCFrameworks' module maps in an app), written to DIR (default:
# bindings/swift, beside Package.swift), then zipped with its SwiftPM checksum
# printed for a release's `.binaryTarget(name:url:checksum:)`.
#
# On Linux, or with --libs-only, it stops after the libraries. A Rust target
# that is not installed is added with rustup on a Mac; elsewhere it is
# skipped with a note (aarch64-apple-ios-sim may not be downloadable).
# --no-default-model leaves the embedded stories260K (about 1 MB) out of the
# libraries. Exits non-zero when a library or the XCFramework fails to build.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd -P)
pkg=$root/bindings/swift
out_dir=$pkg
libs_only=0
cargo_features=()
while [ $# -gt 0 ]; do
    case $1 in
    --libs-only) libs_only=1; shift ;;
    --no-default-model) cargo_features=(--no-default-features); shift ;;
    --output) out_dir=$2; shift 2 ;;
    *) echo "usage: build-xcframework.sh [--libs-only] [--no-default-model] [--output DIR]" >&2; exit 2 ;;
    esac
done
on_mac=0
[ "$(uname -s)" = Darwin ] && on_mac=1

# The deployment targets of Package.swift's `platforms`.
export IPHONEOS_DEPLOYMENT_TARGET=15.0 MACOSX_DEPLOYMENT_TARGET=12.0

installed=$(rustup target list --installed 2>/dev/null || true)
have_target() {
    grep -qx "$1" <<<"$installed" && return 0
    [ "$on_mac" = 1 ] && rustup target add "$1" && return 0
    return 1
}

# (bash 3.2, macOS's /bin/bash: no associative arrays.)
built=" "
lib() { echo "$root/target/$1/release/libllamette.a"; }
has_lib() { case $built in *" $1 "*) return 0 ;; esac; return 1; }
failed=0
for t in aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin x86_64-apple-darwin; do
    if ! have_target "$t"; then
        echo "build-xcframework: skipped $t (rustup target add $t: not installed here)"
        continue
    fi
    a=$(lib "$t")
    if (cd "$root" && cargo rustc --release -p llamette-ffi ${cargo_features[@]+"${cargo_features[@]}"} \
        --lib --crate-type staticlib --target "$t") && [ -s "$a" ]; then
        built="$built$t "
        echo "build-xcframework: $t: $a ($(du -h "$a" | cut -f1))"
    else
        echo "build-xcframework: FAILED: the static library for $t"
        failed=1
    fi
done
[ "$failed" = 0 ] || exit 1

if [ "$libs_only" = 1 ]; then
    exit 0
fi
if [ "$on_mac" = 0 ] || ! command -v xcodebuild >/dev/null || ! command -v lipo >/dev/null; then
    echo "build-xcframework: the XCFramework is assembled on a Mac (xcodebuild, lipo): stopping after the libraries"
    exit 0
fi

# Every slice the package needs must be there on a Mac.
for t in aarch64-apple-ios aarch64-apple-ios-sim aarch64-apple-darwin x86_64-apple-darwin; do
    has_lib "$t" || { echo "build-xcframework: no library for $t" >&2; exit 1; }
done

work=$root/target/xcframework
rm -rf "$work"
mkdir -p "$work/headers/CLlamette" "$work/ios" "$work/ios-simulator" "$work/macos"
cp "$root/include/llamette.h" "$work/headers/CLlamette/"
cat >"$work/headers/CLlamette/module.modulemap" <<'EOF'
module CLlamette {
    header "llamette.h"
    export *
}
EOF

cp "$(lib aarch64-apple-ios)" "$work/ios/libllamette.a"
sim=("$(lib aarch64-apple-ios-sim)")
if has_lib x86_64-apple-ios; then sim+=("$(lib x86_64-apple-ios)"); fi
lipo -create "${sim[@]}" -output "$work/ios-simulator/libllamette.a"
lipo -create "$(lib aarch64-apple-darwin)" "$(lib x86_64-apple-darwin)" -output "$work/macos/libllamette.a"

xcf=$out_dir/CLlamette.xcframework
rm -rf "$xcf"
xcodebuild -create-xcframework \
    -library "$work/ios/libllamette.a" -headers "$work/headers" \
    -library "$work/ios-simulator/libllamette.a" -headers "$work/headers" \
    -library "$work/macos/libllamette.a" -headers "$work/headers" \
    -output "$xcf"

zip=$out_dir/CLlamette.xcframework.zip
rm -f "$zip"
(cd "$out_dir" && ditto -c -k --sequesterRsrc --keepParent CLlamette.xcframework "$zip")
checksum=$(cd "$pkg" && swift package compute-checksum "$zip")
cat <<EOF
build-xcframework: $xcf
build-xcframework: $zip, checksum $checksum
For a release, upload the zip and use in Package.swift:
    .binaryTarget(name: "CLlamette", url: "https://.../CLlamette.xcframework.zip",
                  checksum: "$checksum")
EOF
