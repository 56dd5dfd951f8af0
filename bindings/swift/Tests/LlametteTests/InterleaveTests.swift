import CLlamette
import Foundation
import XCTest

@testable import Llamette

/// Interleaved matrices (`llamette_repack_in_place`) through `interleave:
/// true`. stories260K.gguf is F32, so nothing is rewritten: these check the
/// plumbing (copy, repack, open on the same bytes) against the plain open.
final class InterleaveTests: XCTestCase {
    func testKernelsInterleavedIsZeroOrOne() {
        let raw = llamette_kernels_interleaved()
        print("llamette_kernels_interleaved() = \(raw); LlamaModel.interleavedKernels = \(LlamaModel.interleavedKernels)")
        XCTAssert(raw == 0 || raw == 1, "llamette_kernels_interleaved() = \(raw)")
        XCTAssertEqual(LlamaModel.interleavedKernels, raw != 0)
    }

    /// Greedy token ids and text of a 256-position session.
    func greedy(_ model: LlamaModel) async throws -> ([TokenID], String) {
        let tokens = try await collect(Session(model: model, contextLength: 256).generateTokens("", options: .greedy))
        let text = try await collect(Session(model: model, contextLength: 256).generate("", options: .greedy)).joined()
        return (tokens.map(\.id), text)
    }

    func testInterleavedGGUFGivesThePlainOpensText() async throws {
        let gguf = try Data(contentsOf: Fixtures.stories260KGGUF)
        let expected = try String(contentsOf: Fixtures.greedyText, encoding: .utf8)
        let plain = try LlamaModel(data: gguf)
        XCTAssertEqual(plain.interleavedMatrices, 0)
        let (plainTokens, plainText) = try await greedy(plain)
        XCTAssertEqual(plainText + "\n", expected, "the plain open gives run.c's text")
        XCTAssertEqual(plainTokens.count, 256)

        let opened: [(String, LlamaModel)] = [
            ("Data, interleave", try LlamaModel(data: gguf, interleave: true)),
            ("[UInt8], interleave", try LlamaModel(bytes: Array(gguf), interleave: true)),
            ("file URL, interleave", try LlamaModel(contentsOf: Fixtures.stories260KGGUF, interleave: true)),
        ]
        for (name, model) in opened {
            XCTAssertEqual(model.info.format, .ggufV3, name)
            XCTAssertEqual(model.interleavedMatrices, 0, "\(name): an F32 model has nothing to interleave")
            let (tokens, text) = try await greedy(model)
            XCTAssertEqual(tokens, plainTokens, name)
            XCTAssertEqual(text, plainText, name)
        }
        XCTAssertEqual(gguf, try Data(contentsOf: Fixtures.stories260KGGUF), "the caller's Data is unchanged")

        // A llama2.c model with its tokenizer is left as it is.
        let bin = try LlamaModel(contentsOf: Fixtures.stories260K, tokenizer: Fixtures.tok512, interleave: true)
        XCTAssertEqual(bin.info.format, .llama2cV0)
        XCTAssertEqual(bin.interleavedMatrices, 0)
        let (_, binText) = try await greedy(bin)
        XCTAssertEqual(binText + "\n", expected, ".bin, interleave")
        print("stories260K.gguf with interleave (interleaved kernels: \(LlamaModel.interleavedKernels)):",
              "0 matrices rewritten, the plain open's \(plainTokens.count) tokens")
    }
}
