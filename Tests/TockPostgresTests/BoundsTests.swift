import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockTesting

/// Every value a job carries has a bound, the same for psql, the API and the CLI (all go through the SQL), so no
/// stored value can make a claim fail.
@Suite("bounds on a job's values")
struct BoundsTests {
    @Test("out-of-range timeouts, retries, schedules, scripts and arguments are refused naming the field; nothing is written")
    func refusedNamingTheField() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(json: #"{"name": "ok", "script": "ok.sh"}"#)
            let longSchedule = String(repeating: "1,", count: 25_000) + " * * * *"
            let cases: [(String, String)] = [
                (#"{"name": "t", "script": "hello.sh", "timeout": "178000000 years"}"#, "timeout"),
                (#"{"name": "t", "script": "hello.sh", "timeout": "31 days"}"#, "timeout"),
                (#"{"name": "t", "script": "hello.sh", "timeout_seconds": 300000000}"#, "timeout"),
                (#"{"name": "t", "script": "hello.sh", "retry_base_seconds": 100000}"#, "retry_base"),
                (#"{"name": "t", "script": "hello.sh", "retry_cap_seconds": 315360000}"#, "retry_cap"),
                (#"{"name": "t", "script": "hel\nlo.sh"}"#, "script"),
                (#"{"name": "t", "script": "\#(String(repeating: "a", count: 1025))"}"#, "script"),
                (#"{"name": "t", "script": "a.sh", "schedule": "\#(longSchedule)"}"#, "schedule"),
                (#"{"name": "t", "script": "a.sh", "args": [\#(Array(repeating: "\"x\"", count: 101).joined(separator: ","))]}"#, "args"),
                (#"{"name": "t", "script": "a.sh", "args": ["\#(String(repeating: "x", count: 4097))"]}"#, "args"),
            ]
            for (body, field) in cases {
                let error = await #expect(throws: TockError.self) { _ = try await database.createJob(json: body) }
                #expect(error?.kind == .invalidInput && error?.field == field, "\(body.prefix(80)): \(String(describing: error))")
                let changes = body.replacingOccurrences(of: #""name": "t", "#, with: "")
                let edit = await #expect(throws: TockError.self) { _ = try await database.updateJob("ok", json: changes) }
                #expect(edit?.kind == .invalidInput && edit?.field == field, "PUT \(changes.prefix(80)): \(String(describing: edit))")
            }
            #expect(try await database.jobs().map(\.name) == ["ok"])
            #expect(try await database.job("ok").timeoutSeconds == 3600)
            // The bound itself is allowed, and a claim of it is computable.
            _ = try await database.updateJob("ok", json: #"{"timeout": "30 days", "retry_cap_seconds": 2592000}"#)
            _ = try await database.runNow("ok")
            let worker = try await database.registerWorker(host: "h", pid: 1, concurrency: 1, scriptsDirectory: nil, version: nil)
            #expect(try await database.claimRuns(worker: worker, max: 1).first?.timeoutSeconds == 30 * 86400)
        }
    }

    @Test("psql-only values are refused too: intervals that compare small but add large, and arrays a worker cannot decode")
    func sqlOnlyValuesRefused() async throws {
        try await TestDatabase.withFresh { database, _ in
            for (call, field) in [
                ("tock.create_job('t', 'x.sh', p_timeout => '12000000 mon -359999999 days')", "timeout"),
                ("tock.create_job('t', 'x.sh', p_retry_base => '12000000 mon -359999999 days', p_max_attempts => 3)", "retry_base"),
                ("tock.create_job('t', 'x.sh', p_args => '{NULL}')", "args"),
                ("tock.create_job('t', 'x.sh', p_args => '{{a,b},{c,d}}')", "args"),
                ("tock.create_job('t', 'x.sh', p_args => '[0:1]={a,b}')", "args"),
            ] {
                let error = await #expect(throws: PSQLError.self) {
                    _ = try await database.client.query(PostgresQuery(unsafeSQL: "SELECT \(call)")).collect()
                }
                let message = error?.serverInfo?[.message] ?? ""
                #expect(error?.serverInfo?[.sqlState] == "22023" && message.hasPrefix("\(field):"), "\(call): \(message)")
            }
            // Durations are stored as seconds, so the claim adds exactly what was compared.
            _ = try await database.client.query("SELECT tock.create_job('t', 'x.sh', p_timeout => '1 mon', p_retry_base => '1 day', p_retry_cap => '30 days', p_max_attempts => 100)").collect()
            #expect(try await database.job("t").timeoutSeconds == 30 * 86400)
            // The longest backoff (a day doubled 99 times, capped at 30 days) is still an interval.
            let delay = try await database.client.query("SELECT extract(epoch FROM tock.retry_delay('1 day', '30 days', 100))::float8")
                .decode(Double.self).all().first
            #expect((delay ?? 0) > 0.74 * 30 * 86400 && (delay ?? .infinity) <= 1.25 * 30 * 86400)
        }
    }

    @Test("a run's stored output is at most 4 MiB however much its worker sends")
    func outputCapped() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(json: #"{"name": "loud", "script": "x.sh"}"#)
            let run = try await database.runNow("loud")
            let worker = try await database.registerWorker(host: "h", pid: 1, concurrency: 1, scriptsDirectory: nil, version: nil)
            _ = try await database.claimRuns(worker: worker, max: 1)
            let output = String(repeating: "x", count: 5 << 20) + "END"
            #expect(try await database.finishRun(run, worker: worker,
                                                  outcome: RunOutcome(status: .succeeded, exitCode: 0, output: output,
                                                                      outputBytes: output.utf8.count)))
            let stored = try await database.run(run)
            #expect(stored.output?.utf8.count == 4 << 20 && stored.output?.hasSuffix("END") == true)
            #expect(stored.outputTruncated == true && stored.outputBytes == Int64(output.utf8.count))
        }
    }

    @Test("a schedule preview of 48 KB is refused before any parsing")
    func longPreviewRefused() async throws {
        try await TestDatabase.withFresh { database, _ in
            let error = await #expect(throws: TockError.self) {
                _ = try await database.nextFireTimes(schedule: String(repeating: "1,", count: 24_000) + " * * * *", timezone: "UTC")
            }
            #expect(error?.field == "schedule" && error?.message.contains("at most 500") == true, "\(String(describing: error))")
        }
    }

    @Test("migrating a database whose job has a timeout of 178,000,000 years brings it to 30 days, and the claim works")
    func poisonedTimeoutMigrated() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(json: #"{"name": "poisoned", "script": "x.sh"}"#)
            _ = try await database.createJob(json: #"{"name": "other", "script": "y.sh"}"#)
            // As before migration 0011: no bound, and the poisoned value stored.
            for statement in [
                "ALTER TABLE tock.jobs DROP CONSTRAINT jobs_timeout_is_at_most_30_days, DROP CONSTRAINT jobs_durations_are_seconds",
                "ALTER TABLE tock.jobs DISABLE TRIGGER jobs_prepare",
                "UPDATE tock.jobs SET timeout = interval '178000000 years' WHERE name = 'poisoned'",
                "ALTER TABLE tock.jobs ENABLE TRIGGER jobs_prepare",
                // What tells the migrator 0011 is applied (see Migrator.effectsOfUnrecorded); views on it go too,
                // and come back with the functions.
                "ALTER TABLE tock.workers DROP COLUMN session_pid CASCADE",
            ] {
                _ = try await database.client.query(PostgresQuery(unsafeSQL: statement)).collect()
            }
            _ = try await database.client.query("DELETE FROM tock.migrations WHERE version = 11").collect()
            let poisoned = try await database.runNow("poisoned"), other = try await database.runNow("other")
            let worker = try await database.registerWorker(host: "h", pid: 1, concurrency: 2, scriptsDirectory: nil, version: nil)
            let before = await #expect(throws: TockError.self) { _ = try await database.claimRuns(worker: worker, max: 2) }
            #expect(before?.message.contains("out of range") == true, "the poison as it was: \(String(describing: before))")

            let report = try await Migrator(client: database.client, files: try SQLFiles.bundled(), logger: TestDatabase.logger).migrate()
            #expect(report.applied == ["0011_trust_boundaries"])
            #expect(try await database.job("poisoned").timeoutSeconds == 30 * 86400)
            #expect(Set(try await database.claimRuns(worker: worker, max: 2).map(\.runId)) == [poisoned, other])
        }
    }
}
