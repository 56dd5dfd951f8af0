// SPDX-License-Identifier: MIT OR Apache-2.0
import CLlamette
import Foundation

/// A token id.
public typealias TokenID = UInt32

/// A Llama 2 model (GGUF, or a llama2.c `.bin` with its `tokenizer.bin`),
/// with its tokenizer.
///
/// A model is immutable once opened. It is `Sendable`: share one model
/// between any number of tasks and threads, and make any number of
/// ``Session``s on it (each session keeps its model alive).
///
/// `@unchecked Sendable` because the stored properties are constants, but
/// one of them is a C pointer, which Swift cannot check: the C ABI documents
/// every function taking a `const llamette_model *` as safe to call from any
/// number of threads at once, and this class only calls those (and
/// `llamette_model_free` in `deinit`, when nothing else can use it).
public final class LlamaModel: @unchecked Sendable {
    /// The C handle (`llamette_model *`); owned, freed in `deinit`.
    let handle: OpaquePointer
    /// Memory the model reads its bytes from when opened from `Data`: the C
    /// model borrows it, so it lives exactly as long as this object (every
    /// session and decoder keeps this object alive).
    private let ownedBytes: [UnsafeMutableRawBufferPointer]

    /// Shapes, special tokens, sizes.
    public let info: ModelInfo

    /// How many matrices are stored interleaved for the SIMD kernels: those
    /// interleaved when the model was opened (with `interleave: true`, where
    /// ``interleavedKernels`` is true), or that the bytes held already
    /// (``ModelInfo/interleavedMatrices``); 0 otherwise, and for a model
    /// without Q8_0 or Q4_0 matrices.
    public var interleavedMatrices: Int { info.interleavedMatrices }

    private init(handle: OpaquePointer, ownedBytes: [UnsafeMutableRawBufferPointer] = []) throws {
        self.handle = handle
        self.ownedBytes = ownedBytes
        var raw = llamette_model_info()
        raw.struct_size = MemoryLayout<llamette_model_info>.size  // every C struct starts with its size
        let status = llamette_model_get_info(handle, &raw)
        self.info = ModelInfo(raw)
        try check(status)
    }

    deinit {
        // Sessions and decoders hold the Swift object, so this is the last
        // use: the C model's memory (or mapping) goes, then the bytes it read.
        llamette_model_free(handle)
        for bytes in ownedBytes { bytes.deallocate() }
    }

    /// Opens a model file, memory-mapped read-only (the file must not change
    /// while the model or a session of it is alive).
    ///
    /// With `interleave: true` the library loads the model for speed
    /// (`llamette_model_open_file_ex` with `LLAMETTE_OPEN_FOR_SPEED`): on a
    /// CPU where ``interleavedKernels`` is true (Apple silicon, x86-64 with
    /// AVX2), the file is copied into memory the library owns and a GGUF
    /// model's Q8_0 and Q4_0 matrices (with AVX-512 VNNI also Q4_K and
    /// Q5_K, with AVX2 Q4_K) are interleaved there for the SIMD
    /// kernels: about twice the prompt speed, and faster generation, for the
    /// cost of the model's size in memory (``ModelInfo/ownedBytes``). On
    /// other CPUs the matrices keep the file's layout; the library then
    /// copies the file on Linux only (for transparent huge pages) and maps
    /// it elsewhere, as without `interleave`.
    ///
    /// - Parameters:
    ///   - url: a file URL: a GGUF model, or a llama2.c `.bin` checkpoint.
    ///   - tokenizer: a llama2.c `tokenizer.bin` or a GGUF vocabulary; nil
    ///     for a GGUF model's own vocabulary (a llama2.c model then has no
    ///     tokenizer and works on token ids only).
    ///   - interleave: load the model for speed: a copy in the library's
    ///     memory, its quantized matrices interleaved, where that pays.
    /// - Throws: ``LlametteError`` (`.io` for a missing file, `.badFile` for
    ///   a corrupt one, `.unsupported`, `.badTokenizer`, ...).
    public convenience init(contentsOf url: URL, tokenizer: URL? = nil, interleave: Bool = false) throws {
        for u in [url, tokenizer].compactMap({ $0 }) where !u.isFileURL {
            throw LlametteError(code: .invalidArgument, message: "not a file URL: \(u)")
        }
        let flags = interleave ? UInt32(LLAMETTE_OPEN_FOR_SPEED) : 0
        var model: OpaquePointer?
        try url.withUnsafeFileSystemRepresentation { path in
            if let tokenizer {
                try tokenizer.withUnsafeFileSystemRepresentation { tpath in
                    try check(llamette_model_open_file_ex(path, tpath, flags, &model))
                }
            } else {
                try check(llamette_model_open_file_ex(path, nil, flags, &model))
            }
        }
        try self.init(handle: model!)
    }

