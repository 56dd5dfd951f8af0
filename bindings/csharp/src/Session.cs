// Session.cs: one conversation with a model; streaming generation with cancellation.
// SPDX-License-Identifier: MIT OR Apache-2.0
using System;
using System.Collections.Generic;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Threading;
using System.Threading.Tasks;

namespace Llamette
{
    /// <summary>
    /// A session: one conversation with a model (its KV cache, position and
    /// sampler state). Keeps its model alive, so the <see cref="LlamaModel"/>
    /// may be disposed first.
    /// </summary>
    /// <remarks>
    /// <para>Threads: a session is used by one thread at a time (a second call
    /// while one runs throws LlametteException with status Busy). Any number of
    /// sessions may share a model, each on its own thread. Cancellation
    /// (a CancellationToken, or <see cref="Cancel"/>) works from any thread.</para>
    /// <para>Generation continues the session: the text generated so far stays
    /// in its context, the last sampled token is fed by the next call, so a
    /// stopped or cancelled generation can be resumed with
    /// <c>Generate(null)</c>. <see cref="Reset"/> starts over.</para>
    /// </remarks>
    public sealed class Session : IDisposable
    {
        private const uint StatusCancelled = (uint)LlametteStatus.Cancelled;
        private const uint StatusBusy = (uint)LlametteStatus.Busy;
        private const uint StatusContextFull = (uint)LlametteStatus.ContextFull;
        /// <summary>"The native call did not run" (it threw before reaching the library).</summary>
        private const uint NoCall = uint.MaxValue;

        private static readonly Action<object> OnTokenCancelledAction = OnTokenCancelled;
        private static readonly NativeTokenCallback TokenCallback = OnNativeToken;
        private static readonly NativeParallelForFn ParallelForCallback = OnParallelFor;
        private static readonly NativeLogitsFn LogitsCallback = OnLogits;

        private readonly SessionHandle handle;
        private readonly ModelInfo modelInfo;

        // Cancellation through a CancellationToken: see BeginCall / EndCall.
        private readonly object cancelGate = new object();
        private bool callRunning;
        private bool cancelIssued;

        private StopReason lastStopReason;

        /// <summary>
        /// Makes a session on <paramref name="model"/> in memory the library
        /// allocates (KV cache for <see cref="SessionOptions.ContextLength"/>
        /// positions, activations, logits).
        /// </summary>
        /// <exception cref="LlametteException">InvalidArgument (a context longer than the model's), OutOfMemory.</exception>
        /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
        public Session(LlamaModel model, SessionOptions options = null)
        {
            if (model == null) throw new ArgumentNullException("model");
            SessionOptions o = options ?? new SessionOptions();
            if (o.Threads < 0) throw new ArgumentOutOfRangeException("options", "Threads is negative");
            NativeSessionParams p = o.ToNative();
            using (LlamaModel.Lease l = model.Acquire()) modelInfo = Tokenizer.GetInfo(l.Pointer);
            handle = ModelChildHandle.Create<SessionHandle>(model.Handle, m =>
            {
                IntPtr s;
                LlametteException.Check(Native.llamette_session_new(m, ref p, out s));
                return s;
            });
            if (o.Threads != 1)
            {
                try
                {
                    SetThreads(o.Threads);
                }
                catch
                {
                    handle.Dispose();
                    throw;
                }
            }
        }

        /// <summary>
        /// The bytes a session on <paramref name="model"/> with <paramref name="options"/>
        /// takes (KV cache, activations, logits, text buffer): what the constructor allocates.
        /// </summary>
        public static long RequiredBytes(LlamaModel model, SessionOptions options = null)
        {
            if (model == null) throw new ArgumentNullException("model");
            NativeSessionParams p = (options ?? new SessionOptions()).ToNative();
            UIntPtr n;
            using (LlamaModel.Lease l = model.Acquire())
                LlametteException.Check(Native.llamette_session_required_bytes(l.Pointer, ref p, out n));
            return (long)n.ToUInt64();
        }

