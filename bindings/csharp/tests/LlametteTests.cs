// LlametteTests.cs: NUnit 2.6 tests of the C# binding (run by bindings/csharp/test.sh).
// SPDX-License-Identifier: MIT OR Apache-2.0
//
// Environment (set by test.sh; defaults assume the repository layout):
//   LLAMETTE_ROOT     the repository (models/, include/llamette.h)
//   LLAMETTE_SHARED   ../shared beside it (models/, testdata/)
//   LLAMETTE_LAYOUT   the output of tests/layout.c (struct layouts of the header)
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading;
using Llamette;
using NUnit.Framework;

namespace Llamette.Tests
{
    internal static class Paths
    {
        internal static readonly string Root = Env("LLAMETTE_ROOT", FindRoot());
        internal static readonly string Shared = Env("LLAMETTE_SHARED", Path.Combine(Root, "..", "shared"));
        internal static readonly string Models = Path.Combine(Root, "models");
        internal static readonly string SharedModels = Path.Combine(Shared, "models");
        internal static readonly string Bin = Path.Combine(Models, "stories260K.bin");
        internal static readonly string Tok = Path.Combine(Models, "tok512.bin");
        internal static readonly string Gguf = Path.Combine(SharedModels, "stories260K.gguf");
        internal static readonly string Greedy = Path.Combine(Shared, "testdata", "stories260K.greedy.txt");
        internal static readonly string Tom = Path.Combine(Shared, "testdata", "stories260K.t0.8-p0.9-s42.tom-and-his-dog.txt");
        internal static readonly string Header = Path.Combine(Root, "include", "llamette.h");

        private static string Env(string name, string fallback)
        {
            string v = Environment.GetEnvironmentVariable(name);
            return string.IsNullOrEmpty(v) ? fallback : v;
        }

        private static string FindRoot()
        {
            string d = Path.GetDirectoryName(typeof(Paths).Assembly.Location);
            while (d != null && !File.Exists(Path.Combine(d, "include", "llamette.h"))) d = Path.GetDirectoryName(d);
            return d ?? ".";
        }
    }

    internal static class Helpers
    {
        /// <summary>run.c's greedy output: the text of a -t 0 -n 256 run and a final newline.</summary>
        internal static readonly byte[] Reference = File.ReadAllBytes(Paths.Greedy);

        internal static GenerateOptions Greedy { get { return GenerateOptions.Greedy(); } }

        internal static SessionOptions Ctx(int n)
        {
            return new SessionOptions { ContextLength = n };
        }

        /// <summary>Whether the text plus run.c's final newline is the reference, byte for byte.</summary>
        internal static bool IsReference(string text)
        {
            return Encoding.UTF8.GetBytes(text + "\n").SequenceEqual(Reference);
        }

        internal static string Concat(IEnumerable<string> pieces)
        {
            StringBuilder sb = new StringBuilder();
            foreach (string p in pieces) sb.Append(p);
            return sb.ToString();
        }

        /// <summary>run.c's greedy run through the IEnumerable API on a fresh session.</summary>
        internal static string GreedyText(Session s)
        {
            s.Reset();
            return Concat(s.Generate("", Greedy));
        }

        internal static int[] GreedyTokens(Session s)
        {
            s.Reset();
            return s.GenerateTokens("", Greedy).Select(t => t.Id).ToArray();
        }
    }

    [TestFixture]
    public class VersionAndLayout
    {
        [Test]
        public void VersionMatchesTheHeaderTheBindingMirrors()
        {
            Assert.AreEqual(Library.BindingVersionNumber, Library.VersionNumber);
            string header = File.ReadAllText(Paths.Header);
            Match m = Regex.Match(header, @"#define LLAMETTE_VERSION_NUMBER (\d+)");
            Assert.IsTrue(m.Success);
            Assert.AreEqual(Library.BindingVersionNumber, int.Parse(m.Groups[1].Value));
            int n = Library.VersionNumber;
            Assert.AreEqual((n / 1000000) + "." + (n / 1000 % 1000) + "." + (n % 1000), Library.Version);
            Console.WriteLine("library " + Library.Version + " (" + n + ")");
        }

        [Test]
        public void EveryFunctionOfTheHeaderIsBound()
        {
            string header = File.ReadAllText(Paths.Header);
            HashSet<string> declared = new HashSet<string>(
                Regex.Matches(header, @"^[a-z][a-z0-9_ ]*[ *]+(llamette_[a-z_]+)\(", RegexOptions.Multiline)
                    .Cast<Match>().Select(x => x.Groups[1].Value));
            Type native = typeof(Library).Assembly.GetType("Llamette.Native", true);
            HashSet<string> bound = new HashSet<string>();
            foreach (MethodInfo mi in native.GetMethods(BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public))
            {
                DllImportAttribute a = (DllImportAttribute)Attribute.GetCustomAttribute(mi, typeof(DllImportAttribute));
                if (a != null) bound.Add(string.IsNullOrEmpty(a.EntryPoint) ? mi.Name : a.EntryPoint);
            }
            // A session in caller memory: the binding lets the library allocate (see Native.cs).
            Assert.IsTrue(declared.Remove("llamette_session_init"));
            Assert.Greater(declared.Count, 25);
            CollectionAssert.AreEquivalent(declared, bound, "llamette.h functions vs [DllImport]s");
            Console.WriteLine(declared.Count + " functions of llamette.h bound (llamette_session_init left out on purpose)");
        }

        [Test]
        public void StructLayoutsMatchTheHeader()
        {
            string path = Environment.GetEnvironmentVariable("LLAMETTE_LAYOUT");
            if (string.IsNullOrEmpty(path)) Assert.Ignore("LLAMETTE_LAYOUT not set (test.sh sets it)");
            Dictionary<string, Type> mirrors = new Dictionary<string, Type>
            {
                { "llamette_model_info", typeof(Library).Assembly.GetType("Llamette.NativeModelInfo", true) },
                { "llamette_session_params", typeof(Library).Assembly.GetType("Llamette.NativeSessionParams", true) },
                { "llamette_sampler_params", typeof(Library).Assembly.GetType("Llamette.NativeSamplerParams", true) },
                { "llamette_step_result", typeof(Library).Assembly.GetType("Llamette.NativeStepResult", true) },
                { "llamette_generate_result", typeof(Library).Assembly.GetType("Llamette.NativeGenerateResult", true) },
                { "llamette_parallel", typeof(Library).Assembly.GetType("Llamette.NativeParallel", true) },
                { "llamette_chat_message", typeof(Library).Assembly.GetType("Llamette.NativeChatMessage", true) },
                { "llamette_chat_options", typeof(Library).Assembly.GetType("Llamette.NativeChatOptions", true) },
                { "llamette_chat_prefill_result", typeof(Library).Assembly.GetType("Llamette.NativeChatPrefillResult", true) },
                { "llamette_generate_options", typeof(Library).Assembly.GetType("Llamette.NativeGenerateOptions", true) },
            };
            int checkedFields = 0;
            HashSet<string> seen = new HashSet<string>();
            foreach (string line in File.ReadAllLines(path))
            {
                string[] w = line.Split(' ');
                string[] name = w[0].Split('.');
                Type t = mirrors[name[0]];
                if (name.Length == 1)
                {
                    Assert.AreEqual(int.Parse(w[1]), Marshal.SizeOf(t), "sizeof " + name[0]);
                    continue;
                }
                FieldInfo f = t.GetField(name[1], BindingFlags.Instance | BindingFlags.Public);
                Assert.IsNotNull(f, w[0] + " has no C# field");
                Assert.AreEqual(int.Parse(w[1]), Marshal.OffsetOf(t, name[1]).ToInt32(), "offsetof " + w[0]);
                Assert.AreEqual(int.Parse(w[2]), Marshal.SizeOf(f.FieldType), "sizeof " + w[0]);
                seen.Add(w[0]);
                checkedFields++;
            }
            foreach (KeyValuePair<string, Type> kv in mirrors)
            {
                foreach (FieldInfo f in kv.Value.GetFields(BindingFlags.Instance | BindingFlags.Public))
                    Assert.IsTrue(seen.Contains(kv.Key + "." + f.Name), kv.Key + "." + f.Name + " is not in the header");
            }
            Console.WriteLine("struct layouts: " + mirrors.Count + " structs, " + checkedFields + " fields agree with the C compiler");
        }

        [DllImport("llamette", CallingConvention = CallingConvention.Cdecl, EntryPoint = "llamette_model_get_info")]
        private static extern uint GetInfoRaw(IntPtr model, IntPtr info);

