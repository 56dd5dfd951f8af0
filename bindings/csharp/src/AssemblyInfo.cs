// AssemblyInfo.cs: what the SDK-style project does not generate.
// SPDX-License-Identifier: MIT OR Apache-2.0
using System.Runtime.CompilerServices;

// The NUnit tests check the struct layouts against the C header.
[assembly: InternalsVisibleTo("Llamette.Tests")]
