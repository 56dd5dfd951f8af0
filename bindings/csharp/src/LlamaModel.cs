// LlamaModel.cs: a model (file, byte[], native memory or the embedded one), its info and tokenizer.
// SPDX-License-Identifier: MIT OR Apache-2.0
using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;

namespace Llamette
{
    /// <summary>Which file format a model was read from.</summary>
    public enum ModelFormat : uint
    {
        /// <summary>Not one this binding knows (a newer library).</summary>
        Unknown = 0,
        /// <summary>GGUF version 2.</summary>
        GgufV2 = 1,
        /// <summary>GGUF version 3.</summary>
        GgufV3 = 2,
        /// <summary>llama2.c "version 0" checkpoint (fp32, run.c).</summary>
        Llama2cV0 = 3,
        /// <summary>llama2.c "version 2" checkpoint (Q8_0, runq.c).</summary>
        Llama2cV2 = 4,
    }

    /// <summary>What a model is: shapes, special tokens, sizes (<c>llamette_model_info</c>).</summary>
    public sealed class ModelInfo
    {
        internal ModelInfo(NativeModelInfo i)
        {
            Format = Enum.IsDefined(typeof(ModelFormat), i.format) ? (ModelFormat)i.format : ModelFormat.Unknown;
            Dim = (int)i.dim;
            HiddenDim = (int)i.hidden_dim;
            LayerCount = (int)i.n_layers;
            HeadCount = (int)i.n_heads;
            KvHeadCount = (int)i.n_kv_heads;
            HeadDim = (int)i.head_dim;
            VocabSize = (int)i.vocab_size;
            ContextLength = (int)i.context_length;
            TokenizerTokens = (int)i.tokenizer_tokens;
            BosToken = (int)i.bos_token;
            EosToken = (int)i.eos_token;
            UnkToken = (int)i.unk_token;
            MaxTokenTextBytes = (int)i.max_token_text_bytes;
            ParameterCount = (long)i.n_params;
            WeightBytes = (long)i.weight_bytes;
            FileBytes = (long)i.file_bytes;
            TokenizerFileBytes = (long)i.tokenizer_file_bytes;
            BytesPerToken = (long)i.bytes_per_token;
            RmsEps = i.rms_eps;
            RopeTheta = i.rope_theta;
            OwnedBytes = (long)i.owned_bytes;
            InterleavedMatrices = (int)i.interleaved_matrices;
        }

        /// <summary>The file format.</summary>
        public ModelFormat Format { get; private set; }
        /// <summary>Width of the residual stream.</summary>
        public int Dim { get; private set; }
        /// <summary>Width of the feed-forward hidden layer.</summary>
        public int HiddenDim { get; private set; }
        /// <summary>Number of transformer blocks.</summary>
        public int LayerCount { get; private set; }
        /// <summary>Number of query heads.</summary>
        public int HeadCount { get; private set; }
        /// <summary>Number of key/value heads.</summary>
        public int KvHeadCount { get; private set; }
        /// <summary>Width of one attention head.</summary>
        public int HeadDim { get; private set; }
        /// <summary>Number of tokens the model predicts over.</summary>
        public int VocabSize { get; private set; }
        /// <summary>The longest context the model was trained for, in positions.</summary>
        public int ContextLength { get; private set; }
        /// <summary>Number of tokens of the tokenizer (at least VocabSize); 0 without one.</summary>
        public int TokenizerTokens { get; private set; }
        /// <summary>The beginning-of-sequence token, or <see cref="LlamaModel.NoToken"/>.</summary>
        public int BosToken { get; private set; }
        /// <summary>The end-of-sequence token, or <see cref="LlamaModel.NoToken"/>.</summary>
        public int EosToken { get; private set; }
        /// <summary>The unknown token, or <see cref="LlamaModel.NoToken"/>.</summary>
        public int UnkToken { get; private set; }
        /// <summary>The most UTF-8 bytes one token can produce through a decoder; 0 without a tokenizer.</summary>
        public int MaxTokenTextBytes { get; private set; }
        /// <summary>Number of parameters.</summary>
        public long ParameterCount { get; private set; }
        /// <summary>Bytes of weights.</summary>
        public long WeightBytes { get; private set; }
        /// <summary>Bytes of the model file (or memory).</summary>
        public long FileBytes { get; private set; }
        /// <summary>Bytes of the tokenizer file (0 when it is the model's own file, or absent).</summary>
        public long TokenizerFileBytes { get; private set; }
        /// <summary>Weight bytes one decode step reads.</summary>
        public long BytesPerToken { get; private set; }
        /// <summary>RMSNorm epsilon.</summary>
        public float RmsEps { get; private set; }
        /// <summary>RoPE frequency base.</summary>
        public float RopeTheta { get; private set; }
        /// <summary>
        /// Bytes of memory the library allocated to hold the model file (a model
        /// loaded with <see cref="ModelLoad.InMemoryInterleaved"/>: the file's size);
        /// 0 when it reads a mapped file, memory given to it, or the embedded model.
        /// (A copy made by this binding, <see cref="ModelLoad.InMemory"/> or
        /// <see cref="LlamaModel.FromBytes"/>, is the binding's, not counted here.)
        /// </summary>
        public long OwnedBytes { get; private set; }
        /// <summary>Matrices stored interleaved for the SIMD kernels (<c>llamette_repack_in_place</c>'s layout).</summary>
        public int InterleavedMatrices { get; private set; }
        /// <summary>Whether the model has a tokenizer (text in and out), not only token ids.</summary>
        public bool HasTokenizer { get { return TokenizerTokens > 0; } }

