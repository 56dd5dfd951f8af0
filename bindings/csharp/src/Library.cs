// Library.cs: the native library's version.
// SPDX-License-Identifier: MIT OR Apache-2.0
namespace Llamette
{
    /// <summary>The native library's version, and the C ABI this binding was written for.</summary>
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
    }
}