        /// <summary>
        /// The options for the session that fits <paramref name="budgetBytes"/> of memory
        /// on <paramref name="model"/> with <paramref name="kvCache"/>: the largest context,
        /// then the largest prompt batch (up to 32) that fits with it.
        /// Throws <see cref="LlametteException"/> (<c>BufferTooSmall</c>) when not even one
        /// position fits.
        /// </summary>
        public static SessionOptions OptionsForBudget(LlamaModel model, KvCacheType kvCache, long budgetBytes)
        {
            if (model == null) throw new ArgumentNullException("model");
            if (budgetBytes < 0) throw new ArgumentOutOfRangeException("budgetBytes");
            NativeSessionParams p = default(NativeSessionParams);
            p.struct_size = StructSize.Of<NativeSessionParams>();
            using (LlamaModel.Lease l = model.Acquire())
                LlametteException.Check(Native.llamette_session_params_for_budget(
                    l.Pointer, (uint)kvCache, new UIntPtr((ulong)budgetBytes), ref p));
            return new SessionOptions
            {
                ContextLength = (int)p.context_length,
                KvCacheType = kvCache,
                Batch = (int)p.batch,
            };
        }

        // ------------------------------------------------------------ state

        /// <summary>The model's description (available after the model is disposed).</summary>
        public ModelInfo ModelInfo { get { return modelInfo; } }

        /// <summary>Positions in the KV cache: tokens fed so far (the last sampled token counts once fed).</summary>
        public int Position
        {
            get
            {
                uint p;
                Check(Native.llamette_session_position(handle, out p));
                return (int)p;
            }
        }

        /// <summary>Positions the session can hold.</summary>
        public int ContextLength
        {
            get
            {
                uint n;
                Check(Native.llamette_session_context_length(handle, out n));
                return (int)n;
            }
        }

        /// <summary>
        /// Why the last generation that ran to its end stopped (EndToken,
        /// MaxTokens, ContextFull, Callback); None while one runs, or when it was
        /// abandoned or threw.
        /// </summary>
        public StopReason LastStopReason { get { return lastStopReason; } }

        /// <summary>Whether <see cref="Dispose"/> was called.</summary>
        public bool IsDisposed { get { return handle.IsClosed; } }

        /// <summary>
        /// Forgets every position and the pending token, reseeds the sampler at
        /// the next step and clears a pending cancellation: the session is as new.
        /// </summary>
        public void Reset()
        {
            Check(Native.llamette_session_reset(handle));
            lastStopReason = StopReason.None;
        }

        /// <summary>
        /// Runs the matrix products on the library's thread pool: <paramref name="threads"/>
        /// threads in all, the calling thread included (1: none started, the default;
        /// 0: one per core). The tokens do not depend on it.
        /// </summary>
        public void SetThreads(int threads)
        {
            if (threads < 0) throw new ArgumentOutOfRangeException("threads");
            Check(Native.llamette_session_set_threads(handle, (uint)threads));
            ReleaseParallel();
        }

        /// <summary>
        /// Runs the matrix products through .NET's thread pool (<see cref="Parallel.For(int, int, Action{int})"/>)
        /// instead of threads of the library's own: each parallel region of the
        /// model is split into <paramref name="tasks"/> tasks (usually the number
        /// of cores). The tokens do not depend on it. <see cref="SetThreads"/> undoes it.
        /// </summary>
        public void UseDotNetThreadPool(int tasks)
        {
            if (tasks < 1 || tasks > 1024) throw new ArgumentOutOfRangeException("tasks", "1 to 1024");
            GCHandle pool = GCHandle.Alloc(new ManagedPool());
            NativeParallel p;
            p.struct_size = StructSize.Of<NativeParallel>();
            p.user_data = GCHandle.ToIntPtr(pool);
            p.n_threads = (uint)tasks;
            p.parallel_for = Marshal.GetFunctionPointerForDelegate(ParallelForCallback);
            uint st = Native.llamette_session_set_parallel(handle, ref p);
            if (st != 0)
            {
                LlametteException e = LlametteException.FromLastError(st);
                pool.Free();
                throw e;
            }
            ReleaseParallel();
            handle.ParallelPool = pool;
        }

        private void ReleaseParallel()
        {
            // The library has dropped the previous setting: its user_data may go.
            GCHandle old = handle.ParallelPool;
            handle.ParallelPool = default(GCHandle);
            if (old.IsAllocated) old.Free();
        }

