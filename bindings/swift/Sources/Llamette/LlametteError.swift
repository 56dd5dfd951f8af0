// SPDX-License-Identifier: MIT OR Apache-2.0
import CLlamette

/// A failed call into the library: its status code and its message (what
/// went wrong, with which argument, file or token).
public struct LlametteError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A `LLAMETTE_STATUS_*` code. The numbers are fixed by the C ABI; a
    /// code this binding does not name is still carried in `rawValue`.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }

        /// A pointer argument was NULL (a bug in this binding if it happens).
        public static let nullArgument = Code(rawValue: UInt32(LLAMETTE_STATUS_NULL_ARGUMENT))
        /// An argument is out of its documented range.
        public static let invalidArgument = Code(rawValue: UInt32(LLAMETTE_STATUS_INVALID_ARGUMENT))
        /// A text argument or path is not valid UTF-8.
        public static let invalidUTF8 = Code(rawValue: UInt32(LLAMETTE_STATUS_INVALID_UTF8))
        /// An output buffer was too small.
        public static let bufferTooSmall = Code(rawValue: UInt32(LLAMETTE_STATUS_BUFFER_TOO_SMALL))
        /// A caller buffer was misaligned.
        public static let misaligned = Code(rawValue: UInt32(LLAMETTE_STATUS_MISALIGNED))
        /// Memory could not be allocated.
        public static let outOfMemory = Code(rawValue: UInt32(LLAMETTE_STATUS_OUT_OF_MEMORY))
        /// A file could not be opened, read or memory-mapped (a missing model, say).
        public static let io = Code(rawValue: UInt32(LLAMETTE_STATUS_IO))
        /// The model (or tokenizer) bytes are malformed: truncated, not a known format, ...
        public static let badFile = Code(rawValue: UInt32(LLAMETTE_STATUS_BAD_FILE))
        /// A well-formed file this library does not run.
        public static let unsupported = Code(rawValue: UInt32(LLAMETTE_STATUS_UNSUPPORTED))
        /// The tokenizer is malformed, or smaller than the model's vocabulary.
        public static let badTokenizer = Code(rawValue: UInt32(LLAMETTE_STATUS_BAD_TOKENIZER))
        /// The model has no tokenizer and the call needs one.
        public static let noTokenizer = Code(rawValue: UInt32(LLAMETTE_STATUS_NO_TOKENIZER))
        /// A token id is outside the vocabulary.
        public static let unknownToken = Code(rawValue: UInt32(LLAMETTE_STATUS_UNKNOWN_TOKEN))
        /// The session's context has no room for the tokens.
        public static let contextFull = Code(rawValue: UInt32(LLAMETTE_STATUS_CONTEXT_FULL))
        /// Generation was asked of a session with nothing to sample from.
        public static let nothingToSample = Code(rawValue: UInt32(LLAMETTE_STATUS_NOTHING_TO_SAMPLE))
        /// The call was cancelled. (A cancelled generation stream ends
        /// without an error; this code is not thrown by it.)
        public static let cancelled = Code(rawValue: UInt32(LLAMETTE_STATUS_CANCELLED))
        /// The session is in use by a generation that has not been stopped.
        public static let busy = Code(rawValue: UInt32(LLAMETTE_STATUS_BUSY))
        /// A bug in the library, caught at its boundary; reset the session.
        public static let panic = Code(rawValue: UInt32(LLAMETTE_STATUS_PANIC))
        /// A library error that has no code of its own yet.
        public static let error = Code(rawValue: UInt32(LLAMETTE_STATUS_ERROR))
        /// A saved state is not one: truncated, corrupted, malformed. Nothing changed.
        public static let badState = Code(rawValue: UInt32(LLAMETTE_STATUS_BAD_STATE))
        /// A saved state belongs to another model file, KV type or version,
        /// or needs a longer context. Nothing changed.
        public static let stateMismatch = Code(rawValue: UInt32(LLAMETTE_STATUS_STATE_MISMATCH))
        /// A chat message carries the chat format's own tags (a
        /// prompt-injection guard, see ``ChatOptions/allowSpecialTags``).
        public static let refused = Code(rawValue: UInt32(LLAMETTE_STATUS_REFUSED))
        /// The model's chat template could not be rendered (a syntax error,
        /// or an exception it raised: a role it does not accept).
        public static let template = Code(rawValue: UInt32(LLAMETTE_STATUS_TEMPLATE))
        /// A host thread pool's `parallel_for` skipped, repeated or invented
        /// task indices: the call stopped as a cancelled one does, and the
        /// session stays usable.
        public static let badParallelFor = Code(rawValue: UInt32(LLAMETTE_STATUS_BAD_PARALLEL_FOR))

        /// The library's short name for the code ("bad file", ...).
        public var name: String { String(cString: llamette_status_str(rawValue)) }
        public var description: String { name }
    }

    /// What kind of failure.
    public let code: Code
    /// The library's message (`llamette_last_error` or
    /// `llamette_session_last_error`), or this binding's.
    public let message: String

    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    /// The numeric `llamette_status`.
    public var status: UInt32 { code.rawValue }

    public var description: String {
        message.isEmpty ? "llamette: \(code.name)" : "llamette: \(message) (\(code.name))"
    }
}

/// Throws for a status other than OK, with the calling thread's last error
/// message: call it right after the failing call, on the same thread, with
/// no suspension point in between.
@inline(__always)
func check(_ status: llamette_status) throws {
    if status != UInt32(LLAMETTE_STATUS_OK) {
        throw LlametteError(code: .init(rawValue: status), message: String(cString: llamette_last_error()))
    }
}