        /// <summary>
        /// Every struct starts with struct_size: the library refuses one below the
        /// first version's (and writes nothing), and fills a later binding's larger
        /// struct as far as it knows it, leaving the rest alone.
        /// </summary>
        [Test]
        public void StructSizesAreCheckedByTheLibrary()
        {
            using (LlamaModel m = LlamaModel.OpenDefault())
            using (LlamaModel.Lease l = m.Acquire())
            {
                NativeModelInfo i = default(NativeModelInfo);
                i.struct_size = new UIntPtr(4);
                i.dim = 777;
                Assert.AreEqual((uint)LlametteStatus.InvalidArgument, Native.llamette_model_get_info(l.Pointer, ref i));
                StringAssert.Contains("struct_size", Utf8.FromCString(Native.llamette_last_error()));
                Assert.AreEqual(777u, i.dim);

                int size = Marshal.SizeOf(typeof(NativeModelInfo));
                IntPtr mem = Marshal.AllocHGlobal(size + 16);
                try
                {
                    for (int k = 0; k < size + 16; k++) Marshal.WriteByte(mem, k, 0xAB);
                    Marshal.WriteIntPtr(mem, new IntPtr(size + 16));
                    Assert.AreEqual(0u, GetInfoRaw(l.Pointer, mem));
                    NativeModelInfo got = (NativeModelInfo)Marshal.PtrToStructure(mem, typeof(NativeModelInfo));
                    Assert.AreEqual(64u, got.dim);
                    Assert.AreEqual((ulong)(size + 16), got.struct_size.ToUInt64());
                    for (int k = size; k < size + 16; k++) Assert.AreEqual(0xAB, Marshal.ReadByte(mem, k), "byte " + k);
                }
                finally
                {
                    Marshal.FreeHGlobal(mem);
                }

                NativeSamplerParams sp = GenerateOptions.Greedy().ToNative();
                sp.struct_size = new UIntPtr(8);
                NativeSessionParams p = new SessionOptions().ToNative();
                p.struct_size = UIntPtr.Zero;
                UIntPtr need;
                Assert.AreEqual((uint)LlametteStatus.InvalidArgument, Native.llamette_session_required_bytes(l.Pointer, ref p, out need));
                sp.struct_size = UIntPtr.Zero;
                Assert.AreEqual((uint)LlametteStatus.InvalidArgument, Native.llamette_sampler_params_default(ref sp));
            }
        }

        [Test]
        public void SamplerDefaultsAreTheLibrarys()
        {
            Type native = typeof(Library).Assembly.GetType("Llamette.Native", true);
            Type spType = typeof(Library).Assembly.GetType("Llamette.NativeSamplerParams", true);
            object sized = Activator.CreateInstance(spType);
            spType.GetField("struct_size").SetValue(sized, new UIntPtr((uint)Marshal.SizeOf(spType)));
            object[] args = { sized };
            Assert.AreEqual(0u, native.GetMethod("llamette_sampler_params_default", BindingFlags.Static | BindingFlags.NonPublic).Invoke(null, args));
            object ours = typeof(GenerateOptions).GetMethod("ToNative", BindingFlags.Instance | BindingFlags.NonPublic)
                .Invoke(new GenerateOptions(), null);
            foreach (FieldInfo f in spType.GetFields())
                Assert.AreEqual(f.GetValue(args[0]), f.GetValue(ours), "default of " + f.Name);
        }

        [Test]
        public void StatusDescriptionsComeFromTheLibrary()
        {
            Assert.AreEqual("ok", LlametteException.Describe(LlametteStatus.Ok));
            foreach (LlametteStatus s in Enum.GetValues(typeof(LlametteStatus)))
                Assert.AreNotEqual("unknown status code", LlametteException.Describe(s), s.ToString());
            Assert.AreEqual("unknown status code", LlametteException.Describe((LlametteStatus)999));
        }
    }

    [TestFixture]
    public class Greedy
    {
        /// <summary>Every way to open stories260K: run.c's greedy text, byte for byte, through the IEnumerable API.</summary>
        [TestCase("embedded")]
        [TestCase("file")]
        [TestCase("gguf")]
        [TestCase("bytes")]
        [TestCase("native memory")]
        public void GenerateEqualsRunC(string source)
        {
            IntPtr mem = IntPtr.Zero;
            LlamaModel model;
            switch (source)
            {
                case "embedded": model = LlamaModel.OpenDefault(); break;
                case "file": model = LlamaModel.FromFile(Paths.Bin, Paths.Tok); break;
                case "gguf": model = LlamaModel.FromFile(Paths.Gguf); break;
                case "bytes": model = LlamaModel.FromBytes(File.ReadAllBytes(Paths.Bin), File.ReadAllBytes(Paths.Tok)); break;
                default:
                    byte[] g = File.ReadAllBytes(Paths.Gguf);
                    mem = Marshal.AllocHGlobal(g.Length);
                    Marshal.Copy(g, 0, mem, g.Length);
                    IntPtr toFree = mem;
                    model = LlamaModel.FromMemory(mem, g.Length, released: () => Marshal.FreeHGlobal(toFree));
                    break;
            }
            using (model)
            using (Session s = new Session(model, Helpers.Ctx(256)))
            {
                StringBuilder text = new StringBuilder();
                int pieces = 0;
                foreach (string piece in s.Generate("", Helpers.Greedy))
                {
                    Assert.IsNotEmpty(piece);
                    text.Append(piece);
                    pieces++;
                }
                Assert.IsTrue(Helpers.IsReference(text.ToString()), source + ": differs from run.c:\n" + text);
                Assert.AreEqual(StopReason.ContextFull, s.LastStopReason);
                Assert.AreEqual(256, s.Position);
                Assert.AreEqual(256, s.ContextLength);
                Console.WriteLine("greedy, " + source + " (" + model.Info.Format + "): " + pieces + " pieces, "
                    + Encoding.UTF8.GetByteCount(text.ToString()) + " bytes + newline = run.c's "
                    + Helpers.Reference.Length + " bytes");
            }
        }

        [Test]
        public void CallbackVariantEqualsRunC()
        {
            using (LlamaModel model = LlamaModel.OpenDefault())
            using (Session s = new Session(model, Helpers.Ctx(256)))
            {
                StringBuilder text = new StringBuilder();
                List<int> ids = new List<int>();
                GenerateResult r = s.Generate("", Helpers.Greedy, (token, piece) =>
                {
                    ids.Add(token);
                    text.Append(piece);
                    return true;
                });
                Assert.IsTrue(Helpers.IsReference(text.ToString()));
                Assert.AreEqual(256, r.TokenCount);
                Assert.AreEqual(StopReason.ContextFull, r.StopReason);
                Assert.AreEqual(Helpers.GreedyTokens(s), ids.ToArray());
            }
        }

        [Test]
        public void StepByStepEqualsGenerate()
        {
            using (LlamaModel model = LlamaModel.OpenDefault())
            using (Session s = new Session(model, Helpers.Ctx(256)))
            {
                int[] expected = Helpers.GreedyTokens(s);
                s.Reset();
                s.Prefill(new[] { model.Info.BosToken });
                Assert.AreEqual(1, s.Position);
                List<int> ids = new List<int>();
                StringBuilder text = new StringBuilder();
                while (true)
                {
                    GeneratedToken t;
                    try
                    {
                        t = s.Step(Helpers.Greedy);
                    }
                    catch (LlametteException e)
                    {
                        Assert.AreEqual(LlametteStatus.ContextFull, e.Status);
                        break;
                    }
                    Assert.IsFalse(t.IsEnd);
                    ids.Add(t.Id);
                    text.Append(t.Text);
                }
                Assert.AreEqual(expected, ids.ToArray());
                Assert.IsTrue(Helpers.IsReference(text.ToString()));
            }
        }