    /// Opens a model from bytes (a GGUF or llama2.c file's contents), with
    /// optional tokenizer bytes. The bytes are copied once into memory the
    /// model owns and read there; for a large model prefer
    /// ``init(contentsOf:tokenizer:interleave:)``, which maps the file instead.
    ///
    /// With `interleave: true`, where ``interleavedKernels`` is true, that
    /// copy of a GGUF model is rewritten in place before it is opened
    /// (`llamette_repack_in_place`): its Q8_0 and Q4_0 matrices (with
    /// AVX-512 VNNI also Q4_K and Q5_K, with AVX2 Q4_K) are
    /// interleaved, 16 rows side by side, so that the SIMD kernels read them
    /// faster (about twice the prompt speed, and faster generation). `data`
    /// itself is not changed. Elsewhere, and for F32 or llama2.c models, the
    /// model is opened as it is; ``interleavedMatrices`` says how many
    /// matrices were rewritten. The logits are the plain model's, bit for
    /// bit.
    ///
    /// The fast path for a quantized model in a file:
    /// `try LlamaModel(contentsOf: url, interleave: true)`, or
    /// `try LlamaModel(data: Data(contentsOf: url), interleave: true)`.
    ///
    /// - Throws: ``LlametteError`` (`.badFile` for empty, truncated or
    ///   malformed bytes, `.unsupported`, `.badTokenizer`, ...).
    public convenience init(data: Data, tokenizerData: Data? = nil, interleave: Bool = false) throws {
        let bytes = LlamaModel.copy(data)
        let tokBytes = tokenizerData.map(LlamaModel.copy)
        let base = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var model: OpaquePointer?
        var status = UInt32(LLAMETTE_STATUS_OK)
        if interleave && LlamaModel.interleavedKernels {
            var matrices = 0
            status = llamette_repack_in_place(base, data.count, &matrices)
        }
        if status == UInt32(LLAMETTE_STATUS_OK) {
            status = llamette_model_open_memory(
                base, data.count,
                tokBytes.map { $0.baseAddress!.assumingMemoryBound(to: UInt8.self) }, tokenizerData?.count ?? 0,
                &model)
        }
        if status != UInt32(LLAMETTE_STATUS_OK) {
            let error = LlametteError(code: .init(rawValue: status), message: String(cString: llamette_last_error()))
            bytes.deallocate()
            tokBytes?.deallocate()
            throw error
        }
        try self.init(handle: model!, ownedBytes: [bytes] + (tokBytes.map { [$0] } ?? []))
    }

    /// Opens a model from bytes; see ``init(data:tokenizerData:interleave:)``.
    public convenience init(bytes: [UInt8], tokenizerBytes: [UInt8]? = nil, interleave: Bool = false) throws {
        try self.init(data: Data(bytes), tokenizerData: tokenizerBytes.map { Data($0) }, interleave: interleave)
    }

    /// Whether the kernels in use on this CPU have fast paths for
    /// interleaved Q8_0 and Q4_0 matrices (`llamette_kernels_interleaved`):
    /// x86-64 with AVX2 or AVX-512, aarch64 with the dot product extension
    /// (Apple silicon, recent Android phones). Where it is false,
    /// `interleave: true` opens the model as it is (interleaved matrices
    /// would be slower there).
    public static var interleavedKernels: Bool { llamette_kernels_interleaved() != 0 }

    /// The model compiled into the library: stories260K (a 260K-parameter
    /// TinyStories model with its 512-token tokenizer). Nothing is read
    /// from disk. Throws `.unsupported` for a library built without it.
    public static func embedded() throws -> LlamaModel {
        var model: OpaquePointer?
        try check(llamette_model_open_default(&model))
        return try LlamaModel(handle: model!)
    }

