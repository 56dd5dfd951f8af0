// LlametteException.cs: status codes, the exception that carries them, UTF-8 helpers.
// SPDX-License-Identifier: MIT OR Apache-2.0
using System;
using System.Runtime.InteropServices;
using System.Runtime.Serialization;
using System.Text;

namespace Llamette
{
    /// <summary>
    /// The library's status codes (<c>LLAMETTE_STATUS_*</c> in llamette.h). The
    /// numbers are fixed and never reused.
    /// </summary>
    public enum LlametteStatus : uint
    {
        /// <summary>Success.</summary>
        Ok = 0,
        /// <summary>A pointer argument that must not be NULL was NULL.</summary>
        NullArgument = 1,
        /// <summary>An argument is out of its documented range.</summary>
        InvalidArgument = 2,
        /// <summary>A text argument (or a path) is not valid UTF-8.</summary>
        InvalidUtf8 = 3,
        /// <summary>An output buffer is too small.</summary>
        BufferTooSmall = 4,
        /// <summary>A caller buffer is not aligned as required.</summary>
        Misaligned = 5,
        /// <summary>Memory could not be allocated.</summary>
        OutOfMemory = 6,
        /// <summary>A file could not be opened, read or memory-mapped.</summary>
        Io = 7,
        /// <summary>The model (or tokenizer) bytes are malformed.</summary>
        BadFile = 8,
        /// <summary>A well-formed file this library does not run, or a feature left out of this build.</summary>
        Unsupported = 9,
        /// <summary>The tokenizer is malformed, or smaller than the model's vocabulary.</summary>
        BadTokenizer = 10,
        /// <summary>The model was opened without a tokenizer, and the call needs one.</summary>
        NoTokenizer = 11,
        /// <summary>A token id is outside the vocabulary.</summary>
        UnknownToken = 12,
        /// <summary>The session's context has no room for the tokens.</summary>
        ContextFull = 13,
        /// <summary>A step was asked of a session that has nothing prefilled.</summary>
        NothingToSample = 14,
        /// <summary>The call was cancelled with <see cref="Session.Cancel"/>.</summary>
        Cancelled = 15,
        /// <summary>The session is in use by another call (another thread, or its own callback).</summary>
        Busy = 16,
        /// <summary>A bug in the library, caught at its boundary; reset or dispose the session.</summary>
        Panic = 17,
        /// <summary>An error of the core library that has no status of its own yet.</summary>
        Error = 18,
        /// <summary>A saved state is not one: truncated, corrupted, malformed (<see cref="BadStateException"/>).</summary>
        BadState = 19,
        /// <summary>A saved state belongs to another model, KV type or version (<see cref="StateMismatchException"/>).</summary>
        StateMismatch = 20,
        /// <summary>A chat message carries the chat format's own tags (<see cref="RefusedException"/>).</summary>
        Refused = 21,
        /// <summary>The model's chat template could not be rendered (<see cref="ChatTemplateException"/>).</summary>
        Template = 22,
        /// <summary>
        /// A host thread pool's parallel_for skipped, repeated or invented task indices:
        /// the call stopped as a cancelled one does; the session stays usable.
        /// </summary>
        BadParallelFor = 23,
    }

    /// <summary>
    /// A failed call into the library: its <see cref="Status"/> and the
    /// library's own message (<c>llamette_last_error</c> or
    /// <c>llamette_session_last_error</c>), which names the argument, file or
    /// token involved. <see cref="Exception.Message"/> is that message followed
    /// by the status in parentheses, e.g.
    /// <c>/no/such.gguf: No such file or directory (os error 2) (i/o error)</c>.
    /// </summary>
    [Serializable]
    public class LlametteException : Exception
    {
        /// <summary>Makes an exception for <paramref name="status"/> with the library's message.</summary>
        public LlametteException(LlametteStatus status, string nativeMessage)
            : base(Compose(status, nativeMessage))
        {
            Status = status;
            NativeMessage = nativeMessage ?? "";
        }

        /// <summary>For deserialization (exceptions crossing AppDomains on .NET Framework).</summary>
        protected LlametteException(SerializationInfo info, StreamingContext context)
            : base(info, context)
        {
            Status = (LlametteStatus)info.GetUInt32("Status");
            NativeMessage = info.GetString("NativeMessage");
        }