        /// <summary>
        /// Every pool gives the inline tokens. stories260K's one-token products are
        /// too small to split (only its prompts run on a pool), so llama.cpp's
        /// dim-256 F16 file, whose products all split, runs the pools in every step.
        /// </summary>
        [Test]
        public void ThreadPoolsGiveTheSameTokens()
        {
            string t256 = Path.Combine(Paths.Shared, "testdata", "llamacpp-quants", "t256-f16.gguf");
            foreach (LlamaModel model in new[] { LlamaModel.OpenDefault(), LlamaModel.FromFile(t256) })
            using (model)
            using (Session s = new Session(model, Helpers.Ctx(128)))
            using (Session built = new Session(model, new SessionOptions { ContextLength = 128, Threads = 2 }))
            {
                int[] one = Helpers.GreedyTokens(s);
                Assert.AreEqual(one, Helpers.GreedyTokens(built), "SessionOptions.Threads = 2");
                s.UseDotNetThreadPool(4);
                Assert.AreEqual(one, Helpers.GreedyTokens(s), ".NET thread pool (Parallel.For), 4 tasks");
                s.UseDotNetThreadPool(2);
                Assert.AreEqual(one, Helpers.GreedyTokens(s), ".NET thread pool replaced");
                s.SetThreads(1);
                Assert.AreEqual(one, Helpers.GreedyTokens(s), "back to one thread");
                Console.WriteLine("threads: built-in pool (2), .NET Parallel.For (4, 2), inline: the same " + one.Length + " tokens");
            }
        }

        /// <summary>run.c -t 0.8 -p 0.9 -s 42 -n 200 -i "Tom and his dog", as the example prints it.</summary>
        [Test]
        public void SampledRunEqualsRunC()
        {
            byte[] reference = File.ReadAllBytes(Paths.Tom);
            using (LlamaModel model = LlamaModel.FromFile(Paths.Bin, Paths.Tok))
            using (Session s = new Session(model, Helpers.Ctx(200)))
            {
                string prompt = "Tom and his dog";
                string text = model.Detokenize(model.Tokenize(prompt, true))
                    + Helpers.Concat(s.Generate(prompt, GenerateOptions.Sampled(0.8f, 0.9f, 42))) + "\n";
                Assert.AreEqual(Encoding.UTF8.GetString(reference), text);
                Assert.AreEqual(reference, Encoding.UTF8.GetBytes(text));
            }
        }

        [Test]
        public void MaxTokensAndResuming()
        {
            using (LlamaModel model = LlamaModel.OpenDefault())
            using (Session s = new Session(model, Helpers.Ctx(256)))
            {
                List<GeneratedToken> first = s.GenerateTokens("", new GenerateOptions { Temperature = 0, MaxTokens = 10 }).ToList();
                Assert.AreEqual(10, first.Count);
                Assert.AreEqual(StopReason.MaxTokens, s.LastStopReason);
                StringBuilder text = new StringBuilder(string.Concat(first.Select(t => t.Text)));
                GenerateResult r = s.Generate(null, new GenerateOptions { Temperature = 0, MaxTokens = 7 }, (t, p) => { text.Append(p); return true; });
                Assert.AreEqual(7, r.TokenCount);
                Assert.AreEqual(StopReason.MaxTokens, r.StopReason);
                // The rest in a third call: the three make run.c's text.
                r = s.Generate(null, Helpers.Greedy, (t, p) => { text.Append(p); return true; });
                Assert.AreEqual(256 - 17, r.TokenCount);
                Assert.IsTrue(Helpers.IsReference(text.ToString()));
            }
        }

        [Test]
        public void PromptGetsBosOnlyWhenTheSessionIsEmpty()
        {
            using (LlamaModel model = LlamaModel.OpenDefault())
            using (Session s = new Session(model, Helpers.Ctx(128)))
            {
                int[] once = model.Tokenize("Once upon a time", true);
                Assert.AreEqual(model.Info.BosToken, once[0]);
                s.Generate("Once upon a time", new GenerateOptions { Temperature = 0, MaxTokens = 1 }).ToList();
                Assert.AreEqual(once.Length, s.Position);
                int before = s.Position;
                int[] more = model.Tokenize(" there", false);
                s.Generate(" there", new GenerateOptions { Temperature = 0, MaxTokens = 1 }).ToList();
                // The pending token, then the prompt without a BOS.
                Assert.AreEqual(before + 1 + more.Length, s.Position);
            }
        }
    }

    [TestFixture]
    public class Cancellation
    {
        /// <summary>Cancelled from the consuming loop after 5 pieces; the session then goes on to run.c's full text.</summary>
        [Test]
        public void CancelledEnumerationStopsAndTheSessionGoesOn()
        {
            using (LlamaModel model = LlamaModel.OpenDefault())
            using (Session s = new Session(model, Helpers.Ctx(256)))
            using (CancellationTokenSource cts = new CancellationTokenSource())
            {
                StringBuilder text = new StringBuilder();
                int n = 0;
                Assert.Throws<OperationCanceledException>(() =>
                {
                    foreach (string piece in s.Generate("", Helpers.Greedy, cts.Token))
                    {
                        text.Append(piece);
                        if (++n == 5) cts.Cancel();
                    }
                });
                Assert.AreEqual(5, n, "no piece after the cancellation");
                Assert.AreEqual(5, s.Position, "BOS + 4 fed, the 5th pending");
                text.Append(Helpers.Concat(s.Generate(null, Helpers.Greedy)));
                Assert.IsTrue(Helpers.IsReference(text.ToString()), "resumed text differs:\n" + text);
            }
        }

        /// <summary>
        /// Another thread cancels while the library runs llamette_session_generate
        /// (the callback holds it at the 3rd token until the cancel is done): the C
        /// ABI's flag stops it before the 4th token.
        /// </summary>
        [Test]
        [Timeout(20000)]
        public void CancelFromAnotherThreadStopsTheNativeLoop()
        {
            using (LlamaModel model = LlamaModel.OpenDefault())
            using (Session s = new Session(model, Helpers.Ctx(256)))
            using (CancellationTokenSource cts = new CancellationTokenSource())
            using (ManualResetEventSlim atThird = new ManualResetEventSlim())
            using (ManualResetEventSlim cancelled = new ManualResetEventSlim())
            {
                Stopwatch sw = new Stopwatch();
                Thread canceller = new Thread(() =>
                {
                    atThird.Wait();
                    sw.Start();
                    cts.Cancel();
                    cancelled.Set();
                });
                canceller.Start();
                StringBuilder text = new StringBuilder();
                int n = 0;
                OperationCanceledException e = Assert.Throws<OperationCanceledException>(() =>
                    s.Generate("", Helpers.Greedy, (token, piece) =>
                    {
                        text.Append(piece);
                        if (++n == 3)
                        {
                            atThird.Set();
                            cancelled.Wait();
                        }
                        return true;
                    }, cts.Token));
                sw.Stop();
                canceller.Join();
                Assert.AreEqual(cts.Token, e.CancellationToken);
                Assert.IsInstanceOf<LlametteException>(e.InnerException);
                Assert.AreEqual(LlametteStatus.Cancelled, ((LlametteException)e.InnerException).Status);
                Assert.AreEqual(3, n);
                Console.WriteLine("cancel from another thread: " + n + " tokens, stopped "
                    + sw.Elapsed.TotalMilliseconds.ToString("F3") + " ms after Cancel(); library said: "
                    + e.InnerException.Message);
                text.Append(Helpers.Concat(s.Generate(null, Helpers.Greedy)));
                Assert.IsTrue(Helpers.IsReference(text.ToString()));
            }
        }

        /// <summary>
        /// A timer cancels a long run of generations (reset and generate, again
        /// and again) at a random point: it stops promptly, and the session then
        /// gives run.c's text.
        /// </summary>
        [Test]
        [Timeout(30000)]
        public void CancelAfterATimeIsPrompt()
        {
            using (LlamaModel model = LlamaModel.OpenDefault())
            using (Session s = new Session(model))
            using (CancellationTokenSource cts = new CancellationTokenSource())
            {
                long cancelledAt = 0;
                Timer timer = new Timer(_ =>
                {
                    Interlocked.Exchange(ref cancelledAt, Stopwatch.GetTimestamp());
                    cts.Cancel();
                }, null, 200, Timeout.Infinite);
                long tokens = 0;
                int runs = 0;
                try
                {
                    while (true)
                    {
                        s.Reset();
                        runs++;
                        foreach (GeneratedToken t in s.GenerateTokens("", GenerateOptions.Sampled(1.0f, 0.9f, (ulong)runs), cts.Token))
                            tokens++;
                    }
                }
                catch (OperationCanceledException)
                {
                }
                long stoppedAt = Stopwatch.GetTimestamp();
                timer.Dispose();
                double ms = (stoppedAt - Interlocked.Read(ref cancelledAt)) * 1000.0 / Stopwatch.Frequency;
                Console.WriteLine("cancel after 200 ms: " + tokens + " tokens in " + runs + " generations, stopped "
                    + ms.ToString("F3") + " ms after Cancel()");
                Assert.Less(ms, 1000.0);
                using (Session fresh = new Session(model, Helpers.Ctx(256))) Assert.IsTrue(Helpers.IsReference(Helpers.GreedyText(fresh)));
                s.Reset();
                Assert.AreEqual(256, s.GenerateTokens("", new GenerateOptions { Temperature = 0, MaxTokens = 256 }).Count());
            }
        }

