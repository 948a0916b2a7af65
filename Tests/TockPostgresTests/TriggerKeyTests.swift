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

    @Test("the same key answers the first run and enqueues nothing; another key, another job or no key enqueue")
    func sameKeyOneRun() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "report", script: "x.sh"))
            _ = try await database.createJob(JobDefinition(name: "backup", script: "y.sh"))
            let first = try await database.runNow("report", trigger: "api", key: "click-1")
            #expect(first.replayed == false)
            let again = try await database.runNow("report", trigger: "api", key: "click-1")
            #expect(again == TriggeredRun(runId: first.runId, replayed: true))
            // The run ended meanwhile: the key still answers it.
            _ = try await database.cancel(first.runId)
            #expect(try await database.runNow("report", key: "click-1") == TriggeredRun(runId: first.runId, replayed: true))
            #expect(try await Self.runs(database, job: "report") == 0)

            let other = try await database.runNow("report", key: "click-2")
            let backup = try await database.runNow("backup", key: "click-1")
            let unkeyed = try await database.runNow("report", key: nil)
            #expect(!other.replayed && !backup.replayed && !unkeyed.replayed)
            #expect(Set([first.runId, other.runId, backup.runId, unkeyed.runId]).count == 4)
            // From SQL, the function psql users call takes the key too.
            let sql = try await database.client.query("SELECT tock.run_now('report', p_key => 'click-2')").decode(Int64.self).all()
            #expect(sql == [other.runId])
        }
    }

    @Test("8 callers racing with one key start one run, and all get its id")
    func racingCallers() async throws {
        try await TestDatabase.withFresh(maximumConnections: 8) { database, _ in
            _ = try await database.createJob(JobDefinition(name: "report", script: "x.sh"))
            let answers = try await withThrowingTaskGroup(of: TriggeredRun.self) { group in
                for _ in 0..<8 { group.addTask { try await database.runNow("report", key: "double-click") } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(Set(answers.map(\.runId)).count == 1)
            #expect(answers.filter { !$0.replayed }.count == 1)
            #expect(try await Self.runs(database, job: "report") == 1)
        }
    }

    @Test("a key is kept 24 hours: then it starts a new run, and maintenance forgets it; a deleted job's keys go with it")
    func keysExpire() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "report", script: "x.sh"))
            let first = try await database.runNow("report", key: "nightly")
            func runNow(after interval: String) async throws -> TriggeredRun {
                let rows = try await database.client.query(PostgresQuery(unsafeSQL: """
                    SELECT row_to_json(k)::text FROM tock.run_now_keyed('report', 'nightly', 'sql', now() + interval '\(interval)') k
                    """)).decode(String.self).all()
                return try TockJSON.decoder().decode(TriggeredRun.self, from: Data(try #require(rows.first).utf8))
            }
            #expect(try await runNow(after: "23 hours 59 minutes") == TriggeredRun(runId: first.runId, replayed: true))
            let later = try await runNow(after: "24 hours")
            #expect(!later.replayed && later.runId != first.runId)
            // The key now counts from its second first use.
            #expect(try await runNow(after: "47 hours") == TriggeredRun(runId: later.runId, replayed: true))

            func keys() async throws -> Int {
                try await database.client.query("SELECT count(*)::int FROM tock.trigger_keys").decode(Int.self).all().first ?? -1
            }
            _ = try await database.client.query("SELECT tock.purge_history(now() + interval '47 hours')").collect()
            #expect(try await keys() == 1)
            _ = try await database.client.query("SELECT tock.purge_history(now() + interval '49 hours')").collect()
            #expect(try await keys() == 0)

            _ = try await database.runNow("report", key: "again")
            _ = try await database.deleteJob("report")
            #expect(try await keys() == 0)
        }
    }

    @Test("a key of 0 or over 200 characters, or with a control character, is refused and enqueues nothing")
    func badKeys() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "report", script: "x.sh"))
            for key in ["", String(repeating: "k", count: 201), "line\nbreak", "tab\there", "nul\u{7f}"] {
                let error = await #expect(throws: TockError.self) { _ = try await database.runNow("report", key: key) }
                #expect(error?.kind == .invalidInput && error?.field == "key", "\(key.debugDescription): \(String(describing: error))")
            }
            #expect(try await database.runNow("report", key: String(repeating: "é", count: 200)).replayed == false)
            #expect(try await Self.runs(database, job: "report") == 1)
        }
    }
}