        /// <summary>The status code the library returned.</summary>
        public LlametteStatus Status { get; private set; }

        /// <summary>The library's message, as it gave it (may be empty).</summary>
        public string NativeMessage { get; private set; }

        /// <inheritdoc/>
        public override void GetObjectData(SerializationInfo info, StreamingContext context)
        {
            base.GetObjectData(info, context);
            info.AddValue("Status", (uint)Status);
            info.AddValue("NativeMessage", NativeMessage);
        }

        /// <summary>The library's short description of a status (<c>llamette_status_str</c>).</summary>
        public static string Describe(LlametteStatus status)
        {
            return Utf8.FromCString(Native.llamette_status_str((uint)status));
        }

        private static string Compose(LlametteStatus status, string nativeMessage)
        {
            string name;
            try
            {
                name = Describe(status);
            }
            catch (Exception)
            {
                name = status.ToString();
            }
            return string.IsNullOrEmpty(nativeMessage) ? name : nativeMessage + " (" + name + ")";
        }

        /// <summary>Throws for a status other than OK, with this thread's last error.</summary>
        internal static void Check(uint status)
        {
            if (status != 0) throw FromLastError(status);
        }

        /// <summary>The exception for a failed call, with this thread's last error (read now).</summary>
        internal static LlametteException FromLastError(uint status)
        {
            return Create((LlametteStatus)status, Utf8.FromCString(Native.llamette_last_error()));
        }

        /// <summary>
        /// The exception for <paramref name="status"/>: a subclass where there is one
        /// (ContextFullException, BadStateException, StateMismatchException,
        /// RefusedException, ChatTemplateException), else a LlametteException.
        /// </summary>
        public static LlametteException Create(LlametteStatus status, string nativeMessage)
        {
            switch (status)
            {
                case LlametteStatus.ContextFull: return new ContextFullException(nativeMessage);
                case LlametteStatus.BadState: return new BadStateException(nativeMessage);
                case LlametteStatus.StateMismatch: return new StateMismatchException(nativeMessage);
                case LlametteStatus.Refused: return new RefusedException(nativeMessage);
                case LlametteStatus.Template: return new ChatTemplateException(nativeMessage);
                default: return new LlametteException(status, nativeMessage);
            }
        }
    }

    /// <summary>
    /// A setting of <see cref="GenerateOptions"/> out of its range (status
    /// InvalidArgument), found before anything ran: a NaN, infinite or negative
    /// Temperature, TopP or MinP outside [0, 1], a RepeatPenalty not above 0 (the
    /// library's checks, <c>llamette_sampler_params_validate</c>), or a negative
    /// TopK, RepeatLastN or MaxTokens. Nothing is clamped or ignored.
    /// </summary>
    [Serializable]
    public class InvalidParameterException : LlametteException
    {
        /// <summary>Makes the exception for <paramref name="parameterName"/> with the library's (or the binding's) message.</summary>
        public InvalidParameterException(string parameterName, string nativeMessage)
            : base(LlametteStatus.InvalidArgument, nativeMessage)
        {
            ParameterName = parameterName;
        }

        /// <summary>For deserialization.</summary>
        protected InvalidParameterException(SerializationInfo info, StreamingContext context) : base(info, context)
        {
            ParameterName = info.GetString("ParameterName");
        }

        /// <summary>The <see cref="GenerateOptions"/> property: "Temperature", "TopP", "MinP", "RepeatPenalty", "TopK", "RepeatLastN" or "MaxTokens".</summary>
        public string ParameterName { get; private set; }

        /// <inheritdoc/>
        public override void GetObjectData(SerializationInfo info, StreamingContext context)
        {
            base.GetObjectData(info, context);
            info.AddValue("ParameterName", ParameterName);
        }
    }

    /// <summary>The session's context has no room (status ContextFull); nothing changed.</summary>
    [Serializable]
    public class ContextFullException : LlametteException
    {
        /// <summary>Makes the exception with the library's message.</summary>
        public ContextFullException(string nativeMessage) : base(LlametteStatus.ContextFull, nativeMessage) { }