        /// <summary>
        /// A long prefill (480 tokens, about a tenth of a second here) cancelled a
        /// third of the way through by a timer: it stops within a layer's work,
        /// keeps whole batches, and prefilling the rest gives the same session as
        /// one uninterrupted prefill.
        /// </summary>
        [Test]
        [Timeout(60000)]
        public void CancelledPrefillStopsMidwayAndCanBeCompleted()
        {
            using (LlamaModel model = LlamaModel.OpenDefault())
            using (Session s = new Session(model))
            {
                int[] ids = new int[480];
                ids[0] = model.Info.BosToken;
                for (int i = 1; i < ids.Length; i++) ids[i] = 260 + i % 200;
                Stopwatch sw = Stopwatch.StartNew();
                s.Prefill(ids);
                double full = sw.Elapsed.TotalMilliseconds;
                int[] expected = s.GenerateTokens(null, new GenerateOptions { Temperature = 0, MaxTokens = 20 }).Select(t => t.Id).ToArray();

                int midway = 0;
                for (int attempt = 0; attempt < 5 && midway == 0; attempt++)
                {
                    s.Reset();
                    using (CancellationTokenSource cts = new CancellationTokenSource())
                    {
                        long cancelledAt = 0;
                        using (Timer timer = new Timer(_ =>
                        {
                            Interlocked.Exchange(ref cancelledAt, Stopwatch.GetTimestamp());
                            cts.Cancel();
                        }, null, (int)Math.Max(1, full / 3), Timeout.Infinite))
                        {
                            try
                            {
                                s.Prefill(ids, cts.Token);
                                continue; // the timer was late: the prefill finished
                            }
                            catch (OperationCanceledException)
                            {
                            }
                            double ms = (Stopwatch.GetTimestamp() - Interlocked.Read(ref cancelledAt)) * 1000.0 / Stopwatch.Frequency;
                            int pos = s.Position;
                            Assert.AreEqual(0, pos % 32, "whole batches of 32");
                            Assert.Less(pos, ids.Length);
                            if (pos > 0) midway++;
                            s.Prefill(ids.Skip(pos).ToArray());
                            Assert.AreEqual(ids.Length, s.Position);
                            int[] got = s.GenerateTokens(null, new GenerateOptions { Temperature = 0, MaxTokens = 20 }).Select(t => t.Id).ToArray();
                            Assert.AreEqual(expected, got);
                            Console.WriteLine("prefill of " + ids.Length + " tokens (" + full.ToString("F1") + " ms) cancelled after "
                                + pos + " positions, " + ms.ToString("F3") + " ms after Cancel(); the rest prefilled: the same next 20 tokens");
                        }
                    }
                }
                Assert.Greater(midway, 0, "no cancellation landed in the middle of the prefill");
            }
        }

        /// <summary>
        /// The token is cancelled from inside the callback, which also returns
        /// false: the library finishes (StopReason.Callback) with its cancel flag
        /// still raised. The binding consumes it, so the next call is not stopped.
        /// </summary>
        [Test]
        public void ACancellationThatArrivesAsTheCallEndsDoesNotLeak()
        {
            using (LlamaModel model = LlamaModel.OpenDefault())
            using (Session s = new Session(model, Helpers.Ctx(256)))
            using (CancellationTokenSource cts = new CancellationTokenSource())
            {
                StringBuilder text = new StringBuilder();
                GenerateResult r = s.Generate("", Helpers.Greedy, (token, piece) =>
                {
                    text.Append(piece);
                    if (text.Length < 20) return true;
                    cts.Cancel();
                    return false;
                }, cts.Token);
                Assert.AreEqual(StopReason.Callback, r.StopReason);
                // Without the binding's clean-up this call would fail at once with Cancelled.
                text.Append(Helpers.Concat(s.Generate(null, Helpers.Greedy)));
                Assert.IsTrue(Helpers.IsReference(text.ToString()));
                Console.WriteLine("late cancellation: " + r.TokenCount + " tokens, then the rest of run.c's text");
            }
        }

        [Test]
        public void AnAlreadyCancelledTokenChangesNothing()
        {
            using (LlamaModel model = LlamaModel.OpenDefault())
            using (Session s = new Session(model, Helpers.Ctx(256)))
            {
                CancellationToken token = new CancellationToken(true);
                Assert.Throws<OperationCanceledException>(() => s.Generate("Once", Helpers.Greedy, token).ToList());
                Assert.Throws<OperationCanceledException>(() => s.Generate("Once", Helpers.Greedy, (t, p) => true, token));
                Assert.Throws<OperationCanceledException>(() => s.Prefill(new[] { 1 }, token));
                Assert.AreEqual(0, s.Position);
                Assert.IsTrue(Helpers.IsReference(Helpers.Concat(s.Generate("", Helpers.Greedy))));
            }
        }

        /// <summary>Session.Cancel (the C ABI's own call) from the callback: a LlametteException, not an OperationCanceledException.</summary>
        [Test]
        public void SessionCancelThrowsLlametteException()
        {
            using (LlamaModel model = LlamaModel.OpenDefault())
            using (Session s = new Session(model, Helpers.Ctx(256)))
            {
                StringBuilder text = new StringBuilder();
                int n = 0;
                LlametteException e = Assert.Throws<LlametteException>(() => s.Generate("", Helpers.Greedy, (token, piece) =>
                {
                    text.Append(piece);
                    if (++n == 4) s.Cancel();
                    return true;
                }));
                Assert.AreEqual(LlametteStatus.Cancelled, e.Status);
                StringAssert.Contains("cancelled", e.NativeMessage);
                Assert.AreEqual(4, n);
                text.Append(Helpers.Concat(s.Generate(null, Helpers.Greedy)));
                Assert.IsTrue(Helpers.IsReference(text.ToString()));
            }
        }
    }

    [TestFixture]
    public class Errors
    {
        /// <summary>
        /// Sampler settings out of range are InvalidParameterException naming the
        /// property (the library's check: nothing clamped), thrown before anything
        /// runs: the session and the chat stay as they were.
        /// </summary>
        [Test]
        public void InvalidSamplerSettingsAreTypedErrors()
        {
            GenerateOptions[] bad =
            {
                new GenerateOptions { Temperature = float.NaN },
                new GenerateOptions { Temperature = -0.5f },
                new GenerateOptions { Temperature = float.PositiveInfinity },
                new GenerateOptions { TopP = 1.5f },
                new GenerateOptions { TopP = float.NaN },
                new GenerateOptions { MinP = 2.0f },
                new GenerateOptions { RepeatPenalty = 0.0f },
                new GenerateOptions { RepeatPenalty = -1.0f },
                new GenerateOptions { TopK = -1 },
                new GenerateOptions { RepeatLastN = -3 },
                new GenerateOptions { MaxTokens = -1 },
            };
            string[] names = { "Temperature", "Temperature", "Temperature", "TopP", "TopP", "MinP", "RepeatPenalty",
                               "RepeatPenalty", "TopK", "RepeatLastN", "MaxTokens" };
            using (LlamaModel model = LlamaModel.OpenDefault())
            using (Session s = new Session(model, Helpers.Ctx(64)))
            using (ChatSession chat = new ChatSession(model, null, Helpers.Ctx(256)))
            {
                for (int i = 0; i < bad.Length; i++)
                {
                    GenerateOptions o = bad[i];
                    InvalidParameterException e = Assert.Throws<InvalidParameterException>(() => s.Generate("Once upon a time", o));
                    Assert.AreEqual(names[i], e.ParameterName);
                    Assert.AreEqual(LlametteStatus.InvalidArgument, e.Status);
                    Assert.IsInstanceOf<LlametteException>(e);
                    StringAssert.StartsWith("invalid ", e.NativeMessage);
                    if (i == 0) Console.WriteLine("NaN temperature: " + e.Message);
                    Assert.Throws<InvalidParameterException>(() => s.GenerateTokens("Once", o));
                    Assert.Throws<InvalidParameterException>(() => s.Generate("Once", o, (t, x) => true));
                    Assert.Throws<InvalidParameterException>(() => s.Step(o));
                    Assert.AreEqual(0, s.Position, names[i] + ": nothing fed");
                    chat.GenerateOptions = o;
                    Assert.Throws<InvalidParameterException>(() => chat.Send("Hello").ToList());
                    Assert.Throws<InvalidParameterException>(() => chat.Send("Hello", (t, x) => true));
                    Assert.AreEqual(0, chat.Messages.Count, names[i] + ": the turn did not happen");
                    Assert.AreEqual(0, chat.Session.Position);
                }
                // Valid settings at the edges of the ranges work.
                GenerateOptions edge = new GenerateOptions { Temperature = 0, TopP = 1, MinP = 1, RepeatPenalty = 0.5f, MaxTokens = 3 };
                Assert.AreEqual(3, s.GenerateTokens("Once", edge).Count());
                chat.GenerateOptions = edge;
                Assert.IsNotNull(chat.Send("Hello", (t, x) => true));
                Assert.AreEqual(2, chat.Messages.Count);
            }
        }

