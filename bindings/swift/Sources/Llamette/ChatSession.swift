// SPDX-License-Identifier: MIT OR Apache-2.0
import CLlamette
import Foundation

/// Who wrote a chat message (`LLAMETTE_ROLE_*`).
public enum ChatRole: UInt32, Sendable, Hashable {
    /// Instructions for the whole conversation (first message only).
    case system = 0
    /// The person.
    case user = 1
    /// The model.
    case assistant = 2
}

/// One message of a dialog.
public struct ChatMessage: Sendable, Hashable {
    public var role: ChatRole
    public var content: String

    public init(_ role: ChatRole, _ content: String) {
        self.role = role
        self.content = content
    }

    public static func system(_ content: String) -> ChatMessage { ChatMessage(.system, content) }
    public static func user(_ content: String) -> ChatMessage { ChatMessage(.user, content) }
    public static func assistant(_ content: String) -> ChatMessage { ChatMessage(.assistant, content) }
}

/// Which chat format a model's conversations use (`LLAMETTE_CHAT_FORMAT_*`).
public enum ChatFormat: UInt32, Sendable {
    /// Llama 2's, built in: exactly as Meta's reference `chat_completion`.
    case llama2 = 1
    /// The Jinja chat template of the model's GGUF file
    /// (`tokenizer.chat_template`, when it is not Llama 2's:
    /// TinyLlama-Chat's, Mistral-Instruct's), rendered as Hugging Face's
    /// `apply_chat_template` renders it.
    case template = 2
}

/// Options of the chat format (`llamette_chat_options`).
public struct ChatOptions: Sendable, Hashable {
    /// What a dialog that does not fit the context does.
    public enum ContextPolicy: UInt32, Sendable {
        /// ``LlametteError/Code/contextFull``, nothing changed (the default).
        case error = 0
        /// Drop the oldest user/assistant pairs (the system message stays)
        /// until the dialog and `reserve` more positions fit, and re-prefill
        /// what follows the system message: once per turn that overflows.
        case keepSystemAndLatest = 1
    }

    /// Accept messages that contain the format's own tags (Llama 2's
    /// `[INST]`, `[/INST]`, `<<SYS>>`, `<</SYS>>`; with a template `<s>`,
    /// `</s>` and its markers). Off by default: such a message is refused
    /// with ``LlametteError/Code/refused`` (a prompt-injection guard).
    public var allowSpecialTags = false
    /// Use the built-in Llama 2 format even where the file carries another template.
    public var useLlama2Format = false
    public var contextPolicy = ContextPolicy.error
    /// With `.keepSystemAndLatest`: positions to keep free for the answer.
    public var reserve = 0

    public init(
        allowSpecialTags: Bool = false, useLlama2Format: Bool = false, contextPolicy: ContextPolicy = .error,
        reserve: Int = 0
    ) {
        self.allowSpecialTags = allowSpecialTags
        self.useLlama2Format = useLlama2Format
        self.contextPolicy = contextPolicy
        self.reserve = reserve
    }

    var native: llamette_chat_options {
        var o = llamette_chat_options()
        o.struct_size = MemoryLayout<llamette_chat_options>.size
        o.flags = (allowSpecialTags ? UInt32(LLAMETTE_CHAT_ALLOW_SPECIAL_TAGS) : 0)
            | (useLlama2Format ? UInt32(LLAMETTE_CHAT_LLAMA2_FORMAT) : 0)
        o.context_policy = contextPolicy.rawValue
        o.reserve = UInt32(clamping: max(reserve, 0))
        return o
    }
}

/// What a turn's prefill did (`llamette_chat_prefill_result`).
public struct ChatPrefillInfo: Sendable, Hashable {
    /// Positions of the session kept (the earlier turns).
    public var reused: Int
    /// Tokens fed (the new turn).
    public var fed: Int
    /// Messages left out by the context policy (after the system message).
    public var dropped: Int
    /// The chat format used.
    public var format: ChatFormat?
}

/// Runs `body` with the dialog as `llamette_chat_message`s over one
/// buffer of UTF-8 (valid during the call).
func withNativeDialog<T>(_ dialog: [ChatMessage], _ body: (UnsafeBufferPointer<llamette_chat_message>) -> T) -> T {
    let texts = dialog.map { Array($0.content.utf8) }
    let total = texts.reduce(0) { $0 + $1.count }
    let bytes = UnsafeMutablePointer<CChar>.allocate(capacity: max(total, 1))
    defer { bytes.deallocate() }
    var messages: [llamette_chat_message] = []
    messages.reserveCapacity(dialog.count)
    var at = 0
    for (m, t) in zip(dialog, texts) {
        for (i, b) in t.enumerated() { bytes[at + i] = CChar(bitPattern: b) }
        var c = llamette_chat_message()
        c.struct_size = MemoryLayout<llamette_chat_message>.size
        c.role = m.role.rawValue
        c.content = t.isEmpty ? nil : UnsafePointer(bytes + at)
        c.content_len = t.count
        messages.append(c)
        at += t.count
    }
    return messages.withUnsafeBufferPointer(body)
}

