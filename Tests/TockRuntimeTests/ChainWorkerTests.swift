import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockRuntime
import TockTesting

@Suite("chains: a run's end runs another job")
struct ChainWorkerTests {
    static func addChain(_ database: Database, _ job: String, on event: String, run target: String) async throws -> NewHook {
        try await database.addHook(json: #"{"job": "\#(job)", "event": "\#(event)", "run_job": "\#(target)"}"#)
    }

    @Test("B runs after A succeeds and C after B fails, each once, with the run it came from in TOCK_UPSTREAM_*")
    func chainRuns() async throws {
        let directory = try makeScriptsDirectory([
            "extract.sh": "#!/bin/sh\necho extracted\n",
            "load.sh": "#!/bin/sh\necho \"load after $TOCK_UPSTREAM_JOB run $TOCK_UPSTREAM_RUN_ID ($TOCK_UPSTREAM_STATUS), env $TOCK_PARAM_ENV\"\nexit 3\n",
            "alert.sh": "#!/bin/sh\necho \"cleaning up after $TOCK_UPSTREAM_JOB $TOCK_UPSTREAM_STATUS\"\n",
        ])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            _ = try await database.createJob(JobDefinition(name: "extract", script: "extract.sh"))
            var load = JobDefinition(name: "load", script: "load.sh")
            load.params = [ParamDefinition(name: "env", default: "staging")]
            _ = try await database.createJob(load)
            _ = try await database.createJob(JobDefinition(name: "alert", script: "alert.sh"))
            let chain = try await Self.addChain(database, "extract", on: "succeeded", run: "load")
            #expect(chain.secret == nil)
            _ = try await Self.addChain(database, "load", on: "failed", run: "alert")
            let hooks = try await database.hooks()
            #expect(hooks.map(\.runJob) == ["load", "alert"] && hooks.allSatisfy { $0.urlOrigin == nil }, "\(hooks)")

            let first = try await database.runNow("extract")
            let worker = try Worker(database: database, settings: settings,
                                    configuration: .testing(scriptsDirectory: directory), logger: TestDatabase.logger)
            try await withServices([worker]) { () async throws -> Void in
                let done = try await eventually { try await database.runs(job: "alert").first?.status == "succeeded" }
                let seen = try await database.runs().map { "\($0.jobName) \($0.trigger) \($0.status)" }
                #expect(done, "\(seen)")
            }
            let loaded = try #require(try await database.runs(job: "load").first)
            #expect(loaded.trigger == "chain" && loaded.status == "failed" && loaded.params == ["env": "staging"])
            let loadOutput = try await database.run(loaded.id).output
            #expect(loadOutput == "load after extract run \(first) (succeeded), env staging\n", "\(loadOutput ?? "")")
            let alerted = try #require(try await database.runs(job: "alert").first)
            #expect(try await database.run(alerted.id).output == "cleaning up after load failed\n")
            // One run each: the chain ran once per end.
            #expect(try await database.runs().count == 3)
            // A paused job is not run by a chain; one end that is two events (failed, dead) runs the next job once.
            try await database.setJobEnabled("alert", false)
            _ = try await database.createJob(JobDefinition(name: "notify", script: "alert.sh"))
            _ = try await Self.addChain(database, "load", on: "failed", run: "notify")
            _ = try await Self.addChain(database, "load", on: "dead", run: "notify")
            let again = try await database.runNow("load")
            let worker2 = try Worker(database: database, settings: settings,
                                     configuration: .testing(scriptsDirectory: directory), logger: TestDatabase.logger)
            try await withServices([worker2]) { () async throws -> Void in
                let notified = try await eventually { try await database.runs(job: "notify").first?.status == "succeeded" }
                #expect(notified)
                try await Task.sleep(for: .milliseconds(500))
            }
            #expect(try await database.run(again, withOutput: false).status == "failed")
            #expect(try await database.runs(job: "notify").count == 1, "load's end was failed and dead: notify ran once")
            #expect(try await database.runs(job: "alert").count == 1, "alert is paused: the chain did not run it")
            // The upstream shows in the run's detail, for the portal and the API.
            let upstream = try await database.client.query(
                "SELECT upstream::text FROM tock.run_history WHERE id = \(alerted.id)").decode(String.self).all().first
            #expect(upstream?.contains("\"job\": \"load\"") == true && upstream?.contains("\"run_id\": \(loaded.id)") == true,
                    "\(upstream ?? "-")")
        }
    }

    @Test("a chain that would close a cycle, a fleet-wide chain, a late chain or one to a job that needs values is refused; nothing is added")
    func chainsRefused() async throws {
        try await TestDatabase.withFresh { database, _ in
            for name in ["a", "b", "c"] { _ = try await database.createJob(JobDefinition(name: name, script: "\(name).sh")) }
            var needs = JobDefinition(name: "needs", script: "n.sh")
            needs.params = [ParamDefinition(name: "ticket", required: true)]
            _ = try await database.createJob(needs)
            _ = try await Self.addChain(database, "a", on: "succeeded", run: "b")
            _ = try await Self.addChain(database, "b", on: "failed", run: "c")
            let refused: [(json: String, says: String)] = [
                (#"{"job": "c", "event": "dead", "run_job": "a"}"#, "running a after c would make a cycle"),
                (#"{"job": "a", "event": "succeeded", "run_job": "a"}"#, "running a after a would make a cycle"),
                (#"{"job": "*", "event": "succeeded", "run_job": "c"}"#, "a chain belongs to one job"),
                (#"{"job": "a", "event": "late", "run_job": "c"}"#, "a chain follows a run's end"),
                (#"{"job": "a", "event": "succeeded", "run_job": "c", "url": "https://x.example/h"}"#, "not both"),
                (#"{"job": "a", "event": "succeeded", "run_job": "needs"}"#, "parameter ticket is required with none"),
                (#"{"job": "a", "event": "succeeded", "run_job": "ghost"}"#, "unknown job"),
            ]
            for (json, says) in refused {
                do {
                    _ = try await database.addHook(json: json)
                    Issue.record("\(json) was accepted")
                } catch let error as TockError {
                    #expect(error.message.contains(says), "\(json): \(error.message)")
                }
            }
            #expect(try await database.hooks().count == 2)
            // The same chain twice: refused (twenty copies would start twenty runs per end).
            await #expect(throws: TockError.self) { try await Self.addChain(database, "a", on: "succeeded", run: "b") }
            // A job run by a chain may not make a parameter required without a default.
            await #expect(throws: TockError.self) {
                try await database.updateJob("b", json: #"{"params": [{"name": "x", "required": true}]}"#)
            }
            // Deleting the job a chain runs removes the chain.
            try await database.deleteJob("c")
            #expect(try await database.hooks().map(\.runJob) == ["b"])
        }
    }
}