        /// <summary>
        /// Asks the call running on this session (prefill, step or generation)
        /// to stop within one transformer layer of work; if none runs, the next
        /// one stops at once (the C ABI's <c>llamette_session_cancel</c>). Any
        /// thread, any time. A CancellationToken passed to a call is usually
        /// better: it only ever stops the call it was given to.
        /// </summary>
        public void Cancel()
        {
            Check(Native.llamette_session_cancel(handle));
        }

        // ------------------------------------------------------------ tokenizer

        /// <summary>Encodes text into token ids, BOS first if <paramref name="addBos"/> (see <see cref="LlamaModel.Tokenize"/>).</summary>
        public int[] Tokenize(string text, bool addBos)
        {
            using (LlamaModel.Lease l = new LlamaModel.Lease(handle)) return Tokenizer.Tokenize(handle.ModelPointer, text, addBos);
        }

        /// <summary>The text of a token sequence (see <see cref="LlamaModel.Detokenize"/>).</summary>
        public string Detokenize(IEnumerable<int> tokens)
        {
            if (tokens == null) throw new ArgumentNullException("tokens");
            using (LlamaModel.Lease l = new LlamaModel.Lease(handle))
            using (TokenDecoder d = new TokenDecoder(handle, modelInfo.MaxTokenTextBytes))
            {
                return d.Decode(tokens);
            }
        }

        /// <summary>The raw bytes of one token's piece (see <see cref="LlamaModel.TokenBytes"/>).</summary>
        public byte[] TokenBytes(int token)
        {
            using (LlamaModel.Lease l = new LlamaModel.Lease(handle)) return Tokenizer.TokenBytes(handle.ModelPointer, token);
        }

        // ------------------------------------------------------------ low level

        /// <summary>
        /// Runs the model over <paramref name="tokens"/> at the next positions (a
        /// token sampled by the last step is fed first). Nothing changes when the
        /// tokens do not fit (ContextFull) or one is unknown (UnknownToken). When
        /// cancelled, whole batches before <see cref="Position"/> are kept.
        /// </summary>
        /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
        public void Prefill(int[] tokens, CancellationToken cancellationToken = default(CancellationToken))
        {
            if (tokens == null) throw new ArgumentNullException("tokens");
            if (tokens.Length == 0) throw new ArgumentException("prefill needs at least one token", "tokens");
            uint st = NoCall;
            LlametteException error = null;
            CancellationTokenRegistration reg = BeginCall(cancellationToken);
            try
            {
                st = Native.llamette_session_prefill(handle, tokens, new UIntPtr((uint)tokens.Length));
                if (st != 0) error = LlametteException.FromLastError(st);
            }
            finally
            {
                EndCall(reg, st);
            }
            ThrowHookError();
            ThrowIfFailed(st, error, cancellationToken);
        }

        /// <summary>
        /// Samples the next token (after feeding the previous one): its id, text
        /// and whether it ends the text. The token is fed by the next call.
        /// </summary>
        /// <exception cref="LlametteException">NothingToSample (no prefill yet), ContextFull, ...</exception>
        /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
        public GeneratedToken Step(GenerateOptions options = null, CancellationToken cancellationToken = default(CancellationToken))
        {
            GeneratedToken t;
            TryStep((options ?? new GenerateOptions()).ToNative(), cancellationToken, false, out t);
            return t;
        }

        // ------------------------------------------------------------ generation

        /// <summary>
        /// Generates text: prefills <paramref name="prompt"/> (with a BOS in front
        /// when the session is empty, see <see cref="GenerateOptions.AddBos"/>),
        /// then yields the text of each generated token as it is produced.
        /// Each string is whole UTF-8 characters (a character spelled by several
        /// byte tokens comes in one piece); tokens with no text of their own are
        /// skipped. Stops at an end token, after <see cref="GenerateOptions.MaxTokens"/>
        /// tokens, or when the context is full. The prompt itself is not yielded.
        /// </summary>
        /// <remarks>
        /// Lazy: nothing runs until the enumeration starts, and each MoveNext runs
        /// one step of the model on the enumerating thread. Breaking out of the
        /// loop leaves the session where it is (resume with <c>Generate(null)</c>).
        /// When <paramref name="cancellationToken"/> is cancelled, the step running
        /// stops within one transformer layer and MoveNext throws
        /// OperationCanceledException; the tokens generated so far stay in the
        /// session, which can go on.
        /// </remarks>
        /// <param name="prompt">Text to feed first; null or "" to continue where the session is.</param>
        /// <param name="options">Sampler settings and limits; null for llama2.c's defaults.</param>
        /// <param name="cancellationToken">Stops the generation, from any thread.</param>
        public IEnumerable<string> Generate(string prompt, GenerateOptions options = null,
            CancellationToken cancellationToken = default(CancellationToken))
        {
            return TextOf(GenerateTokens(prompt, options, cancellationToken));
        }

