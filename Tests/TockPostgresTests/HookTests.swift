import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockTesting

@Suite("hooks: a run's end writes its webhook deliveries in its own transaction; delivery services take and finish them")
struct HookTests {
    /// Claims and ends one run of `job` as `status` (with `exitCode`), as a worker would.
    static func runOnce(_ database: Database, _ job: String, worker: Int64, _ status: RunStatus, exitCode: Int? = nil,
                        output: String = "") async throws -> Int64 {
        let run = try await database.runNow(job)
        let claimed = try await database.claimRuns(worker: worker, max: 10).map(\.runId)
        try #require(claimed.contains(run))
        _ = try await database.finishRuns(worker: worker, [(run, RunOutcome(status: status, exitCode: exitCode, output: output))])
        return run
    }

    @Test("each event fires on its own ends: failed and timed_out per attempt, dead at the last, recovered once after failures; a fleet hook on every job")
    func events() async throws {
        try await TestDatabase.withFresh { database, _ in
            var flaky = JobDefinition(name: "flaky", script: "x.sh")
            flaky.maxAttempts = 2
            flaky.overlap = "allow"
            _ = try await database.createJob(flaky)
            var other = JobDefinition(name: "other", script: "y.sh")
            other.overlap = "allow"
            _ = try await database.createJob(other)
            let url = "https://hooks.example.com/services/T0/B0/secret-path"
            var hooks: [String: Int64] = [:]
            for event in ["failed", "dead", "succeeded", "recovered", "timed_out"] {
                hooks[event] = try await database.addHook(fields: ["job": "flaky", "event": event, "url": url]).hookId
            }
            let fleet = try await database.addHook(fields: ["job": "*", "event": "failed", "url": "http://127.0.0.1:9/x"])
            let otherDead = try await database.addHook(fields: ["job": "other", "event": "dead", "url": "https://h.example.com/d"])
            var slow = JobDefinition(name: "slow", script: "z.sh")
            slow.overlap = "allow"
            _ = try await database.createJob(slow)
            let slowTimedOut = try await database.addHook(fields: ["job": "slow", "event": "timed_out", "url": "https://h.example.com/t"])
            let slowDead = try await database.addHook(fields: ["job": "slow", "event": "dead", "url": "https://h.example.com/t"])
            let worker = try await database.registerWorker(host: "t", pid: 1, concurrency: 10, scriptsDirectory: nil, version: nil)

            // Attempt 1 fails (a retry follows), attempt 2 fails too: the run is dead.
            let first = try await Self.runOnce(database, "flaky", worker: worker, .failed, exitCode: 3, output: "line 1\nboom\n")
            _ = try await database.client.query("UPDATE tock.runs SET run_after = now() WHERE first_run_id = \(first)").collect()
            let claimed = try await database.claimRuns(worker: worker, max: 10).map(\.runId)
            try #require(claimed.count == 1)
            _ = try await database.finishRuns(worker: worker, [(claimed[0], RunOutcome(status: .failed, exitCode: 3))])
            // Then a success: recovered (and succeeded); a second success is not a recovery.
            let good = try await Self.runOnce(database, "flaky", worker: worker, .succeeded, exitCode: 0)
            let again = try await Self.runOnce(database, "flaky", worker: worker, .succeeded, exitCode: 0)
            let otherFailed = try await Self.runOnce(database, "other", worker: worker, .failed, exitCode: 1)
            let slowRun = try await Self.runOnce(database, "slow", worker: worker, .timedOut)

            let rows = try await database.client.query("""
                SELECT run_id, event, hook_id FROM tock.deliveries ORDER BY id
                """).decode((Int64, String, Int64).self).all()
            let got = Set(rows.map { "\($0.0) \($0.1) \($0.2)" })
            let want: Set<String> = [
                "\(first) failed \(hooks["failed"]!)", "\(first) failed \(fleet.hookId)",
                "\(claimed[0]) dead \(hooks["dead"]!)", "\(claimed[0]) failed \(hooks["failed"]!)",
                "\(claimed[0]) failed \(fleet.hookId)",
                "\(good) succeeded \(hooks["succeeded"]!)", "\(good) recovered \(hooks["recovered"]!)",
                "\(again) succeeded \(hooks["succeeded"]!)",
                "\(otherFailed) failed \(fleet.hookId)", "\(otherFailed) dead \(otherDead.hookId)",
                "\(slowRun) timed_out \(slowTimedOut.hookId)", "\(slowRun) dead \(slowDead.hookId)",
            ]
            #expect(got == want, "extra: \(got.subtracting(want)); missing: \(want.subtracting(got))")

            // The body: Standard Webhooks' envelope, a text line, the run's facts, and the last lines of output.
            let body = try #require(try await database.client.query("""
                SELECT body FROM tock.deliveries WHERE run_id = \(first) AND hook_id = \(hooks["failed"]!)
                """).decode(String.self).all().first)
            let json = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
            let data = try #require(json["data"] as? [String: Any])
            #expect(json["type"] as? String == "run.failed")
            #expect((json["text"] as? String ?? "").hasPrefix("Tock: flaky run #\(first) failed (exit 3)"), "\(json)")
            #expect(data["job"] as? String == "flaky" && data["exit_code"] as? Int == 3 && data["attempt"] as? Int == 1)
            #expect(data["will_retry"] as? Bool == true && data["output_tail"] as? String == "line 1\nboom\n", "\(data)")

            // People see where a hook goes, never its path (a Slack webhook's secret) nor its signing secret.
            let shown = try await database.hooks(job: "flaky")
            #expect(shown.count == 6 && shown.allSatisfy { !($0.urlOrigin ?? "").contains("secret-path") }, "\(shown)")
            #expect(shown.first { $0.id == hooks["failed"] }?.urlOrigin == "https://hooks.example.com")
            let listed = try await database.deliveries(job: "flaky")
            #expect(listed.count == 8 && listed.allSatisfy {
                $0.urlOrigin == ($0.hookId == fleet.hookId ? "http://127.0.0.1:9" : "https://hooks.example.com") && $0.status == "pending"
            }, "\(listed)")
        }
    }

    @Test("a finish rolled back leaves no delivery; a late hook fires once per scheduled run not started in time")
    func sameTransactionAndLate() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "nightly", script: "x.sh", schedule: "every 1h"))
            _ = try await database.addHook(fields: ["job": "nightly", "event": "failed", "url": "https://h.example.com/a"])
            _ = try await database.addHook(fields: ["job": "nightly", "event": "late", "url": "https://h.example.com/b",
                                                  "late_after": "5m"])
            let worker = try await database.registerWorker(host: "t", pid: 1, concurrency: 1, scriptsDirectory: nil, version: nil)
            let run = try await database.runNow("nightly")
            _ = try await database.claimRuns(worker: worker, max: 1)
            let logger = TestDatabase.logger
            let inside = try? await database.client.withTransaction(logger: logger) { connection -> Int in
                let finish: PostgresQuery = "SELECT tock.finish_run(\(run), \(worker), 'failed', 1)"
                _ = try await connection.query(finish, logger: logger).collect()
                let rows = try await connection.query("SELECT count(*)::int FROM tock.deliveries", logger: logger)
                var count = -1
                for try await value in rows.decode(Int.self) { count = value }
                throw TockError(.failed, "roll back, having seen \(count) delivery")
            }
            #expect(inside == nil)
            #expect(try await database.client.query("SELECT count(*)::int FROM tock.deliveries").decode(Int.self).all().first == 0)
            #expect(try await database.run(run).status == "running", "rolled back with its delivery")
            _ = try await database.finishRuns(worker: worker, [(run, RunOutcome(status: .failed, exitCode: 1))])
            #expect(try await database.client.query("SELECT count(*)::int FROM tock.deliveries").decode(Int.self).all().first == 1)

            // Scheduled runs due 10 and 1 minutes ago, not started: the first is late (5 minutes), once.
            for minutes in [10, 1] {
                _ = try await database.client.query(PostgresQuery(unsafeSQL: """
                    INSERT INTO tock.runs (job_id, trigger, scheduled_for, enqueued_at, run_after, pool)
                    VALUES (tock.find_job('nightly'), 'schedule', now() - interval '\(minutes) minutes',
                            now() - interval '\(minutes) minutes', now() - interval '\(minutes) minutes', 'default')
                    """)).collect()
            }
            _ = try await database.rescue()
            _ = try await database.rescue()
            let late = try await database.client.query("""
                SELECT d.body FROM tock.deliveries d JOIN tock.runs r ON r.id = d.run_id WHERE d.event = 'late'
                """).decode(String.self).all()
            // "has not started 10m" when rescue ran within the second of the insert, "601s" a second later.
            #expect(late.count == 1 && late[0].contains("\"type\": \"run.late\"") && late[0].contains("has not started "),
                    "\(late)")
        }
    }

    @Test("bad hooks are refused with the field named: event, URL, secret, late_after, unknown fields, an unknown job")
    func badHooks() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "j", script: "x.sh"))
            let cases: [([String: Any], String)] = [
                (["job": "j", "event": "exploded", "url": "https://h.example.com"], "event"),
                (["job": "j", "event": "failed", "url": "ftp://h.example.com"], "url"),
                (["job": "j", "event": "failed", "url": "https://user:pw@h.example.com/x"], "url"),
                (["job": "j", "event": "failed", "url": "https:///nohost"], "url"),
                (["job": "j", "event": "failed", "url": "https://h.example.com/" + String(repeating: "a", count: 2001)], "url"),
                (["job": "j", "event": "failed", "url": "https://h.example.com", "secret": "whsec_short"], "secret"),
                (["job": "j", "event": "failed", "url": "https://h.example.com",
                  "secret": "whsec_" + String(repeating: "A", count: 33)], "secret"),
                (["event": "failed", "url": "https://h.example.com"], "job"),
                (["job": "j", "event": "late", "url": "https://h.example.com"], "late_after"),
                (["job": "j", "event": "failed", "url": "https://h.example.com", "late_after": "5m"], "late_after"),
                (["job": "j", "event": "failed", "url": "https://h.example.com", "max_attempts": 0], "max_attempts"),
                (["job": "j", "event": "failed", "url": "https://h.example.com", "run_job": "k"], "run_job"),
            ]
            for (fields, field) in cases {
                do {
                    _ = try await database.addHook(fields: fields)
                    Issue.record("accepted \(fields)")
                } catch let error as TockError {
                    #expect(error.kind == .invalidInput && error.field == field, "\(fields): \(error.kind) \(error.field ?? "-") \(error.message)")
                }
            }
            do {
                _ = try await database.addHook(fields: ["job": "nope", "event": "failed", "url": "https://h.example.com"])
                Issue.record("accepted an unknown job")
            } catch let error as TockError {
                #expect(error.kind == .notFound)
            }
            #expect(try await database.hooks().isEmpty, "nothing half-written")
        }
    }

    @Test("a job's hooks include the fleet's; a delivery page refuses an unknown status, a limit out of range and an unknown job")
    func hookAndDeliveryFilters() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "j", script: "x.sh"))
            _ = try await database.createJob(JobDefinition(name: "k", script: "x.sh"))
            _ = try await database.addHook(fields: ["job": "j", "event": "failed", "url": "https://h.example.com"])
            _ = try await database.addHook(fields: ["job": "k", "event": "failed", "url": "https://h.example.com"])
            _ = try await database.addHook(fields: ["job": "*", "event": "dead", "url": "https://h.example.com"])
            #expect(try await database.hooks(job: "j").map(\.jobName) == ["j", "*"])
            #expect(try await database.hooks().count == 3)
            #expect(try await database.deliveries(job: "j", status: "failed").isEmpty)
            for (status, limit, field) in [("bounced", 10, "status"), ("pending", 0, "limit"), ("pending", 1001, "limit")] {
                do {
                    _ = try await database.deliveries(status: status, limit: limit)
                    Issue.record("accepted status \(status), limit \(limit)")
                } catch let error as TockError {
                    #expect(error.kind == .invalidInput && error.field == field, "\(error.kind) \(error.field ?? "-") \(error.message)")
                }
            }
            await #expect(throws: TockError.self) { _ = try await database.deliveries(job: "nope") }
        }
    }

    @Test("delivery services take due deliveries once (SKIP LOCKED), back off on 5xx, fail on 4xx and at the last attempt; a retry sends again")
    func claimAndFinish() async throws {
        try await TestDatabase.withFresh { database, _ in
            var job = JobDefinition(name: "j", script: "x.sh")
            job.overlap = "allow"
            _ = try await database.createJob(job)
            let hook = try await database.addHook(fields: ["job": "j", "event": "failed", "url": "https://h.example.com/x",
                                                         "max_attempts": 2])
            #expect(hook.secret?.hasPrefix("whsec_") == true && (hook.secret?.count ?? 0) >= 46)
            let worker = try await database.registerWorker(host: "t", pid: 1, concurrency: 10, scriptsDirectory: nil, version: nil)
            for _ in 1...3 { _ = try await Self.runOnce(database, "j", worker: worker, .failed, exitCode: 1) }

            // Two services at once: each delivery goes to one of them.
            async let a = database.claimDeliveries(max: 2, hold: .seconds(30))
            async let b = database.claimDeliveries(max: 2, hold: .seconds(30))
            let (first, second) = try await (a, b)
            let taken = first.deliveries + second.deliveries
            #expect(taken.count == 3 && Set(taken.map(\.id)).count == 3, "\(taken.map(\.id))")
            #expect(taken.allSatisfy { $0.secret == hook.secret && $0.attempt == 1 && $0.messageId.hasPrefix("msg_") })
            #expect(try await database.claimDeliveries(max: 10, hold: .seconds(30)).deliveries.isEmpty, "held")

            let (ok, busy, refused) = (taken[0], taken[1], taken[2])
            #expect(try await database.finishDelivery(ok.id, attempt: 1, code: 204, error: nil, startedAt: Date(), duration: .milliseconds(5)) == "delivered")
            // The first retry 2 s on (±25%), the next three times as far: from the finish's own time, which the
            // database's clock read just before and just after the call brackets, so a slow machine between the
            // calls moves neither bound.
            let clock = { () async throws -> Double in
                try await database.client.query("SELECT extract(epoch FROM clock_timestamp())::float8").decode(Double.self).all()[0]
            }
            let backoff = { (id: Int64, attempt: Int, code: Int) async throws -> (status: String, from: Double, to: Double) in
                let before = try await clock()
                let status = try await database.finishDelivery(id, attempt: attempt, code: code, error: nil, startedAt: Date(),
                                                               duration: .milliseconds(5))
                let after = try await clock()
                let next = try await database.client.query(
                    "SELECT extract(epoch FROM next_attempt_at)::float8 FROM tock.deliveries WHERE id = \(id)")
                    .decode(Double.self).all()[0]
                return (status, next - after, next - before)
            }
            let firstRetry = try await backoff(busy.id, 1, 503)
            #expect(firstRetry.status == "pending")
            #expect(firstRetry.to >= 1.49 && firstRetry.from <= 2.5, "\(firstRetry.from)-\(firstRetry.to) s")
            #expect(try await database.finishDelivery(refused.id, attempt: 1, code: 404, error: nil, startedAt: Date(), duration: .milliseconds(5)) == "failed")
            // A late answer for an attempt not held any more changes nothing.
            #expect(try await database.finishDelivery(ok.id, attempt: 1, code: 500, error: nil, startedAt: Date(), duration: .zero) == "delivered")

            // The 503's retry comes after its backoff (about 1 s); at its last attempt a timeout fails it.
            _ = try await database.client.query("UPDATE tock.deliveries SET next_attempt_at = now() WHERE id = \(busy.id)").collect()
            let retried = try await database.claimDeliveries(max: 10, hold: .seconds(30)).deliveries
            #expect(retried.map(\.id) == [busy.id] && retried[0].attempt == 2 && retried[0].messageId == busy.messageId)
            #expect(try await database.finishDelivery(busy.id, attempt: 2, code: nil, error: "the receiver did not answer in time",
                                                      startedAt: Date(), duration: .seconds(10)) == "failed")
            let failed = try await database.delivery(busy.id)
            #expect(failed.status == "failed" && failed.attempts == 2 && failed.lastError == "the receiver did not answer in time")
            let attempts = try await database.client.query(
                "SELECT attempt, status_code FROM tock.delivery_attempts WHERE delivery_id = \(busy.id) ORDER BY attempt")
                .decode((Int, Int?).self).all()
            #expect(attempts.map(\.0) == [1, 2] && attempts[0].1 == 503 && attempts[1].1 == nil)

            // Retried by hand: pending at once, with the hook's attempts again.
            #expect(try await database.retryDelivery(busy.id) == "pending")
            let again = try await database.claimDeliveries(max: 10, hold: .seconds(30)).deliveries
            #expect(again.map(\.id) == [busy.id] && again[0].attempt == 3)
            // A round retried by hand backs off from the start again.
            let restarted = try await backoff(busy.id, 3, 502)
            #expect(restarted.status == "pending")
            #expect(restarted.to >= 1.49 && restarted.from <= 2.5, "\(restarted.from)-\(restarted.to) s")
            await #expect(throws: TockError.self) { try await database.retryDelivery(ok.id) }
        }
    }
}
