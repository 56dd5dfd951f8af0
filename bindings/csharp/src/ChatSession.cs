// ChatSession.cs: a conversation in the model's chat format, reusing the KV cache from turn to turn.
// SPDX-License-Identifier: MIT OR Apache-2.0
using System;
using System.Collections.Generic;
using System.Collections.ObjectModel;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace Llamette
{
    /// <summary>Who wrote a chat message (<c>LLAMETTE_ROLE_*</c>).</summary>
    public enum ChatRole : uint
    {
        /// <summary>Instructions for the whole conversation (first message only).</summary>
        System = 0,
        /// <summary>The person.</summary>
        User = 1,
        /// <summary>The model.</summary>
        Assistant = 2,
    }

    /// <summary>One message of a dialog.</summary>
    public sealed class ChatMessage : IEquatable<ChatMessage>
    {
        /// <summary>A message of <paramref name="role"/> saying <paramref name="content"/>.</summary>
        public ChatMessage(ChatRole role, string content)
        {
            if (content == null) throw new ArgumentNullException("content");
            Role = role;
            Content = content;
        }

        /// <summary>Who wrote it.</summary>
        public ChatRole Role { get; private set; }

        /// <summary>What it says.</summary>
        public string Content { get; private set; }

        /// <summary>A system message.</summary>
        public static ChatMessage System(string content) { return new ChatMessage(ChatRole.System, content); }

        /// <summary>A user message.</summary>
        public static ChatMessage User(string content) { return new ChatMessage(ChatRole.User, content); }

        /// <summary>An assistant message.</summary>
        public static ChatMessage Assistant(string content) { return new ChatMessage(ChatRole.Assistant, content); }

        /// <inheritdoc/>
        public bool Equals(ChatMessage other)
        {
            return other != null && other.Role == Role && other.Content == Content;
        }

        /// <inheritdoc/>
        public override bool Equals(object obj) { return Equals(obj as ChatMessage); }

        /// <inheritdoc/>
        public override int GetHashCode() { return ((int)Role * 397) ^ Content.GetHashCode(); }

        /// <inheritdoc/>
        public override string ToString() { return Role + ": " + Content; }
    }

    /// <summary>Which chat format a model's conversations use (<c>LLAMETTE_CHAT_FORMAT_*</c>).</summary>
    public enum ChatFormat : uint
    {
        /// <summary>Llama 2's, built in: exactly as Meta's reference <c>chat_completion</c>.</summary>
        Llama2 = 1,
        /// <summary>
        /// The Jinja chat template of the model's GGUF file (<c>tokenizer.chat_template</c>,
        /// when it is not Llama 2's: TinyLlama-Chat's, Mistral-Instruct's), rendered as
        /// Hugging Face's <c>apply_chat_template</c> renders it.
        /// </summary>
        Template = 2,
    }

    /// <summary>What a dialog that does not fit the context does (<c>LLAMETTE_CONTEXT_*</c>).</summary>
    public enum ContextPolicy : uint
    {
        /// <summary>ContextFullException, nothing changed (the default).</summary>
        Error = 0,
        /// <summary>
        /// Drop the oldest user/assistant pairs (the system message stays) until the
        /// dialog and <see cref="ChatOptions.Reserve"/> more positions fit, and
        /// re-prefill what follows the system message: once per turn that overflows.
        /// </summary>
        KeepSystemAndLatest = 1,
    }

    /// <summary>Options of the chat format (<c>llamette_chat_options</c>).</summary>
    public sealed class ChatOptions
    {
        /// <summary>
        /// Accept messages that contain the format's own tags (Llama 2's <c>[INST]</c>,
        /// <c>[/INST]</c>, <c>&lt;&lt;SYS&gt;&gt;</c>, <c>&lt;&lt;/SYS&gt;&gt;</c>; with a template
        /// <c>&lt;s&gt;</c>, <c>&lt;/s&gt;</c> and its markers). Off by default: such a message
        /// is refused with a RefusedException (a prompt-injection guard).
        /// </summary>
        public bool AllowSpecialTags { get; set; }

        /// <summary>Use the built-in Llama 2 format even where the model's file carries another template.</summary>
        public bool UseLlama2Format { get; set; }

        /// <summary>What a dialog that does not fit does.</summary>
        public ContextPolicy ContextPolicy { get; set; }

        /// <summary>With KeepSystemAndLatest: positions to keep free for the answer.</summary>
        public int Reserve { get; set; }

        internal NativeChatOptions ToNative()
        {
            if (Reserve < 0) throw new ArgumentOutOfRangeException("Reserve");
            NativeChatOptions o;
            o.struct_size = new UIntPtr((uint)Marshal.SizeOf(typeof(NativeChatOptions)));
            o.flags = (AllowSpecialTags ? 1u : 0u) | (UseLlama2Format ? 2u : 0u);
            o.context_policy = (uint)ContextPolicy;
            o.reserve = (uint)Reserve;
            return o;
        }
    }

    /// <summary>What the last prefill of a turn did (<c>llamette_chat_prefill_result</c>).</summary>
    public struct ChatPrefillInfo
    {
        internal ChatPrefillInfo(NativeChatPrefillResult r)
        {
            Reused = (int)r.reused;
            Fed = (int)r.fed;
            Dropped = (int)r.dropped;
            Format = (ChatFormat)r.format;
        }

        /// <summary>Positions of the session kept (the earlier turns).</summary>
        public int Reused { get; private set; }

        /// <summary>Tokens fed (the new turn).</summary>
        public int Fed { get; private set; }

        /// <summary>Messages left out by the context policy (after the system message).</summary>
        public int Dropped { get; private set; }

        /// <summary>The chat format used.</summary>
        public ChatFormat Format { get; private set; }
    }

    /// <summary>
    /// A conversation with a chat model: each <see cref="Send(string, CancellationToken)"/>
    /// adds a user message, brings the session to the end of the whole dialog's
    /// encoding (only the new turn is fed: the earlier turns stay in the KV cache, and
    /// the logits equal those of a fresh session fed the whole dialog, bit for bit)
    /// and streams the reply, which then joins the dialog.
    /// </summary>
    /// <remarks>
    /// <para>The format is the model's (<see cref="Format"/>): Llama 2's, built in, or
    /// the Jinja template of its GGUF file. A message carrying the format's own tags is
    /// refused (RefusedException) unless <see cref="ChatOptions.AllowSpecialTags"/>.</para>
    /// <para>A failed turn (refused, too long, a template error) changes nothing: the
    /// message is not added and the session is as it was. A cancelled or abandoned
    /// reply keeps the text produced so far as the assistant's message.</para>
    /// <para>Threads: as <see cref="Session"/>: one thread at a time; cancellation from any.</para>
    /// </remarks>
    public sealed class ChatSession : IDisposable
    {
        private readonly Session session;
        private readonly List<ChatMessage> messages = new List<ChatMessage>();
        private ChatOptions options;
        private GenerateOptions generateOptions = new GenerateOptions();
        private ChatPrefillInfo lastPrefill;

        // The reply being produced (null when none is open).
        private StringBuilder reply;

        /// <summary>
        /// Starts a conversation on <paramref name="model"/> with an optional system
        /// message, in a new session sized by <paramref name="sessionOptions"/>.
        /// </summary>
        public ChatSession(LlamaModel model, string systemPrompt = null, SessionOptions sessionOptions = null,
            ChatOptions chatOptions = null)
        {
            if (model == null) throw new ArgumentNullException("model");
            options = chatOptions ?? new ChatOptions();
            options.ToNative(); // validates
            session = new Session(model, sessionOptions);
            try
            {
                Format = FormatOf(model, options);
            }
            catch
            {
                session.Dispose();
                throw;
            }
            if (systemPrompt != null) messages.Add(ChatMessage.System(systemPrompt));
        }

        /// <summary>The session underneath (positions, logits, thread settings).</summary>
        public Session Session { get { return session; } }

        /// <summary>The dialog so far: the system message (if any), then user and assistant messages.</summary>
        public ReadOnlyCollection<ChatMessage> Messages { get { return messages.AsReadOnly(); } }

        /// <summary>The chat format this conversation uses.</summary>
        public ChatFormat Format { get; private set; }

        /// <summary>The chat options (a new object applies from the next turn).</summary>
        public ChatOptions Options
        {
            get { return options; }
            set { options = value ?? new ChatOptions(); }
        }

        /// <summary>
        /// Sampler settings and limits of the replies (llama2.c's defaults; MaxTokens 0 is no
        /// limit but the context). <see cref="GenerateOptions.AddBos"/> is ignored.
        /// </summary>
        public GenerateOptions GenerateOptions
        {
            get { return generateOptions; }
            set { generateOptions = value ?? new GenerateOptions(); }
        }

        /// <summary>What the last turn's prefill did.</summary>
        public ChatPrefillInfo LastPrefill { get { return lastPrefill; } }

        /// <summary>Why the last reply stopped (see <see cref="Session.LastStopReason"/>).</summary>
        public StopReason LastStopReason { get { return session.LastStopReason; } }

        /// <summary>The format the chat functions use for <paramref name="model"/> with <paramref name="options"/>.</summary>
        public static ChatFormat FormatOf(LlamaModel model, ChatOptions options = null)
        {
            if (model == null) throw new ArgumentNullException("model");
            NativeChatOptions o = (options ?? new ChatOptions()).ToNative();
            uint f;
            using (LlamaModel.Lease l = model.Acquire())
                LlametteException.Check(Native.llamette_model_chat_format(l.Pointer, ref o, out f));
            return (ChatFormat)f;
        }

        /// <summary>
        /// The token ids of <paramref name="dialog"/> in the model's chat format (an
        /// optional system message, then user and assistant alternating, ending with a
        /// user message): what a turn's prefill brings the session to.
        /// </summary>
        /// <exception cref="RefusedException">A message carries the format's tags.</exception>
        /// <exception cref="LlametteException">InvalidArgument (roles out of order), Template, NoTokenizer.</exception>
        public static int[] Encode(LlamaModel model, IList<ChatMessage> dialog, ChatOptions options = null)
        {
            if (model == null) throw new ArgumentNullException("model");
            if (dialog == null) throw new ArgumentNullException("dialog");
            NativeChatOptions o = (options ?? new ChatOptions()).ToNative();
            using (NativeDialog d = new NativeDialog(dialog))
            using (LlamaModel.Lease l = model.Acquire())
            {
                UIntPtr n;
                UIntPtr count = new UIntPtr((uint)d.Messages.Length);
                uint st = Native.llamette_chat_encode(l.Pointer, d.Messages, count, ref o, null, UIntPtr.Zero, out n);
                if (st != (uint)LlametteStatus.BufferTooSmall) LlametteException.Check(st);
                int[] ids = new int[Utf8.Length(n)];
                LlametteException.Check(Native.llamette_chat_encode(l.Pointer, d.Messages, count, ref o, ids, n, out n));
                if (ids.Length != Utf8.Length(n)) Array.Resize(ref ids, Utf8.Length(n));
                return ids;
            }
        }

        // ------------------------------------------------------------ turns

        /// <summary>
        /// Sends <paramref name="message"/> as the user's next turn and streams the reply:
        /// the turn is prefilled now (a refused or too long message throws here and
        /// changes nothing), the reply's text pieces come as the enumeration runs (each
        /// MoveNext one step of the model). It stops at an end token, after
        /// GenerateOptions.MaxTokens tokens or at a full context. The text produced
        /// joins the dialog when the enumeration ends, is abandoned, or is cancelled
        /// (OperationCanceledException from MoveNext).
        /// </summary>
        /// <exception cref="RefusedException">The message carries the format's tags.</exception>
        /// <exception cref="ContextFullException">The dialog does not fit (with ContextPolicy.Error).</exception>
        /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
        public IEnumerable<string> Send(string message, CancellationToken cancellationToken = default(CancellationToken))
        {
            if (message == null) throw new ArgumentNullException("message");
            BeginTurn(message, cancellationToken);
            return Stream(ReplyOptions(), cancellationToken);
        }

        /// <summary>
        /// As <see cref="Send(string, CancellationToken)"/>, running the whole reply in the
        /// library (<c>llamette_session_generate_ex</c>) and calling <paramref name="onToken"/>
        /// with each token's id and text; GenerateOptions.StopStrings apply (the text
        /// before a stop string is passed on, the stop string never is). Returns the
        /// reply's text. An exception thrown by <paramref name="onToken"/> stops the
        /// reply and is rethrown here.
        /// </summary>
        public string Send(string message, TokenHandler onToken, CancellationToken cancellationToken = default(CancellationToken))
        {
            if (message == null) throw new ArgumentNullException("message");
            if (onToken == null) throw new ArgumentNullException("onToken");
            BeginTurn(message, cancellationToken);
            return RunCallback(onToken, cancellationToken);
        }

        /// <summary>
        /// Drops the last reply and streams a new one for the same user message (the
        /// KV cache is cut where the reply began; the sampler carries on, so a sampled
        /// reply differs, a greedy one does not).
        /// </summary>
        /// <exception cref="InvalidOperationException">The dialog does not end with a reply.</exception>
        public IEnumerable<string> Regenerate(CancellationToken cancellationToken = default(CancellationToken))
        {
            CloseReply();
            if (messages.Count == 0 || messages[messages.Count - 1].Role != ChatRole.Assistant)
                throw new InvalidOperationException("the dialog does not end with a reply");
            ChatMessage last = messages[messages.Count - 1];
            messages.RemoveAt(messages.Count - 1);
            try
            {
                Prefill(cancellationToken);
            }
            catch
            {
                messages.Add(last);
                throw;
            }
            reply = new StringBuilder();
            return Stream(ReplyOptions(), cancellationToken);
        }

        /// <summary>
        /// Rewinds the dialog to its first <paramref name="messageCount"/> messages (to
        /// edit a turn, or take it back). The KV cache keeps what the next turn shares
        /// with it and is cut where the text first differs, at the next Send.
        /// </summary>
        public void Rewind(int messageCount)
        {
            CloseReply();
            if (messageCount < 0 || messageCount > messages.Count) throw new ArgumentOutOfRangeException("messageCount");
            messages.RemoveRange(messageCount, messages.Count - messageCount);
        }

        /// <summary>
        /// Replaces the dialog with <paramref name="dialog"/> (a conversation kept by the
        /// application, say, or edited): the next Send appends its user message to it and
        /// prefills what the KV cache does not already hold. Checked at that Send.
        /// </summary>
        public void SetMessages(IEnumerable<ChatMessage> dialog)
        {
            if (dialog == null) throw new ArgumentNullException("dialog");
            List<ChatMessage> copy = new List<ChatMessage>(dialog);
            if (copy.Contains(null)) throw new ArgumentException("a message is null", "dialog");
            reply = null;
            messages.Clear();
            messages.AddRange(copy);
        }

        /// <summary>Asks a running turn (prefill or reply) to stop, from any thread (see <see cref="Session.Cancel"/>).</summary>
        public void Cancel() { session.Cancel(); }

        /// <summary>Adds a logit bias to every sampling of the replies (see <see cref="Session.SetLogitBias"/>).</summary>
        public void SetLogitBias(IDictionary<int, float> bias) { session.SetLogitBias(bias); }

        /// <summary>Bans tokens from the replies (see <see cref="Session.BanTokens"/>).</summary>
        public void BanTokens(IEnumerable<int> tokens) { session.BanTokens(tokens); }

        // ------------------------------------------------------------ saved state

        /// <summary>
        /// Saves the conversation: the session (KV cache positions in use, pending token,
        /// sampler state) and the dialog, as one versioned, checksummed blob naming its
        /// model. <see cref="LoadState"/> restores it, in this process or another.
        /// </summary>
        public byte[] SaveState()
        {
            CloseReply();
            using (NativeDialog d = new NativeDialog(messages))
            {
                UIntPtr count = new UIntPtr((uint)d.Messages.Length);
                UIntPtr size;
                Check(Native.llamette_chat_state_size(session.Handle, d.Messages, count, out size));
                byte[] blob = new byte[Utf8.Length(size)];
                UIntPtr len;
                Check(Native.llamette_chat_state_save(session.Handle, d.Messages, count, blob, size, out len));
                if (Utf8.Length(len) != blob.Length) Array.Resize(ref blob, Utf8.Length(len));
                return blob;
            }
        }

        /// <summary>
        /// Restores a conversation saved by <see cref="SaveState"/>: the session and the
        /// dialog. The next Send continues it exactly as if it had never stopped.
        /// </summary>
        /// <exception cref="BadStateException">Not a state (truncated, corrupted). Nothing changed.</exception>
        /// <exception cref="StateMismatchException">Another model file, KV type, a newer version, a longer context. Nothing changed.</exception>
        public void LoadState(byte[] state)
        {
            if (state == null) throw new ArgumentNullException("state");
            List<ChatMessage> saved = ReadMessages(state);
            UIntPtr n;
            Check(Native.llamette_chat_state_load(session.Handle, state, new UIntPtr((uint)state.Length), out n));
            reply = null;
            messages.Clear();
            messages.AddRange(saved);
        }

        /// <summary>Frees the session.</summary>
        public void Dispose()
        {
            session.Dispose();
        }

        // ------------------------------------------------------------ internals

        private static List<ChatMessage> ReadMessages(byte[] state)
        {
            List<ChatMessage> list = new List<ChatMessage>();
            GCHandle pin = GCHandle.Alloc(state, GCHandleType.Pinned);
            try
            {
                IntPtr data = pin.AddrOfPinnedObject();
                UIntPtr len = new UIntPtr((uint)state.Length);
                for (uint i = 0; ; i++)
                {
                    NativeChatMessage m = default(NativeChatMessage);
                    m.struct_size = new UIntPtr((uint)Marshal.SizeOf(typeof(NativeChatMessage)));
                    uint st = Native.llamette_chat_state_message(data, len, new UIntPtr(i), ref m);
                    // INVALID_ARGUMENT: past the last message.
                    if (st == (uint)LlametteStatus.InvalidArgument) break;
                    LlametteException.Check(st);
                    list.Add(new ChatMessage((ChatRole)m.role, Utf8.FromPointer(m.content, Utf8.Length(m.content_len))));
                }
            }
            finally
            {
                pin.Free();
            }
            return list;
        }

        private GenerateOptions ReplyOptions()
        {
            GenerateOptions g = generateOptions;
            return new GenerateOptions
            {
                Temperature = g.Temperature,
                TopK = g.TopK,
                TopP = g.TopP,
                MinP = g.MinP,
                RepeatPenalty = g.RepeatPenalty,
                RepeatLastN = g.RepeatLastN,
                Seed = g.Seed,
                MaxTokens = g.MaxTokens,
                AddBos = false,
                StopStrings = g.StopStrings == null ? null : (string[])g.StopStrings.Clone(),
                StopAtEndToken = g.StopAtEndToken,
            };
        }

        /// <summary>Adds the user message and prefills the dialog; on failure nothing changes.</summary>
        private void BeginTurn(string message, CancellationToken ct)
        {
            CloseReply();
            // Validate the reply's settings before anything changes.
            ReplyOptions().ToNative();
            messages.Add(ChatMessage.User(message));
            try
            {
                Prefill(ct);
            }
            catch
            {
                messages.RemoveAt(messages.Count - 1);
                throw;
            }
            reply = new StringBuilder();
        }

        private void Prefill(CancellationToken ct)
        {
            NativeChatOptions o = options.ToNative();
            NativeChatPrefillResult r;
            using (NativeDialog d = new NativeDialog(messages))
                r = session.ChatPrefill(d.Messages, o, ct);
            lastPrefill = new ChatPrefillInfo(r);
            if (r.dropped > 0)
            {
                // The oldest turns no longer fit: they leave the dialog too.
                int first = messages.Count > 0 && messages[0].Role == ChatRole.System ? 1 : 0;
                messages.RemoveRange(first, (int)r.dropped);
            }
        }

        private IEnumerable<string> Stream(GenerateOptions o, CancellationToken ct)
        {
            StringBuilder sb = reply;
            try
            {
                foreach (string piece in session.Generate("", o, ct))
                {
                    sb.Append(piece);
                    yield return piece;
                }
            }
            finally
            {
                if (reply == sb) CloseReply();
            }
        }

        private string RunCallback(TokenHandler onToken, CancellationToken ct)
        {
            StringBuilder sb = reply;
            try
            {
                session.Generate("", ReplyOptions(), (token, text) =>
                {
                    sb.Append(text);
                    return onToken(token, text);
                }, ct);
                return sb.ToString();
            }
            catch (LlametteException e)
            {
                // Refused options (a bad stop string): the turn did not happen.
                if (sb.Length == 0 && e.Status != LlametteStatus.Cancelled && reply == sb)
                {
                    reply = null;
                    messages.RemoveAt(messages.Count - 1);
                }
                throw;
            }
            finally
            {
                if (reply == sb) CloseReply();
            }
        }

        /// <summary>Ends the open reply (if any): its text joins the dialog.</summary>
        private void CloseReply()
        {
            StringBuilder sb = reply;
            if (sb == null) return;
            reply = null;
            messages.Add(ChatMessage.Assistant(sb.ToString()));
        }

        private void Check(uint status)
        {
            if (status != 0) throw LlametteException.FromLastError(status);
        }
    }

    /// <summary>A dialog as <c>llamette_chat_message</c>s over pinned UTF-8 copies of the texts.</summary>
    internal sealed class NativeDialog : IDisposable
    {
        internal readonly NativeChatMessage[] Messages;
        private readonly GCHandle[] pins;

        internal NativeDialog(IList<ChatMessage> dialog)
        {
            Messages = new NativeChatMessage[dialog.Count];
            pins = new GCHandle[dialog.Count];
            UIntPtr size = new UIntPtr((uint)Marshal.SizeOf(typeof(NativeChatMessage)));
            try
            {
                for (int i = 0; i < dialog.Count; i++)
                {
                    ChatMessage m = dialog[i];
                    if (m == null) throw new ArgumentException("message " + i + " is null", "dialog");
                    byte[] text = Utf8.Encoding.GetBytes(m.Content);
                    Messages[i].struct_size = size;
                    Messages[i].role = (uint)m.Role;
                    if (text.Length > 0)
                    {
                        pins[i] = GCHandle.Alloc(text, GCHandleType.Pinned);
                        Messages[i].content = pins[i].AddrOfPinnedObject();
                    }
                    Messages[i].content_len = new UIntPtr((uint)text.Length);
                }
            }
            catch
            {
                Dispose();
                throw;
            }
        }

        public void Dispose()
        {
            for (int i = 0; i < pins.Length; i++)
            {
                if (pins[i].IsAllocated) pins[i].Free();
            }
        }
    }
}
