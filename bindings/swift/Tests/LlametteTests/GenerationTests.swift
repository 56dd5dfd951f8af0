import Foundation
import XCTest

@testable import Llamette

/// Generation through the Swift API reproduces llama2.c's run.c.
final class GenerationTests: XCTestCase {
    /// run.c -t 0 -n 256: the pieces of a session of 256 positions, joined,
    /// plus run.c's final newline, are its output byte for byte.
    func testGreedyTextIsRunCsByteForByte() async throws {
        let expected = try Data(contentsOf: Fixtures.greedyText)
        let model = try Fixtures.model()
        let session = try Session(model: model, contextLength: 256)
        var text = ""
        var pieces = 0
        for try await piece in session.generate("", options: .greedy) {
            text += piece
            pieces += 1
        }
        text += "\n"
        let position = try session.position()
        print("greedy: \(pieces) pieces, \(text.utf8.count) bytes, position \(position);",
              "run.c's file: \(expected.count) bytes")
        XCTAssertEqual(Data(text.utf8), expected)
        XCTAssertEqual(position, 256)
    }

    /// The same text from a model opened from Data and from the one
    /// compiled into the library.
    func testGreedyTextFromDataAndEmbeddedModel() async throws {
        let expected = try String(contentsOf: Fixtures.greedyText, encoding: .utf8)
        let fromData = try LlamaModel(
            data: Data(contentsOf: Fixtures.stories260K), tokenizerData: Data(contentsOf: Fixtures.tok512))
        let embedded = try LlamaModel.embedded()
        for (name, model) in [("Data", fromData), ("embedded", embedded)] {
            let session = try Session(model: model, contextLength: 256)
            let text = try await collect(session.generate("", options: .greedy)).joined() + "\n"
            print("greedy from \(name): \(text.utf8.count) bytes, equal to run.c's: \(text == expected)")
            XCTAssertEqual(Data(text.utf8), Data(expected.utf8), name)
        }
    }

    /// The token ids are the ones run.c fed, BOS first.
    func testGreedyTokensAreRunCs() async throws {
        let ids = try String(contentsOf: Fixtures.greedyIDs, encoding: .utf8)
            .split(whereSeparator: { $0 == " " || $0 == "\n" }).map { TokenID($0)! }
        let session = try Session(model: try Fixtures.model(), contextLength: 256)
        let tokens = try await collect(session.generateTokens("", options: .greedy))
        print("greedy tokens: \(tokens.count) generated; run.c fed \(ids.count) positions;",
              "first: \(tokens.prefix(8).map(\.id))")
        // The last sampled token is never fed (the context is full).
        XCTAssertEqual(tokens.count, 256)
        XCTAssertEqual([1] + tokens.prefix(255).map(\.id), ids)
    }

    /// run.c -t 0.8 -p 0.9 -s 42 -n 200 -i "Tom and his dog": the prompt as
    /// run.c echoes it, the sampled pieces, a newline.
    func testSampledTextIsRunCs() async throws {
        let expected = try Data(contentsOf: Fixtures.tomText)
        let model = try Fixtures.model()
        let prompt = "Tom and his dog"
        let session = try Session(model: model, contextLength: 200)
        let options = GenerationOptions(temperature: 0.8, topP: 0.9, seed: 42)
        let echo = try model.tokenizer.decode(model.tokenizer.encode(prompt))
        let text = try await echo + collect(session.generate(prompt, options: options)).joined() + "\n"
        print("sampled (t 0.8, p 0.9, seed 42): \(text.utf8.count) bytes: \(text.prefix(60).debugDescription)...")
        XCTAssertEqual(Data(text.utf8), expected)
    }