        [Test]
        public void MissingFileThrowsWithTheLibrarysMessage()
        {
            string path = Path.Combine(Path.GetTempPath(), "llamette-no-such-dir", "model.gguf");
            LlametteException e = Assert.Throws<LlametteException>(() => LlamaModel.FromFile(path));
            Assert.AreEqual(LlametteStatus.Io, e.Status);
            StringAssert.Contains(path, e.NativeMessage);
            Assert.AreEqual(e.NativeMessage + " (" + LlametteException.Describe(LlametteStatus.Io) + ")", e.Message);
            Console.WriteLine("missing file: " + e.Status + ": " + e.Message);
            e = Assert.Throws<LlametteException>(() => LlamaModel.FromFile(Paths.Bin, path));
            Assert.AreEqual(LlametteStatus.Io, e.Status);
            StringAssert.Contains(path, e.NativeMessage);
            e = Assert.Throws<LlametteException>(() => LlamaModel.FromFile(Path.GetTempPath()));
            Assert.AreEqual(LlametteStatus.Io, e.Status);
        }

        [Test]
        public void CorruptFilesThrowWithTheLibrarysMessage()
        {
            // A tokenizer is no model.
            LlametteException e = Assert.Throws<LlametteException>(() => LlamaModel.FromFile(Paths.Tok));
            Assert.AreEqual(LlametteStatus.BadFile, e.Status);
            Assert.IsNotEmpty(e.NativeMessage);
            Console.WriteLine("tokenizer as model: " + e.Message);

            // A truncated model and a truncated GGUF, from a file and from bytes.
            byte[] bin = File.ReadAllBytes(Paths.Bin);
            byte[] gguf = File.ReadAllBytes(Paths.Gguf);
            string tmp = Path.Combine(Path.GetTempPath(), "llamette-cs-truncated-" + Process.GetCurrentProcess().Id + ".gguf");
            try
            {
                File.WriteAllBytes(tmp, gguf.Take(gguf.Length / 2).ToArray());
                e = Assert.Throws<LlametteException>(() => LlamaModel.FromFile(tmp));
                Assert.AreEqual(LlametteStatus.BadFile, e.Status);
                Assert.IsNotEmpty(e.NativeMessage);
                Console.WriteLine("half a GGUF file: " + e.Message);
            }
            finally
            {
                File.Delete(tmp);
            }
            e = Assert.Throws<LlametteException>(() => LlamaModel.FromBytes(bin.Take(bin.Length - 100).ToArray(), File.ReadAllBytes(Paths.Tok)));
            Assert.AreEqual(LlametteStatus.BadFile, e.Status);
            Console.WriteLine("truncated .bin from bytes: " + e.Message);
            e = Assert.Throws<LlametteException>(() => LlamaModel.FromBytes(new byte[0]));
            Assert.AreEqual(LlametteStatus.BadFile, e.Status);
            e = Assert.Throws<LlametteException>(() => LlamaModel.FromBytes(Encoding.ASCII.GetBytes("not a model at all, just some text")));
            Assert.AreEqual(LlametteStatus.BadFile, e.Status);
            // A tokenizer that is not one: malformed bytes (BadFile, "tokenizer: ..."),
            // too few tokens for the model (BadTokenizer).
            e = Assert.Throws<LlametteException>(() => LlamaModel.FromFile(Paths.Bin, Paths.Bin));
            Assert.AreEqual(LlametteStatus.BadFile, e.Status);
            StringAssert.StartsWith("tokenizer:", e.NativeMessage);
            Console.WriteLine("model as tokenizer: " + e.Message);
            byte[] tok = File.ReadAllBytes(Paths.Tok);
            e = Assert.Throws<LlametteException>(() => LlamaModel.FromBytes(bin, tok.Take(tok.Length / 2).ToArray()));
            Assert.AreEqual(LlametteStatus.BadTokenizer, e.Status);
            Console.WriteLine("half a tokenizer: " + e.Message);
        }

        [Test]
        public void RequiredBytesGrowWithTheContext()
        {
            using (LlamaModel model = LlamaModel.OpenDefault())
            {
                long small = Session.RequiredBytes(model, Helpers.Ctx(256));
                long full = Session.RequiredBytes(model);
                long f16 = Session.RequiredBytes(model, new SessionOptions { KvCacheType = KvCacheType.F16 });
                Assert.Greater(small, 0);
                Assert.Greater(full, small);
                Assert.Less(f16, full);
                Console.WriteLine("session bytes: context 256: " + small + ", 512: " + full + ", 512 with an f16 KV cache: " + f16);
            }
        }

        [Test]
        public void OptionsForABudgetFitItAndRun()
        {
            using (LlamaModel model = LlamaModel.OpenDefault())
            {
                foreach (KvCacheType kv in new[] { KvCacheType.F32, KvCacheType.F16, KvCacheType.Q8_0 })
                {
                    const long budget = 250000;
                    SessionOptions o = Session.OptionsForBudget(model, kv, budget);
                    Assert.AreEqual(kv, o.KvCacheType);
                    Assert.LessOrEqual(Session.RequiredBytes(model, o), budget);
                    Assert.GreaterOrEqual(o.ContextLength, 1);
                    using (Session s = new Session(model, o))
                        Assert.AreEqual(o.ContextLength, s.ContextLength);
                    Console.WriteLine(kv + " in " + budget + " bytes: context " + o.ContextLength + ", batch " + o.Batch);
                }
                LlametteException e = Assert.Throws<LlametteException>(
                    () => Session.OptionsForBudget(model, KvCacheType.Q8_0, 1000));
                Assert.AreEqual(LlametteStatus.BufferTooSmall, e.Status);
            }
        }

        [Test]
        public void SessionErrorsCarryStatusAndMessage()
        {
            using (LlamaModel model = LlamaModel.OpenDefault())
            {
                LlametteException e = Assert.Throws<LlametteException>(() => new Session(model, Helpers.Ctx(100000)));
                Assert.AreEqual(LlametteStatus.InvalidArgument, e.Status);
                using (Session s = new Session(model, Helpers.Ctx(16)))
                {
                    e = Assert.Throws<LlametteException>(() => s.Step(Helpers.Greedy));
                    Assert.AreEqual(LlametteStatus.NothingToSample, e.Status);
                    StringAssert.Contains("nothing to sample", e.NativeMessage);
                    e = Assert.Throws<LlametteException>(() => s.Prefill(new[] { 1, 512 }));
                    Assert.AreEqual(LlametteStatus.UnknownToken, e.Status);
                    StringAssert.Contains("512", e.NativeMessage);
                    // A typed subclass for the statuses a caller handles on its own.
                    e = Assert.Throws<ContextFullException>(() => s.Prefill(Enumerable.Repeat(300, 17).ToArray()));
                    Assert.AreEqual(LlametteStatus.ContextFull, e.Status);
                    StringAssert.Contains("context full", e.NativeMessage);
                    Assert.AreEqual(0, s.Position);
                    e = Assert.Throws<ContextFullException>(() => s.Generate(new string('a', 100), Helpers.Greedy).ToList());
                    Assert.AreEqual(LlametteStatus.ContextFull, e.Status);
                    // Errors change nothing: the session still works (BOS, 15 tokens fed, the 16th pending).
                    Assert.AreEqual(16, s.Generate("", Helpers.Greedy).Count());
                    Assert.AreEqual(StopReason.ContextFull, s.LastStopReason);
                }
                e = Assert.Throws<LlametteException>(() => model.TokenBytes(512));
                Assert.AreEqual(LlametteStatus.UnknownToken, e.Status);
            }
            using (LlamaModel bare = LlamaModel.FromFile(Paths.Bin))
            {
                Assert.IsFalse(bare.Info.HasTokenizer);
                Assert.AreEqual(LlamaModel.NoToken, bare.Info.BosToken);
                LlametteException e = Assert.Throws<LlametteException>(() => bare.Tokenize("a", true));
                Assert.AreEqual(LlametteStatus.NoTokenizer, e.Status);
                // Token ids still work without a tokenizer.
                using (Session s = new Session(bare, Helpers.Ctx(32)))
                {
                    List<GeneratedToken> ts = s.GenerateFromTokens(new[] { 1 }, new GenerateOptions { Temperature = 0, MaxTokens = 5 }).ToList();
                    Assert.AreEqual(5, ts.Count);
                    Assert.IsTrue(ts.All(t => t.Text == ""));
                }
            }
        }