        /// <summary>
        /// As <see cref="Generate(string, GenerateOptions, CancellationToken)"/>, yielding
        /// each generated token (id and text, the text possibly "") instead of text pieces.
        /// </summary>
        public IEnumerable<GeneratedToken> GenerateTokens(string prompt, GenerateOptions options = null,
            CancellationToken cancellationToken = default(CancellationToken))
        {
            ThrowIfDisposed();
            GenerateOptions o = options ?? new GenerateOptions();
            // Validated and copied now: later changes to `options` do not affect this enumeration.
            return Iterate(prompt, null, o.AddBos, o.ToNative(), o.MaxTokens, cancellationToken);
        }

        /// <summary>
        /// As <see cref="GenerateTokens(string, GenerateOptions, CancellationToken)"/> with
        /// the prompt given as token ids (for a model without a tokenizer, say); an
        /// empty array continues where the session is.
        /// </summary>
        public IEnumerable<GeneratedToken> GenerateFromTokens(int[] promptTokens, GenerateOptions options = null,
            CancellationToken cancellationToken = default(CancellationToken))
        {
            if (promptTokens == null) throw new ArgumentNullException("promptTokens");
            ThrowIfDisposed();
            GenerateOptions o = options ?? new GenerateOptions();
            return Iterate(null, (int[])promptTokens.Clone(), false, o.ToNative(), o.MaxTokens, cancellationToken);
        }

        /// <summary>
        /// Generates text, calling <paramref name="onToken"/> with each token's id
        /// and text (<c>llamette_session_generate</c>: the whole loop runs in the
        /// library, on this thread). Stops at an end token, after MaxTokens tokens,
        /// when the context is full, or when <paramref name="onToken"/> returns
        /// false. An exception thrown by <paramref name="onToken"/> stops the
        /// generation and is rethrown here (it never unwinds through native code).
        /// </summary>
        /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled
        /// (the tokens already given to the callback stay in the session).</exception>
        public GenerateResult Generate(string prompt, GenerateOptions options, TokenHandler onToken,
            CancellationToken cancellationToken = default(CancellationToken))
        {
            if (onToken == null) throw new ArgumentNullException("onToken");
            ThrowIfDisposed();
            GenerateOptions o = options ?? new GenerateOptions();
            NativeSamplerParams sp = o.ToNative();
            byte[] stops = StopBytes(o.StopStrings);
            lastStopReason = StopReason.None;
            PrefillPrompt(prompt, null, o.AddBos, cancellationToken);
            return RunGenerate(sp, o, stops, onToken, cancellationToken);
        }

        // ------------------------------------------------------------ rewind, logits, state

        /// <summary>
        /// Forgets the positions from <paramref name="position"/> on (nothing if it is not
        /// less than <see cref="Position"/>) and the pending token: a rewind, to regenerate
        /// or edit the end of a conversation without recomputing its beginning. The next
        /// generation needs a prompt (the logits are gone). The sampler keeps its state.
        /// </summary>
        public void Truncate(int position)
        {
            if (position < 0) throw new ArgumentOutOfRangeException("position");
            Check(Native.llamette_session_truncate(handle, (uint)position));
        }

        /// <summary>
        /// A copy of the logits predicting the next token (after a prefill or a
        /// generation's end: one float per vocabulary entry, before the logit bias and
        /// the hook).
        /// </summary>
        /// <exception cref="LlametteException">NothingToSample: nothing fed since the
        /// session was made, reset, truncated or cancelled, or a step left a token pending.</exception>
        public float[] GetLogits()
        {
            IntPtr p;
            UIntPtr n;
            Check(Native.llamette_session_logits(handle, out p, out n));
            float[] logits = new float[Utf8.Length(n)];
            Marshal.Copy(p, logits, 0, logits.Length);
            return logits;
        }

