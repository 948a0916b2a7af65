import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
import TockAPI
import TockCore
import TockPostgres
import TockTesting

func body(_ response: TestResponse) -> String {
    String(buffer: response.body)
}

func object(_ response: TestResponse) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(body(response).utf8)) as? [String: Any])
}

@Suite("JSON API over the views, against the real database")
struct APITests {
    @Test("list jobs, trigger one, read the run and its output, and find dead letters")
    func readAndTrigger() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "report", script: "report.sh", schedule: "daily at 06:00",
                                                           timezone: "Asia/Hong_Kong"))
            var flaky = JobDefinition(name: "flaky", script: "x.sh")
            flaky.maxAttempts = 2
            _ = try await database.createJob(flaky)
            let app = Application(router: buildRouter(database: database))
            try await app.test(.router) { client in
                try await client.execute(uri: "/api/v1/jobs", method: .get) { response in
                    #expect(response.status == .ok)
                    #expect(response.headers[.contentType] == "application/json")
                    let jobs = try TockJSON.decoder().decode([JobInfo].self, from: Data(body(response).utf8))
                    #expect(jobs.map(\.name) == ["flaky", "report"])
                    #expect(jobs.last?.scheduleDescription == "daily at 06:00")
                }
                let runID = try await client.execute(uri: "/api/v1/jobs/report/trigger", method: .post) { response in
                    #expect(response.status == .accepted)
                    return try #require(try object(response)["run_id"] as? Int)
                }
                // Finish it as a worker would, then read it back.
                let worker = try await database.registerWorker(host: "t", pid: 1, concurrency: 1, scriptsDirectory: nil, version: nil)
                _ = try await database.claimRuns(worker: worker, max: 1)
                _ = try await database.finishRun(Int64(runID), worker: worker,
                                                 outcome: RunOutcome(status: .succeeded, exitCode: 0, output: "done\n", outputBytes: 5))
                try await client.execute(uri: "/api/v1/runs/\(runID)", method: .get) { response in
                    let run = try TockJSON.decoder().decode(RunInfo.self, from: Data(body(response).utf8))
                    #expect(run.status == "succeeded")
                    #expect(run.trigger == "api")
                    #expect(run.output == "done\n")
                }
                try await client.execute(uri: "/api/v1/runs/\(runID)/output", method: .get) { response in
                    #expect(body(response) == "done\n")
                    #expect(response.headers[.contentType] == "text/plain; charset=utf-8")
                }
                try await client.execute(uri: "/api/v1/jobs/report/runs?status=succeeded", method: .get) { response in
                    let runs = try TockJSON.decoder().decode([RunInfo].self, from: Data(body(response).utf8))
                    #expect(runs.map(\.id) == [Int64(runID)])
                }
                // Two failed attempts of 'flaky': the second is a dead letter.
                let first = try await database.runNow("flaky")
                _ = try await database.claimRuns(worker: worker, max: 1)
                _ = try await database.finishRun(first, worker: worker, outcome: RunOutcome(status: .failed, exitCode: 1, error: "exited with status 1"))
                _ = try await database.client.query("UPDATE tock.runs SET run_after = now() WHERE status = 'pending'").collect()
                let second = try #require(try await database.claimRuns(worker: worker, max: 1).first?.runId)
                _ = try await database.finishRun(second, worker: worker, outcome: RunOutcome(status: .failed, exitCode: 1, error: "exited with status 1"))
                try await client.execute(uri: "/api/v1/dead-letter", method: .get) { response in
                    let dead = try TockJSON.decoder().decode([RunInfo].self, from: Data(body(response).utf8))
                    #expect(dead.map(\.id) == [second])
                    #expect(dead.first?.error == "exited with status 1 (attempt 2 of 2: no attempts left)")
                }
                try await client.execute(uri: "/api/v1/runs/\(second)/retry", method: .post) { response in
                    #expect(response.status == .accepted)
                }
                try await client.execute(uri: "/api/v1/health", method: .get) { response in
                    let health = try object(response)
                    #expect(health["database"] as? String == "reachable")
                }
            }
        }
    }

    @Test("errors have one JSON shape and the right status, never a 500 for bad input", arguments: [
        ("/api/v1/jobs/ghost", HTTPRequest.Method.get, 404, "not_found", "unknown job 'ghost'"),
        ("/api/v1/jobs/ghost/trigger", .post, 404, "not_found", "unknown job 'ghost'"),
        ("/api/v1/runs/abc", .get, 422, "invalid_input", "not a run id"),
        ("/api/v1/runs/999999", .get, 404, "not_found", "unknown run 999999"),
        ("/api/v1/jobs/known/runs?status=done", .get, 422, "invalid_input", "not a run status"),
        ("/api/v1/dead-letter?limit=0", .get, 422, "invalid_input", "limit"),
        ("/api/v1/nothing-here", .get, 404, "not_found", "Not Found"),
    ])
    func errors(uri: String, method: HTTPRequest.Method, status: Int, code: String, fragment: String) async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "known", script: "x.sh"))
            let app = Application(router: buildRouter(database: database))
            try await app.test(.router) { client in
                try await client.execute(uri: uri, method: method) { response in
                    #expect(response.status.code == status, "\(body(response))")
                    let error = try #require(try object(response)["error"] as? [String: Any], "\(body(response))")
                    #expect(error["code"] as? String == code)
                    #expect((error["message"] as? String ?? "").contains(fragment), "\(body(response))")
                }
            }
        }
    }

    @Test("tokens: none is refused, read-only reads but cannot write, admin writes; a cancelled run cannot be cancelled twice")
    func auth() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "job", script: "x.sh"))
            let access = try APIAccess.parse("reader-token-0123456789:read,admin-token-0123456789:admin")
            let app = Application(router: buildRouter(database: database, access: access))
            try await app.test(.router) { client in
                try await client.execute(uri: "/api/v1/jobs", method: .get) { #expect($0.status == .unauthorized) }
                try await client.execute(uri: "/api/v1/jobs", method: .get, headers: [.authorization: "Bearer wrong"]) {
                    #expect($0.status == .unauthorized)
                }
                try await client.execute(uri: "/api/v1/jobs", method: .get,
                                         headers: [.authorization: "Bearer reader-token-0123456789"]) { #expect($0.status == .ok) }
                try await client.execute(uri: "/api/v1/jobs/job/trigger", method: .post,
                                         headers: [.authorization: "Bearer reader-token-0123456789"]) { response in
                    #expect(response.status == .forbidden)
                    let error = try object(response)["error"] as? [String: Any]
                    #expect(error?["code"] as? String == "forbidden")
                }
                let run = try await client.execute(uri: "/api/v1/jobs/job/trigger", method: .post,
                                                   headers: [.authorization: "Bearer admin-token-0123456789"]) { response in
                    #expect(response.status == .accepted)
                    return try #require(try object(response)["run_id"] as? Int)
                }
                try await client.execute(uri: "/api/v1/runs/\(run)/cancel", method: .post,
                                         headers: [.authorization: "Bearer admin-token-0123456789"]) { response in
                    let state = try object(response)["status"] as? String
                    #expect(state == "cancelled")
                }
                try await client.execute(uri: "/api/v1/runs/\(run)/cancel", method: .post,
                                         headers: [.authorization: "Bearer admin-token-0123456789"]) { response in
                    #expect(response.status == .conflict)
                }
            }
            #expect(throws: InputError.self) { try APIAccess.parse("short:admin") }
            #expect(throws: InputError.self) { try APIAccess.parse("long-enough-token-0123:root") }
            #expect(throws: TockError.self) {
                _ = try buildAPIServer(database: database, host: "0.0.0.0", port: 0, access: APIAccess(), logger: TestDatabase.logger)
            }
        }
    }
}
