// SPDX-License-Identifier: MIT OR Apache-2.0
import CLlamette
import Foundation

/// Element type of a session's KV cache.
public enum KVCacheType: UInt32, Sendable {
    /// 32-bit floats: exact.
    case f32 = 0
    /// 16-bit floats: half the memory.
    case f16 = 1
    /// ggml's Q8_0 blocks: 34 bytes per 32 values, about a quarter of f32.
    case q8_0 = 2
}

/// One conversation with a model: its KV cache, position and sampler state.
///
/// ```swift
/// let model = try LlamaModel(contentsOf: modelURL)
/// let session = try Session(model: model)
/// for try await piece in session.generate("Once upon a time") {
///     print(piece, terminator: "")
/// }
/// ```
///
/// **Lifetime.** The session frees its C handle in `deinit` and keeps its
/// model alive. A running generation keeps the session alive until it ends.
///
/// **Concurrency.** A session is for one task at a time: one generation
/// runs on it at once. Generation runs on a thread of its own (the blocking
/// C call never occupies a thread of Swift's cooperative pool). Its stream
/// stops the generation when the consuming task is cancelled, when the
/// consumer leaves the loop, or when the stream is dropped: between tokens
/// at once, and inside the model's forward pass (a long prompt, a large
/// model) through `llamette_session_cancel`, within one transformer layer.
///
/// The class is `@unchecked Sendable` so that it can be kept in an actor,
/// handed to a task, or shared with a view model. Swift cannot check that,
/// because it holds a C pointer; it is safe because every use of the C
/// session goes through one lock: a second generation started while one
/// runs waits for it on its own thread, and the synchronous methods
/// (``position()``, ``reset()``, ...) wait for a generation that has been
/// stopped to wind down (at most one transformer layer of work) and throw
/// ``LlametteError/Code/busy`` while one is still running.
public final class Session: @unchecked Sendable {
    /// The model this session runs (kept alive by the session).
    public let model: LlamaModel
    /// Positions the session can hold: prompts and generated tokens.
    public let contextLength: Int

    let handle: OpaquePointer
    /// Guards `current`, `syncInUse` and the state of every `Run` of this
    /// session; waited on for changes of any of them.
    let lock = NSCondition()
    /// The generation using the C session, if one does.
    var current: Run?
    /// A synchronous method is using the C session.
    var syncInUse = false
    /// Stops that the library carried out (`CANCELLED` returned to a
    /// stopped run); guarded by `lock`.
    var cancelledInLibrary = 0

    /// Makes a session on `model`, in memory the library allocates.
    ///
    /// - Parameters:
    ///   - contextLength: positions the session holds (prompt and generated
    ///     tokens); nil for the model's context length, the maximum.
    ///   - kvCache: element type of the KV cache.
    ///   - batch: most prompt tokens a prefill runs together; nil for the
    ///     library's default (32).
    ///   - threads: threads for the matrix products, the generating thread
    ///     included: 1 (the default) starts none, 0 one per core.
    public init(
        model: LlamaModel, contextLength: Int? = nil, kvCache: KVCacheType = .f32, batch: Int? = nil,
        threads: Int = 1
    ) throws {
        var params = llamette_session_params(
            struct_size: MemoryLayout<llamette_session_params>.size,
            context_length: UInt32(clamping: max(contextLength ?? 0, 0)),
            kv_type: kvCache.rawValue,
            batch: UInt32(clamping: max(batch ?? 0, 0)))
        if let contextLength, contextLength <= 0 {
            throw LlametteError(code: .invalidArgument, message: "context length \(contextLength): must be positive")
        }
        var s: OpaquePointer?
        try check(llamette_session_new(model.handle, &params, &s))
        let handle = s!
        var n: UInt32 = 0
        var status = llamette_session_context_length(handle, &n)
        if status == UInt32(LLAMETTE_STATUS_OK) && threads != 1 {
            status = llamette_session_set_threads(handle, UInt32(clamping: max(threads, 0)))
        }
        if status != UInt32(LLAMETTE_STATUS_OK) {
            let error = LlametteError(
                code: .init(rawValue: status), message: String(cString: llamette_session_last_error(handle)))
            llamette_session_free(handle)
            throw error
        }
        self.model = model
        self.handle = handle
        self.contextLength = Int(n)
    }