        /// <summary>An exception thrown by the callback stops generation and is rethrown as it was; the session goes on.</summary>
        [Test]
        public void CallbackExceptionsAreRethrownAfterTheNativeCall()
        {
            using (LlamaModel model = LlamaModel.OpenDefault())
            using (Session s = new Session(model, Helpers.Ctx(256)))
            {
                StringBuilder text = new StringBuilder();
                InvalidOperationException thrown = new InvalidOperationException("from the callback");
                int n = 0;
                InvalidOperationException e = Assert.Throws<InvalidOperationException>(() => s.Generate("", Helpers.Greedy, (token, piece) =>
                {
                    text.Append(piece);
                    if (++n == 3) throw thrown;
                    return true;
                }));
                Assert.AreSame(thrown, e);
                StringAssert.Contains("CallbackExceptionsAreRethrownAfterTheNativeCall", e.StackTrace);
                Assert.AreEqual(3, n);
                text.Append(Helpers.Concat(s.Generate(null, Helpers.Greedy)));
                Assert.IsTrue(Helpers.IsReference(text.ToString()));

                // A call on the session from inside its callback: Busy (caught there), and generation goes on.
                LlametteStatus inner = LlametteStatus.Ok;
                s.Reset();
                GenerateResult r = s.Generate("", new GenerateOptions { Temperature = 0, MaxTokens = 10 }, (token, piece) =>
                {
                    if (inner == LlametteStatus.Ok)
                    {
                        try
                        {
                            s.Step(Helpers.Greedy);
                        }
                        catch (LlametteException busy)
                        {
                            inner = busy.Status;
                        }
                    }
                    return true;
                });
                Assert.AreEqual(LlametteStatus.Busy, inner);
                Assert.AreEqual(10, r.TokenCount);
            }
        }

        [Test]
        public void DisposedObjectsThrowObjectDisposedException()
        {
            LlamaModel model = LlamaModel.OpenDefault();
            Session s = new Session(model, Helpers.Ctx(16));
            s.Dispose();
            s.Dispose();
            Assert.IsTrue(s.IsDisposed);
            Assert.Throws<ObjectDisposedException>(() => s.Generate("", Helpers.Greedy).ToList());
            Assert.Throws<ObjectDisposedException>(() => { int p = s.Position; });
            Assert.Throws<ObjectDisposedException>(() => s.Tokenize("a", true));
            model.Dispose();
            model.Dispose();
            Assert.Throws<ObjectDisposedException>(() => model.Tokenize("a", true));
            Assert.Throws<ObjectDisposedException>(() => new Session(model));
            Assert.Throws<ObjectDisposedException>(() => new TokenDecoder(model));
        }
    }

    [TestFixture]
    public class Lifetimes
    {
        private static void Collect()
        {
            for (int i = 0; i < 3; i++)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
        }

        [TestCase("embedded")]
        [TestCase("bytes")]
        public void DisposingTheModelBeforeTheSessionIsSafe(string source)
        {
            LlamaModel model = source == "embedded" ? LlamaModel.OpenDefault()
                : LlamaModel.FromBytes(File.ReadAllBytes(Paths.Bin), File.ReadAllBytes(Paths.Tok));
            Session s = new Session(model, Helpers.Ctx(256));
            model.Dispose();
            model = null;
            Collect();
            Assert.IsTrue(Helpers.IsReference(Helpers.Concat(s.Generate("", Helpers.Greedy))));
            // The tokenizer goes on working through the session.
            Assert.AreEqual("Once upon a time", s.Detokenize(s.Tokenize("Once upon a time", true)));
            Assert.AreEqual(" Once", Encoding.UTF8.GetString(s.TokenBytes(s.Tokenize("Once", false)[0])));
            Assert.AreEqual(512, s.ModelInfo.VocabSize);
            s.Dispose();
            Collect();
        }

        /// <summary>Native memory handed to FromMemory is released only after the last session is.</summary>
        [Test]
        public void NativeMemoryIsReleasedAfterTheLastSession()
        {
            byte[] g = File.ReadAllBytes(Paths.Gguf);
            IntPtr mem = Marshal.AllocHGlobal(g.Length);
            Marshal.Copy(g, 0, mem, g.Length);
            int released = 0;
            LlamaModel model = LlamaModel.FromMemory(mem, g.Length, released: () =>
            {
                Interlocked.Increment(ref released);
                Marshal.FreeHGlobal(mem);
            });
            int[] onceIds = model.Tokenize("Once upon", true);
            Session a = new Session(model, Helpers.Ctx(256));
            Session b = new Session(model, Helpers.Ctx(256));
            TokenDecoder d = new TokenDecoder(model);
            model.Dispose();
            Collect();
            Assert.AreEqual(0, released);
            a.Dispose();
            Assert.IsTrue(Helpers.IsReference(Helpers.Concat(b.Generate("", Helpers.Greedy))));
            b.Dispose();
            Assert.AreEqual(0, released, "the decoder still uses it");
            Assert.AreEqual("Once upon", d.Decode(onceIds));
            d.Dispose();
            Assert.AreEqual(1, released);
        }

        /// <summary>Sessions nobody disposed are finalized; their model with them.</summary>
        [Test]
        public void UndisposedObjectsAreFinalized()
        {
            int released = 0;
            byte[] g = File.ReadAllBytes(Paths.Gguf);
            // On a thread that then ends, so that no stack slot (Mono scans stacks
            // conservatively) still points at the objects.
            Thread t = new Thread(() => MakeGarbage(g, () => Interlocked.Increment(ref released)));
            t.Start();
            t.Join();
            Collect();
            Assert.AreEqual(1, released);
        }

        private static void MakeGarbage(byte[] g, Action onReleased)
        {
            IntPtr mem = Marshal.AllocHGlobal(g.Length);
            Marshal.Copy(g, 0, mem, g.Length);
            LlamaModel model = LlamaModel.FromMemory(mem, g.Length, released: () =>
            {
                Marshal.FreeHGlobal(mem);
                onReleased();
            });
            Session s = new Session(model, Helpers.Ctx(64));
            s.Generate("", new GenerateOptions { Temperature = 0, MaxTokens = 10 }).ToList();
        }

        /// <summary>Disposing a session inside its own callback is deferred until the native call returns.</summary>
        [Test]
        public void DisposeInsideTheCallbackIsDeferred()
        {
            using (LlamaModel model = LlamaModel.OpenDefault())
            {
                Session s = new Session(model, Helpers.Ctx(256));
                StringBuilder text = new StringBuilder();
                int n = 0;
                GenerateResult r = s.Generate("", Helpers.Greedy, (token, piece) =>
                {
                    if (++n == 2) s.Dispose();
                    text.Append(piece);
                    return true;
                });
                Assert.AreEqual(256, r.TokenCount);
                Assert.IsTrue(Helpers.IsReference(text.ToString()));
                Assert.IsTrue(s.IsDisposed);
                Assert.Throws<ObjectDisposedException>(() => s.Generate("", Helpers.Greedy).ToList());
            }
        }
    }