        /// <inheritdoc/>
        public override string ToString()
        {
            return Format + ": dim " + Dim + ", " + LayerCount + " layers, " + HeadCount + " heads (" + KvHeadCount
                + " kv), vocabulary " + VocabSize + ", context " + ContextLength + ", " + ParameterCount + " parameters";
        }
    }

    /// <summary>How <see cref="LlamaModel.FromFile(string, string, ModelLoad)"/> reads a model file.</summary>
    public enum ModelLoad
    {
        /// <summary>
        /// Memory-mapped read-only, nothing copied (what
        /// <see cref="LlamaModel.FromFile(string, string)"/> does): the least memory,
        /// and pages shared with other processes that map the same file.
        /// </summary>
        Mapped = 0,
        /// <summary>
        /// Read into unmanaged memory the model owns, as
        /// <see cref="LlamaModel.FromBytes"/> does (without a managed array, so
        /// with no 2 GB limit); the file may change or go afterwards.
        /// </summary>
        InMemory = 1,
        /// <summary>
        /// Loaded for speed by the library (<c>llamette_model_open_file_ex</c> with
        /// <c>LLAMETTE_OPEN_FOR_SPEED</c>): copied into memory the library owns (on
        /// Linux backed by transparent huge pages) and, where
        /// <see cref="Library.InterleavedKernels"/> is true, the GGUF file's Q8_0
        /// and Q4_0 matrices interleaved there for the SIMD kernels: about twice the
        /// prompt speed, and faster generation. Where the kernels have no fast paths
        /// for interleaved matrices they keep the file's layout, and the copy is made
        /// on Linux only (for its huge pages); elsewhere, or when the copy would gain
        /// nothing, the file is mapped as <see cref="Mapped"/> does.
        /// <see cref="ModelInfo.OwnedBytes"/> says what it costs (0: mapped),
        /// <see cref="LlamaModel.InterleavedMatrices"/> what was rewritten. The
        /// logits are the file's, bit for bit.
        /// </summary>
        InMemoryInterleaved = 2,
    }

    /// <summary>
    /// A Llama 2 model: immutable once opened, shareable by any number of
    /// threads and sessions. Dispose it when done; sessions and decoders made
    /// from it keep it alive, so it may be disposed before them.
    /// </summary>
    public sealed class LlamaModel : IDisposable
    {
        /// <summary>A token id that is no token (<c>LLAMETTE_NO_TOKEN</c>, UINT32_MAX).</summary>
        public const int NoToken = -1;

        private readonly ModelHandle handle;
        private ModelInfo info;

        private LlamaModel(ModelHandle handle)
        {
            this.handle = handle;
        }

        internal ModelHandle Handle { get { return handle; } }

        // ------------------------------------------------------------ opening

