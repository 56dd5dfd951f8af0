#!/usr/bin/env bash
# Installs llamette's C ABI into PREFIX: include/llamette.h and llamette.hpp,
# lib/libllamette.so and lib/libllamette.a (from target/release, built by
# `cargo build --release -p llamette-ffi`), lib/pkgconfig/llamette.pc.
#
#   bindings/c/install.sh PREFIX [--static-only | --shared-only]
#
# Then: cc app.c $(PKG_CONFIG_PATH=PREFIX/lib/pkgconfig pkg-config --cflags --libs llamette)
# (add --static to link the static library; with both libraries installed,
# the linker prefers the shared one, hence --static-only).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
prefix=${1:?usage: install.sh PREFIX [--static-only | --shared-only]}
mode=${2:-both}
lib=$root/target/release
version=$(cargo pkgid --manifest-path "$root/Cargo.toml" -p llamette-ffi | sed 's/.*[@#]//')
# What the static library needs from the system (Linux; see `cargo rustc -p
# llamette-ffi --release --lib --crate-type staticlib -- --print native-static-libs`).
libs_private="-lgcc_s -lutil -lrt -lpthread -lm -ldl"

mkdir -p "$prefix/include" "$prefix/lib/pkgconfig"
cp "$root/include/llamette.h" "$root/bindings/c/llamette.hpp" "$prefix/include/"
rm -f "$prefix/lib/libllamette.so" "$prefix/lib/libllamette.a"
[ "$mode" = --static-only ] || cp "$lib/libllamette.so" "$prefix/lib/"
[ "$mode" = --shared-only ] || cp "$lib/libllamette.a" "$prefix/lib/"
sed -e "/^#/d" -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" -e "s|@LIBS_PRIVATE@|$libs_private|" \
    "$root/bindings/c/llamette.pc.in" > "$prefix/lib/pkgconfig/llamette.pc"
echo "install.sh: llamette $version in $prefix ($mode)"
