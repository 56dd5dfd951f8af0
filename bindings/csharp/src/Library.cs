// Library.cs: the native library's version and CPU kernels.
// SPDX-License-Identifier: MIT OR Apache-2.0
namespace Llamette
{
    /// <summary>The native library's version, the C ABI this binding was written for, and its kernels.</summary>
    public static class Library
    {
        /// <summary>
        /// <c>LLAMETTE_VERSION_NUMBER</c> of the include/llamette.h this binding
        /// mirrors: MAJOR * 1000000 + MINOR * 1000 + PATCH.
        /// </summary>
        public const int BindingVersionNumber = 1000;

        /// <summary>The library loaded at run time, MAJOR * 1000000 + MINOR * 1000 + PATCH (<c>llamette_version</c>).</summary>
        public static int VersionNumber { get { return (int)Native.llamette_version(); } }

        /// <summary>The library loaded at run time, "MAJOR.MINOR.PATCH" (<c>llamette_version_string</c>).</summary>
        public static string Version { get { return Utf8.FromCString(Native.llamette_version_string()); } }

        /// <summary>
        /// Whether the kernels in use on this CPU have fast paths for interleaved
        /// Q8_0 and Q4_0 matrices (<c>llamette_kernels_interleaved</c>): x86-64 with
        /// AVX2 or AVX-512, aarch64 with the dot product extension. Where it is
        /// true, opening a quantized GGUF model with
        /// <see cref="LlamaModel.FromBytes"/>(..., interleave: true) or
        /// <see cref="ModelLoad.InMemoryInterleaved"/> gives about twice the prompt
        /// speed; where it is false, those options open the model as it is.
        /// </summary>
        public static bool InterleavedKernels { get { return Native.llamette_kernels_interleaved() != 0; } }
    }
}
