import Synchronization
import TockCore
import TockPostgres

/// Sends finished runs to the database in batches: while one `tock.finish_runs` call is in flight, the runs that
/// end meanwhile wait and go together in the next. A lone run goes at once (no timer, no added latency); under
/// load, one commit carries many runs, which is what makes a queue fast (one fsync per batch, not per run).
final class FinishBatcher: Sendable {
    typealias Reply = CheckedContinuation<Result<Bool, TockError>, Never>

    private struct State {
        var waiting: [(run: Int64, outcome: RunOutcome, reply: Reply)] = []
        var sending = false
    }

    private let database: Database
    private let worker: Int64
    private let maxBatch: Int
    private let state = Mutex(State())

    init(database: Database, worker: Int64, maxBatch: Int = 1000) {
        self.database = database
        self.worker = worker
        self.maxBatch = maxBatch
    }

    /// Whether the run was finished (false: it was no longer running on this worker).
    func finish(_ run: Int64, _ outcome: RunOutcome) async throws(TockError) -> Bool {
        let result = await withCheckedContinuation { (reply: Reply) in
            let startSending = state.withLock { state -> Bool in
                state.waiting.append((run, outcome, reply))
                guard !state.sending else { return false }
                state.sending = true
                return true
            }
            if startSending { Task { await self.send() } }
        }
        return try result.get()
    }

    private func send() async {
        while true {
            let batch = state.withLock { state -> [(run: Int64, outcome: RunOutcome, reply: Reply)] in
                let batch = Array(state.waiting.prefix(maxBatch))
                state.waiting.removeFirst(batch.count)
                if batch.isEmpty { state.sending = false }
                return batch
            }
            guard !batch.isEmpty else { return }
            do {
                let finished = try await database.finishRuns(worker: worker, batch.map { ($0.run, $0.outcome) })
                for item in batch { item.reply.resume(returning: .success(finished.contains(item.run))) }
            } catch {
                for item in batch { item.reply.resume(returning: .failure(error)) }
            }
        }
    }
}
