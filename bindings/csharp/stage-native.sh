#!/usr/bin/env bash
# Copies the native libraries cargo built into bindings/csharp/runtimes/<rid>/native/,
# the NuGet layout that src/Llamette.csproj packs (and copies the host's from):
#
#   linux-x64   target/release/libllamette.so          cargo build --release -p llamette-ffi (on x86_64 Linux)
#   win-x64     target/x86_64-pc-windows-gnu/release/llamette.dll
#               cargo build --release -p llamette-ffi --target x86_64-pc-windows-gnu
#   osx-arm64   target/aarch64-apple-darwin/release/libllamette.dylib (on a Mac)
#               cargo build --release -p llamette-ffi --target aarch64-apple-darwin
#
# Libraries not built are skipped. Then: dotnet pack bindings/csharp/src -c Release.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=bindings/csharp/runtimes
stage() {
    local rid=$1 file=$2
    if [ -f "$file" ]; then
        mkdir -p "$out/$rid/native"
        cp "$file" "$out/$rid/native/"
        echo "$rid: $out/$rid/native/$(basename "$file")"
    else
        echo "$rid: $file not built: skipped"
    fi
}
if [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ]; then
    stage linux-x64 target/release/libllamette.so
else
    stage linux-x64 target/x86_64-unknown-linux-gnu/release/libllamette.so
fi
stage win-x64 target/x86_64-pc-windows-gnu/release/llamette.dll
if [ "$(uname -s)-$(uname -m)" = Darwin-arm64 ]; then
    stage osx-arm64 target/release/libllamette.dylib
else
    stage osx-arm64 target/aarch64-apple-darwin/release/libllamette.dylib
fi
