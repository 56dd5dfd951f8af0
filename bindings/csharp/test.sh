#!/usr/bin/env bash
# Builds and tests llamette's C# binding under Mono:
#
# - installs Mono's compiler and NUnit 2.6 when missing (Debian: mono-devel,
#   nunit-console; needs root, as on CI);
# - builds the native library (cargo build --release -p llamette-ffi);
# - compiles the binding with mcs -langversion:7.2 (warnings are errors, XML
#   docs checked), the console example, and the NUnit tests;
# - checks the C# struct mirrors against the C compiler's layout of llamette.h;
# - runs the example: run.c's greedy and sampled texts byte for byte, and a
#   missing model file reported with the library's message;
# - runs the NUnit tests with nunit-console and reads TestResult.xml.
#
# libllamette.so is copied next to Llamette.dll, where Mono's DllImport("llamette")
# finds it (as .NET finds runtimes/<rid>/native/ from a NuGet package); no
# LD_LIBRARY_PATH is needed. Needs ../shared beside the checkout.
# Ends with "N passed, N failed" (the script's checks plus one per NUnit test
# case); exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
src=$root/bindings/csharp
build=$root/target/bindings-csharp
shared=$root/../shared
greedy=$shared/testdata/stories260K.greedy.txt
tom=$shared/testdata/stories260K.t0.8-p0.9-s42.tom-and-his-dog.txt
# NUnit 2.6's framework (Debian: libnunit-framework2.6.3-cil, pulled in by nunit-console).
nunit_framework() { ls /usr/lib/cli/nunit.framework-2.6*/nunit.framework.dll 2>/dev/null | head -1; }
export RUST_BACKTRACE=0
start=$(date +%s)

passed=0
failed=0
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
finish() {
    echo "bindings/csharp/test.sh: $(($(date +%s) - start)) s"
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

# ------------------------------------------------------------------ tools
install_tools() {
    local need=()
    command -v mcs >/dev/null && command -v mono >/dev/null || need+=(mono-devel)
    command -v nunit-console >/dev/null && [ -n "$(nunit_framework)" ] || need+=(nunit-console)
    command -v cc >/dev/null || need+=(gcc libc6-dev)
    [ ${#need[@]} -eq 0 ] && return 0
    echo "installing: ${need[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "not root: run apt-get install ${need[*]} first"
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${need[@]}" >/dev/null ||
        { apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; }
}
step "Mono (mcs, mono), NUnit 2.6 (nunit-console), a C compiler" install_tools || true
nunit_fw=$(nunit_framework)
if ! command -v mcs >/dev/null || ! command -v nunit-console >/dev/null || [ -z "$nunit_fw" ]; then
    echo "no Mono or NUnit: stopping"
    finish
fi
echo "$(mcs --version); $(mono --version | head -1); $nunit_fw"

# ------------------------------------------------------------------ build
step "cargo build --release -p llamette-ffi -p llamette-cli" cargo build --release -p llamette-ffi -p llamette-cli
if [ ! -f target/release/libllamette.so ]; then
    echo "no native library: stopping"
    finish
fi
rm -rf "$build"
mkdir -p "$build"
cp target/release/libllamette.so "$build/"
q8=$build/stories260K-q8_0.gguf
step "a quantized model for the load-for-speed test (llamette quantize --type q8_0)" \
    target/release/llamette quantize models/stories260K.bin "$q8" --type q8_0 -z models/tok512.bin

MCS=(mcs -langversion:7.2 -warn:4 -warnaserror -debug -nologo)
compile_binding() {
    "${MCS[@]}" -target:library -out:"$build/Llamette.dll" -doc:"$build/Llamette.xml" \
        -r:System.dll -r:System.Core.dll "$src"/src/*.cs
}
step "binding: mcs -langversion:7.2 -warnaserror (src/*.cs -> Llamette.dll)" compile_binding

compile_example() {
    "${MCS[@]}" -target:exe -out:"$build/Example.exe" -r:"$build/Llamette.dll" "$src/example/Example.cs"
}
step "example: mcs (example/Example.cs -> Example.exe)" compile_example

compile_tests() {
    "${MCS[@]}" -target:library -out:"$build/Llamette.Tests.dll" -r:"$build/Llamette.dll" \
        -r:"$nunit_fw" -r:System.dll -r:System.Core.dll "$src"/tests/*.cs &&
        cp "$nunit_fw" "$build/"
}
step "tests: mcs against NUnit 2.6 (tests/*.cs -> Llamette.Tests.dll)" compile_tests

layout() {
    cc -std=c11 -Wall -Wextra -Werror -Iinclude "$src/tests/layout.c" -o "$build/layout" &&
        "$build/layout" >"$build/layout.txt" && echo "$(wc -l <"$build/layout.txt") sizes and offsets"
}
step "C layout of llamette.h's structs (for the NUnit layout test)" layout

# ------------------------------------------------------------------ example
example_greedy() {
    (cd / && mono "$build/Example.exe" -t 0 -n 256) >"$build/greedy.txt" &&
        cmp "$build/greedy.txt" "$greedy"
}
step "Example.exe -t 0 -n 256 prints run.c's greedy text byte for byte" example_greedy

example_sampled() {
    (cd / && mono "$build/Example.exe" "$root/models/stories260K.bin" -z "$root/models/tok512.bin" \
        -t 0.8 -p 0.9 -s 42 -n 200 -i "Tom and his dog") >"$build/tom.txt" &&
        cmp "$build/tom.txt" "$tom"
}
step "Example.exe -t 0.8 -p 0.9 -s 42 -n 200 -i 'Tom and his dog' prints run.c's text" example_sampled

example_missing() {
    local out rc
    out=$(mono "$build/Example.exe" /nonexistent/model.gguf 2>&1 >/dev/null)
    rc=$?
    echo "$out"
    [ "$rc" -eq 1 ] && grep -q "/nonexistent/model.gguf" <<<"$out" && grep -q "status Io" <<<"$out"
}
step "Example.exe with a missing model: exit 1 and the library's message" example_missing

# ------------------------------------------------------------------ NUnit
nunit() {
    (cd "$build" && LLAMETTE_ROOT=$root LLAMETTE_SHARED=$shared LLAMETTE_LAYOUT=$build/layout.txt LLAMETTE_Q8_GGUF=$q8 \
        nunit-console Llamette.Tests.dll -nologo -noshadow -labels -xml=TestResult.xml)
}
echo "==> NUnit: nunit-console Llamette.Tests.dll"
nunit
nunit_rc=$?
xml=$build/TestResult.xml
if [ -f "$xml" ]; then
    cases=$(grep -o '<test-case [^>]*>' "$xml")
    np=$(grep -c 'executed="True"[^>]*success="True"' <<<"$cases" || true)
    nf=$(grep -c 'executed="True"[^>]*success="False"' <<<"$cases" || true)
    nn=$(grep -c 'executed="False"' <<<"$cases" || true)
    echo "NUnit: $np passed, $nf failed, $nn not run (exit $nunit_rc)"
    grep 'success="False"' <<<"$cases" | sed 's/.*name="\([^"]*\)".*/  failed: \1/'
    passed=$((passed + np))
    failed=$((failed + nf))
    if [ "$np" -eq 0 ] || { [ "$nunit_rc" -ne 0 ] && [ "$nf" -eq 0 ]; }; then
        echo "FAILED: NUnit ran no test, or failed without a failing test case"
        failed=$((failed + 1))
    fi
else
    echo "FAILED: NUnit wrote no TestResult.xml (exit $nunit_rc)"
    failed=$((failed + 1))
fi

finish