        /// <summary>
        /// Adds <paramref name="bias"/>[token] to that token's logit before every sampling
        /// (steps and generations); float.NegativeInfinity bans the token. Replaces an
        /// earlier bias; an empty dictionary removes it. On an error (an unknown token,
        /// a NaN or +infinity bias) the bias is unchanged.
        /// </summary>
        public void SetLogitBias(IDictionary<int, float> bias)
        {
            if (bias == null) throw new ArgumentNullException("bias");
            int[] tokens = new int[bias.Count];
            float[] values = new float[bias.Count];
            int i = 0;
            foreach (KeyValuePair<int, float> kv in bias)
            {
                tokens[i] = kv.Key;
                values[i] = kv.Value;
                i++;
            }
            Check(Native.llamette_session_set_logit_bias(handle, tokens, values, new UIntPtr((uint)i)));
        }

        /// <summary>Bans <paramref name="tokens"/> (a logit bias of -infinity each), replacing an earlier bias.</summary>
        public void BanTokens(IEnumerable<int> tokens)
        {
            if (tokens == null) throw new ArgumentNullException("tokens");
            Dictionary<int, float> bias = new Dictionary<int, float>();
            foreach (int t in tokens) bias[t] = float.NegativeInfinity;
            SetLogitBias(bias);
        }

        /// <summary>Removes the logit bias.</summary>
        public void ClearLogitBias()
        {
            Check(Native.llamette_session_set_logit_bias(handle, null, null, UIntPtr.Zero));
        }

        /// <summary>
        /// Calls <paramref name="hook"/> with a copy of the logits before every sampling,
        /// after the logit bias; what it leaves in the array is sampled from. Null
        /// removes it. An exception thrown by the hook stops the call that sampled and
        /// is rethrown from it.
        /// </summary>
        public void SetLogitsHook(LogitsHook hook)
        {
            GCHandle state = default(GCHandle);
            uint st;
            if (hook == null)
            {
                st = Native.llamette_session_set_logits_hook(handle, IntPtr.Zero, IntPtr.Zero);
            }
            else
            {
                state = GCHandle.Alloc(new HookState(hook));
                st = Native.llamette_session_set_logits_hook(
                    handle, Marshal.GetFunctionPointerForDelegate(LogitsCallback), GCHandle.ToIntPtr(state));
            }
            if (st != 0)
            {
                LlametteException e = LlametteException.FromLastError(st);
                if (state.IsAllocated) state.Free();
                throw e;
            }
            // The library dropped the previous hook: its user_data may go.
            GCHandle old = handle.LogitsHook;
            handle.LogitsHook = state;
            if (old.IsAllocated) old.Free();
        }

        /// <summary>
        /// Saves the session (the KV cache positions in use, the position, the pending
        /// token, the sampler's state) as a versioned, checksummed blob that names its
        /// model; <see cref="LoadState"/> restores it into a session on the same model
        /// file and KV type, in this process or another: generation then continues
        /// exactly as if it had never stopped.
        /// </summary>
        public byte[] SaveState()
        {
            UIntPtr size;
            Check(Native.llamette_session_state_size(handle, out size));
            byte[] blob = new byte[Utf8.Length(size)];
            UIntPtr len;
            Check(Native.llamette_session_state_save(handle, blob, size, out len));
            if (len != size) Array.Resize(ref blob, Utf8.Length(len));
            return blob;
        }

        /// <summary>Restores a blob of <see cref="SaveState"/> (or of a ChatSession's), replacing the session's state.</summary>
        /// <exception cref="BadStateException">Not a state: truncated, corrupted, malformed. The session is unchanged.</exception>
        /// <exception cref="StateMismatchException">Another model file, KV type or shape, a newer version, a longer context. The session is unchanged.</exception>
        public void LoadState(byte[] state)
        {
            if (state == null) throw new ArgumentNullException("state");
            Check(Native.llamette_session_state_load(handle, state, new UIntPtr((uint)state.Length)));
            lastStopReason = StopReason.None;
        }

        // ------------------------------------------------------------ chat (for ChatSession)

