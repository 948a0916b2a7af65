import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockTesting

@Suite("the connection pool")
struct PoolTests {
    /// postgres-nio 1.33.2's `PostgresClient.query` releases its lease when the row stream finishes, except when
    /// the statement's error arrives before the caller has taken the stream: then the lease is never returned.
    /// A release build under the API fuzzer lost every connection that way, one failed call at a time.
    @Test("calls that fail in PostgreSQL give their connection back, however many race on a small pool")
    func failedCallsReturnTheirConnections() async throws {
        try await TestDatabase.withFresh(maximumConnections: 2) { database, _ in
            // The default call timeout (30 s): a lost pool never answers, and beside the rest of the suite on two
            // cores a 5 s timeout also caught calls that were merely slow.
            let failing = database
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        for _ in 0..<300 {
                            do {
                                try await failing.deleteJob("no-such-job")
                                Issue.record("deleting an unknown job succeeded")
                            } catch let error as TockError {
                                // The error PostgreSQL raised, never a wait for a connection the pool lost.
                                #expect(error.kind == .notFound, "\(error)")
                                if error.kind != .notFound { return }
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await database.createJob(JobDefinition(name: "after", script: "x.sh")) > 0)
        }
    }
}