        /// <summary>For deserialization.</summary>
        protected ContextFullException(SerializationInfo info, StreamingContext context) : base(info, context) { }
    }

    /// <summary>
    /// A saved state is not one (status BadState): truncated, corrupted (its
    /// checksum fails), malformed. The session is unchanged.
    /// </summary>
    [Serializable]
    public class BadStateException : LlametteException
    {
        /// <summary>Makes the exception with the library's message.</summary>
        public BadStateException(string nativeMessage) : base(LlametteStatus.BadState, nativeMessage) { }

        /// <summary>For deserialization.</summary>
        protected BadStateException(SerializationInfo info, StreamingContext context) : base(info, context) { }
    }

    /// <summary>
    /// A saved state does not fit the session (status StateMismatch): another
    /// model file, KV cache type or shape, a newer format version, more
    /// positions than the context. The session is unchanged.
    /// </summary>
    [Serializable]
    public class StateMismatchException : LlametteException
    {
        /// <summary>Makes the exception with the library's message.</summary>
        public StateMismatchException(string nativeMessage) : base(LlametteStatus.StateMismatch, nativeMessage) { }

        /// <summary>For deserialization.</summary>
        protected StateMismatchException(SerializationInfo info, StreamingContext context) : base(info, context) { }
    }

    /// <summary>
    /// A chat message carries the chat format's own tags (status Refused: a
    /// prompt-injection guard, see <see cref="ChatOptions.AllowSpecialTags"/>).
    /// Nothing changed.
    /// </summary>
    [Serializable]
    public class RefusedException : LlametteException
    {
        /// <summary>Makes the exception with the library's message.</summary>
        public RefusedException(string nativeMessage) : base(LlametteStatus.Refused, nativeMessage) { }

        /// <summary>For deserialization.</summary>
        protected RefusedException(SerializationInfo info, StreamingContext context) : base(info, context) { }
    }

    /// <summary>
    /// The model's chat template could not be rendered (status Template): a
    /// syntax error, something unsupported, or an exception the template raised
    /// (a role it does not accept). Nothing changed.
    /// </summary>
    [Serializable]
    public class ChatTemplateException : LlametteException
    {
        /// <summary>Makes the exception with the library's message.</summary>
        public ChatTemplateException(string nativeMessage) : base(LlametteStatus.Template, nativeMessage) { }

        /// <summary>For deserialization.</summary>
        protected ChatTemplateException(SerializationInfo info, StreamingContext context) : base(info, context) { }
    }

    /// <summary>UTF-8 in and out of native memory (netstandard2.0 has no Marshal.PtrToStringUTF8).</summary>
    internal static class Utf8
    {
        /// <summary>Invalid bytes become U+FFFD (the library only hands out valid UTF-8).</summary>
        internal static readonly Encoding Encoding = new UTF8Encoding(false, false);

        /// <summary>A NUL-terminated UTF-8 copy of <paramref name="s"/>, for a C string argument.</summary>
        internal static byte[] ToCString(string s, string paramName)
        {
            if (s == null) return null;
            if (s.IndexOf('\0') >= 0) throw new ArgumentException("contains a NUL character", paramName);
            byte[] b = new byte[Encoding.GetByteCount(s) + 1];
            Encoding.GetBytes(s, 0, s.Length, b, 0);
            return b;
        }

        /// <summary>Decodes a NUL-terminated string; "" for NULL.</summary>
        internal static string FromCString(IntPtr p)
        {
            if (p == IntPtr.Zero) return "";
            int n = 0;
            while (Marshal.ReadByte(p, n) != 0) n++;
            return FromPointer(p, n);
        }

        /// <summary>Decodes <paramref name="len"/> bytes at <paramref name="p"/>.</summary>
        internal static string FromPointer(IntPtr p, int len)
        {
            if (len == 0) return "";
            byte[] b = new byte[len];
            Marshal.Copy(p, b, 0, len);
            return Encoding.GetString(b, 0, len);
        }

        /// <summary>A size_t length as an int (texts and token counts are small).</summary>
        internal static int Length(UIntPtr n)
        {
            ulong v = n.ToUInt64();
            if (v > int.MaxValue) throw new OverflowException("length " + v + " does not fit in an Int32");
            return (int)v;
        }
    }
}
