// SPDX-License-Identifier: MIT OR Apache-2.0
import CLlamette

/// How to generate: when to stop and how to sample (`llamette_sampler_params`).
///
/// The defaults are llama2.c's: temperature 1, top-p 0.9, no top-k, no
/// min-p, no repetition penalty, seed 0 (a fixed constant). With `topK = 0`,
/// `minP = 0` and `repeatPenalty = 1` the sampler is llama2.c `run.c`'s, bit
/// for bit.
public struct GenerationOptions: Sendable, Hashable {
    /// The most tokens to generate; nil for no limit (generation then stops
    /// at an end token or when the session's context is full); 0 feeds the
    /// prompt and generates nothing.
    public var maxTokens: Int?
    /// Divides the logits; 0 means greedy (always the most likely token).
    public var temperature: Float
    /// Nucleus sampling: keep the most likely tokens whose mass first
    /// exceeds `topP`; values outside (0, 1) keep all.
    public var topP: Float
    /// Keep only the `topK` most likely tokens; 0 keeps all.
    public var topK: Int
    /// Drop tokens less likely than `minP` times the most likely; 0 keeps all.
    public var minP: Float
    /// Penalty on the last `repeatLastN` tokens; 1 is off.
    public var repeatPenalty: Float
    /// How many recent tokens the penalty looks at.
    public var repeatLastN: Int
    /// Seed of the random generator (xorshift, as llama2.c); 0 stands for a
    /// fixed constant. The sampler is seeded at the first generation after
    /// the session is made or reset, and whenever the seed changes.
    public var seed: UInt64
    /// Stop strings for ``ChatSession`` replies (at most 8, each 1 to 64
    /// bytes of UTF-8): the reply stops when its text completes one; the
    /// text before it is yielded, the stop string never is, and a match
    /// split over several tokens is found.
    public var stopStrings: [String] = []

    /// llama2.c's defaults, with the given changes.
    public init(
        maxTokens: Int? = nil, temperature: Float? = nil, topP: Float? = nil, topK: Int? = nil,
        minP: Float? = nil, repeatPenalty: Float? = nil, repeatLastN: Int? = nil, seed: UInt64? = nil,
        stopStrings: [String] = []
    ) {
        self.stopStrings = stopStrings
        var d = llamette_sampler_params()
        d.struct_size = MemoryLayout<llamette_sampler_params>.size
        _ = llamette_sampler_params_default(&d)
        self.maxTokens = maxTokens
        self.temperature = temperature ?? d.temperature
        self.topP = topP ?? d.top_p
        self.topK = topK ?? Int(d.top_k)
        self.minP = minP ?? d.min_p
        self.repeatPenalty = repeatPenalty ?? d.repeat_penalty
        self.repeatLastN = repeatLastN ?? Int(d.repeat_last_n)
        self.seed = seed ?? d.seed
    }

    /// Greedy decoding: always the most likely token (run.c's `-t 0`).
    public static var greedy: GenerationOptions { GenerationOptions(temperature: 0) }

    var samplerParams: llamette_sampler_params {
        func u32(_ v: Int) -> UInt32 { UInt32(clamping: v) }
        return llamette_sampler_params(
            struct_size: MemoryLayout<llamette_sampler_params>.size,
            temperature: temperature, top_k: u32(topK), top_p: topP, min_p: minP,
            repeat_penalty: repeatPenalty, repeat_last_n: u32(repeatLastN), seed: seed)
    }

    /// `max_tokens` for the C call: 0 is no limit.
    var maxTokensParam: UInt32 {
        guard let maxTokens else { return 0 }
        return UInt32(clamping: max(maxTokens, 0))
    }
}

/// One generated token and the text it completes (whole UTF-8 characters:
/// empty while a character split over several byte tokens is incomplete).
public struct GeneratedToken: Sendable, Hashable {
    public var id: TokenID
    public var text: String

    public init(id: TokenID, text: String) {
        self.id = id
        self.text = text
    }
}