        /// <summary>
        /// Opens a GGUF or llama2.c <c>.bin</c> model file, memory-mapped read-only
        /// (nothing is copied). A llama2.c model needs its <c>tokenizer.bin</c> in
        /// <paramref name="tokenizerPath"/> for text (otherwise it works on token ids
        /// only); a GGUF model uses its own vocabulary when it is null. The files
        /// must not be modified while the model or a session on it lives.
        /// </summary>
        /// <remarks>
        /// For the fastest prompts with a quantized (Q8_0 or Q4_0) GGUF model, read
        /// it into memory and interleave its matrices:
        /// <c>FromFile(path, null, ModelLoad.InMemoryInterleaved)</c>, or
        /// <c>FromBytes(File.ReadAllBytes(path), interleave: true)</c>.
        /// </remarks>
        /// <exception cref="LlametteException">Io (missing or unreadable), BadFile, Unsupported, BadTokenizer, ...</exception>
        public static LlamaModel FromFile(string path, string tokenizerPath = null)
        {
            return OpenFile(path, tokenizerPath, 0);
        }

        private static LlamaModel OpenFile(string path, string tokenizerPath, uint flags)
        {
            if (path == null) throw new ArgumentNullException("path");
            byte[] p = Utf8.ToCString(path, "path");
            byte[] t = Utf8.ToCString(tokenizerPath, "tokenizerPath");
            ModelHandle h = new ModelHandle();
            IntPtr raw;
            LlametteException.Check(Native.llamette_model_open_file_ex(p, t, flags, out raw));
            h.Attach(raw, IntPtr.Zero, 0, null);
            LlamaModel m = new LlamaModel(h);
            // The library's copy, when it made one, weighs on the GC's decisions too.
            long owned = m.Info.OwnedBytes;
            if (owned > 0) h.AddPressure(owned);
            return m;
        }

        /// <summary>
        /// Opens a model file the way <paramref name="load"/> says: memory-mapped
        /// (<see cref="ModelLoad.Mapped"/>, the same as
        /// <see cref="FromFile(string, string)"/>), read into unmanaged memory
        /// the model owns (<see cref="ModelLoad.InMemory"/>: read once, straight into
        /// unmanaged memory, no managed array; the files may change afterwards), or
        /// loaded for speed by the library (<see cref="ModelLoad.InMemoryInterleaved"/>:
        /// its quantized matrices interleaved for this CPU's kernels when they have
        /// fast paths for them, about twice the prompt speed; see there).
        /// </summary>
        /// <param name="path">A GGUF or llama2.c <c>.bin</c> model file.</param>
        /// <param name="tokenizerPath">A tokenizer file, or null (see <see cref="FromFile(string, string)"/>).</param>
        /// <param name="load">Mapped, or read into memory (and interleaved).</param>
        /// <exception cref="LlametteException">Io (missing or unreadable), BadFile, Unsupported, BadTokenizer, ...</exception>
        public static LlamaModel FromFile(string path, string tokenizerPath, ModelLoad load)
        {
            if (path == null) throw new ArgumentNullException("path");
            switch (load)
            {
                case ModelLoad.Mapped:
                    return FromFile(path, tokenizerPath);
                case ModelLoad.InMemoryInterleaved:
                    return OpenFile(path, tokenizerPath, Native.OpenForSpeed);
                case ModelLoad.InMemory:
                    break;
                default:
                    throw new ArgumentOutOfRangeException("load");
            }
            using (FileStream m = OpenRead(path))
            using (FileStream t = tokenizerPath == null ? null : OpenRead(tokenizerPath))
            {
                long modelLength = m.Length, tokenizerLength = t == null ? -1 : t.Length;
                return OpenCopy(modelLength, tokenizerLength, false, (mem, tok) =>
                {
                    ReadInto(m, path, mem, modelLength);
                    if (t != null) ReadInto(t, tokenizerPath, tok, tokenizerLength);
                });
            }
        }