    /// Makes the session that fits `memoryBudget` bytes on `model`: the
    /// largest context, then the largest prompt batch, that
    /// ``fitting(model:memoryBudget:kvCache:)`` finds. For an app that
    /// knows what memory it may use (a phone's) rather than a context.
    public convenience init(
        model: LlamaModel, memoryBudget: Int, kvCache: KVCacheType = .q8_0, threads: Int = 1
    ) throws {
        let fit = try Session.fitting(model: model, memoryBudget: memoryBudget, kvCache: kvCache)
        try self.init(
            model: model, contextLength: fit.contextLength, kvCache: kvCache, batch: fit.batch, threads: threads)
    }

    /// The bytes a session of these settings takes
    /// (`llamette_session_required_bytes`): its KV cache, activations and
    /// handle, exactly what ``init(model:contextLength:kvCache:batch:threads:)``
    /// allocates.
    public static func requiredBytes(
        model: LlamaModel, contextLength: Int? = nil, kvCache: KVCacheType = .f32, batch: Int? = nil
    ) throws -> Int {
        if let contextLength, contextLength <= 0 {
            throw LlametteError(code: .invalidArgument, message: "context length \(contextLength): must be positive")
        }
        var params = llamette_session_params(
            struct_size: MemoryLayout<llamette_session_params>.size,
            context_length: UInt32(clamping: max(contextLength ?? 0, 0)),
            kv_type: kvCache.rawValue,
            batch: UInt32(clamping: max(batch ?? 0, 0)))
        var n = 0
        try check(llamette_session_required_bytes(model.handle, &params, &n))
        return n
    }

    /// The largest context, then the largest prompt batch (up to 32), whose
    /// session on `model` with `kvCache` takes at most `memoryBudget` bytes
    /// (`llamette_session_params_for_budget`). Throws
    /// ``LlametteError/Code/bufferTooSmall`` when not even one position fits
    /// (the message names the bytes that would).
    public static func fitting(
        model: LlamaModel, memoryBudget: Int, kvCache: KVCacheType = .q8_0
    ) throws -> (contextLength: Int, batch: Int) {
        if memoryBudget < 0 {
            throw LlametteError(code: .invalidArgument, message: "memory budget \(memoryBudget): must not be negative")
        }
        var params = llamette_session_params()
        params.struct_size = MemoryLayout<llamette_session_params>.size
        try check(llamette_session_params_for_budget(model.handle, kvCache.rawValue, memoryBudget, &params))
        return (Int(params.context_length), Int(params.batch))
    }

    deinit {
        // A running generation holds the session, so none is running now.
        llamette_session_free(handle)
    }

    /// The model's tokenizer.
    public var tokenizer: Tokenizer { model.tokenizer }

    // MARK: Generation

    /// Generates text after `prompt`, as a stream of pieces: UTF-8-correct
    /// text (whole characters; a character split over several tokens comes
    /// with the token that completes it; no empty pieces).
    ///
    /// The prompt is appended to the conversation: on a new (or reset)
    /// session it is encoded with a BOS token first, as llama2.c does;
    /// later prompts continue the text without one. An empty prompt on a
    /// new session is the BOS alone; later, it continues generating where
    /// the last generation stopped.
    ///
    /// Generation stops at an end token (BOS or EOS, not yielded), after
    /// `options.maxTokens` tokens, when the session's context is full, or
    /// when the consuming task is cancelled or the stream dropped; then the
    /// stream ends without an error, and the tokens generated so far stay in
    /// the session. Errors (a context already full, ...) are thrown by the
    /// stream as ``LlametteError``.
    ///
    /// Generation starts at once on a thread of its own, and runs at most a
    /// few tokens ahead of the consumer. The text of `run.c` is the pieces
    /// joined plus a final newline (run.c prints one).
    public func generate(_ prompt: String, options: GenerationOptions = GenerationOptions())
        -> AsyncThrowingStream<String, Error>
    {
        let run = start(.text(prompt), options: options)
        return AsyncThrowingStream(unfolding: {
            while let token = try await run.next() {
                if !token.text.isEmpty { return token.text }
            }
            return nil
        })
    }

    /// As ``generate(_:options:)``, but yields every generated token with
    /// its id (a token's text may be empty).
    public func generateTokens(_ prompt: String, options: GenerationOptions = GenerationOptions())
        -> AsyncThrowingStream<GeneratedToken, Error>
    {
        let run = start(.text(prompt), options: options)
        return AsyncThrowingStream(unfolding: { try await run.next() })
    }