    [TestFixture]
    public class Threads
    {
        /// <summary>Two sessions on one model, generating at the same time on two threads: the one-thread tokens.</summary>
        [TestCase(2)]
        [TestCase(4)]
        [Timeout(60000)]
        public void SessionsOnOneModelOnSeveralThreads(int threads)
        {
            LlamaModel model = LlamaModel.OpenDefault();
            int[] one;
            using (Session s = new Session(model, Helpers.Ctx(256))) one = Helpers.GreedyTokens(s);

            Session[] sessions = Enumerable.Range(0, threads).Select(i => new Session(model, Helpers.Ctx(256))).ToArray();
            model.Dispose(); // the sessions keep it alive
            int[][] results = new int[threads][];
            Exception[] errors = new Exception[threads];
            int[] tids = new int[threads];
            using (Barrier start = new Barrier(threads))
            {
                Thread[] ts = new Thread[threads];
                for (int i = 0; i < threads; i++)
                {
                    int k = i;
                    ts[i] = new Thread(() =>
                    {
                        try
                        {
                            tids[k] = Thread.CurrentThread.ManagedThreadId;
                            start.SignalAndWait();
                            // Several rounds, so that the generations overlap.
                            for (int round = 0; round < 5; round++)
                            {
                                int[] r = Helpers.GreedyTokens(sessions[k]);
                                if (round == 0) results[k] = r;
                                else if (!r.SequenceEqual(results[k])) throw new Exception("round " + round + " differs");
                            }
                        }
                        catch (Exception e)
                        {
                            errors[k] = e;
                        }
                    });
                    ts[i].Start();
                }
                foreach (Thread t in ts) t.Join();
            }
            for (int i = 0; i < threads; i++)
            {
                Assert.IsNull(errors[i], "thread " + i + ": " + errors[i]);
                Assert.AreEqual(one, results[i], "thread " + i);
                sessions[i].Dispose();
            }
            Assert.AreEqual(threads, tids.Distinct().Count());
            Console.WriteLine("threads: " + threads + " sessions on one model on " + threads + " threads, 5 rounds each: "
                + "the one-thread " + one.Length + " tokens every time");
        }

        /// <summary>Two threads on one session: one gets Busy, none crashes.</summary>
        [Test]
        [Timeout(60000)]
        public void OneSessionOnTwoThreadsIsBusyNotACrash()
        {
            using (LlamaModel model = LlamaModel.OpenDefault())
            using (Session s = new Session(model, Helpers.Ctx(512)))
            {
                int busy = 0, ok = 0;
                using (ManualResetEventSlim inside = new ManualResetEventSlim())
                using (ManualResetEventSlim tried = new ManualResetEventSlim())
                {
                    Thread other = new Thread(() =>
                    {
                        inside.Wait();
                        try
                        {
                            s.Reset();
                            ok++;
                        }
                        catch (LlametteException e)
                        {
                            if (e.Status == LlametteStatus.Busy) busy++;
                        }
                        tried.Set();
                    });
                    other.Start();
                    s.Generate("", new GenerateOptions { Temperature = 0, MaxTokens = 5 }, (t, p) =>
                    {
                        inside.Set();
                        tried.Wait();
                        return true;
                    });
                    other.Join();
                }
                Assert.AreEqual(1, busy);
                Assert.AreEqual(0, ok);
            }
        }
    }

    [TestFixture]
    public class Text
    {
        [Test]
        public void TokenizeAndDetokenizeRoundTrip()
        {
            using (LlamaModel model = LlamaModel.OpenDefault())
            {
                ModelInfo info = model.Info;
                Assert.AreEqual(ModelFormat.Llama2cV0, info.Format);
                Assert.AreEqual(64, info.Dim);
                Assert.AreEqual(5, info.LayerCount);
                Assert.AreEqual(8, info.HeadCount);
                Assert.AreEqual(4, info.KvHeadCount);
                Assert.AreEqual(512, info.VocabSize);
                Assert.AreEqual(512, info.ContextLength);
                Assert.AreEqual(1, info.BosToken);
                Assert.AreEqual(2, info.EosToken);
                Assert.Greater(info.MaxTokenTextBytes, 0);
                Console.WriteLine("embedded model: " + info);
                string text = "Once upon a time, there was a little dog.";
                int[] ids = model.Tokenize(text, true);
                Assert.AreEqual(1, ids[0]);
                Assert.AreEqual(text, model.Detokenize(ids));
                Assert.AreEqual(new[] { 1 }, model.Tokenize("", true));
                Assert.AreEqual(new int[0], model.Tokenize("", false));
                Assert.AreEqual(" Once", Encoding.UTF8.GetString(model.TokenBytes(model.Tokenize("Once", false)[0])));
                Assert.AreEqual(0, model.TokenBytes(1).Length);
                // A long text: more ids than the first guess of the buffer.
                string longText = string.Concat(Enumerable.Repeat("a b c d ", 200));
                Assert.AreEqual(longText, model.Detokenize(model.Tokenize(longText, true)));
            }
        }

        /// <summary>A character the 512-token vocabulary only has as byte tokens comes out whole, never split.</summary>
        [Test]
        public void MultiByteCharactersAreNeverSplit()
        {
            using (LlamaModel model = LlamaModel.OpenDefault())
            using (TokenDecoder d = new TokenDecoder(model))
            {
                string s = "日本 and ü, 🙂!";
                int[] ids = model.Tokenize(s, true);
                List<string> pieces = ids.Select(d.Push).ToList();
                Assert.AreEqual("", d.Flush());
                Assert.AreEqual(s, string.Concat(pieces));
                Assert.IsTrue(pieces.Contains("日"));
                Assert.IsTrue(pieces.Contains("🙂"), "the surrogate pair comes in one piece");
                Assert.Greater(pieces.Count(p => p.Length == 0), 4, "byte tokens held back");
                // An incomplete character at the end becomes U+FFFD.
                int[] ri = model.Tokenize("日", false);
                Assert.AreEqual("", d.Push(ri[1]));
                Assert.AreEqual("\uFFFD", d.Flush());
                Console.WriteLine("decoder: " + ids.Length + " tokens of \"" + s + "\" -> " + pieces.Count(p => p.Length > 0)
                    + " pieces: " + string.Join("|", pieces.Where(p => p.Length > 0)));
            }
        }

        /// <summary>
        /// Sampling at a high temperature emits many byte tokens: every piece the
        /// session streams is whole characters and equals what a decoder makes of
        /// the same tokens.
        /// </summary>
        [Test]
        public void StreamedPiecesAreWholeCharacters()
        {
            using (LlamaModel model = LlamaModel.OpenDefault())
            using (Session s = new Session(model))
            {
                UTF8Encoding strict = new UTF8Encoding(false, true);
                int tokens = 0, empty = 0, multibyte = 0;
                for (ulong seed = 1; seed <= 3; seed++)
                {
                    s.Reset();
                    using (TokenDecoder d = new TokenDecoder(model))
                    {
                        d.Push(model.Info.BosToken);
                        foreach (GeneratedToken t in s.GenerateTokens("", GenerateOptions.Sampled(30.0f, 1.0f, seed)))
                        {
                            tokens++;
                            Assert.AreEqual(d.Push(t.Id), t.Text, "token " + tokens);
                            // Whole characters: no lone surrogate, a strict UTF-8 round trip.
                            Assert.AreEqual(t.Text, strict.GetString(strict.GetBytes(t.Text)));
                            if (t.Text.Length == 0) empty++;
                            if (strict.GetByteCount(t.Text) > t.Text.Length) multibyte++;
                        }
                    }
                }
                Assert.Greater(empty, 0, "some byte tokens were held back");
                Assert.Greater(multibyte, 0, "some pieces have multi-byte characters");
                Console.WriteLine("streams at temperature 30: " + tokens + " tokens, " + empty + " held back (no text), "
                    + multibyte + " pieces with multi-byte characters (or U+FFFD), all equal to a decoder's");
            }
        }
    }

    /// <summary>
    /// Interleaved matrices (<c>llamette_repack_in_place</c>): FromBytes(..., interleave: true),
    /// ModelLoad.InMemoryInterleaved, LlamaModel.RepackInPlace. stories260K.gguf is F32, so
    /// nothing is rewritten: these check the plumbing, and that errors come through.
    /// </summary>
    [TestFixture]
    public class Interleave
    {
        /// <summary>The greedy text and token ids of a 256-position session.</summary>
        private static string TextAndTokens(LlamaModel model, out int[] tokens)
        {
            using (Session s = new Session(model, Helpers.Ctx(256)))
            {
                tokens = Helpers.GreedyTokens(s);
                return Helpers.GreedyText(s);
            }
        }

        [Test]
        public void KernelsInterleavedIsZeroOrOne()
        {
            Type native = typeof(Library).Assembly.GetType("Llamette.Native", true);
            uint raw = (uint)native.GetMethod("llamette_kernels_interleaved", BindingFlags.Static | BindingFlags.NonPublic).Invoke(null, null);
            Assert.That(raw == 0 || raw == 1, "llamette_kernels_interleaved() = " + raw);
            Assert.AreEqual(raw != 0, Library.InterleavedKernels);
            Console.WriteLine("llamette_kernels_interleaved() = " + raw + ": Library.InterleavedKernels = " + Library.InterleavedKernels);
        }

