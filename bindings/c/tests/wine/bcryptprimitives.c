/*
 * A stand-in for Windows' bcryptprimitives.dll, for running the tests under
 * Wine 8 (Debian 12), which lacks it. Rust's standard library (1.78 and
 * later) imports ProcessPrng from it to seed hash maps; every Windows 10 and
 * later has the real one. Test harness only: never shipped.
 *
 * Build: x86_64-w64-mingw32-gcc -shared -o bcryptprimitives.dll bcryptprimitives.c -ladvapi32
 */
#include <windows.h>

/* RtlGenRandom, exported by advapi32 under this name. */
BOOLEAN NTAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, n)) return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