        /// <summary>
        /// Opens a model from bytes in managed memory (a file read with
        /// File.ReadAllBytes, a resource). The bytes are <b>copied once</b> into
        /// unmanaged memory that lives as long as the model and every session
        /// and decoder made from it, so the arrays may be reused or modified
        /// right after this returns and the GC never has to keep them pinned.
        /// (To avoid the copy, open the file with <see cref="FromFile(string, string)"/>,
        /// which maps it, or hand over native memory with <see cref="FromMemory"/>.)
        /// </summary>
        /// <remarks>
        /// <para>
        /// With <paramref name="interleave"/>, the copy of a GGUF model is rewritten
        /// in place before it is opened, where <see cref="Library.InterleavedKernels"/>
        /// is true: its Q8_0 and Q4_0 matrices (with AVX-512 VNNI also Q4_K and Q5_K, with AVX2 Q4_K)
        /// are interleaved (16 rows side by side,
        /// <c>llamette_repack_in_place</c>) so that the SIMD kernels read them faster,
        /// about twice the prompt speed and faster generation. The arrays passed in
        /// are not changed. Elsewhere, and for F32 or llama2.c models, the model is
        /// opened as it is (<see cref="InterleavedMatrices"/> says how many matrices
        /// were rewritten). The logits are the plain model's, bit for bit.
        /// </para>
        /// <para>
        /// The fast path for a file on disk:
        /// <c>LlamaModel.FromBytes(File.ReadAllBytes("model-q8_0.gguf"), interleave: true)</c>,
        /// or, without the managed array (and its 2 GB limit),
        /// <c>LlamaModel.FromFile("model-q8_0.gguf", null, ModelLoad.InMemoryInterleaved)</c>.
        /// </para>
        /// </remarks>
        /// <param name="model">The model file's bytes (GGUF or llama2.c).</param>
        /// <param name="tokenizer">A tokenizer file's bytes, or null.</param>
        /// <param name="interleave">Interleave the quantized matrices for this CPU's kernels, where that pays.</param>
        /// <exception cref="LlametteException">BadFile (an empty, truncated or malformed file), Unsupported, BadTokenizer, ...</exception>
        public static LlamaModel FromBytes(byte[] model, byte[] tokenizer = null, bool interleave = false)
        {
            if (model == null) throw new ArgumentNullException("model");
            return OpenCopy(model.Length, tokenizer == null ? -1 : tokenizer.Length, interleave, (mem, tok) =>
            {
                Marshal.Copy(model, 0, mem, model.Length);
                if (tokenizer != null) Marshal.Copy(tokenizer, 0, tok, tokenizer.Length);
            });
        }

        /// <summary>
        /// Rewrites a GGUF file in writable native memory in place so that the SIMD
        /// kernels read its Q8_0 and Q4_0 (with AVX-512 VNNI also Q4_K and Q5_K, with AVX2 Q4_K) matrices faster
        /// (<c>llamette_repack_in_place</c>), for <see cref="FromMemory"/> on the
        /// same bytes afterwards. The bytes are then no longer a standard GGUF file
        /// (only llamette reads them). Idempotent; a llama2.c file is left as it is;
        /// on an error nothing is changed. Worth it only where
        /// <see cref="Library.InterleavedKernels"/> is true (elsewhere the rewritten
        /// matrices are slower). No model may be open on the bytes during the call.
        /// </summary>
        /// <param name="data">The model file's bytes, readable and writable.</param>
        /// <param name="length">Bytes at <paramref name="data"/>.</param>
        /// <returns>The number of matrices rewritten.</returns>
        /// <exception cref="LlametteException">BadFile, Unsupported, NullArgument, InvalidArgument.</exception>
        public static long RepackInPlace(IntPtr data, long length)
        {
            if (length < 0) throw new ArgumentOutOfRangeException("length");
            UIntPtr n;
            LlametteException.Check(Native.llamette_repack_in_place(data, new UIntPtr((ulong)length), out n));
            return (long)n.ToUInt64();
        }

        /// <summary>
        /// How many matrices are stored interleaved for the SIMD kernels: those
        /// interleaved when the model was opened (<see cref="FromBytes"/> with
        /// <c>interleave</c>, <see cref="ModelLoad.InMemoryInterleaved"/>), or that the
        /// bytes held already (<see cref="ModelInfo.InterleavedMatrices"/>); 0 for a
        /// plain file, and for a model without Q8_0 or Q4_0 matrices.
        /// </summary>
        public long InterleavedMatrices { get { return Info.InterleavedMatrices; } }

        // Allocates unmanaged memory for a model (and a tokenizer, when
        // tokenizerLength >= 0) right after it, lets fill write them, interleaves
        // the model when asked and it pays, and opens it there. The memory is
        // freed with the model, or here on any error.
        private static LlamaModel OpenCopy(long modelLength, long tokenizerLength, bool interleave, Action<IntPtr, IntPtr> fill)
        {
            long total = modelLength + Math.Max(tokenizerLength, 0);
            IntPtr mem = Marshal.AllocHGlobal(new IntPtr(Math.Max(total, 1)));
            ModelHandle h;
            IntPtr raw;
            try
            {
                IntPtr tok = tokenizerLength < 0 ? IntPtr.Zero : new IntPtr(mem.ToInt64() + modelLength);
                fill(mem, tok);
                if (interleave && Library.InterleavedKernels) RepackInPlace(mem, modelLength);
                h = new ModelHandle();
                uint st = Native.llamette_model_open_memory(mem, new UIntPtr((ulong)modelLength), tok,
                    new UIntPtr(tokenizerLength < 0 ? 0UL : (ulong)tokenizerLength), out raw);
                if (st != 0) throw LlametteException.FromLastError(st);
            }
            catch
            {
                Marshal.FreeHGlobal(mem);
                throw;
            }
            if (total > 0) GC.AddMemoryPressure(total);
            h.Attach(raw, mem, total, null);
            return new LlamaModel(h);
        }

