// Native.cs: P/Invoke declarations over include/llamette.h, one for one.
// SPDX-License-Identifier: MIT OR Apache-2.0
//
// Marshalling rules used throughout:
// - Every struct is blittable (LayoutKind.Sequential, fixed-size fields only);
//   C `bool` inside a struct is a `byte`, as a parameter or return value it is
//   `[MarshalAs(UnmanagedType.I1)] bool` (one byte, not the 4-byte Win32 BOOL
//   that the default marshaller would use).
// - `size_t` is `UIntPtr`; `uint32_t` token ids cross as `int` (the same
//   32 bits: LLAMETTE_NO_TOKEN is -1 here).
// - Text goes in as NUL-terminated (paths) or counted (tokenize) UTF-8 byte
//   arrays made by Utf8.Encode, never through the default string
//   marshaller (which is ANSI on .NET Framework for Windows); text comes out
//   as IntPtr and is decoded by Utf8.Decode.
// - Arrays of blittable elements are pinned for the call, so [In, Out]
//   arrays are written in place.
// - Functions on a model take the raw IntPtr: the caller holds a reference
//   on the ModelHandle (DangerousAddRef) for the call, which also lets a
//   Session use a model whose LlamaModel was disposed. Session and decoder
//   functions take their SafeHandle, which the marshaller references for
//   the duration of the call.
// - Every struct starts with `struct_size` (size_t), set to
//   StructSize.Of<T>() before the struct goes to the library, inputs and
//   outputs alike; outputs are passed `ref` so that the library reads it.
using System;
using System.Runtime.InteropServices;

namespace Llamette
{
    /// <summary>The <c>struct_size</c> of a struct mirror: its marshalled size.</summary>
    internal static class StructSize
    {
        internal static UIntPtr Of<T>() where T : struct
        {
            return new UIntPtr((uint)Marshal.SizeOf(typeof(T)));
        }
    }

    /// <summary>Mirrors <c>llamette_model_info</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeModelInfo
    {
        public UIntPtr struct_size;
        public uint format;
        public uint dim;
        public uint hidden_dim;
        public uint n_layers;
        public uint n_heads;
        public uint n_kv_heads;
        public uint head_dim;
        public uint vocab_size;
        public uint context_length;
        public uint tokenizer_tokens;
        public uint bos_token;
        public uint eos_token;
        public uint unk_token;
        public uint max_token_text_bytes;
        public ulong n_params;
        public ulong weight_bytes;
        public ulong file_bytes;
        public ulong tokenizer_file_bytes;
        public ulong bytes_per_token;
        public float rms_eps;
        public float rope_theta;
        public ulong owned_bytes;
        public uint interleaved_matrices;
    }

    /// <summary>Mirrors <c>llamette_session_params</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeSessionParams
    {
        public UIntPtr struct_size;
        public uint context_length;
        public uint kv_type;
        public uint batch;
    }

    /// <summary>Mirrors <c>llamette_sampler_params</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeSamplerParams
    {
        public UIntPtr struct_size;
        public float temperature;
        public uint top_k;
        public float top_p;
        public float min_p;
        public float repeat_penalty;
        public uint repeat_last_n;
        public ulong seed;
    }

    /// <summary>Mirrors <c>llamette_step_result</c>; <c>is_end</c> is a C bool: one byte.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeStepResult
    {
        public UIntPtr struct_size;
        public uint token;
        public byte is_end;
        public IntPtr text;
        public UIntPtr text_len;
    }

    /// <summary>Mirrors <c>llamette_generate_result</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeGenerateResult
    {
        public UIntPtr struct_size;
        public uint n_tokens;
        public uint stop_reason;
    }

    /// <summary>Mirrors <c>llamette_parallel</c>; <c>parallel_for</c> is a function pointer.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeParallel
    {
        public UIntPtr struct_size;
        public IntPtr user_data;
        public uint n_threads;
        public IntPtr parallel_for;
    }

    /// <summary>Mirrors <c>llamette_chat_message</c>; <c>content</c> points to pinned UTF-8.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeChatMessage
    {
        public UIntPtr struct_size;
        public uint role;
        public IntPtr content;
        public UIntPtr content_len;
    }

