import Foundation
import XCTest

@testable import Llamette

/// One model, shared: sessions in concurrent tasks give the tokens of one.
final class ConcurrencyTests: XCTestCase {
    struct Outcome: Sendable {
        var tokens: [TokenID]
        var start: Double
        var end: Double
    }

    static func run(_ model: LlamaModel, _ prompt: String, _ options: GenerationOptions, since t0: DispatchTime)
        async throws -> Outcome
    {
        let session = try Session(model: model, contextLength: 256)
        let start = seconds(since: t0)
        var tokens: [TokenID] = []
        for try await t in session.generateTokens(prompt, options: options) { tokens.append(t.id) }
        return Outcome(tokens: tokens, start: start, end: seconds(since: t0))
    }

    func testTwoSessionsOnOneModelInConcurrentTasks() async throws {
        let model = try Fixtures.model()
        let cases: [(String, String, GenerationOptions)] = [
            ("greedy", "", .greedy),
            ("sampled", "Tom and his dog", GenerationOptions(temperature: 0.8, topP: 0.9, seed: 42)),
        ]
        for (name, prompt, options) in cases {
            let t0 = DispatchTime.now()
            let alone = try await Self.run(model, prompt, options, since: t0)
            let t1 = DispatchTime.now()
            let both = try await withThrowingTaskGroup(of: Outcome.self) { group in
                for _ in 0..<2 {
                    group.addTask { try await Self.run(model, prompt, options, since: t1) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let overlap = min(both[0].end, both[1].end) - max(both[0].start, both[1].start)
            print("\(name): one session \(alone.tokens.count) tokens in",
                  "\(String(format: "%.1f", alone.end * 1000)) ms; two concurrent sessions:",
                  both.map { "\($0.tokens.count) tokens, \(String(format: "%.1f-%.1f", $0.start * 1000, $0.end * 1000)) ms" },
                  "(overlap \(String(format: "%.1f", max(overlap, 0) * 1000)) ms)")
            XCTAssertEqual(both[0].tokens, alone.tokens, name)
            XCTAssertEqual(both[1].tokens, alone.tokens, name)
            XCTAssertGreaterThan(alone.tokens.count, 100)
        }
    }

    /// Many tasks, one model, each its own session, all at once.
    func testEightSessionsInParallel() async throws {
        let model = try Fixtures.model()
        let options = GenerationOptions(maxTokens: 64, temperature: 0.9, seed: 3)
        let reference = try await collect(Session(model: model).generateTokens("Lily", options: options)).map(\.id)
        let results = try await withThrowingTaskGroup(of: [TokenID].self) { group in
            for _ in 0..<8 {
                group.addTask {
                    try await collect(Session(model: model).generateTokens("Lily", options: options)).map(\.id)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        XCTAssertEqual(results.count, 8)
        for r in results { XCTAssertEqual(r, reference) }
    }
}