    /// As ``generateTokens(_:options:)``, with the input as token ids (no BOS
    /// is added), for models without a tokenizer too. An empty input
    /// continues the generation.
    public func generateTokens(after input: [TokenID], options: GenerationOptions = GenerationOptions())
        -> AsyncThrowingStream<GeneratedToken, Error>
    {
        let run = start(.tokens(input), options: options)
        return AsyncThrowingStream(unfolding: { try await run.next() })
    }

    func start(_ input: Run.Input, options: GenerationOptions) -> RunHandle {
        let run = Run(session: self, input: input, options: options)
        let thread = Thread { run.work() }
        thread.name = "llamette generation"
        thread.stackSize = 2 << 20
        thread.qualityOfService = .userInitiated  // someone is waiting for the text
        thread.start()
        return RunHandle(run)
    }

    /// Whether a generation holds the C session now (for the tests).
    var isGenerating: Bool {
        lock.lock()
        defer { lock.unlock() }
        return current != nil
    }

    /// How many generations the library stopped with `CANCELLED` (for the
    /// tests: a stop inside the model, not between tokens).
    var libraryCancellations: Int {
        lock.lock()
        defer { lock.unlock() }
        return cancelledInLibrary
    }

    // MARK: Synchronous methods

    /// Positions in the KV cache: tokens fed so far (a token sampled last is
    /// counted when the next call feeds it).
    public func position() throws -> Int {
        try exclusive { h in
            var p: UInt32 = 0
            try checkSession(h, llamette_session_position(h, &p))
            return Int(p)
        }
    }

    /// Forgets the conversation: the session is as new (the next prompt
    /// gets a BOS, the sampler is reseeded).
    public func reset() throws {
        try exclusive { h in try checkSession(h, llamette_session_reset(h)) }
    }

    /// Threads for the matrix products, the generating thread included:
    /// 1 runs everything on it, 0 one per core. Tokens do not depend on it.
    public func setThreads(_ n: Int) throws {
        try exclusive { h in try checkSession(h, llamette_session_set_threads(h, UInt32(clamping: max(n, 0)))) }
    }

    /// Runs `body` with the C session to itself: waits for a stopped
    /// generation to wind down or another synchronous call to end; throws
    /// `.busy` while a generation is running.
    func exclusive<T>(_ body: (OpaquePointer) throws -> T) throws -> T {
        lock.lock()
        while true {
            if let run = current, !run.stopRequested {
                lock.unlock()
                throw LlametteError(code: .busy, message: "a generation is running on this session")
            }
            if current == nil && !syncInUse { break }
            lock.wait()
        }
        syncInUse = true
        lock.unlock()
        defer {
            lock.lock()
            syncInUse = false
            lock.broadcast()
            lock.unlock()
        }
        return try body(handle)
    }
}

/// Throws for a status other than OK with the session's message (read at
/// once, on the calling thread, as the C ABI requires).
func checkSession(_ handle: OpaquePointer, _ status: llamette_status) throws {
    if status != UInt32(LLAMETTE_STATUS_OK) {
        throw LlametteError(code: .init(rawValue: status), message: String(cString: llamette_session_last_error(handle)))
    }
}

/// The stream's reference to its run: when the stream goes (the consumer
/// dropped it, left its loop, or it ended), the run is told to stop.
final class RunHandle: Sendable {
    let run: Run
    init(_ run: Run) { self.run = run }
    deinit { run.stop() }

    func next() async throws -> GeneratedToken? { try await run.next() }
}

/// One generation: the worker thread produces tokens into a small buffer,
/// the consumer's task takes them. All mutable state is guarded by the
/// session's lock (hence `@unchecked Sendable`).
///
/// The run holds its session only until it ends, and drops it before the
/// consumer learns of the end: a session the app no longer references is
/// freed as soon as its stream has ended (or been stopped and wound down).
final class Run: @unchecked Sendable {
    enum Input {
        case text(String)
        case tokens([TokenID])
        /// A chat turn: the dialog prefilled with `llamette_chat_prefill`,
        /// the reply generated with `llamette_session_generate_ex`.
        case chat(ChatTurn)
    }

    /// Tokens produced ahead of the consumer, at most; the worker then waits.
    static let lookahead = 4