    /// <summary>Mirrors <c>llamette_chat_options</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeChatOptions
    {
        public UIntPtr struct_size;
        public uint flags;
        public uint context_policy;
        public uint reserve;
    }

    /// <summary>Mirrors <c>llamette_chat_prefill_result</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeChatPrefillResult
    {
        public UIntPtr struct_size;
        public uint reused;
        public uint fed;
        public uint dropped;
        public uint format;
    }

    /// <summary>Mirrors <c>llamette_generate_options</c>; <c>stop_strings</c> points to pinned bytes.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeGenerateOptions
    {
        public UIntPtr struct_size;
        public uint max_tokens;
        public uint flags;
        public IntPtr stop_strings;
        public UIntPtr stop_strings_len;
    }

    /// <summary><c>llamette_token_callback</c>. Must not let an exception escape.</summary>
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    [return: MarshalAs(UnmanagedType.I1)]
    internal delegate bool NativeTokenCallback(IntPtr userData, uint token, IntPtr text, UIntPtr textLen);

    /// <summary><c>llamette_logits_fn</c>. Must not let an exception escape.</summary>
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void NativeLogitsFn(IntPtr userData, IntPtr logits, UIntPtr nLogits);

    /// <summary><c>llamette_task_fn</c> (called by the host pool, implemented by the library).</summary>
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void NativeTaskFn(IntPtr taskCtx, uint index);

    /// <summary><c>llamette_parallel_for_fn</c>. Must not let an exception escape.</summary>
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void NativeParallelForFn(IntPtr userData, uint nTasks, IntPtr task, IntPtr taskCtx);

    /// <summary>
    /// Marks a static method that native code calls back. Xamarin.iOS, Unity
    /// IL2CPP and other ahead-of-time Mono targets look the attribute up by
    /// name; desktop Mono and .NET ignore it.
    /// </summary>
    [AttributeUsage(AttributeTargets.Method)]
    internal sealed class MonoPInvokeCallbackAttribute : Attribute
    {
        public MonoPInvokeCallbackAttribute(Type delegateType) { DelegateType = delegateType; }
        public Type DelegateType { get; private set; }
    }

    internal static class Native
    {
        /// <summary>
        /// The library's name, without prefix or suffix: .NET and Mono look for
        /// llamette.dll (Windows), libllamette.so (Linux), libllamette.dylib (macOS).
        /// </summary>
        internal const string Library = "llamette";

        private const CallingConvention Cdecl = CallingConvention.Cdecl;

        // ---------------------------------------------------------------- version, errors
        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_version();

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern IntPtr llamette_version_string();

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern IntPtr llamette_status_str(uint status);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern IntPtr llamette_last_error();

        // ---------------------------------------------------------------- decoder
        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_decoder_new(IntPtr model, out IntPtr outDecoder);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_decoder_push(
            DecoderHandle decoder, int token, [In, Out] byte[] buf, UIntPtr capacity, out UIntPtr outLen);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_decoder_flush(
            DecoderHandle decoder, [In, Out] byte[] buf, UIntPtr capacity, out UIntPtr outLen);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern void llamette_decoder_free(IntPtr decoder);

        // ---------------------------------------------------------------- model
        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_model_open_file(
            byte[] modelPath, byte[] tokenizerPath, out IntPtr outModel);

        /// <summary><c>LLAMETTE_OPEN_FOR_SPEED</c>.</summary>
        internal const uint OpenForSpeed = 1;

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_model_open_file_ex(
            byte[] modelPath, byte[] tokenizerPath, uint flags, out IntPtr outModel);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_model_open_memory(
            IntPtr data, UIntPtr len, IntPtr tokenizerData, UIntPtr tokenizerLen, out IntPtr outModel);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_model_open_default(out IntPtr outModel);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_repack_in_place(IntPtr data, UIntPtr len, out UIntPtr outMatrices);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_kernels_interleaved();

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern void llamette_model_free(IntPtr model);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_model_get_info(IntPtr model, ref NativeModelInfo outInfo);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_model_tokenize(
            IntPtr model, byte[] text, UIntPtr textLen, [MarshalAs(UnmanagedType.I1)] bool addBos,
            [In, Out] int[] tokens, UIntPtr capacity, out UIntPtr outNTokens);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_model_token_to_piece(
            IntPtr model, int token, [In, Out] byte[] buf, UIntPtr capacity, out UIntPtr outLen);