        internal SessionHandle Handle { get { return handle; } }

        internal NativeChatPrefillResult ChatPrefill(NativeChatMessage[] messages, NativeChatOptions options, CancellationToken ct)
        {
            NativeChatPrefillResult r = default(NativeChatPrefillResult);
            r.struct_size = new UIntPtr((uint)Marshal.SizeOf(typeof(NativeChatPrefillResult)));
            uint st = NoCall;
            LlametteException error = null;
            CancellationTokenRegistration reg = BeginCall(ct);
            try
            {
                st = Native.llamette_chat_prefill(handle, messages, new UIntPtr((uint)messages.Length), ref options, ref r);
                if (st != 0) error = LlametteException.FromLastError(st);
            }
            finally
            {
                EndCall(reg, st);
            }
            ThrowHookError();
            ThrowIfFailed(st, error, ct);
            lastStopReason = StopReason.None;
            return r;
        }

        private static byte[] StopBytes(string[] stops)
        {
            if (stops == null || stops.Length == 0) return null;
            List<byte> b = new List<byte>();
            foreach (string s in stops)
            {
                if (s == null) throw new ArgumentException("a stop string is null", "options");
                byte[] c = Utf8.ToCString(s, "options");
                b.AddRange(c);
            }
            return b.ToArray();
        }

        /// <summary>Frees the session (its KV cache, its threads) and its reference to the model.</summary>
        public void Dispose()
        {
            // Deferred by the SafeHandle while a call runs (from another thread,
            // or from inside this session's own callback).
            handle.Dispose();
        }

        // ------------------------------------------------------------ internals

        private static IEnumerable<string> TextOf(IEnumerable<GeneratedToken> tokens)
        {
            foreach (GeneratedToken t in tokens)
            {
                if (t.Text.Length != 0) yield return t.Text;
            }
        }

        private IEnumerable<GeneratedToken> Iterate(string prompt, int[] promptTokens, bool? addBos,
            NativeSamplerParams sp, int maxTokens, CancellationToken ct)
        {
            lastStopReason = StopReason.None;
            PrefillPrompt(prompt, promptTokens, addBos, ct);
            int n = 0;
            while (true)
            {
                if (maxTokens != 0 && n >= maxTokens)
                {
                    lastStopReason = StopReason.MaxTokens;
                    yield break;
                }
                GeneratedToken t;
                // As llamette_session_generate: a full context is an error only
                // before the first token.
                if (!TryStep(sp, ct, n > 0, out t))
                {
                    lastStopReason = StopReason.ContextFull;
                    yield break;
                }
                if (t.IsEnd)
                {
                    lastStopReason = StopReason.EndToken;
                    yield break;
                }
                n++;
                yield return t;
            }
        }

        private void PrefillPrompt(string prompt, int[] promptTokens, bool? addBos, CancellationToken ct)
        {
            int[] ids = promptTokens;
            if (ids == null)
            {
                string text = prompt ?? "";
                bool bos = addBos.HasValue ? addBos.Value : Position == 0;
                if (text.Length == 0 && !bos) return;
                ids = Tokenize(text, bos);
            }
            if (ids.Length != 0) Prefill(ids, ct);
        }

        /// <summary>
        /// One llamette_session_step. Returns true with the token, or false for
        /// ContextFull if <paramref name="contextFullIsEnd"/>; throws otherwise.
        /// </summary>
        private bool TryStep(NativeSamplerParams sp, CancellationToken ct, bool contextFullIsEnd, out GeneratedToken token)
        {
            token = default(GeneratedToken);
            uint st = NoCall;
            LlametteException error = null;
            CancellationTokenRegistration reg = BeginCall(ct);
            try
            {
                NativeStepResult r = default(NativeStepResult);
                r.struct_size = StructSize.Of<NativeStepResult>();
                st = Native.llamette_session_step(handle, ref sp, ref r);
                if (st == 0)
                {
                    // The text is the session's, valid until its next call: copy it now.
                    token = new GeneratedToken((int)r.token, Utf8.FromPointer(r.text, Utf8.Length(r.text_len)), r.is_end != 0);
                }
                else
                {
                    error = LlametteException.FromLastError(st);
                }
            }
            finally
            {
                EndCall(reg, st);
            }
            ThrowHookError();
            if (st == StatusContextFull && contextFullIsEnd) return false;
            ThrowIfFailed(st, error, ct);
            return true;
        }