    /// Streamed pieces are whole UTF-8 characters: joined, they are the
    /// decoder's text for the same tokens. At temperature 10 the sampling
    /// is nearly uniform over stories260K's 512 tokens, half of them byte
    /// tokens: characters spelled over several tokens come out whole with
    /// the token that completes them (the tokens before have empty text),
    /// stray bytes as U+FFFD.
    func testStreamedPiecesAreWholeUTF8() async throws {
        let model = try Fixtures.model()
        var total = 0
        var heldBack = 0
        var replacements = 0
        var assembled: [Character] = []
        for seed in UInt64(1)...10 {
            // A whole context (512 positions) of nearly uniform sampling.
            let session = try Session(model: model)
            let options = GenerationOptions(temperature: 10, topP: 1, seed: seed)
            var tokens: [GeneratedToken] = []
            for try await t in session.generateTokens("", options: options) {
                if tokens.last?.text.isEmpty == true, let c = t.text.first,
                   c.unicodeScalars.first!.value >= 0x80, c != "\u{FFFD}"
                {
                    assembled.append(c)
                }
                tokens.append(t)
            }
            let joined = tokens.map(\.text).joined()
            let decoded = try model.tokenizer.decode([model.tokenizer.bos!] + tokens.map(\.id))
            // decode() ends the text, so a character still incomplete at the
            // end comes out as U+FFFD; a stream has no end.
            XCTAssert(decoded == joined || decoded == joined + "\u{FFFD}", "seed \(seed)")
            total += tokens.count
            heldBack += tokens.filter { $0.text.isEmpty }.count
            replacements += joined.filter { $0 == "\u{FFFD}" }.count
        }
        print("UTF-8: \(total) tokens at temperature 10: \(heldBack) with empty text (part of a character",
              "held back), \(replacements) U+FFFD for stray bytes, \(assembled.count) characters assembled",
              "from byte tokens: \(String(assembled.prefix(12)).debugDescription)")
        XCTAssertGreaterThan(heldBack, 0)
        XCTAssertGreaterThan(assembled.count, 0)

        // Byte-fallback tokens become whole characters.
        let text = "Café naïve: 🐶 日本語 ü"
        let ids = try model.tokenizer.encode(text, addBOS: true)
        let pieces = try ids.map { try model.tokenizer.pieceBytes($0) }
        print("\(text.debugDescription): \(ids.count) tokens, \(pieces.filter { $0.count == 1 && $0[0] >= 0x80 }.count) byte tokens")
        XCTAssertEqual(try model.tokenizer.decode(ids), text)
    }

    /// Tokenizer access through the session.
    func testTokenizer() throws {
        let session = try Session(model: try Fixtures.model())
        let tok = session.tokenizer
        let ids = try tok.encode("Once upon a time", addBOS: true)
        print("\"Once upon a time\" -> \(ids)")
        XCTAssertEqual(ids.first, 1)
        XCTAssertEqual(tok.bos, 1)
        XCTAssertEqual(tok.eos, 2)
        XCTAssertEqual(try tok.decode(ids), "Once upon a time")
        XCTAssertEqual(try tok.encode("", addBOS: false), [])
        XCTAssertEqual(String(decoding: try tok.pieceBytes(ids[1]), as: UTF8.self).trimmingCharacters(in: .whitespaces),
                       "Once")
        XCTAssertThrowsError(try tok.pieceBytes(100_000)) { error in
            XCTAssertEqual((error as? LlametteError)?.code, .unknownToken)
        }
    }

    /// The model's info, and the session's context.
    func testModelInfo() throws {
        let model = try LlamaModel.embedded()
        let info = model.info
        print("embedded: \(info.format), dim \(info.dim), \(info.layers) layers, \(info.heads)/\(info.kvHeads) heads,",
              "vocab \(info.vocabSize), context \(info.contextLength), \(info.parameters) parameters;",
              "library \(LlamaModel.libraryVersion)")
        XCTAssertEqual(info.format, .llama2cV0)
        XCTAssertEqual(info.dim, 64)
        XCTAssertEqual(info.vocabSize, 512)
        XCTAssertEqual(info.contextLength, 512)
        XCTAssertEqual(info.bosToken, 1)
        XCTAssertTrue(info.hasTokenizer)
        XCTAssertEqual(try Session(model: model).contextLength, 512)
        XCTAssertEqual(try Session(model: model, contextLength: 100).contextLength, 100)
    }

    /// Generation continues a conversation: two calls give the tokens of one.
    func testGenerationContinues() async throws {
        let model = try Fixtures.model()
        let one = try await collect(Session(model: model).generateTokens(
            "Once upon a time", options: GenerationOptions(maxTokens: 30, temperature: 0)))
        let session = try Session(model: model)
        let first = try await collect(session.generateTokens(
            "Once upon a time", options: GenerationOptions(maxTokens: 10, temperature: 0)))
        let rest = try await collect(session.generateTokens(
            "", options: GenerationOptions(maxTokens: 20, temperature: 0)))
        XCTAssertEqual((first + rest).map(\.id), one.map(\.id))
        XCTAssertEqual(try session.position(), 5 + 29)  // BOS + 4 prompt tokens, 29 of 30 fed
    }

    /// A session keeps its model alive; the model goes with its last session.
    func testSessionKeepsItsModelAlive() async throws {
        weak var weakModel: LlamaModel?
        var session: Session? = try {
            let model = try Fixtures.model()
            weakModel = model
            return try Session(model: model, contextLength: 256)
        }()
        XCTAssertNotNil(weakModel)
        let text = try await collect(session!.generate("", options: .greedy)).joined() + "\n"
        XCTAssertEqual(Data(text.utf8), try Data(contentsOf: Fixtures.greedyText))
        session = nil
        XCTAssertNil(weakModel)
    }
}
