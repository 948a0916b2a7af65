import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockTesting

@Suite("run-now keys: one run per key and job within 24 hours")
struct TriggerKeyTests {
    static func runs(_ database: Database, job: String) async throws -> Int {
        try await database.client.query("SELECT count(*)::int FROM tock.runs WHERE job_id = tock.find_job(\(job))")
            .decode(Int.self).all().first ?? -1
    }

    @Test("the same key answers the first run as it is now and enqueues nothing; another key, another job or no key enqueue")
    func sameKeyOneRun() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "report", script: "x.sh"))
            _ = try await database.createJob(JobDefinition(name: "backup", script: "y.sh"))
            let first = try await database.runNow("report", trigger: "api", key: "click-1")
            #expect(first.replayed == false && first.status == "pending")
            let again = try await database.runNow("report", trigger: "api", key: "click-1")
            #expect(again == TriggeredRun(runId: first.runId, replayed: true, status: "pending"))
            // The run ended meanwhile: the key still answers it, as it is now.
            _ = try await database.cancel(first.runId)
            #expect(try await database.runNow("report", key: "click-1")
                == TriggeredRun(runId: first.runId, replayed: true, status: "cancelled"))
            #expect(try await Self.runs(database, job: "report") == 0)

            let other = try await database.runNow("report", key: "click-2")
            let backup = try await database.runNow("backup", key: "click-1")
            let unkeyed = try await database.runNow("report", key: nil)
            #expect(!other.replayed && !backup.replayed && !unkeyed.replayed)
            #expect(Set([first.runId, other.runId, backup.runId, unkeyed.runId]).count == 4)
            // From SQL, the function psql users call takes the key too, by name.
            let sql = try await database.client.query("SELECT tock.run_now('report', p_key => 'click-2')").decode(Int64.self).all()
            #expect(sql == [other.runId])
            // The history no longer holds the run (retention): the key still answers it, as purged.
            _ = try await database.client.query("DELETE FROM tock.finished_runs WHERE id = \(first.runId)").collect()
            #expect(try await database.runNow("report", key: "click-1")
                == TriggeredRun(runId: first.runId, replayed: true, status: "purged"))
        }
    }

    @Test("7 callers racing a first use of one key wait for it to commit, then all get its run; nothing more is enqueued")
    func racingCallers() async throws {
        try await TestDatabase.withFresh(maximumConnections: 10) { database, _ in
            _ = try await database.createJob(JobDefinition(name: "report", script: "x.sh"))
            try await database.client.withConnection { first in
                // The first use, in a transaction held open: the others must wait on its key, not enqueue.
                _ = try await first.query("BEGIN", logger: TestDatabase.logger).collect()
                let run = try await first.query("SELECT run_id FROM tock.run_now_keyed('report', p_key => 'double-click')",
                                                logger: TestDatabase.logger).decode(Int64.self).all()
                let racing = Task {
                    try await withThrowingTaskGroup(of: TriggeredRun.self) { group in
                        for _ in 0..<7 { group.addTask { try await database.runNow("report", key: "double-click") } }
                        return try await group.reduce(into: []) { $0.append($1) }
                    }
                }
                let waiting: PostgresQuery = """
                    SELECT count(*)::int FROM pg_stat_activity
                    WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%run_now_keyed%'
                    """
                #expect(try await eventually { try await database.client.query(waiting).decode(Int.self).all() == [7] })
                _ = try await first.query("COMMIT", logger: TestDatabase.logger).collect()
                let answers = try await racing.value
                #expect(answers.count == 7 && answers.allSatisfy { $0.replayed && [$0.runId] == run }, "\(answers) \(run)")
            }
            #expect(try await Self.runs(database, job: "report") == 1)
        }
    }

    @Test("a key is kept 24 hours to the microsecond: then it starts a new run; maintenance forgets old keys, many at once; a deleted job's keys go with it")
    func keysExpire() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "report", script: "x.sh"))
            let first = try await database.runNow("report", key: "nightly")
            let firstUse = try #require(try await database.client.query(
                "SELECT created_at::text FROM tock.trigger_keys WHERE key = 'nightly'").decode(String.self).all().first)
            func runNow(at interval: String) async throws -> TriggeredRun {
                let rows = try await database.client.query(PostgresQuery(unsafeSQL: """
                    SELECT row_to_json(k)::text
                    FROM tock.run_now_keyed('report', p_now => '\(firstUse)'::timestamptz + interval '\(interval)', p_key => 'nightly') k
                    """)).decode(String.self).all()
                return try TockJSON.decoder().decode(TriggeredRun.self, from: Data(try #require(rows.first).utf8))
            }
            #expect(try await runNow(at: "24 hours -1 microsecond") == TriggeredRun(runId: first.runId, replayed: true))
            let later = try await runNow(at: "24 hours")
            #expect(!later.replayed && later.runId != first.runId)
            // The key now counts from its second first use.
            #expect(try await runNow(at: "47 hours") == TriggeredRun(runId: later.runId, replayed: true))

            func keys() async throws -> Int {
                try await database.client.query("SELECT count(*)::int FROM tock.trigger_keys").decode(Int.self).all().first ?? -1
            }
            // 2,500 more keys, a day old: one maintenance call forgets them all, batch after batch (1,000 each).
            _ = try await database.client.query("""
                INSERT INTO tock.trigger_keys (job_id, key, run_id, created_at)
                SELECT 1, 'old-' || i, NULL, now() - interval '2 days' FROM generate_series(1, 2500) i
                """).collect()
            _ = try await database.client.query("SELECT tock.purge_history()").collect()
            #expect(try await keys() == 1)
            _ = try await database.client.query("SELECT tock.purge_history(now() + interval '49 hours')").collect()
            #expect(try await keys() == 0)

            _ = try await database.runNow("report", key: "again")
            _ = try await database.deleteJob("report")
            #expect(try await keys() == 0)
        }
    }

    @Test("a key held by a transaction left open does not stop maintenance: it waits for the next")
    func heldKeyDoesNotBlockPurge() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "report", script: "x.sh"))
            _ = try await database.client.query("""
                INSERT INTO tock.trigger_keys (job_id, key, run_id, created_at)
                SELECT 1, 'old-' || i, NULL, now() - interval '2 days' FROM generate_series(1, 3) i
                """).collect()
            try await database.client.withConnection { holder in
                _ = try await holder.query("BEGIN", logger: TestDatabase.logger).collect()
                _ = try await holder.query("SELECT 1 FROM tock.trigger_keys WHERE key = 'old-2' FOR UPDATE",
                                           logger: TestDatabase.logger).collect()
                _ = try await database.client.query("SELECT tock.purge_history()").collect()
                let left = try await database.client.query("SELECT array_agg(key) FROM tock.trigger_keys").decode([String].self).all()
                #expect(left == [["old-2"]])
                _ = try await holder.query("ROLLBACK", logger: TestDatabase.logger).collect()
            }
        }
    }

    @Test("a key of 0 or over 200 characters, or with a control character (C0, DEL, C1), is refused and enqueues nothing")
    func badKeys() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "report", script: "x.sh"))
            for key in ["", String(repeating: "k", count: 201), "line\nbreak", "tab\there", "del\u{7f}", "soh\u{1}", "csi\u{9b}"] {
                let error = await #expect(throws: TockError.self) { _ = try await database.runNow("report", key: key) }
                #expect(error?.kind == .invalidInput && error?.field == "key", "\(key.debugDescription): \(String(describing: error))")
            }
            #expect(try await database.runNow("report", key: String(repeating: "é", count: 200)).replayed == false)
            #expect(try await Self.runs(database, job: "report") == 1)
        }
    }
}
