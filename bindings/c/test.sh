#!/usr/bin/env bash
# Builds and tests llamette's C ABI from C and C++:
#
# - the Rust libraries (cargo build --release -p llamette-ffi);
# - include/llamette.h against a fresh cbindgen run (pinned version) and its
#   version macros against Cargo.toml; the headers compile as C11 and C++17;
# - the shared library exports only llamette_* symbols;
# - the example, built through llamette.pc (shared and static), prints
#   run.c's text byte for byte;
# - the C and C++ tests (-Wall -Wextra -Werror), against the shared library
#   under valgrind and against the static library with ASan+UBSan;
# - Windows: the DLL and its import library cross-built for
#   x86_64-pc-windows-gnu, the C test built with mingw-w64 and run under Wine
#   (skipped when mingw, Wine or the Rust target are missing, unless
#   LLAMETTE_REQUIRE_WINE=1, which makes that a failure);
# - the static library for iOS (device, simulator) and Android (skipped per
#   missing Rust target, unless LLAMETTE_REQUIRE_MOBILE=1).
#
# Needs ../shared/testdata beside the checkout. Ends with "N passed, N failed";
# exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
build=$root/target/bindings-c
models=$root/models
testdata=$root/../shared/testdata
shared_models=$root/../shared/models
greedy=$testdata/stories260K.greedy.txt
tom=$testdata/stories260K.t0.8-p0.9-s42.tom-and-his-dog.txt
src=$root/bindings/c
CWARN="-Wall -Wextra -Werror"
# The panic-boundary test prints one panic message; no backtrace needed.
export RUST_BACKTRACE=0