/// A conversation with a chat model: each ``send(_:)`` adds a user message,
/// brings the session to the end of the whole dialog's encoding (only the
/// new turn is fed: the earlier turns stay in the KV cache, and the logits
/// equal those of a fresh session fed the whole dialog, bit for bit) and
/// streams the reply, which then joins the dialog.
///
/// ```swift
/// let chat = try ChatSession(model: model, systemPrompt: "Answer briefly.")
/// for try await piece in chat.send("Hello!") { print(piece, terminator: "") }
/// let saved = try chat.saveState()          // Data: the session and the dialog
/// ```
///
/// A refused message (the format's own tags), a dialog that does not fit
/// or a template error is thrown by the stream, and the turn leaves the
/// dialog and the session as they were. A reply stopped by cancelling the
/// consuming task (or leaving the loop) keeps the text produced so far.
///
/// Like ``Session``, one turn runs at a time (a second waits for the
/// first); the class is `@unchecked Sendable`: its dialog is behind a lock.
public final class ChatSession: @unchecked Sendable {
    /// The session underneath (positions, logits, bias, threads).
    public let session: Session
    /// The chat format of this conversation.
    public let format: ChatFormat

    private let lock = NSLock()
    private var dialog: [ChatMessage] = []
    private var _options: GenerationOptions
    private var _chatOptions: ChatOptions
    private var _lastPrefill: ChatPrefillInfo?
    private var _lastStopReason: UInt32 = 0

    /// Starts a conversation on `model` in a new session.
    public init(
        model: LlamaModel, systemPrompt: String? = nil, contextLength: Int? = nil, kvCache: KVCacheType = .f32,
        options: GenerationOptions = GenerationOptions(), chatOptions: ChatOptions = ChatOptions()
    ) throws {
        session = try Session(model: model, contextLength: contextLength, kvCache: kvCache)
        format = try ChatSession.format(of: model, options: chatOptions)
        _options = options
        _chatOptions = chatOptions
        if let systemPrompt { dialog.append(.system(systemPrompt)) }
    }

    /// The chat format the chat functions use for `model` with `options`.
    public static func format(of model: LlamaModel, options: ChatOptions = ChatOptions()) throws -> ChatFormat {
        var o = options.native
        var f: UInt32 = 0
        try check(llamette_model_chat_format(model.handle, &o, &f))
        return ChatFormat(rawValue: f) ?? .llama2
    }

    /// The token ids of `messages` in `model`'s chat format: what a turn's
    /// prefill brings the session to.
    public static func encode(
        _ messages: [ChatMessage], model: LlamaModel, options: ChatOptions = ChatOptions()
    ) throws -> [TokenID] {
        var o = options.native
        return try withNativeDialog(messages) { d -> Result<[TokenID], Error> in
            var n = 0
            let st = llamette_chat_encode(model.handle, d.baseAddress, d.count, &o, nil, 0, &n)
            if st != UInt32(LLAMETTE_STATUS_BUFFER_TOO_SMALL) {
                do { try check(st) } catch { return .failure(error) }
            }
            var ids = [TokenID](repeating: 0, count: n)
            let st2 = ids.withUnsafeMutableBufferPointer {
                llamette_chat_encode(model.handle, d.baseAddress, d.count, &o, $0.baseAddress, n, &n)
            }
            do { try check(st2) } catch { return .failure(error) }
            return .success(Array(ids.prefix(n)))
        }.get()
    }

    /// The dialog so far.
    public var messages: [ChatMessage] {
        lock.lock()
        defer { lock.unlock() }
        return dialog
    }

    /// Replaces the dialog (one the app kept, or edited); the next turn
    /// reuses what the KV cache shares with it.
    public func setMessages(_ messages: [ChatMessage]) {
        lock.lock()
        dialog = messages
        lock.unlock()
    }

    /// Sampler settings, token limit and stop strings of the replies.
    public var options: GenerationOptions {
        get {
            lock.lock()
            defer { lock.unlock() }
            return _options
        }
        set {
            lock.lock()
            _options = newValue
            lock.unlock()
        }
    }

    /// The chat options (apply from the next turn).
    public var chatOptions: ChatOptions {
        get {
            lock.lock()
            defer { lock.unlock() }
            return _chatOptions
        }
        set {
            lock.lock()
            _chatOptions = newValue
            lock.unlock()
        }
    }

    /// What the last turn's prefill did (nil before the first).
    public var lastPrefill: ChatPrefillInfo? {
        lock.lock()
        defer { lock.unlock() }
        return _lastPrefill
    }

