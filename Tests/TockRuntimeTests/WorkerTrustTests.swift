import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockRuntime
import TockTesting

/// What a worker believes: the database, not a NOTIFY any login can send; and what it says when it cannot claim.
@Suite("a worker's trust in what reaches it")
struct WorkerTrustTests {
    @Test("a NOTIFY tock_cancel from a login without Tock grants stops nothing; tock.cancel still stops its run")
    func forgedCancelIgnored() async throws {
        let directory = try makeScriptsDirectory(["slow.sh": "#!/bin/sh\nsleep 60\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            try await TestRoles.ensure(settings)
            var configuration = WorkerConfiguration.testing(scriptsDirectory: directory)
            configuration.concurrency = 2
            configuration.killGraceSeconds = 1
            let worker = try Worker(database: database, settings: settings, configuration: configuration, logger: TestDatabase.logger)
            var job = JobDefinition(name: "slow", script: "slow.sh")
            job.overlap = "allow"
            _ = try await database.createJob(job)
            try await withServices([worker]) { () async throws -> Void in
                let forged = try await database.runNow("slow"), real = try await database.runNow("slow")
                #expect(try await eventually {
                    try await database.runs(job: "slow", status: .running).count == 2
                })
                try await TestDatabase.withClient(TestRoles.settings(settings, as: TestRoles.nobody)) { nobody in
                    _ = try await nobody.query("SELECT pg_notify('tock_cancel', \(String(forged)))").collect()
                }
                // Notifications reach the worker in order: once the real cancel has stopped its run, the forged one
                // was handled before it.
                #expect(try await database.cancel(real) == "cancelling")
                #expect(try await eventually(timeout: .seconds(20)) {
                    try await database.run(real, withOutput: false).status == "cancelled"
                })
                #expect(try await database.run(forged, withOutput: false).status == "running")
                _ = try await database.cancel(forged)
                #expect(try await eventually(timeout: .seconds(20)) {
                    try await database.run(forged, withOutput: false).status == "cancelled"
                })
            }
        }
    }

    @Test("a worker whose claims keep failing says why in tock.worker_overview, until a claim works again")
    func failingClaimsAreReported() async throws {
        let directory = try makeScriptsDirectory(["hello.sh": "#!/bin/sh\necho hello\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { owner, settings in
            try await TestRoles.ensure(settings)
            _ = try await owner.createJob(json: #"{"name": "hello", "script": "hello.sh"}"#)
            // Privileges are per database: this one's tock_worker may no longer claim.
            let claim = "tock.claim_runs(bigint, int, timestamptz, text)"
            _ = try await owner.client.query(PostgresQuery(unsafeSQL: "REVOKE EXECUTE ON FUNCTION \(claim) FROM tock_worker")).collect()
            let workerSettings = TestRoles.settings(settings, as: TestRoles.worker)
            try await TestDatabase.withClient(workerSettings) { client in
                let configuration = WorkerConfiguration.testing(scriptsDirectory: directory)
                let worker = try Worker(database: Database(client: client, logger: TestDatabase.logger, settings: workerSettings),
                                        settings: workerSettings, configuration: configuration, logger: TestDatabase.logger)
                try await withServices([worker]) { () async throws -> Void in
                    let run = try await owner.runNow("hello")
                    let reported = try await eventually(timeout: .seconds(20)) {
                        try await owner.workers().first?.claimError?.contains("tock_worker") == true
                    }
                    let workers = try await owner.workers()
                    #expect(reported, "\(workers)")
                    #expect(try await owner.workers().first?.claimFailingSince != nil)
                    _ = try await owner.client.query(PostgresQuery(unsafeSQL: "GRANT EXECUTE ON FUNCTION \(claim) TO tock_worker")).collect()
                    #expect(try await eventually(timeout: .seconds(30)) {
                        try await owner.run(run, withOutput: false).status == "succeeded"
                    })
                    #expect(try await eventually(timeout: .seconds(5)) { try await owner.workers().first?.claimError == nil })
                }
            }
        }
    }
}
