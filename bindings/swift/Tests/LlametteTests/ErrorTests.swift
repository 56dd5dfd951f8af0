import CLlamette
import Foundation
import XCTest

@testable import Llamette

/// Failures become `LlametteError`s with the library's status and message.
final class ErrorTests: XCTestCase {
    func assertThrows(_ code: LlametteError.Code, _ what: String, _ body: () throws -> some Any,
                      file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), what, file: file, line: line) { error in
            guard let e = error as? LlametteError else {
                return XCTFail("\(what): not a LlametteError: \(error)", file: file, line: line)
            }
            print("\(what): \(e)")
            XCTAssertEqual(e.code, code, what, file: file, line: line)
            XCTAssertEqual(e.status, code.rawValue, file: file, line: line)
            XCTAssertFalse(e.message.isEmpty, "\(what): the library's message", file: file, line: line)
        }
    }

    func temporaryFile(_ bytes: Data) throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("llamette-swift-\(UUID().uuidString).bin")
        try bytes.write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    func testMissingModelThrows() {
        let missing = URL(fileURLWithPath: "/nonexistent/llamette/model.gguf")
        assertThrows(.io, "missing model") { try LlamaModel(contentsOf: missing) }
        assertThrows(.io, "missing tokenizer") {
            try LlamaModel(contentsOf: Fixtures.stories260K,
                           tokenizer: URL(fileURLWithPath: "/nonexistent/llamette/tokenizer.bin"))
        }
        XCTAssertThrowsError(try LlamaModel(contentsOf: missing)) { error in
            XCTAssert((error as! LlametteError).message.contains("/nonexistent/llamette/model.gguf"),
                      "the message names the file")
        }
        assertThrows(.invalidArgument, "not a file URL") {
            try LlamaModel(contentsOf: URL(string: "https://example.com/model.gguf")!)
        }
    }

    /// Every C struct starts with its `struct_size`: the library refuses one
    /// below the first version's and writes nothing; a larger one (a later
    /// header's) is filled as far as the library knows it.
    func testStructSizesAreChecked() throws {
        let model = try Fixtures.model()
        var info = llamette_model_info()
        info.struct_size = 4
        info.dim = 777
        XCTAssertEqual(llamette_model_get_info(model.handle, &info), UInt32(LLAMETTE_STATUS_INVALID_ARGUMENT))
        XCTAssert(String(cString: llamette_last_error()).contains("struct_size"))
        XCTAssertEqual(info.dim, 777)
        let size = MemoryLayout<llamette_model_info>.size
        let raw = UnsafeMutableRawPointer.allocate(byteCount: size + 16, alignment: 16)
        defer { raw.deallocate() }
        raw.initializeMemory(as: UInt8.self, repeating: 0xAB, count: size + 16)
        raw.storeBytes(of: size + 16, as: Int.self)
        XCTAssertEqual(llamette_model_get_info(model.handle, raw.assumingMemoryBound(to: llamette_model_info.self)),
                       UInt32(LLAMETTE_STATUS_OK))
        XCTAssertEqual(raw.load(as: llamette_model_info.self).dim, UInt32(model.info.dim))
        XCTAssertEqual((size..<size + 16).map { raw.load(fromByteOffset: $0, as: UInt8.self) },
                       Array(repeating: 0xAB, count: 16))
        var sp = GenerationOptions.greedy.samplerParams
        sp.struct_size = 0
        XCTAssertEqual(llamette_sampler_params_default(&sp), UInt32(LLAMETTE_STATUS_INVALID_ARGUMENT))
    }

    func testCorruptModelThrows() throws {
        let model = try Data(contentsOf: Fixtures.stories260K)
        let tokenizer = try Data(contentsOf: Fixtures.tok512)
        let garbage = Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7919 &+ 13) })
        let truncated = model.prefix(model.count / 2)

        assertThrows(.badFile, "garbage bytes (Data)") { try LlamaModel(data: garbage) }
        assertThrows(.badFile, "empty Data") { try LlamaModel(data: Data()) }
        assertThrows(.badFile, "truncated model (Data)") { try LlamaModel(data: truncated, tokenizerData: tokenizer) }
        assertThrows(.badFile, "truncated model file") {
            try LlamaModel(contentsOf: temporaryFile(truncated), tokenizer: Fixtures.tok512)
        }
        assertThrows(.badFile, "GGUF magic, then garbage") {
            try LlamaModel(bytes: Array("GGUF".utf8) + [3, 0, 0, 0] + Array(repeating: 0xff, count: 64))
        }
        assertThrows(.badTokenizer, "corrupt tokenizer") {
            try LlamaModel(data: model, tokenizerData: tokenizer.prefix(100))
        }
    }

    /// Half a GGUF file with `interleave: true`: `.badFile`, from `Data` and
    /// from a file URL (the repack, or the open where the CPU has no
    /// interleaved kernels, finds the file short).
    func testTruncatedGGUFWithInterleaveThrowsBadFile() throws {
        let gguf = try Data(contentsOf: Fixtures.stories260KGGUF)
        let half = gguf.prefix(gguf.count / 2)
        assertThrows(.badFile, "half a GGUF, Data, interleave") { try LlamaModel(data: half, interleave: true) }
        assertThrows(.badFile, "half a GGUF, [UInt8], interleave") { try LlamaModel(bytes: Array(half), interleave: true) }
        assertThrows(.badFile, "half a GGUF file, interleave") {
            try LlamaModel(contentsOf: temporaryFile(half), interleave: true)
        }
        assertThrows(.io, "missing model, interleave") {
            try LlamaModel(contentsOf: URL(fileURLWithPath: "/nonexistent/llamette/model.gguf"), interleave: true)
        }
    }

    /// Errors of a generation come out of its stream.
    func testGenerationErrorsAreThrownByTheStream() async throws {
        let model = try Fixtures.model()
        let small = try Session(model: model, contextLength: 8)
        do {
            for try await _ in small.generate("Once upon a time, there was a little girl named Lily.") {}
            XCTFail("no error")
        } catch let e as LlametteError {
            print("prompt longer than the context: \(e)")
            XCTAssertEqual(e.code, .contextFull)
        }
        // The session is fine afterwards.
        let pieces = try await collect(small.generate("Once", options: .greedy))
        XCTAssertFalse(pieces.isEmpty)

        // A llama2.c model without its tokenizer works on token ids only.
        let idsOnly = try LlamaModel(contentsOf: Fixtures.stories260K)
        XCTAssertFalse(idsOnly.info.hasTokenizer)
        let session = try Session(model: idsOnly)
        do {
            for try await _ in session.generate("Once upon a time") {}
            XCTFail("no error")
        } catch let e as LlametteError {
            print("text without a tokenizer: \(e)")
            XCTAssertEqual(e.code, .noTokenizer)
        }
        let tokens = try await collect(session.generateTokens(after: [1], options: GenerationOptions(maxTokens: 20, temperature: 0)))
        let withTokenizer = try await collect(Session(model: model).generateTokens("", options: GenerationOptions(maxTokens: 20, temperature: 0)))
        XCTAssertEqual(tokens.map(\.id), withTokenizer.map(\.id))
        XCTAssertEqual(tokens.map(\.text), Array(repeating: "", count: 20))

        do {
            _ = try Session(model: model, contextLength: 100_000)
            XCTFail("no error")
        } catch let e as LlametteError {
            print("context longer than the model's: \(e)")
            XCTAssertEqual(e.code, .invalidArgument)
        }
    }
}