        // File errors as the library reports them: LlametteException(Io) naming the file.
        private static LlametteException IoError(string path, Exception e)
        {
            string message = e.Message.Contains(path) ? e.Message : path + ": " + e.Message;
            return new LlametteException(LlametteStatus.Io, message);
        }

        private static FileStream OpenRead(string path)
        {
            try
            {
                return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
            }
            catch (IOException e)
            {
                throw IoError(path, e);
            }
            catch (UnauthorizedAccessException e)
            {
                throw IoError(path, e);
            }
        }

        // Reads length bytes of the file into native memory, 1 MiB at a time.
        private static void ReadInto(FileStream file, string path, IntPtr dest, long length)
        {
            byte[] buffer = new byte[(int)Math.Max(1, Math.Min(length, 1 << 20))];
            long done = 0;
            try
            {
                while (done < length)
                {
                    int n = file.Read(buffer, 0, (int)Math.Min(buffer.Length, length - done));
                    if (n <= 0) throw new IOException(path + ": the file got shorter while it was read");
                    Marshal.Copy(buffer, 0, new IntPtr(dest.ToInt64() + done), n);
                    done += n;
                }
            }
            catch (IOException e)
            {
                throw IoError(path, e);
            }
        }

        /// <summary>
        /// Opens a model from native memory, <b>zero-copy</b>: the weights are read
        /// where they lie (an embedded resource, a memory-mapped view, memory from
        /// another library). No alignment is required. The memory must stay valid
        /// and unchanged until <paramref name="released"/> is called: the binding
        /// calls it once, after the model and every session and decoder made from
        /// it have been released (disposed or finalized). Pass null if the memory
        /// lives for the whole process.
        /// </summary>
        /// <param name="data">The model file's bytes (GGUF or llama2.c).</param>
        /// <param name="length">Bytes at <paramref name="data"/>.</param>
        /// <param name="tokenizer">A tokenizer file's bytes, or IntPtr.Zero.</param>
        /// <param name="tokenizerLength">Bytes at <paramref name="tokenizer"/> (0 with IntPtr.Zero).</param>
        /// <param name="released">Called when the memory is no longer used; may run on the finalizer thread.</param>
        public static LlamaModel FromMemory(IntPtr data, long length, IntPtr tokenizer = default(IntPtr),
            long tokenizerLength = 0, Action released = null)
        {
            if (length < 0) throw new ArgumentOutOfRangeException("length");
            if (tokenizerLength < 0) throw new ArgumentOutOfRangeException("tokenizerLength");
            ModelHandle h = new ModelHandle();
            IntPtr raw;
            LlametteException.Check(Native.llamette_model_open_memory(data, new UIntPtr((ulong)length), tokenizer,
                new UIntPtr((ulong)tokenizerLength), out raw));
            h.Attach(raw, IntPtr.Zero, 0, released);
            return new LlamaModel(h);
        }

        /// <summary>
        /// Opens the model compiled into the library: stories260K (a 260K-parameter
        /// TinyStories model, 512-token vocabulary) with its tokenizer. Nothing is
        /// read from disk. Throws LlametteException(Unsupported) if the library was
        /// built without it.
        /// </summary>
        public static LlamaModel OpenDefault()
        {
            ModelHandle h = new ModelHandle();
            IntPtr raw;
            LlametteException.Check(Native.llamette_model_open_default(out raw));
            h.Attach(raw, IntPtr.Zero, 0, null);
            return new LlamaModel(h);
        }

        // ------------------------------------------------------------ info and tokenizer

        /// <summary>Shapes, special tokens and sizes.</summary>
        public ModelInfo Info
        {
            get
            {
                if (info == null)
                {
                    using (Lease l = Acquire()) info = Tokenizer.GetInfo(l.Pointer);
                }
                return info;
            }
        }

