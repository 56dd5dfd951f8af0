import CLlamette
import Foundation
import XCTest

@testable import Llamette

/// Cancelling the consuming task stops generation promptly, through the C
/// ABI's cancellation when it is inside the model; the session is usable
/// again afterwards.
final class CancellationTests: XCTestCase {
    /// The greedy reference must come out of `session` (after a reset).
    func assertReference(_ session: Session, file: StaticString = #filePath, line: UInt = #line) async throws {
        try session.reset()
        let text = try await collect(session.generate(
            "", options: GenerationOptions(maxTokens: 256, temperature: 0))).joined() + "\n"
        XCTAssertEqual(Data(text.utf8), try Data(contentsOf: Fixtures.greedyText), file: file, line: line)
    }

    /// A consumer that takes 5 pieces and is then cancelled: generation
    /// stops within the few tokens it runs ahead; the session then gives
    /// run.c's text again.
    func testCancellingTheConsumingTaskStopsGeneration() async throws {
        let model = try Fixtures.model()
        let options = GenerationOptions(temperature: 1, seed: 7)
        let prompt = "Once upon a time"
        let promptTokens = try model.tokenizer.encode(prompt).count
        let full = try await collect(Session(model: model).generateTokens(prompt, options: options)).count

        let session = try Session(model: model)
        let gotFive = Signal()
        let received = Counter()
        let task = Task {
            for try await _ in session.generate(prompt, options: options) {
                if received.increment() == 5 { gotFive.fire() }
            }
        }
        await gotFive.wait()
        let t0 = DispatchTime.now()
        task.cancel()
        // What the consumer had taken when the cancel was made (on a loaded
        // machine this task may wake up pieces after the fifth; once the
        // task is cancelled its loop takes no more).
        let atCancel = received.value
        try await task.value  // the stream ends quietly
        let ended = seconds(since: t0)
        let position = try session.position()
        let generated = position - promptTokens + 1
        print("cancel after 5 pieces: the loop ended in \(String(format: "%.3f", ended * 1000)) ms;",
              "\(atCancel) pieces taken at the cancel, \(received.value) in all,",
              "about \(generated) tokens generated (uncancelled: \(full))")
        // The consumer runs on while this task wakes up to cancel it: the
        // promise is that generation stops within the tokens it runs ahead
        // of the consumer at the time of the cancel.
        XCTAssertGreaterThanOrEqual(atCancel, 5)
        XCTAssertLessThanOrEqual(received.value, generated)
        XCTAssertGreaterThan(full, 100)
        XCTAssertLessThanOrEqual(generated, atCancel + Run.lookahead + 2)
        try await assertReference(session)
    }

    /// A long prompt is cancelled inside the library's prefill (the
    /// callback cannot stop that): whole batches are kept, the session is
    /// free again within one layer's work, and usable.
    func testCancelDuringPrefillStopsInsideTheLibrary() async throws {
        let model = try Fixtures.model()
        var story = ""
        while try model.tokenizer.encode(story).count < 470 {
            story += "Once upon a time, there was a little girl named Lily. She loved to play outside. "
        }
        let promptTokens = try model.tokenizer.encode(story).count

        // How long the whole prefill takes here.
        let probe = try Session(model: model)
        let p0 = DispatchTime.now()
        _ = try await collect(probe.generateTokens(story, options: GenerationOptions(maxTokens: 0)))
        let prefillTime = seconds(since: p0)
        XCTAssertEqual(try probe.position(), promptTokens)

        let session = try Session(model: model)
        let task = Task { try await collect(session.generate(story)) }
        while !session.isGenerating { try await Task.sleep(nanoseconds: 100_000) }  // it has started
        try await Task.sleep(nanoseconds: UInt64(prefillTime * 0.15 * 1e9))
        let t0 = DispatchTime.now()
        task.cancel()
        let pieces = try await task.value
        let position = try session.position()  // waits for the generation thread
        let idle = seconds(since: t0)
        print("prefill of \(promptTokens) tokens takes \(String(format: "%.1f", prefillTime * 1000)) ms;",
              "cancelled at 15%: session free after \(String(format: "%.2f", idle * 1000)) ms,",
              "\(position) positions kept, \(session.libraryCancellations) cancellation in the library")
        XCTAssertEqual(pieces, [])
        XCTAssertLessThan(position, promptTokens)
        XCTAssertEqual(position % 32, 0, "whole batches")
        XCTAssertEqual(session.libraryCancellations, 1)
        XCTAssertLessThan(idle, prefillTime * 0.5)

        // Usable again: it continues with new input, and resets.
        let more = try await collect(session.generate(" The end.", options: GenerationOptions(maxTokens: 10, seed: 1)))
        XCTAssertFalse(more.isEmpty)
        try await assertReference(session)
    }

    /// On a model slow enough that a token takes milliseconds (a synthetic
    /// 110M model), a cancel lands inside a token: the session is free
    /// again in a fraction of a token's time.
    func testCancelInsideATokenOfALargeModel() async throws {
        let model = try LlamaModel(contentsOf: Fixtures.slowModel())
        let session = try Session(model: model, contextLength: 256)
        let got = Signal()
        let times = TimeLog()
        let task = Task {
            for try await _ in session.generateTokens("Once upon a time", options: .greedy) {
                if times.add() == 6 { got.fire() }
            }
        }
        await got.wait()
        let perToken = times.medianInterval()
        let t0 = DispatchTime.now()
        task.cancel()
        try await task.value
        let position = try session.position()
        let idle = seconds(since: t0)
        print("110M model: \(String(format: "%.1f", perToken * 1000)) ms a token; cancelled after 6 tokens:",
              "session free after \(String(format: "%.2f", idle * 1000)) ms,",
              "position \(position), \(session.libraryCancellations) cancellation in the library")
        XCTAssertEqual(session.libraryCancellations, 1)
        // Within a token's time, with a token's slack for the wake-up of
        // the awaiting task on a loaded machine (CI runs the suites beside
        // other work); a cancel that waited for the generation to end would
        // take hundreds of tokens.
        XCTAssertLessThan(idle, 2 * perToken)
        // Usable again: it continues after new input.
        let again = try await collect(session.generateTokens(" and", options: GenerationOptions(maxTokens: 3)))
        XCTAssertEqual(again.count, 3)
    }

