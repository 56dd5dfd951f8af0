// Options.cs: option classes (mapped to the C ABI's blittable structs) and results.
// SPDX-License-Identifier: MIT OR Apache-2.0
using System;

namespace Llamette
{
    /// <summary>Element type of a session's KV cache (<c>LLAMETTE_KV_*</c>).</summary>
    public enum KvCacheType : uint
    {
        /// <summary>32-bit floats: exact.</summary>
        F32 = 0,
        /// <summary>16-bit floats: half the memory, about 3 decimal digits.</summary>
        F16 = 1,
        /// <summary>ggml's Q8_0 blocks: 34 bytes per 32 values, about a quarter of F32.</summary>
        Q8_0 = 2,
    }

    /// <summary>How a session is sized (<c>llamette_session_params</c>) and run.</summary>
    public sealed class SessionOptions
    {
        /// <summary>Positions the session holds, prompt and generated tokens; 0 (the default) means the model's context length.</summary>
        public int ContextLength { get; set; }

        /// <summary>KV cache element type; F32 by default.</summary>
        public KvCacheType KvCacheType { get; set; }

        /// <summary>Most prompt tokens a prefill runs together; 0 means the library's default (32).</summary>
        public int Batch { get; set; }

        /// <summary>
        /// Threads for the matrix products on the library's own pool, the calling
        /// thread included: 1 (the default) starts none, 0 means one per core.
        /// The tokens do not depend on it.
        /// </summary>
        public int Threads { get; set; } = 1;

        internal NativeSessionParams ToNative()
        {
            if (ContextLength < 0) throw new ArgumentOutOfRangeException("ContextLength");
            if (Batch < 0) throw new ArgumentOutOfRangeException("Batch");
            NativeSessionParams p;
            p.struct_size = StructSize.Of<NativeSessionParams>();
            p.context_length = (uint)ContextLength;
            p.kv_type = (uint)KvCacheType;
            p.batch = (uint)Batch;
            return p;
        }
    }

    /// <summary>
    /// Sampler settings (<c>llamette_sampler_params</c>) and generation limits.
    /// The defaults are llama2.c's (<c>llamette_sampler_params_default</c>):
    /// temperature 1, top-p 0.9, top-k 0, min-p 0, repetition penalty 1 over 64
    /// tokens, seed 0. With TopK 0, MinP 0 and RepeatPenalty 1 the sampler is
    /// run.c's, bit for bit.
    /// </summary>
    public sealed class GenerateOptions
    {
        /// <summary>
        /// Divides the logits; 0 means greedy: always the most likely token. Negative,
        /// NaN or infinite is refused (<see cref="InvalidParameterException"/>).
        /// </summary>
        public float Temperature { get; set; } = 1.0f;

        /// <summary>Keep only the TopK most likely tokens; 0 keeps all; negative is refused.</summary>
        public int TopK { get; set; }

        /// <summary>
        /// Nucleus sampling: the most likely tokens whose mass first exceeds TopP; 0 and 1
        /// keep all; outside [0, 1] (or NaN) is refused.
        /// </summary>
        public float TopP { get; set; } = 0.9f;

        /// <summary>Drop tokens less likely than MinP times the most likely; 0 keeps all; outside [0, 1] is refused.</summary>
        public float MinP { get; set; }

        /// <summary>
        /// Penalise the last RepeatLastN tokens (positive logits divided, negative multiplied);
        /// 1 is off; not above 0 (or not finite) is refused.
        /// </summary>
        public float RepeatPenalty { get; set; } = 1.0f;

        /// <summary>How many recent tokens the penalty looks at; negative is refused.</summary>
        public int RepeatLastN { get; set; } = 64;

        /// <summary>
        /// Seed of the xorshift generator; 0 stands for a fixed constant. The
        /// generator is seeded at the first step after the session is made or
        /// reset, and whenever the seed changes; otherwise its state carries on.
        /// </summary>
        public ulong Seed { get; set; }

        /// <summary>Most tokens one generation produces; 0 (the default) means no limit but the context; negative is refused.</summary>
        public int MaxTokens { get; set; }

        /// <summary>
        /// Whether the prompt gets a BOS token in front. Null (the default): only
        /// when the session is empty (position 0), as run.c does for its prompt;
        /// a prompt that continues a conversation gets none.
        /// </summary>
        public bool? AddBos { get; set; }

        /// <summary>
        /// Stop strings (at most 8, each 1 to 64 bytes of UTF-8): the callback
        /// generation (<see cref="Session.Generate(string, GenerateOptions, TokenHandler, System.Threading.CancellationToken)"/>,
        /// <see cref="ChatSession.Send(string, TokenHandler, System.Threading.CancellationToken)"/>)
        /// stops when the text completes one (StopReason.StopString); the text before it
        /// is passed on, the stop string never is, and a match split over several tokens
        /// is found. The enumerating variants stop at end tokens and MaxTokens only.
        /// </summary>
        public string[] StopStrings { get; set; }

        /// <summary>Whether generation stops at the end tokens (EOS and BOS); true by default.</summary>
        public bool StopAtEndToken { get; set; } = true;

        /// <summary>Greedy decoding (temperature 0): the same text every time.</summary>
        public static GenerateOptions Greedy()
        {
            return new GenerateOptions { Temperature = 0.0f };
        }