    /// The model's tokenizer (throws `.noTokenizer` on use when it has none).
    public var tokenizer: Tokenizer { Tokenizer(model: self) }

    /// The library linked at run time, "MAJOR.MINOR.PATCH".
    public static var libraryVersion: String { String(cString: llamette_version_string()) }

    private static func copy(_ data: Data) -> UnsafeMutableRawBufferPointer {
        // At least one byte, so that the pointer is never NULL (the library
        // reports an empty file as `.badFile`).
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(data.count, 1), alignment: 64)
        _ = data.copyBytes(to: buffer)
        return buffer
    }
}

/// What a model is (`llamette_model_info`).
public struct ModelInfo: Sendable, Hashable {
    /// The file format a model was read from.
    public struct Format: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let ggufV2 = Format(rawValue: UInt32(LLAMETTE_FORMAT_GGUF_V2))
        public static let ggufV3 = Format(rawValue: UInt32(LLAMETTE_FORMAT_GGUF_V3))
        /// llama2.c "version 0" (fp32, run.c).
        public static let llama2cV0 = Format(rawValue: UInt32(LLAMETTE_FORMAT_LLAMA2C_V0))
        /// llama2.c "version 2" (Q8_0, runq.c).
        public static let llama2cV2 = Format(rawValue: UInt32(LLAMETTE_FORMAT_LLAMA2C_V2))
        public var description: String {
            switch self {
            case .ggufV2: "GGUF v2"
            case .ggufV3: "GGUF v3"
            case .llama2cV0: "llama2.c v0"
            case .llama2cV2: "llama2.c v2"
            default: "format \(rawValue)"
            }
        }
    }

    public var format: Format
    /// Width of the residual stream.
    public var dim: Int
    /// Width of the feed-forward hidden layer.
    public var hiddenDim: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    /// Number of tokens the model predicts over.
    public var vocabSize: Int
    /// The longest context the model was trained for, in positions.
    public var contextLength: Int
    /// Tokens of the tokenizer (at least `vocabSize`); 0 without one.
    public var tokenizerTokens: Int
    /// The beginning-of-sequence token; nil without a tokenizer.
    public var bosToken: TokenID?
    /// The end-of-sequence token; nil without a tokenizer.
    public var eosToken: TokenID?
    /// The unknown token; nil without a tokenizer.
    public var unkToken: TokenID?
    /// The most bytes of text one token can produce.
    public var maxTokenTextBytes: Int
    public var parameters: UInt64
    public var weightBytes: UInt64
    public var fileBytes: UInt64
    public var tokenizerFileBytes: UInt64
    /// Weight bytes one decode step reads.
    public var bytesPerToken: UInt64
    public var rmsEpsilon: Float
    public var ropeTheta: Float
    /// Bytes of memory the library allocated to hold the model file (a model
    /// opened with `interleave: true` from a file: its size); 0 when it
    /// reads a mapped file or bytes given to it (a copy this binding made,
    /// ``LlamaModel/init(data:tokenizerData:interleave:)``, is not counted).
    public var ownedBytes: UInt64
    /// Matrices stored interleaved for the SIMD kernels.
    public var interleavedMatrices: Int

    /// Whether the model has a tokenizer (text in and out), or works on
    /// token ids only.
    public var hasTokenizer: Bool { tokenizerTokens > 0 }

    init(_ i: llamette_model_info) {
        func token(_ t: UInt32) -> TokenID? { t == UInt32.max ? nil : t }
        format = Format(rawValue: i.format)
        dim = Int(i.dim)
        hiddenDim = Int(i.hidden_dim)
        layers = Int(i.n_layers)
        heads = Int(i.n_heads)
        kvHeads = Int(i.n_kv_heads)
        headDim = Int(i.head_dim)
        vocabSize = Int(i.vocab_size)
        contextLength = Int(i.context_length)
        tokenizerTokens = Int(i.tokenizer_tokens)
        bosToken = token(i.bos_token)
        eosToken = token(i.eos_token)
        unkToken = token(i.unk_token)
        maxTokenTextBytes = Int(i.max_token_text_bytes)
        parameters = i.n_params
        weightBytes = i.weight_bytes
        fileBytes = i.file_bytes
        tokenizerFileBytes = i.tokenizer_file_bytes
        bytesPerToken = i.bytes_per_token
        rmsEpsilon = i.rms_eps
        ropeTheta = i.rope_theta
        ownedBytes = i.owned_bytes
        interleavedMatrices = Int(i.interleaved_matrices)
    }
}

