import XCTest

@testable import Llamette

/// Sessions sized by a memory budget rather than a context length.
final class BudgetTests: XCTestCase {
    func testABudgetGivesTheLargestSessionThatFits() throws {
        let model = try Fixtures.model()
        let budget = 250_000
        for kv in [KVCacheType.f32, .f16, .q8_0] {
            let fit = try Session.fitting(model: model, memoryBudget: budget, kvCache: kv)
            let bytes = try Session.requiredBytes(
                model: model, contextLength: fit.contextLength, kvCache: kv, batch: fit.batch)
            print("\(kv) in \(budget) bytes: context \(fit.contextLength), batch \(fit.batch), \(bytes) bytes")
            XCTAssertLessThanOrEqual(bytes, budget)
            XCTAssertGreaterThanOrEqual(fit.contextLength, 1)
            // One position more does not fit (unless it is the whole context).
            if fit.contextLength < 512 {
                let more = try Session.requiredBytes(
                    model: model, contextLength: fit.contextLength + 1, kvCache: kv, batch: 1)
                XCTAssertGreaterThan(more, budget)
            }
            let session = try Session(model: model, memoryBudget: budget, kvCache: kv)
            XCTAssertEqual(session.contextLength, fit.contextLength)
        }
        // Q8_0 holds more positions than F32 in the same bytes.
        let q8 = try Session.fitting(model: model, memoryBudget: budget, kvCache: .q8_0)
        let f32 = try Session.fitting(model: model, memoryBudget: budget, kvCache: .f32)
        XCTAssertGreaterThan(q8.contextLength, f32.contextLength)
    }

    func testATooSmallBudgetThrows() throws {
        let model = try Fixtures.model()
        XCTAssertThrowsError(try Session.fitting(model: model, memoryBudget: 1000)) { error in
            XCTAssertEqual((error as? LlametteError)?.code, .bufferTooSmall)
        }
        XCTAssertThrowsError(try Session(model: model, memoryBudget: -1)) { error in
            XCTAssertEqual((error as? LlametteError)?.code, .invalidArgument)
        }
    }
}
