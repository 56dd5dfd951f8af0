import Foundation
import XCTest

@testable import Llamette

/// Where the test files are: LLAMETTE_TEST_MODELS (the repository's models/),
/// LLAMETTE_TEST_DATA (../shared/testdata), LLAMETTE_TEST_SLOW_MODEL (a
/// synthetic 110M model made by test.sh); by default relative to this file.
enum Fixtures {
    static let env = ProcessInfo.processInfo.environment
    /// bindings/swift/Tests/LlametteTests/Fixtures.swift -> the repository.
    static let repo = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    static let models = env["LLAMETTE_TEST_MODELS"].map { URL(fileURLWithPath: $0) }
        ?? repo.appendingPathComponent("models")
    static let testdata = env["LLAMETTE_TEST_DATA"].map { URL(fileURLWithPath: $0) }
        ?? repo.deletingLastPathComponent().appendingPathComponent("shared/testdata")

    /// ../shared/models, beside LLAMETTE_TEST_DATA (../shared/testdata).
    static let sharedModels = testdata.deletingLastPathComponent().appendingPathComponent("models")

    static let stories260K = models.appendingPathComponent("stories260K.bin")
    /// stories260K as a GGUF file (F32, its vocabulary inside).
    static let stories260KGGUF = sharedModels.appendingPathComponent("stories260K.gguf")
    static let tok512 = models.appendingPathComponent("tok512.bin")
    /// run.c's `-t 0 -n 256` output.
    static let greedyText = testdata.appendingPathComponent("stories260K.greedy.txt")
    /// The tokens run.c fed at each of the 256 positions, BOS first.
    static let greedyIDs = testdata.appendingPathComponent("stories260K.greedy.ids.txt")
    /// run.c's `-t 0.8 -p 0.9 -s 42 -n 200 -i "Tom and his dog"` output.
    static let tomText = testdata.appendingPathComponent("stories260K.t0.8-p0.9-s42.tom-and-his-dog.txt")

    static func slowModel() throws -> URL {
        guard let path = env["LLAMETTE_TEST_SLOW_MODEL"], FileManager.default.fileExists(atPath: path) else {
            throw XCTSkip("LLAMETTE_TEST_SLOW_MODEL is not set (test.sh makes it with `llamette synth`)")
        }
        return URL(fileURLWithPath: path)
    }

    /// stories260K quantized to Q8_0 (LLAMETTE_TEST_Q8_MODEL, made by test.sh
    /// with `llamette quantize`).
    static func q8Model() throws -> URL {
        guard let path = env["LLAMETTE_TEST_Q8_MODEL"], FileManager.default.fileExists(atPath: path) else {
            throw XCTSkip("LLAMETTE_TEST_Q8_MODEL is not set (test.sh makes it with `llamette quantize`)")
        }
        return URL(fileURLWithPath: path)
    }

    /// stories260K from its files, memory-mapped.
    static func model() throws -> LlamaModel {
        try LlamaModel(contentsOf: stories260K, tokenizer: tok512)
    }
}

/// Everything a stream yields, in order.
func collect<S: AsyncSequence>(_ stream: S) async throws -> [S.Element] {
    var all: [S.Element] = []
    for try await x in stream { all.append(x) }
    return all
}

/// Seconds since `start`.
func seconds(since start: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
}

/// A one-shot signal from a consuming task to the test.
final class Signal: @unchecked Sendable {
    private let lock = NSLock()
    private var fired = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func fire() {
        lock.lock()
        fired = true
        let w = waiters
        waiters = []
        lock.unlock()
        for k in w { k.resume() }
    }

    func wait() async {
        await withCheckedContinuation { (k: CheckedContinuation<Void, Never>) in
            lock.lock()
            if fired {
                lock.unlock()
                k.resume()
            } else {
                waiters.append(k)
                lock.unlock()
            }
        }
    }
}

/// A counter shared with a consuming task.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func increment() -> Int {
        lock.lock()
        defer { lock.unlock() }
        n += 1
        return n
    }
    var value: Int {
        lock.lock()
        defer { lock.unlock() }
        return n
    }
}
