// TokenDecoder.cs: a streaming detokenizer that never splits a UTF-8 character.
// SPDX-License-Identifier: MIT OR Apache-2.0
using System;
using System.Collections.Generic;
using System.Text;

namespace Llamette
{
    /// <summary>
    /// Token ids in, text out (<c>llamette_decoder</c>): a character spelled by
    /// several byte tokens is held back until its last byte arrives, so every
    /// string returned is whole characters. '▁' becomes a space, control tokens
    /// give no text, the piece right after a BOS loses one leading space
    /// (llama2.c's rule). Keeps its model alive. One thread at a time.
    /// </summary>
    public sealed class TokenDecoder : IDisposable
    {
        private readonly DecoderHandle handle;
        private byte[] buffer;

        /// <summary>A decoder over <paramref name="model"/>'s tokenizer, at the start of a text.</summary>
        /// <exception cref="LlametteException">NoTokenizer for a model opened without one.</exception>
        public TokenDecoder(LlamaModel model)
        {
            if (model == null) throw new ArgumentNullException("model");
            int max;
            using (LlamaModel.Lease l = model.Acquire())
            {
                max = Tokenizer.GetInfo(l.Pointer).MaxTokenTextBytes;
                handle = ModelChildHandle.Create<DecoderHandle>(model.Handle, NewDecoder);
            }
            buffer = new byte[Math.Max(max, 8)];
        }

        /// <summary>A decoder under a session (whose LlamaModel may be disposed).</summary>
        internal TokenDecoder(SessionHandle session, int maxTokenTextBytes)
        {
            handle = ModelChildHandle.Create<DecoderHandle>(session, NewDecoder);
            buffer = new byte[Math.Max(maxTokenTextBytes, 8)];
        }

        private static IntPtr NewDecoder(IntPtr model)
        {
            IntPtr d;
            LlametteException.Check(Native.llamette_decoder_new(model, out d));
            return d;
        }

        /// <summary>The text <paramref name="token"/> completes: possibly empty.</summary>
        /// <exception cref="LlametteException">UnknownToken (the decoder is unchanged).</exception>
        public string Push(int token)
        {
            UIntPtr n;
            uint st = Native.llamette_decoder_push(handle, token, buffer, new UIntPtr((ulong)buffer.Length), out n);
            if (st == (uint)LlametteStatus.BufferTooSmall)
            {
                buffer = new byte[Utf8.Length(n)];
                st = Native.llamette_decoder_push(handle, token, buffer, new UIntPtr((ulong)buffer.Length), out n);
            }
            LlametteException.Check(st);
            return Utf8.Encoding.GetString(buffer, 0, Utf8.Length(n));
        }

        /// <summary>
        /// Ends the text: a character still held back (incomplete) comes out as
        /// U+FFFD, otherwise "". The decoder is then at the start of a new text.
        /// </summary>
        public string Flush()
        {
            UIntPtr n;
            LlametteException.Check(Native.llamette_decoder_flush(handle, buffer, new UIntPtr((ulong)buffer.Length), out n));
            return Utf8.Encoding.GetString(buffer, 0, Utf8.Length(n));
        }

        /// <summary>Pushes every token, then flushes: the whole text.</summary>
        public string Decode(IEnumerable<int> tokens)
        {
            if (tokens == null) throw new ArgumentNullException("tokens");
            StringBuilder sb = new StringBuilder();
            foreach (int t in tokens) sb.Append(Push(t));
            sb.Append(Flush());
            return sb.ToString();
        }

        /// <summary>Frees the decoder (and its reference to the model).</summary>
        public void Dispose()
        {
            handle.Dispose();
        }
    }
}