/// A model's tokenizer: SentencePiece BPE as Llama 2's. Every method may be
/// called from any task or thread.
public struct Tokenizer: Sendable {
    /// The model it belongs to.
    public let model: LlamaModel

    /// Beginning of sequence.
    public var bos: TokenID? { model.info.bosToken }
    /// End of sequence.
    public var eos: TokenID? { model.info.eosToken }
    /// Number of tokens.
    public var count: Int { model.info.tokenizerTokens }

    /// Encodes text into token ids, as SentencePiece does for Llama 2, with
    /// the BOS token first if `addBOS`.
    public func encode(_ text: String, addBOS: Bool = true) throws -> [TokenID] {
        var text = text
        return try text.withUTF8 { utf8 in
            let p = utf8.baseAddress.map { UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self) }
            var n = 0
            let status = llamette_model_tokenize(model.handle, p, utf8.count, addBOS, nil, 0, &n)
            if status != UInt32(LLAMETTE_STATUS_BUFFER_TOO_SMALL) {
                try check(status)
                return []
            }
            var ids = [TokenID](repeating: 0, count: n)
            try ids.withUnsafeMutableBufferPointer { buf in
                try check(llamette_model_tokenize(model.handle, p, utf8.count, addBOS, buf.baseAddress, buf.count, &n))
            }
            return Array(ids.prefix(n))
        }
    }

    /// Decodes token ids into text as a stream would: whole UTF-8
    /// characters, a byte sequence that is not UTF-8 as U+FFFD, control
    /// tokens as nothing, and the piece right after a BOS without its
    /// leading space (llama2.c's rule).
    public func decode(_ tokens: [TokenID]) throws -> String {
        let decoder = try Decoder(model: model)
        var bytes: [UInt8] = []
        for t in tokens { try decoder.push(t, into: &bytes) }
        try decoder.flush(into: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The raw bytes of one token: its piece with "▁" as a space, a byte
    /// token as its byte (so not always UTF-8 on its own), nothing for a
    /// control token.
    public func pieceBytes(_ token: TokenID) throws -> [UInt8] {
        var n = 0
        let status = llamette_model_token_to_piece(model.handle, token, nil, 0, &n)
        if status != UInt32(LLAMETTE_STATUS_BUFFER_TOO_SMALL) {
            try check(status)
            return []
        }
        var bytes = [UInt8](repeating: 0, count: n)
        try bytes.withUnsafeMutableBytes { buf in
            try check(llamette_model_token_to_piece(
                model.handle, token, buf.baseAddress!.assumingMemoryBound(to: CChar.self), buf.count, &n))
        }
        return Array(bytes.prefix(n))
    }
}

/// A streaming detokenizer (`llamette_decoder`), used by one thread at a time.
final class Decoder {
    private let handle: OpaquePointer
    private let model: LlamaModel  // keeps the bytes the C model reads alive
    private var buffer: [UInt8]

    init(model: LlamaModel) throws {
        var d: OpaquePointer?
        try check(llamette_decoder_new(model.handle, &d))
        handle = d!
        self.model = model
        buffer = [UInt8](repeating: 0, count: max(model.info.maxTokenTextBytes, 8))
    }

    deinit { llamette_decoder_free(handle) }

    func push(_ token: TokenID, into out: inout [UInt8]) throws {
        var n = 0
        try buffer.withUnsafeMutableBytes { buf in
            try check(llamette_decoder_push(
                handle, token, buf.baseAddress!.assumingMemoryBound(to: CChar.self), buf.count, &n))
        }
        out += buffer.prefix(n)
    }

    func flush(into out: inout [UInt8]) throws {
        var n = 0
        try buffer.withUnsafeMutableBytes { buf in
            try check(llamette_decoder_flush(
                handle, buf.baseAddress!.assumingMemoryBound(to: CChar.self), buf.count, &n))
        }
        out += buffer.prefix(n)
    }
}