        /// <summary>Temperature and nucleus sampling with a seed (run.c's -t -p -s).</summary>
        public static GenerateOptions Sampled(float temperature, float topP, ulong seed)
        {
            return new GenerateOptions { Temperature = temperature, TopP = topP, Seed = seed };
        }

        /// <summary>
        /// The C struct, checked as the library checks it when it samples (so that a
        /// bad setting is an <see cref="InvalidParameterException"/> before a prompt is
        /// fed or a chat turn begins).
        /// </summary>
        internal NativeSamplerParams ToNative()
        {
            if (TopK < 0) throw Negative("TopK", TopK);
            if (RepeatLastN < 0) throw Negative("RepeatLastN", RepeatLastN);
            if (MaxTokens < 0) throw Negative("MaxTokens", MaxTokens);
            NativeSamplerParams p = Unchecked();
            uint st = Native.llamette_sampler_params_validate(ref p);
            if (st == (uint)LlametteStatus.InvalidArgument)
            {
                string message = Utf8.FromCString(Native.llamette_last_error());
                throw new InvalidParameterException(PropertyOf(message), message);
            }
            LlametteException.Check(st);
            return p;
        }

        private static InvalidParameterException Negative(string name, int value)
        {
            return new InvalidParameterException(name, "invalid " + name + " " + value + ": it must not be negative");
        }

        // The library's message reads "invalid <field> <value>: ...", <field> as in llamette.h.
        private static string PropertyOf(string message)
        {
            string[] w = message.Split(' ');
            string field = w.Length > 1 && w[0] == "invalid" ? w[1] : "";
            switch (field)
            {
                case "temperature": return "Temperature";
                case "top_p": return "TopP";
                case "min_p": return "MinP";
                case "repeat_penalty": return "RepeatPenalty";
                case "top_k": return "TopK";
                case "repeat_last_n": return "RepeatLastN";
                default: return field;
            }
        }

        private NativeSamplerParams Unchecked()
        {
            NativeSamplerParams p;
            p.struct_size = StructSize.Of<NativeSamplerParams>();
            p.temperature = Temperature;
            p.top_k = (uint)TopK;
            p.top_p = TopP;
            p.min_p = MinP;
            p.repeat_penalty = RepeatPenalty;
            p.repeat_last_n = (uint)RepeatLastN;
            p.seed = Seed;
            return p;
        }
    }

    /// <summary>Why a generation stopped (<c>LLAMETTE_STOP_*</c>).</summary>
    public enum StopReason : uint
    {
        /// <summary>Not stopped yet (or stopped by an exception).</summary>
        None = 0,
        /// <summary>The model produced an end token (BOS or EOS).</summary>
        EndToken = 1,
        /// <summary>MaxTokens tokens were generated.</summary>
        MaxTokens = 2,
        /// <summary>The callback returned false (or the enumeration was abandoned).</summary>
        Callback = 3,
        /// <summary>The session's context is full.</summary>
        ContextFull = 4,
        /// <summary>The text completed one of <see cref="GenerateOptions.StopStrings"/>.</summary>
        StopString = 5,
    }

    /// <summary>One generated token: its id, its text (whole UTF-8 characters, possibly ""), whether it ends the text.</summary>
    public struct GeneratedToken
    {
        internal GeneratedToken(int id, string text, bool isEnd)
        {
            Id = id;
            Text = text;
            IsEnd = isEnd;
        }

        /// <summary>The token id.</summary>
        public int Id { get; private set; }

        /// <summary>
        /// The text this token completes: whole characters only (a character
        /// spelled by several byte tokens comes with the last of them), so it
        /// may be "". Always "" for an end token or a model without a tokenizer.
        /// </summary>
        public string Text { get; private set; }

        /// <summary>Whether the token is the end of a text (the tokenizer's BOS or EOS).</summary>
        public bool IsEnd { get; private set; }

        /// <inheritdoc/>
        public override string ToString()
        {
            return Id + ":" + Text;
        }
    }

    /// <summary>What a callback generation did (<c>llamette_generate_result</c>).</summary>
    public struct GenerateResult
    {
        internal GenerateResult(int tokenCount, StopReason stopReason)
        {
            TokenCount = tokenCount;
            StopReason = stopReason;
        }

        /// <summary>Tokens passed to the callback.</summary>
        public int TokenCount { get; private set; }

        /// <summary>Why it stopped.</summary>
        public StopReason StopReason { get; private set; }
    }

    /// <summary>
    /// Receives each generated token (<see cref="Session.Generate(string, GenerateOptions, TokenHandler, System.Threading.CancellationToken)"/>):
    /// its id and text (whole UTF-8 characters, possibly ""). Return true to go on, false to stop.
    /// Runs on the generating thread. With stop strings, text held back while it might
    /// become one comes with a later token, or at the end with token -1 (no token).
    /// </summary>
    public delegate bool TokenHandler(int token, string text);

    /// <summary>
    /// Adjusts the logits before each sampling (<see cref="Session.SetLogitsHook"/>):
    /// one float per vocabulary entry, after the logit bias; set one to
    /// float.NegativeInfinity to ban its token. Runs on the generating thread.
    /// </summary>
    public delegate void LogitsHook(float[] logits);
}