    /// Why the last reply stopped (`LLAMETTE_STOP_*`; 0 while none ended).
    public var lastStopReason: UInt32 {
        lock.lock()
        defer { lock.unlock() }
        return _lastStopReason
    }

    /// Sends `text` as the user's next turn and streams the reply's text
    /// pieces. The turn starts at once on a thread of its own; errors
    /// (``LlametteError/Code/refused``, `.contextFull`, `.template`) are
    /// thrown by the stream, and then nothing changed. Cancelling the
    /// consuming task stops the reply between tokens (or inside the model
    /// within one transformer layer) and ends the stream quietly.
    public func send(_ text: String) -> AsyncThrowingStream<String, Error> {
        stream(ChatTurn(owner: self, user: text))
    }

    /// Drops the last reply and streams a new one for the same user message.
    public func regenerate() -> AsyncThrowingStream<String, Error> {
        lock.lock()
        let last = dialog.last
        let ok = last?.role == .assistant
        if ok { dialog.removeLast() }
        lock.unlock()
        guard ok else {
            return AsyncThrowingStream(unfolding: {
                throw LlametteError(code: .invalidArgument, message: "the dialog does not end with a reply")
            })
        }
        return stream(ChatTurn(owner: self, user: nil))
    }

    private func stream(_ turn: ChatTurn) -> AsyncThrowingStream<String, Error> {
        let run = session.start(.chat(turn), options: turn.options)
        return AsyncThrowingStream(unfolding: {
            while let token = try await run.next() {
                if !token.text.isEmpty { return token.text }
            }
            return nil
        })
    }

    /// Keeps the first `count` messages (to take back or edit turns); the
    /// KV cache is cut where the next turn first differs.
    public func rewind(to count: Int) {
        lock.lock()
        if count >= 0 && count < dialog.count { dialog.removeSubrange(count...) }
        lock.unlock()
    }

    /// Adds a logit bias to every sampling of the replies (see ``Session/setLogitBias(_:)``).
    public func setLogitBias(_ bias: [TokenID: Float]) throws { try session.setLogitBias(bias) }

    /// Bans tokens from the replies.
    public func banTokens(_ tokens: [TokenID]) throws { try session.banTokens(tokens) }

    /// Saves the conversation (the session and the dialog) as one
    /// versioned, checksummed blob naming its model.
    public func saveState() throws -> Data {
        let d = messages
        return try session.exclusive { h in
            try withNativeDialog(d) { m -> Result<Data, Error> in
                var size = 0
                var st = llamette_chat_state_size(h, m.baseAddress, m.count, &size)
                if st != UInt32(LLAMETTE_STATUS_OK) { return .failure(sessionError(h, st)) }
                var data = Data(count: size)
                var len = 0
                st = data.withUnsafeMutableBytes {
                    llamette_chat_state_save(h, m.baseAddress, m.count, $0.baseAddress, size, &len)
                }
                if st != UInt32(LLAMETTE_STATUS_OK) { return .failure(sessionError(h, st)) }
                return .success(data.prefix(len))
            }.get()
        }
    }

    /// Restores a conversation saved by ``saveState()``: the session and
    /// the dialog. A corrupted (`.badState`) or foreign (`.stateMismatch`)
    /// blob throws and changes nothing.
    public func loadState(_ data: Data) throws {
        let saved: [ChatMessage] = try session.exclusive { h in
            try data.withUnsafeBytes { raw -> Result<[ChatMessage], Error> in
                // The dialog first (its checksum is checked), then the session.
                var out: [ChatMessage] = []
                var i = 0
                while true {
                    var m = llamette_chat_message()
                    m.struct_size = MemoryLayout<llamette_chat_message>.size
                    let st = llamette_chat_state_message(raw.baseAddress, raw.count, i, &m)
                    if st == UInt32(LLAMETTE_STATUS_INVALID_ARGUMENT) { break }
                    if st != UInt32(LLAMETTE_STATUS_OK) {
                        return .failure(LlametteError(code: .init(rawValue: st), message: String(cString: llamette_last_error())))
                    }
                    let text = m.content.map {
                        String(decoding: UnsafeRawBufferPointer(start: $0, count: m.content_len), as: UTF8.self)
                    } ?? ""
                    out.append(ChatMessage(ChatRole(rawValue: m.role) ?? .user, text))
                    i += 1
                }
                var n = 0
                let st = llamette_chat_state_load(h, raw.baseAddress, raw.count, &n)
                if st != UInt32(LLAMETTE_STATUS_OK) { return .failure(sessionError(h, st)) }
                return .success(out)
            }.get()
        }
        setMessages(saved)
    }

    // MARK: For the turn (on the generating thread)

    func turnDialog(_ user: String?) -> [ChatMessage] {
        lock.lock()
        defer { lock.unlock() }
        return user.map { dialog + [.user($0)] } ?? dialog
    }