        /// <summary>
        /// Encodes text into token ids as SentencePiece does for Llama 2, BOS
        /// first if <paramref name="addBos"/>. Throws LlametteException(NoTokenizer)
        /// for a model without a tokenizer.
        /// </summary>
        public int[] Tokenize(string text, bool addBos)
        {
            using (Lease l = Acquire()) return Tokenizer.Tokenize(l.Pointer, text, addBos);
        }

        /// <summary>
        /// The raw bytes of one token's piece (<c>llamette_model_token_to_piece</c>):
        /// '▁' as a space, a byte token (&lt;0x0A&gt;) as its byte, so possibly not
        /// UTF-8 on its own; empty for control tokens. For text use
        /// <see cref="Detokenize"/> or a <see cref="TokenDecoder"/>.
        /// </summary>
        public byte[] TokenBytes(int token)
        {
            using (Lease l = Acquire()) return Tokenizer.TokenBytes(l.Pointer, token);
        }

        /// <summary>
        /// The text of a token sequence (the decoder's rules: whole UTF-8
        /// characters, '▁' as space, no text for control tokens, the piece after
        /// a BOS loses one leading space; an incomplete character at the end
        /// becomes U+FFFD).
        /// </summary>
        public string Detokenize(IEnumerable<int> tokens)
        {
            if (tokens == null) throw new ArgumentNullException("tokens");
            using (TokenDecoder d = new TokenDecoder(this)) return d.Decode(tokens);
        }

        /// <summary>Disposes the caller's reference; sessions and decoders keep the model alive.</summary>
        public void Dispose()
        {
            handle.Dispose();
        }

        /// <summary>Whether <see cref="Dispose"/> was called.</summary>
        public bool IsDisposed { get { return handle.IsClosed; } }

        // A scoped reference on the handle, so that a concurrent Dispose cannot
        // free the model during a call (ObjectDisposedException once disposed).
        internal Lease Acquire()
        {
            if (handle.IsClosed) throw new ObjectDisposedException("LlamaModel");
            return new Lease(handle);
        }

        internal struct Lease : IDisposable
        {
            private SafeHandle h;
            internal Lease(SafeHandle h)
            {
                bool added = false;
                h.DangerousAddRef(ref added);
                this.h = h;
            }
            internal IntPtr Pointer { get { return h.DangerousGetHandle(); } }
            public void Dispose()
            {
                if (h != null) h.DangerousRelease();
                h = null;
            }
        }
    }

    /// <summary>Tokenizer calls on a raw model pointer the caller keeps alive.</summary>
    internal static class Tokenizer
    {
        internal static ModelInfo GetInfo(IntPtr model)
        {
            NativeModelInfo i = default(NativeModelInfo);
            i.struct_size = StructSize.Of<NativeModelInfo>();
            LlametteException.Check(Native.llamette_model_get_info(model, ref i));
            return new ModelInfo(i);
        }

        internal static int[] Tokenize(IntPtr model, string text, bool addBos)
        {
            if (text == null) throw new ArgumentNullException("text");
            byte[] utf8 = Utf8.Encoding.GetBytes(text);
            UIntPtr len = new UIntPtr((ulong)utf8.Length);
            // A first guess that fits most texts in one call; the library says
            // how many ids it needs when the guess is short.
            int[] ids = new int[utf8.Length + 2];
            UIntPtr n;
            uint st = Native.llamette_model_tokenize(model, utf8, len, addBos, ids, new UIntPtr((ulong)ids.Length), out n);
            if (st == (uint)LlametteStatus.BufferTooSmall)
            {
                ids = new int[Utf8.Length(n)];
                st = Native.llamette_model_tokenize(model, utf8, len, addBos, ids, new UIntPtr((ulong)ids.Length), out n);
            }
            LlametteException.Check(st);
            int count = Utf8.Length(n);
            if (count != ids.Length) Array.Resize(ref ids, count);
            return ids;
        }

        internal static byte[] TokenBytes(IntPtr model, int token)
        {
            byte[] buf = new byte[16];
            UIntPtr n;
            uint st = Native.llamette_model_token_to_piece(model, token, buf, new UIntPtr((ulong)buf.Length), out n);
            if (st == (uint)LlametteStatus.BufferTooSmall)
            {
                buf = new byte[Utf8.Length(n)];
                st = Native.llamette_model_token_to_piece(model, token, buf, new UIntPtr((ulong)buf.Length), out n);
            }
            LlametteException.Check(st);
            int count = Utf8.Length(n);
            if (count != buf.Length) Array.Resize(ref buf, count);
            return buf;
        }
    }
}