        // ---------------------------------------------------------------- session
        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_session_required_bytes(
            IntPtr model, ref NativeSessionParams parameters, out UIntPtr outBytes);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_session_params_for_budget(
            IntPtr model, uint kvType, UIntPtr budgetBytes, ref NativeSessionParams outParams);

        // llamette_session_init (a session in caller memory) is deliberately not
        // bound: managed memory would have to stay pinned for the session's
        // whole life, and unmanaged memory from Marshal.AllocHGlobal is no
        // better than what llamette_session_new allocates itself.

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_session_new(
            IntPtr model, ref NativeSessionParams parameters, out IntPtr outSession);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern void llamette_session_free(IntPtr session);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_session_prefill(SessionHandle session, int[] tokens, UIntPtr nTokens);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_session_step(
            SessionHandle session, ref NativeSamplerParams parameters, ref NativeStepResult outResult);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_session_generate(
            SessionHandle session, ref NativeSamplerParams parameters, uint maxTokens,
            NativeTokenCallback callback, IntPtr userData, ref NativeGenerateResult outResult);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_session_generate_ex(
            SessionHandle session, ref NativeSamplerParams parameters, ref NativeGenerateOptions options,
            NativeTokenCallback callback, IntPtr userData, ref NativeGenerateResult outResult);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_session_truncate(SessionHandle session, uint position);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_session_logits(SessionHandle session, out IntPtr outLogits, out UIntPtr outN);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_session_set_logit_bias(
            SessionHandle session, int[] tokens, float[] biases, UIntPtr n);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_session_set_logits_hook(SessionHandle session, IntPtr hook, IntPtr userData);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_session_state_size(SessionHandle session, out UIntPtr outBytes);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_session_state_save(
            SessionHandle session, [In, Out] byte[] buf, UIntPtr capacity, out UIntPtr outLen);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_session_state_load(SessionHandle session, byte[] data, UIntPtr len);

        // ---------------------------------------------------------------- chat
        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_model_chat_format(IntPtr model, ref NativeChatOptions options, out uint outFormat);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_chat_encode(
            IntPtr model, NativeChatMessage[] messages, UIntPtr nMessages, ref NativeChatOptions options,
            [In, Out] int[] tokens, UIntPtr capacity, out UIntPtr outNTokens);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_chat_prefill(
            SessionHandle session, NativeChatMessage[] messages, UIntPtr nMessages, ref NativeChatOptions options,
            ref NativeChatPrefillResult outResult);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_chat_state_size(
            SessionHandle session, NativeChatMessage[] messages, UIntPtr nMessages, out UIntPtr outBytes);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_chat_state_save(
            SessionHandle session, NativeChatMessage[] messages, UIntPtr nMessages,
            [In, Out] byte[] buf, UIntPtr capacity, out UIntPtr outLen);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_chat_state_load(SessionHandle session, byte[] data, UIntPtr len, out UIntPtr outNMessages);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_chat_state_message(
            IntPtr data, UIntPtr len, UIntPtr index, ref NativeChatMessage outMessage);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_session_reset(SessionHandle session);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_session_position(SessionHandle session, out uint outPosition);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_session_context_length(SessionHandle session, out uint outContextLength);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_session_cancel(SessionHandle session);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_session_clear_cancel(SessionHandle session);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_session_set_threads(SessionHandle session, uint nThreads);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_session_set_parallel(SessionHandle session, ref NativeParallel parallel);

        /// <summary>The same function with a NULL <c>parallel</c>: back to the calling thread alone.</summary>
        [DllImport(Library, CallingConvention = Cdecl, EntryPoint = "llamette_session_set_parallel")]
        internal static extern uint llamette_session_set_parallel_null(SessionHandle session, IntPtr parallel);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern IntPtr llamette_session_last_error(SessionHandle session);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_sampler_params_default(ref NativeSamplerParams outParams);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint llamette_sampler_params_validate(ref NativeSamplerParams parameters);
    }
}