        [Test]
        public void InterleavedGgufGivesThePlainOpensText()
        {
            byte[] gguf = File.ReadAllBytes(Paths.Gguf);
            byte[] original = (byte[])gguf.Clone();
            int[] plainTokens, tokens;
            string plainText;
            using (LlamaModel plain = LlamaModel.FromBytes(gguf))
            {
                plainText = TextAndTokens(plain, out plainTokens);
                Assert.AreEqual(0, plain.InterleavedMatrices);
            }
            Assert.IsTrue(Helpers.IsReference(plainText), "plain FromBytes differs from run.c");
            Assert.AreEqual(256, plainTokens.Length);

            using (LlamaModel model = LlamaModel.FromBytes(gguf, interleave: true))
            {
                Assert.AreEqual(ModelFormat.GgufV3, model.Info.Format);
                Assert.AreEqual(0, model.InterleavedMatrices, "an F32 model has nothing to interleave");
                Assert.AreEqual(plainText, TextAndTokens(model, out tokens), "FromBytes(interleave: true)");
                Assert.AreEqual(plainTokens, tokens);
            }
            Assert.AreEqual(original, gguf, "the caller's array is left as it was");

            long ggufLength = new FileInfo(Paths.Gguf).Length;
            foreach (ModelLoad load in new[] { ModelLoad.Mapped, ModelLoad.InMemory, ModelLoad.InMemoryInterleaved })
            {
                using (LlamaModel model = LlamaModel.FromFile(Paths.Gguf, null, load))
                {
                    Assert.AreEqual(0, model.InterleavedMatrices, load.ToString());
                    // Only the library's own copy counts (on Linux it copies an F32
                    // model for its huge pages; elsewhere it maps it).
                    long owned = model.Info.OwnedBytes;
                    if (load == ModelLoad.InMemoryInterleaved) Assert.That(owned == 0 || owned == ggufLength, load + ": " + owned);
                    else Assert.AreEqual(0, owned, load.ToString());
                    Assert.AreEqual(plainText, TextAndTokens(model, out tokens), load.ToString());
                    Assert.AreEqual(plainTokens, tokens, load.ToString());
                }
            }
            // A llama2.c model with its tokenizer, read into memory: left as it is.
            using (LlamaModel model = LlamaModel.FromFile(Paths.Bin, Paths.Tok, ModelLoad.InMemoryInterleaved))
            {
                Assert.AreEqual(ModelFormat.Llama2cV0, model.Info.Format);
                Assert.AreEqual(0, model.InterleavedMatrices);
                Assert.IsTrue(Helpers.IsReference(TextAndTokens(model, out tokens)), ".bin, InMemoryInterleaved");
            }
            Console.WriteLine("stories260K.gguf with interleave (kernels interleaved: " + Library.InterleavedKernels
                + "): 0 matrices rewritten, the plain open's " + plainTokens.Length + " tokens");
        }

        /// <summary>
        /// A quantized model (stories260K as Q8_0, made by test.sh with llamette
        /// quantize) loaded for speed by the library gives the mapped model's greedy
        /// tokens, its matrices interleaved where this CPU's kernels gain from it,
        /// and reports the copy's size.
        /// </summary>
        [Test]
        public void LoadedForSpeedGivesTheMappedTokens()
        {
            string q8 = Environment.GetEnvironmentVariable("LLAMETTE_Q8_GGUF");
            if (string.IsNullOrEmpty(q8)) Assert.Ignore("LLAMETTE_Q8_GGUF not set (test.sh makes it with llamette quantize)");
            long length = new FileInfo(q8).Length;
            int[] mappedTokens, fastTokens;
            string mappedText, fastText;
            using (LlamaModel mapped = LlamaModel.FromFile(q8))
            {
                Assert.AreEqual(0, mapped.Info.OwnedBytes);
                Assert.AreEqual(0, mapped.InterleavedMatrices);
                mappedText = TextAndTokens(mapped, out mappedTokens);
            }
            long owned;
            long matrices;
            using (LlamaModel fast = LlamaModel.FromFile(q8, null, ModelLoad.InMemoryInterleaved))
            {
                owned = fast.Info.OwnedBytes;
                matrices = fast.InterleavedMatrices;
                if (Library.InterleavedKernels)
                {
                    Assert.AreEqual(length, owned);
                    Assert.Greater(matrices, 0);
                }
                else
                {
                    Assert.AreEqual(0, matrices);
                }
                fastText = TextAndTokens(fast, out fastTokens);
            }
            Assert.Greater(mappedTokens.Length, 100);
            Assert.AreEqual(mappedTokens, fastTokens, "the same greedy tokens");
            Assert.AreEqual(mappedText, fastText);
            Console.WriteLine("Q8_0 stories260K, InMemoryInterleaved: " + owned + " bytes owned by the library, "
                + matrices + " matrices interleaved, the mapped model's " + mappedTokens.Length + " tokens");
        }

        [Test]
        public void RepackInPlaceThenFromMemory()
        {
            byte[] gguf = File.ReadAllBytes(Paths.Gguf);
            IntPtr mem = Marshal.AllocHGlobal(gguf.Length);
            Marshal.Copy(gguf, 0, mem, gguf.Length);
            Assert.AreEqual(0, LlamaModel.RepackInPlace(mem, gguf.Length));
            Assert.AreEqual(0, LlamaModel.RepackInPlace(mem, gguf.Length), "idempotent");
            IntPtr toFree = mem;
            using (LlamaModel model = LlamaModel.FromMemory(mem, gguf.Length, released: () => Marshal.FreeHGlobal(toFree)))
            using (Session s = new Session(model, Helpers.Ctx(256)))
            {
                Assert.IsTrue(Helpers.IsReference(Helpers.GreedyText(s)));
            }
        }

        [Test]
        public void TruncatedGgufWithInterleaveThrowsBadFile()
        {
            byte[] gguf = File.ReadAllBytes(Paths.Gguf);
            byte[] half = gguf.Take(gguf.Length / 2).ToArray();
            LlametteException e = Assert.Throws<LlametteException>(() => LlamaModel.FromBytes(half, interleave: true));
            Assert.AreEqual(LlametteStatus.BadFile, e.Status);
            Assert.IsNotEmpty(e.NativeMessage);
            Console.WriteLine("half a GGUF, FromBytes(interleave: true): " + e.Message);

            string tmp = Path.Combine(Path.GetTempPath(), "llamette-cs-truncated-interleave-" + Process.GetCurrentProcess().Id + ".gguf");
            try
            {
                File.WriteAllBytes(tmp, half);
                e = Assert.Throws<LlametteException>(() => LlamaModel.FromFile(tmp, null, ModelLoad.InMemoryInterleaved));
                Assert.AreEqual(LlametteStatus.BadFile, e.Status);
                Assert.IsNotEmpty(e.NativeMessage);
            }
            finally
            {
                File.Delete(tmp);
            }

            // The repack itself, whatever this CPU's kernels: BadFile, and not one byte changed.
            IntPtr mem = Marshal.AllocHGlobal(half.Length);
            try
            {
                Marshal.Copy(half, 0, mem, half.Length);
                e = Assert.Throws<LlametteException>(() => LlamaModel.RepackInPlace(mem, half.Length));
                Assert.AreEqual(LlametteStatus.BadFile, e.Status);
                Assert.IsNotEmpty(e.NativeMessage);
                byte[] after = new byte[half.Length];
                Marshal.Copy(mem, after, 0, half.Length);
                Assert.AreEqual(half, after, "nothing changed on an error");
                Console.WriteLine("half a GGUF, RepackInPlace: " + e.Message);
            }
            finally
            {
                Marshal.FreeHGlobal(mem);
            }
        }

        [Test]
        public void MissingFileReadIntoMemoryThrowsIo()
        {
            string path = Path.Combine(Path.GetTempPath(), "llamette-no-such-dir", "model.gguf");
            foreach (ModelLoad load in new[] { ModelLoad.InMemory, ModelLoad.InMemoryInterleaved })
            {
                LlametteException e = Assert.Throws<LlametteException>(() => LlamaModel.FromFile(path, null, load));
                Assert.AreEqual(LlametteStatus.Io, e.Status, load.ToString());
                StringAssert.Contains(path, e.NativeMessage);
                e = Assert.Throws<LlametteException>(() => LlamaModel.FromFile(Paths.Bin, path, load));
                Assert.AreEqual(LlametteStatus.Io, e.Status, load.ToString());
                StringAssert.Contains(path, e.NativeMessage);
                Console.WriteLine("missing file, " + load + ": " + e.Message);
            }
            Assert.Throws<ArgumentOutOfRangeException>(() => LlamaModel.FromFile(Paths.Gguf, null, (ModelLoad)7));
        }
    }
}