    func commit(_ user: String?, _ r: llamette_chat_prefill_result) {
        lock.lock()
        defer { lock.unlock() }
        if let user { dialog.append(.user(user)) }
        let dropped = Int(r.dropped)
        if dropped > 0 {
            let first = dialog.first?.role == .system ? 1 : 0
            dialog.removeSubrange(first..<min(first + dropped, dialog.count))
        }
        _lastPrefill = ChatPrefillInfo(
            reused: Int(r.reused), fed: Int(r.fed), dropped: dropped, format: ChatFormat(rawValue: r.format))
    }

    func uncommit(_ user: String?) {
        lock.lock()
        defer { lock.unlock() }
        if user != nil, dialog.last?.role == .user { dialog.removeLast() }
    }

    func record(_ reply: String, _ stopReason: UInt32) {
        lock.lock()
        defer { lock.unlock() }
        dialog.append(.assistant(reply))
        _lastStopReason = stopReason
    }
}

/// One turn of a ``ChatSession``: read and changed on the generating
/// thread only (hence `@unchecked Sendable`).
final class ChatTurn: @unchecked Sendable {
    let owner: ChatSession
    let user: String?
    let options: GenerationOptions
    let chatOptions: ChatOptions
    var reply = ""
    var stopReason: UInt32 = 0

    init(owner: ChatSession, user: String?) {
        self.owner = owner
        self.user = user
        self.options = owner.options
        self.chatOptions = owner.chatOptions
    }

    func dialog() -> [ChatMessage] { owner.turnDialog(user) }
    func prefilled(_ r: llamette_chat_prefill_result) { owner.commit(user, r) }
    func rollback() { owner.uncommit(user) }
    func finish() { owner.record(reply, stopReason) }
}

func sessionError(_ h: OpaquePointer, _ st: llamette_status) -> LlametteError {
    LlametteError(code: .init(rawValue: st), message: String(cString: llamette_session_last_error(h)))
}

// MARK: Session: rewind, logits, bias, saved state

extension Session {
    /// Forgets the positions from `position` on (nothing if it is not less
    /// than ``position()``) and the pending token: a rewind. The next
    /// generation needs a prompt; the sampler keeps its state.
    public func truncate(to position: Int) throws {
        guard position >= 0 else {
            throw LlametteError(code: .invalidArgument, message: "position \(position) is negative")
        }
        try exclusive { h in try checkSession(h, llamette_session_truncate(h, UInt32(clamping: position))) }
    }

    /// A copy of the logits predicting the next token (one per vocabulary
    /// entry, before the bias); `.nothingToSample` when there are none.
    public func logits() throws -> [Float] {
        try exclusive { h in
            var p: UnsafePointer<Float>?
            var n = 0
            try checkSession(h, llamette_session_logits(h, &p, &n))
            return Array(UnsafeBufferPointer(start: p, count: n))
        }
    }

    /// Adds `bias[token]` to that token's logit before every sampling;
    /// `-Float.infinity` bans it. Replaces an earlier bias; on an error (an
    /// unknown token, a NaN or +infinity) the bias is unchanged.
    public func setLogitBias(_ bias: [TokenID: Float]) throws {
        let tokens = Array(bias.keys)
        let values = tokens.map { bias[$0]! }
        try exclusive { h in
            try checkSession(h, llamette_session_set_logit_bias(h, tokens, values, tokens.count))
        }
    }

    /// Bans `tokens`, replacing an earlier bias.
    public func banTokens(_ tokens: [TokenID]) throws {
        try setLogitBias(Dictionary(tokens.map { ($0, -Float.infinity) }, uniquingKeysWith: { a, _ in a }))
    }

    /// Removes the logit bias.
    public func clearLogitBias() throws {
        try exclusive { h in try checkSession(h, llamette_session_set_logit_bias(h, nil, nil, 0)) }
    }

    /// Saves the session (KV positions in use, pending token, sampler
    /// state) as a versioned, checksummed blob naming its model.
    public func saveState() throws -> Data {
        try exclusive { h in
            var size = 0
            try checkSession(h, llamette_session_state_size(h, &size))
            var data = Data(count: size)
            var len = 0
            let st = data.withUnsafeMutableBytes { llamette_session_state_save(h, $0.baseAddress, size, &len) }
            try checkSession(h, st)
            return data.prefix(len)
        }
    }

    /// Restores a blob of ``saveState()``; a corrupted (`.badState`) or
    /// foreign (`.stateMismatch`) blob throws and changes nothing.
    public func loadState(_ data: Data) throws {
        try exclusive { h in
            let st = data.withUnsafeBytes { llamette_session_state_load(h, $0.baseAddress, $0.count) }
            try checkSession(h, st)
        }
    }
}