        private GenerateResult RunGenerate(NativeSamplerParams sp, GenerateOptions o, byte[] stops, TokenHandler onToken, CancellationToken ct)
        {
            CallbackState state = new CallbackState(onToken);
            GCHandle gch = GCHandle.Alloc(state);
            GCHandle pinned = stops != null ? GCHandle.Alloc(stops, GCHandleType.Pinned) : default(GCHandle);
            NativeGenerateOptions go;
            go.struct_size = new UIntPtr((uint)Marshal.SizeOf(typeof(NativeGenerateOptions)));
            go.max_tokens = (uint)o.MaxTokens;
            go.flags = o.StopAtEndToken ? 0u : 3u;
            go.stop_strings = stops != null ? pinned.AddrOfPinnedObject() : IntPtr.Zero;
            go.stop_strings_len = new UIntPtr(stops != null ? (uint)stops.Length : 0u);
            NativeGenerateResult r = default(NativeGenerateResult);
            r.struct_size = StructSize.Of<NativeGenerateResult>();
            uint st = NoCall;
            LlametteException error = null;
            CancellationTokenRegistration reg = BeginCall(ct);
            try
            {
                st = Native.llamette_session_generate_ex(handle, ref sp, ref go, TokenCallback, GCHandle.ToIntPtr(gch), ref r);
                if (st != 0) error = LlametteException.FromLastError(st);
            }
            finally
            {
                EndCall(reg, st);
                gch.Free();
                if (pinned.IsAllocated) pinned.Free();
                // The delegate is a static field, so it outlives the call anyway.
                GC.KeepAlive(TokenCallback);
            }
            // The callback's exception first: it is why the generation stopped.
            if (state.Error != null) state.Error.Throw();
            ThrowHookError();
            ThrowIfFailed(st, error, ct);
            lastStopReason = (StopReason)r.stop_reason;
            return new GenerateResult((int)r.n_tokens, lastStopReason);
        }

        private sealed class CallbackState
        {
            internal readonly TokenHandler Handler;
            internal ExceptionDispatchInfo Error;

            internal CallbackState(TokenHandler handler)
            {
                Handler = handler;
            }
        }

        // Called by the library on the generating thread. Nothing may unwind
        // into native frames: an exception is kept, generation stopped (false),
        // and the exception rethrown once llamette_session_generate returns.
        [MonoPInvokeCallback(typeof(NativeTokenCallback))]
        private static bool OnNativeToken(IntPtr userData, uint token, IntPtr text, UIntPtr textLen)
        {
            CallbackState state = null;
            try
            {
                state = (CallbackState)GCHandle.FromIntPtr(userData).Target;
                return state.Handler((int)token, Utf8.FromPointer(text, Utf8.Length(textLen)));
            }
            catch (Exception e)
            {
                if (state != null) state.Error = ExceptionDispatchInfo.Capture(e);
                return false;
            }
        }

        // ------------------------------------------------------------ logits hook

        private sealed class HookState
        {
            internal readonly LogitsHook Hook;
            internal float[] Buffer;
            internal ExceptionDispatchInfo Error;

            internal HookState(LogitsHook hook)
            {
                Hook = hook;
            }
        }

        // Called by the library before each sampling, on the generating thread.
        // Nothing may unwind into native frames: an exception is kept (the
        // logits stay as they were) and rethrown when the native call returns.
        [MonoPInvokeCallback(typeof(NativeLogitsFn))]
        private static void OnLogits(IntPtr userData, IntPtr logits, UIntPtr nLogits)
        {
            HookState state = null;
            try
            {
                state = (HookState)GCHandle.FromIntPtr(userData).Target;
                if (state.Error != null) return;
                int n = Utf8.Length(nLogits);
                if (state.Buffer == null || state.Buffer.Length != n) state.Buffer = new float[n];
                Marshal.Copy(logits, state.Buffer, 0, n);
                state.Hook(state.Buffer);
                Marshal.Copy(state.Buffer, 0, logits, n);
            }
            catch (Exception e)
            {
                if (state != null) state.Error = ExceptionDispatchInfo.Capture(e);
            }
        }

