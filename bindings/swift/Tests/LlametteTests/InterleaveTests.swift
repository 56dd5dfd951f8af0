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

    /// A quantized model (stories260K as Q8_0, made by test.sh with
    /// `llamette quantize`) opened from its file with `interleave: true` is
    /// loaded for speed by the library: the mapped model's greedy tokens, its
    /// matrices interleaved and the copy's size reported where the kernels
    /// gain from it.
    func testLoadedForSpeedGivesTheMappedTokens() async throws {
        let url = try Fixtures.q8Model()
        let size = UInt64(try Data(contentsOf: url).count)
        let mapped = try LlamaModel(contentsOf: url)
        XCTAssertEqual(mapped.info.ownedBytes, 0)
        XCTAssertEqual(mapped.interleavedMatrices, 0)
        let fast = try LlamaModel(contentsOf: url, interleave: true)
        if LlamaModel.interleavedKernels {
            XCTAssertEqual(fast.info.ownedBytes, size)
            XCTAssertGreaterThan(fast.interleavedMatrices, 0)
        } else {
            XCTAssertEqual(fast.interleavedMatrices, 0)
        }
        let (want, wantText) = try await greedy(mapped)
        let (got, gotText) = try await greedy(fast)
        XCTAssertGreaterThan(want.count, 100)
        XCTAssertEqual(got, want)
        XCTAssertEqual(gotText, wantText)
        print("Q8_0 stories260K, interleave: \(fast.info.ownedBytes) bytes owned by the library,",
              "\(fast.interleavedMatrices) matrices interleaved, the mapped model's \(want.count) tokens")
    }
}