    /// The session's lock.
    let lock: NSCondition
    /// The C session, for `llamette_session_cancel` while `inC` (then
    /// `session` is set, so the handle is alive).
    let handle: OpaquePointer
    let input: Input
    let options: GenerationOptions

    // Guarded by lock:
    /// Until the run ends.
    private var session: Session?
    private var buffer: [GeneratedToken] = []
    private var finished = false
    private var failure: Error?
    /// The consumer is gone or cancelled: stop, end the stream quietly.
    private(set) var stopRequested = false
    /// The worker is inside a C call on the session, and not in our
    /// callback: a stop request must go through `llamette_session_cancel`.
    private var inC = false
    /// The consumer waiting for the next token.
    private var waiter: CheckedContinuation<GeneratedToken?, Error>?

    init(session: Session, input: Input, options: GenerationOptions) {
        self.session = session
        self.lock = session.lock
        self.handle = session.handle
        self.input = input
        self.options = options
    }

    // MARK: Consumer side

    func next() async throws -> GeneratedToken? {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (k: CheckedContinuation<GeneratedToken?, Error>) in
                lock.lock()
                if stopRequested {
                    lock.unlock()
                    k.resume(returning: nil)
                } else if !buffer.isEmpty {
                    let token = buffer.removeFirst()
                    lock.broadcast()  // room for the worker
                    lock.unlock()
                    k.resume(returning: token)
                } else if finished {
                    let error = failure
                    failure = nil
                    lock.unlock()
                    if let error { k.resume(throwing: error) } else { k.resume(returning: nil) }
                } else {
                    waiter = k
                    lock.unlock()
                }
            }
        } onCancel: {
            stop()
        }
    }

    /// Stops the generation: the consumer's task was cancelled, or it let
    /// the stream go. Any thread; idempotent.
    func stop() {
        lock.lock()
        if !stopRequested {
            stopRequested = true
            // Between tokens the callback sees the flag; inside the forward
            // pass only the library's cancellation can stop it promptly.
            if inC { _ = llamette_session_cancel(handle) }
        }
        let k = waiter
        waiter = nil
        lock.broadcast()
        lock.unlock()
        k?.resume(returning: nil)
    }

    // MARK: Worker side

    /// The worker thread: runs the generation, then ends the stream.
    func work() {
        let outcome = runOnSession()  // holds no reference to the session after this
        lock.lock()
        finished = true
        let k = waiter
        waiter = nil
        if k == nil { failure = outcome }
        lock.broadcast()
        lock.unlock()
        if let k {
            if let outcome { k.resume(throwing: outcome) } else { k.resume(returning: nil) }
        }
    }

    /// Waits for the session, generates, releases it; returns the error to
    /// end the stream with, nil for a quiet end.
    private func runOnSession() -> Error? {
        lock.lock()
        guard let session else {
            lock.unlock()
            return nil
        }
        while (session.current != nil || session.syncInUse) && !stopRequested { lock.wait() }
        if stopRequested {
            self.session = nil
            lock.unlock()
            return nil
        }
        session.current = self
        inC = true
        lock.unlock()

        var outcome: Error?
        do {
            try generate(session)
        } catch is Stopped {
            // Cancelled in the library at the consumer's request.
        } catch {
            outcome = error
        }

        lock.lock()
        session.current = nil
        self.session = nil
        inC = false
        if stopRequested { outcome = nil }  // a stopped stream ends quietly
        lock.broadcast()
        lock.unlock()
        return outcome
    }

    /// The run was stopped while in a C call, which returned `CANCELLED`.
    private struct Stopped: Error {}

    private func generate(_ session: Session) throws {
        let h = handle
        let prompt: [TokenID]
        switch input {
        case .chat(let turn):
            return try chat(session, turn)
        case .tokens(let ids):
            prompt = ids
        case .text(let text):
            var pos: UInt32 = 0
            try checkSession(h, llamette_session_position(h, &pos))
            prompt = try session.model.tokenizer.encode(text, addBOS: pos == 0)
        }
        if !prompt.isEmpty {
            try call(session) { prompt.withUnsafeBufferPointer { llamette_session_prefill(h, $0.baseAddress, $0.count) } }
        }
        if let n = options.maxTokens, n <= 0 { return }  // the prompt only

        var params = options.samplerParams
        var result = llamette_generate_result()
        result.struct_size = MemoryLayout<llamette_generate_result>.size
        let context = Unmanaged.passUnretained(self).toOpaque()
        try call(session) {
            llamette_session_generate(h, &params, options.maxTokensParam, { user, token, text, length in
                let run = Unmanaged<Run>.fromOpaque(user!).takeUnretainedValue()
                let piece = text.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: length), as: UTF8.self) }
                return run.deliver(GeneratedToken(id: token, text: piece ?? ""))
            }, context, &result)
        }
    }

    /// A chat turn: prefill the dialog (nothing changes when that fails),
    /// then generate the reply, which joins the dialog however it ends.
    private func chat(_ session: Session, _ turn: ChatTurn) throws {
        let h = handle
        let dialog = turn.dialog()
        var options = turn.chatOptions.native
        var result = llamette_chat_prefill_result()
        result.struct_size = MemoryLayout<llamette_chat_prefill_result>.size
        try call(session) {
            withNativeDialog(dialog) { llamette_chat_prefill(h, $0.baseAddress, $0.count, &options, &result) }
        }
        turn.prefilled(result)
        if let n = self.options.maxTokens, n <= 0 {
            turn.finish()
            return
        }
        var params = self.options.samplerParams
        var stops: [CChar] = []
        for s in self.options.stopStrings {
            stops.append(contentsOf: s.utf8.map { CChar(bitPattern: $0) })
            stops.append(0)
        }
        var gr = llamette_generate_result()
        gr.struct_size = MemoryLayout<llamette_generate_result>.size
        let context = Unmanaged.passUnretained(self).toOpaque()
        let maxTokens = self.options.maxTokensParam
        do {
            try call(session) {
                stops.withUnsafeBufferPointer { sb in
                    var go = llamette_generate_options()
                    go.struct_size = MemoryLayout<llamette_generate_options>.size
                    go.max_tokens = maxTokens
                    go.stop_strings = sb.isEmpty ? nil : sb.baseAddress
                    go.stop_strings_len = sb.count
                    return llamette_session_generate_ex(h, &params, &go, { user, token, text, length in
                        let run = Unmanaged<Run>.fromOpaque(user!).takeUnretainedValue()
                        let piece = text.map {
                            String(decoding: UnsafeRawBufferPointer(start: $0, count: length), as: UTF8.self)
                        }
                        return run.deliver(GeneratedToken(id: token, text: piece ?? ""))
                    }, context, &gr)
                }
            }
        } catch let error as LlametteError where turn.reply.isEmpty && error.code != .cancelled {
            // Refused options (a bad stop string): the turn did not happen.
            turn.rollback()
            throw error
        } catch {
            turn.finish()
            throw error
        }
        turn.stopReason = gr.stop_reason
        turn.finish()
    }

    /// Makes a C call on the session. A `CANCELLED` status is this run's
    /// stop (then `Stopped` is thrown). The library drops a stop request
    /// made during a call when that call ends; one that reached it after
    /// the call returned is withdrawn here (`llamette_session_clear_cancel`,
    /// under the lock that `stop()` takes), so it never stops a later call.
    private func call(_ session: Session, _ body: () -> llamette_status) throws {
        lock.lock()
        let stoppedBefore = stopRequested
        lock.unlock()
        if stoppedBefore { throw Stopped() }
        let status = body()
        lock.lock()
        let stopped = stopRequested
        _ = llamette_session_clear_cancel(handle)
        if status == UInt32(LLAMETTE_STATUS_CANCELLED) && stopped { session.cancelledInLibrary += 1 }
        lock.unlock()
        if status == UInt32(LLAMETTE_STATUS_OK) { return }
        if status == UInt32(LLAMETTE_STATUS_CANCELLED) && stopped { throw Stopped() }
        try checkSession(handle, status)
    }

    /// Called by the C callback on the worker thread for each token: hands
    /// it to the consumer, waiting while the consumer is `lookahead` tokens
    /// behind. Returns false to stop the generation.
    private func deliver(_ token: GeneratedToken) -> Bool {
        lock.lock()
        inC = false
        while buffer.count >= Run.lookahead && !stopRequested { lock.wait() }
        if stopRequested {
            lock.unlock()
            return false
        }
        inC = true
        if case .chat(let turn) = input { turn.reply += token.text }
        if let k = waiter {
            waiter = nil
            lock.unlock()
            k.resume(returning: token)
        } else {
            buffer.append(token)
            lock.unlock()
        }
        return true
    }
}