passed=0
failed=0
skipped=0
step() {
    local name=$1
    shift
    echo "==> $name"
    if "$@"; then
        passed=$((passed + 1))
    else
        echo "FAILED: $name"
        failed=$((failed + 1))
    fi
}
skip() {
    echo "==> SKIPPED: $1"
    skipped=$((skipped + 1))
}
finish() {
    [ "$skipped" -eq 0 ] || echo "bindings/c/test.sh: $skipped skipped"
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

rm -rf "$build"
mkdir -p "$build"

# ------------------------------------------------------------------ build
step "cargo build --release -p llamette-ffi -p llamette-cli" cargo build --release -p llamette-ffi -p llamette-cli
if [ ! -f target/release/libllamette.so ] || [ ! -f target/release/libllamette.a ]; then
    echo "no libraries: stopping"
    finish
fi
# stories260K quantized to Q8_0, for the load-for-speed tests.
q8=$build/stories260K-q8_0.gguf
step "a quantized model (llamette quantize --type q8_0)" \
    target/release/llamette quantize "$models/stories260K.bin" "$q8" --type q8_0 -z "$models/tok512.bin"

# ------------------------------------------------------------------ header
step "include/llamette.h equals a fresh cbindgen generation" scripts/ffi-header.sh --check

version_macros() {
    local v major minor patch
    v=$(cargo pkgid -p llamette-ffi | sed 's/.*[@#]//')
    IFS=. read -r major minor patch <<<"$v"
    macro() { sed -n "s/^#define LLAMETTE_VERSION_$1 \([0-9]*\)$/\1/p" include/llamette.h; }
    echo "Cargo.toml: $v; header: $(macro MAJOR).$(macro MINOR).$(macro PATCH)" \
        "number $(macro NUMBER)"
    [ "$(macro MAJOR)" = "$major" ] && [ "$(macro MINOR)" = "$minor" ] &&
        [ "$(macro PATCH)" = "$patch" ] &&
        [ "$(macro NUMBER)" = "$((major * 1000000 + minor * 1000 + patch))" ]
    # llamette_version() against the macros: test_c's test_version.
}
step "header version macros agree with Cargo.toml" version_macros

headers_compile() {
    echo '#include "llamette.h"' | cc -std=c11 $CWARN -Wpedantic -Iinclude -fsyntax-only -x c - &&
        echo '#include "llamette.h"' |
        c++ -std=c++17 $CWARN -Wpedantic -Iinclude -fsyntax-only -x c++ - &&
        echo '#include "llamette.hpp"' |
        c++ -std=c++17 $CWARN -Wpedantic -Iinclude -I"$src" -fsyntax-only -x c++ -
}
step "llamette.h compiles as C11 and C++17, llamette.hpp as C++17 (-Wpedantic)" headers_compile

exports_only_llamette() {
    local all others
    all=$(nm -D --defined-only target/release/libllamette.so | awk '{print $3}')
    others=$(grep -v '^llamette_' <<<"$all" || true)
    echo "$(wc -l <<<"$all") exported symbols"
    if [ -n "$others" ]; then
        echo "exports other than llamette_*:"
        echo "$others"
        return 1
    fi
}
step "nm: the shared library exports only llamette_* symbols" exports_only_llamette

# ------------------------------------------------------------------ pkg-config + example
shared=$build/prefix-shared
static=$build/prefix-static
"$src/install.sh" "$shared" --shared-only >/dev/null
"$src/install.sh" "$static" --static-only >/dev/null
pc() { PKG_CONFIG_PATH=$1/lib/pkgconfig pkg-config "${@:2}" llamette; }

example_shared() {
    # shellcheck disable=SC2046
    cc -std=c11 $CWARN "$src/example.c" $(pc "$shared" --cflags --libs) -o "$build/example" &&
        LD_LIBRARY_PATH=$shared/lib "$build/example" -t 0 -n 256 >"$build/greedy.txt" &&
        cmp "$build/greedy.txt" "$greedy" &&
        LD_LIBRARY_PATH=$shared/lib "$build/example" "$models/stories260K.bin" \
            -z "$models/tok512.bin" -t 0.8 -p 0.9 -s 42 -n 200 -i "Tom and his dog" \
            >"$build/tom.txt" &&
        cmp "$build/tom.txt" "$tom"
}
step "example via llamette.pc, shared library: run.c's greedy and sampled texts" example_shared

example_static() {
    # shellcheck disable=SC2046
    cc -std=c11 $CWARN "$src/example.c" $(pc "$static" --cflags --libs --static) \
        -o "$build/example-static" &&
        ! ldd "$build/example-static" | grep -q libllamette &&
        "$build/example-static" -t 0 -n 256 -j 2 | cmp - "$greedy"
}
step "example via llamette.pc --static: run.c's greedy text (2 threads)" example_static

# ------------------------------------------------------------------ C and C++ tests
run_checked() {
    # Under valgrind when present (errors and definite leaks fail), else plain.
    if command -v valgrind >/dev/null; then
        valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite "$@"
    else
        echo "(valgrind not installed: running without it)"
        "$@"
    fi
}
san="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"

test_c_shared() {
    # shellcheck disable=SC2046
    cc -std=c11 $CWARN -g -pthread -I"$src/tests" "$src/tests/test_c.c" \
        $(pc "$shared" --cflags --libs) -o "$build/test_c" &&
        LD_LIBRARY_PATH=$shared/lib run_checked "$build/test_c" "$models" "$greedy" "$shared_models" "$q8"
}
step "C test, shared library, valgrind" test_c_shared

test_c_static() {
    # shellcheck disable=SC2046
    cc -std=c11 $CWARN -g -pthread $san -I"$src/tests" "$src/tests/test_c.c" \
        $(pc "$static" --cflags --libs --static) -o "$build/test_c-static" &&
        "$build/test_c-static" "$models" "$greedy" "$shared_models" "$q8"
}
step "C test, static library, ASan+UBSan" test_c_static

test_cpp_shared() {
    # shellcheck disable=SC2046
    c++ -std=c++17 $CWARN -g -pthread "$src/tests/test_cpp.cpp" \
        $(pc "$shared" --cflags --libs) -o "$build/test_cpp" &&
        LD_LIBRARY_PATH=$shared/lib run_checked "$build/test_cpp" "$models" "$greedy" "$q8"
}
step "C++ test, shared library, valgrind" test_cpp_shared

test_cpp_static() {
    # shellcheck disable=SC2046
    c++ -std=c++17 $CWARN -g -pthread $san "$src/tests/test_cpp.cpp" \
        $(pc "$static" --cflags --libs --static) -o "$build/test_cpp-static" &&
        "$build/test_cpp-static" "$models" "$greedy" "$q8"
}
step "C++ test, static library, ASan+UBSan" test_cpp_static

# ------------------------------------------------------------------ Windows
installed_targets=$(rustup target list --installed 2>/dev/null || true)
has_target() { grep -qx "$1" <<<"$installed_targets"; }
win_missing=""
command -v x86_64-w64-mingw32-gcc >/dev/null || win_missing+=" x86_64-w64-mingw32-gcc (apt: gcc-mingw-w64-x86-64)"
command -v wine >/dev/null || win_missing+=" wine (apt: wine)"
has_target x86_64-pc-windows-gnu || win_missing+=" the Rust target (rustup target add x86_64-pc-windows-gnu)"

win=$build/windows
wlib=$root/target/x86_64-pc-windows-gnu/release
windows_build() {
    cargo build --release -p llamette-ffi --target x86_64-pc-windows-gnu &&
        [ -f "$wlib/llamette.dll" ] && [ -f "$wlib/libllamette.dll.a" ] || return 1
    local exports others
    exports=$(x86_64-w64-mingw32-objdump -p "$wlib/llamette.dll" |
        sed -n '/\[Ordinal\/Name Pointer\] Table/,/^$/p' | grep -E '^\s*\[ *[0-9]+\]' |
        awk '{print $NF}')
    others=$(grep -v '^llamette_' <<<"$exports" || true)
    echo "llamette.dll: $(wc -l <<<"$exports") exports, import library libllamette.dll.a"
    [ -z "$others" ] || { echo "DLL exports other than llamette_*: $others"; return 1; }
    mkdir -p "$win"
    cp "$wlib/llamette.dll" "$win/"
    x86_64-w64-mingw32-gcc -std=c11 $CWARN -O2 -Iinclude -I"$src/tests" "$src/tests/test_c.c" \
        -L"$wlib" -lllamette -o "$win/test_c.exe" &&
        x86_64-w64-mingw32-gcc -std=c11 $CWARN -O2 -Iinclude "$src/example.c" \
            -L"$wlib" -lllamette -o "$win/example.exe" || return 1
    # Wine 8 (Debian 12) lacks bcryptprimitives.dll, which Rust's std imports
    # (every Windows 10+ has it): a test-only stand-in goes beside the tests.
    local wv
    wv=$(wine --version 2>/dev/null | sed -n 's/^wine-\([0-9]*\).*/\1/p')
    if [ "${wv:-0}" -lt 9 ]; then
        x86_64-w64-mingw32-gcc $CWARN -shared -o "$win/bcryptprimitives.dll" \
            "$src/tests/wine/bcryptprimitives.c" -ladvapi32 || return 1
    fi
}
winpath() { printf 'Z:%s' "${1//\//\\}"; }
windows_test() {
    export WINEPREFIX=${WINEPREFIX:-/tmp/llamette-wine} WINEDEBUG=-all
    [ -d "$WINEPREFIX" ] || { echo "(first Wine start: creating $WINEPREFIX)"; wineboot -i >/dev/null 2>&1; }
    (cd "$win" && wine test_c.exe "$(winpath "$models")" "$(winpath "$greedy")" \
        "$(winpath "$shared_models")" "$(winpath "$q8")")
}
windows_example() {
    (cd "$win" && wine example.exe -t 0 -n 256 2>/dev/null) | cmp - "$greedy"
}
if [ -z "$win_missing" ]; then
    step "Windows: cross-build llamette.dll + import library, exports, mingw tests" windows_build
    step "Windows: C test against the DLL under Wine" windows_test
    step "Windows: example.exe under Wine prints run.c's greedy text" windows_example
elif [ "${LLAMETTE_REQUIRE_WINE:-0}" = 1 ]; then
    echo "==> Windows: missing:$win_missing"
    step "Windows tests (LLAMETTE_REQUIRE_WINE=1, but tools are missing)" false
else
    skip "Windows tests, missing:$win_missing (LLAMETTE_REQUIRE_WINE=1 makes this a failure)"
fi

# ------------------------------------------------------------------ mobile
mobile_build() {
    local t=$1 a=$root/target/$1/release/libllamette.a
    # Only the static library: it needs no platform linker.
    cargo rustc --release -p llamette-ffi --lib --crate-type staticlib --target "$t" &&
        [ -s "$a" ] && grep -aq llamette_session_generate "$a" &&
        echo "$a: $(du -h "$a" | cut -f1)"
}
# A target whose prebuilt standard library cannot be downloaded (rustup
# serves no aarch64-apple-ios-sim std for this toolchain here) is built with
# nightly's -Zbuild-std from rust-src, when nightly has it.
mobile_build_std() {
    local t=$1 dir=$root/target/build-std
    local a=$dir/$t/release/libllamette.a
    cargo +nightly rustc -Zbuild-std=std,panic_abort --release -p llamette-ffi --lib \
        --crate-type staticlib --target "$t" --target-dir "$dir" &&
        [ -s "$a" ] && grep -aq llamette_session_generate "$a" &&
        echo "$a: $(du -h "$a" | cut -f1)"
}
nightly_has_src() {
    rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'
}
for t in aarch64-apple-ios aarch64-apple-ios-sim aarch64-linux-android; do
    if has_target "$t"; then
        step "static library for $t" mobile_build "$t"
    elif nightly_has_src; then
        step "static library for $t (nightly -Zbuild-std)" mobile_build_std "$t"
    elif [ "${LLAMETTE_REQUIRE_MOBILE:-0}" = 1 ]; then
        step "static library for $t (rustup target add $t: not installed)" false
    else
        skip "static library for $t: rustup target add $t"
    fi
done

finish