        private void ThrowHookError()
        {
            GCHandle h = handle.LogitsHook;
            if (!h.IsAllocated) return;
            HookState state = (HookState)h.Target;
            ExceptionDispatchInfo e = state.Error;
            if (e == null) return;
            state.Error = null;
            e.Throw();
        }

        // ------------------------------------------------------------ cancellation
        //
        // A CancellationToken is honoured through llamette_session_cancel, which
        // sets a flag the running call checks between transformer layers. The
        // flag is only raised while one of our native calls runs (callRunning,
        // under cancelGate): between calls there is nothing to stop, and the
        // next call checks the token itself. The library drops a request made
        // during a call when that call ends; one that lands after the native
        // call returned but before EndCall would target the next call, so
        // EndCall withdraws it with llamette_session_clear_cancel once the
        // registration can no longer fire.

        private CancellationTokenRegistration BeginCall(CancellationToken ct)
        {
            if (!ct.CanBeCanceled) return default(CancellationTokenRegistration);
            ct.ThrowIfCancellationRequested();
            lock (cancelGate)
            {
                callRunning = true;
                cancelIssued = false;
            }
            try
            {
                // Runs OnTokenCancelled now if the token was cancelled meanwhile.
                return ct.Register(OnTokenCancelledAction, this);
            }
            catch
            {
                lock (cancelGate) callRunning = false;
                throw;
            }
        }

        private static void OnTokenCancelled(object state)
        {
            Session s = (Session)state;
            lock (s.cancelGate)
            {
                if (!s.callRunning) return;
                try
                {
                    Native.llamette_session_cancel(s.handle);
                    s.cancelIssued = true;
                }
                catch (ObjectDisposedException)
                {
                    // Disposed meanwhile: the running call still holds the handle,
                    // but a closed SafeHandle cannot be marshalled; nothing to do.
                }
            }
        }

        private void EndCall(CancellationTokenRegistration reg, uint status)
        {
            // Waits for OnTokenCancelled if it is running on another thread.
            reg.Dispose();
            bool issued;
            lock (cancelGate)
            {
                issued = cancelIssued;
                callRunning = false;
                cancelIssued = false;
            }
            if (issued && status != NoCall && status != StatusBusy)
            {
                try
                {
                    Native.llamette_session_clear_cancel(handle);
                }
                catch (ObjectDisposedException)
                {
                    // Disposed during the call: the session goes, and its request with it.
                }
            }
        }

        private static void ThrowIfFailed(uint status, LlametteException error, CancellationToken ct)
        {
            if (status == 0) return;
            if (status == StatusCancelled && ct.IsCancellationRequested)
                throw new OperationCanceledException("The generation was cancelled.", error, ct);
            throw error ?? LlametteException.FromLastError(status);
        }

        private void Check(uint status)
        {
            if (status != 0) throw LlametteException.FromLastError(status);
        }

        private void ThrowIfDisposed()
        {
            if (handle.IsClosed) throw new ObjectDisposedException("Session");
        }

        // ------------------------------------------------------------ .NET thread pool

        private sealed class ManagedPool
        {
            private IntPtr taskPointer;
            private NativeTaskFn task;

            internal void Run(uint n, IntPtr taskFn, IntPtr taskCtx)
            {
                // parallel_for is never called concurrently for one session.
                if (taskFn != taskPointer || task == null)
                {
                    task = (NativeTaskFn)Marshal.GetDelegateForFunctionPointer(taskFn, typeof(NativeTaskFn));
                    taskPointer = taskFn;
                }
                NativeTaskFn f = task;
                Parallel.For(0, (int)n, i => f(taskCtx, (uint)i));
            }
        }

        // The library's parallel_for, on the thread running the session call.
        // Must not unwind: a failure leaves tasks undone, which the library
        // runs itself and reports as BadParallelFor (the session stays usable).
        [MonoPInvokeCallback(typeof(NativeParallelForFn))]
        private static void OnParallelFor(IntPtr userData, uint nTasks, IntPtr task, IntPtr taskCtx)
        {
            try
            {
                ((ManagedPool)GCHandle.FromIntPtr(userData).Target).Run(nTasks, task, taskCtx);
            }
            catch (Exception)
            {
            }
        }
    }
}