    /// Leaving the loop early (the stream is dropped) stops generation too.
    func testLeavingTheLoopStopsGeneration() async throws {
        let model = try Fixtures.model()
        let session = try Session(model: model)
        var n = 0
        for try await _ in session.generate("Once upon a time", options: .greedy) {
            n += 1
            if n == 3 { break }
        }
        let position = try session.position()
        print("left the loop after 3 pieces: position \(position)")
        XCTAssertLessThanOrEqual(position, 5 + 3 + Run.lookahead + 1)
        try await assertReference(session)
    }

    /// A stream dropped before it is read stops its generation; a task
    /// cancelled before it reads gets nothing from its stream (generation
    /// started at once and ran a few tokens ahead: those are dropped), and
    /// its generation stops.
    ///
    /// "Before it reads" is made sure of: a `Task {}` may start, and read a
    /// piece, before `task.cancel()` runs on the test's thread (an earlier
    /// form of this test asserted that race and failed on a busy machine).
    func testStreamsThatAreNeverReadStop() async throws {
        let session = try Session(model: try Fixtures.model())
        let prompt = "Once upon a time"
        _ = session.generate(prompt)
        let cancelled = Signal()
        let task = Task {
            let stream = session.generate(prompt)
            await cancelled.wait()  // the task is cancelled by now
            return try await collect(stream)
        }
        task.cancel()
        cancelled.fire()
        let pieces = try await task.value
        XCTAssertEqual(pieces, [])
        // Both generations stopped within their look-ahead (a context of
        // 512 would have been filled otherwise).
        let promptTokens = try session.model.tokenizer.encode(prompt).count
        let position = try session.position()
        print("two unread streams: position \(position)")
        XCTAssertLessThanOrEqual(position, 2 * (promptTokens + Run.lookahead + 2))
        try await assertReference(session)
    }

    /// A stop can reach the library just after its call has finished; the
    /// request then waits for the next call (the C ABI's rule). The next
    /// generation consumes it and goes on as if it had not been there.
    func testALeftoverCancellationRequestIsHarmless() async throws {
        let session = try Session(model: try Fixtures.model())
        XCTAssertEqual(llamette_session_cancel(session.handle), UInt32(LLAMETTE_STATUS_OK))  // as a late stop would
        let text = try await collect(session.generate(
            "", options: GenerationOptions(maxTokens: 256, temperature: 0))).joined() + "\n"
        XCTAssertEqual(Data(text.utf8), try Data(contentsOf: Fixtures.greedyText))
        XCTAssertEqual(session.libraryCancellations, 0)

        // The same between a prefill and the generation that continues it.
        let greedy = GenerationOptions(maxTokens: 20, temperature: 0)
        let one = try await collect(Session(model: session.model).generateTokens("Lily", options: greedy))
        try session.reset()
        _ = try await collect(session.generateTokens("Lily", options: GenerationOptions(maxTokens: 0)))
        _ = llamette_session_cancel(session.handle)
        let rest = try await collect(session.generateTokens("", options: greedy))
        XCTAssertEqual(rest.map(\.id), one.map(\.id))
    }

    /// Threads do not change the tokens; cancellation works with them.
    func testThreadsGiveTheSameText() async throws {
        let session = try Session(model: try Fixtures.model(), threads: 2)
        try await assertReference(session)
        try session.setThreads(0)
        try await assertReference(session)
    }

    /// One task at a time: a synchronous call during a running generation
    /// throws `.busy`; a second generation waits for the first, and the two
    /// give the tokens of one.
    func testOneGenerationAtATime() async throws {
        let model = try Fixtures.model()
        let greedy30 = GenerationOptions(maxTokens: 30, temperature: 0)
        let one = try await collect(Session(model: model).generateTokens("Once upon a time", options: greedy30))

        let session = try Session(model: model)
        var a = session.generateTokens("Once upon a time", options: GenerationOptions(maxTokens: 10, temperature: 0))
            .makeAsyncIterator()
        var tokens = [try await a.next()!]
        XCTAssertThrowsError(try session.position()) { error in
            XCTAssertEqual((error as? LlametteError)?.code, .busy)
            print("position() during a generation: \(error)")
        }
        let b = session.generateTokens("", options: GenerationOptions(maxTokens: 20, temperature: 0))
        while let t = try await a.next() { tokens.append(t) }
        tokens += try await collect(b)
        XCTAssertEqual(tokens.map(\.id), one.map(\.id))
    }
}

/// Arrival times of tokens.
final class TimeLog: @unchecked Sendable {
    private let lock = NSLock()
    private var times: [DispatchTime] = []

    func add() -> Int {
        lock.lock()
        defer { lock.unlock() }
        times.append(.now())
        return times.count
    }

    /// The median time between two tokens, in seconds (the first excluded:
    /// it includes the prompt).
    func medianInterval() -> Double {
        lock.lock()
        defer { lock.unlock() }
        let d = zip(times.dropFirst(2), times.dropFirst()).map {
            Double($0.uptimeNanoseconds - $1.uptimeNanoseconds) / 1e9
        }.sorted()
        return d[d.count / 2]
    }
}
