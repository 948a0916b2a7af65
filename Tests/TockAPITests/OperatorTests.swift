import Foundation
import Hummingbird
import HummingbirdTesting
import PostgresNIO
import Testing
import TockAPI
import TockCore
import TockPostgres
import TockTesting

/// Runs of `job` that end `status`: enqueued, claimed and finished as a worker would.
func endedRuns(_ database: Database, job: String, count: Int, status: RunStatus, output: String = "") async throws -> [Int64] {
    let worker = try await database.registerWorker(host: "t", pid: Int(getpid()), concurrency: 100, scriptsDirectory: nil, version: nil)
    var ids: [Int64] = []
    for _ in 0..<count { ids.append(try await database.runNow(job)) }
    let claimed = try await database.claimRuns(worker: worker, max: 100)
    for run in claimed where ids.contains(run.runId) {
        _ = try await database.finishRun(run.runId, worker: worker,
                                         outcome: RunOutcome(status: status, exitCode: status == .succeeded ? 0 : 1, error: status == .succeeded ? nil : "boom",
                                                             output: output, outputBytes: output.utf8.count))
    }
    return ids
}

@Suite("operator: runs by filter, bulk actions, failures, activity and the audit log, through the API and SQL")
struct OperatorTests {
    static let tokens = "ops-token-0123456789abcdef:admin:ops,view-token-0123456789abcdef:read:viewer"
    static let admin: HTTPFields = [.authorization: "Bearer ops-token-0123456789abcdef", .contentType: "application/json"]
    static let reader: HTTPFields = [.authorization: "Bearer view-token-0123456789abcdef"]

    @Test("find every failure of the last hour, retry them in one action, and see who did it")
    func failuresRetriedInBulk() async throws {
        try await TestDatabase.withFresh { database, _ in
            let app = Application(router: buildRouter(database: database, access: try APIAccess.parse(Self.tokens)))
            try await app.test(.router) { client in
                for name in ["extract", "load"] {
                    try await client.execute(uri: "/api/v1/jobs", method: .post, headers: Self.admin,
                                             body: ByteBuffer(string: #"{"name": "\#(name)", "script": "x.sh"}"#)) {
                        #expect($0.status == .created)
                    }
                }
                let failed = try await endedRuns(database, job: "extract", count: 3, status: .failed, output: "a\nb\nc\nd\ne\nf\nlast line\n")
                _ = try await endedRuns(database, job: "load", count: 2, status: .succeeded)
                _ = try await endedRuns(database, job: "load", count: 1, status: .timedOut)

                // Filters through the query, and a next page that keeps them.
                let page = try await client.execute(uri: "/api/v1/runs?status=failed,timed_out&since=1h&limit=2", method: .get,
                                                    headers: Self.reader) { response in
                    #expect(response.status == .ok)
                    let runs = try TockJSON.decoder().decode([RunInfo].self, from: Data(body(response).utf8))
                    #expect(runs.count == 2)
                    return (runs, response.headers[HTTPFields.Element.Name("Link")!] ?? "")
                }
                #expect(page.1.contains("status=failed%2Ctimed_out") && page.1.contains("since=1h") && page.1.contains("before="))
                try await client.execute(uri: "/api/v1/runs?job=extract&status=failed", method: .get, headers: Self.reader) { response in
                    let runs = try TockJSON.decoder().decode([RunInfo].self, from: Data(body(response).utf8))
                    #expect(Set(runs.map(\.id)) == Set(failed))
                }
                try await client.execute(uri: "/api/v1/runs/count?status=failed,timed_out,dead&since=1h", method: .get,
                                         headers: Self.reader) { response in
                    let count = try TockJSON.decoder().decode(RunCount.self, from: Data(body(response).utf8))
                    #expect(count == RunCount(count: 4, capped: false))
                }
                try await client.execute(uri: "/api/v1/failures?since=1h", method: .get, headers: Self.reader) { response in
                    let groups = try TockJSON.decoder().decode([FailureGroup].self, from: Data(body(response).utf8))
                    let extract = try #require(groups.first { $0.jobName == "extract" })
                    #expect(extract.failures == 3 && extract.failed == 3)
                    #expect(extract.lastOutput == "c\nd\ne\nf\nlast line")
                    #expect(groups.first { $0.jobName == "load" }?.timedOut == 1)
                }

                // A read token may look but not act.
                let retry = ByteBuffer(string: #"{"action": "retry", "filter": {"status": "failed,timed_out,dead", "since": "1h"}}"#)
                try await client.execute(uri: "/api/v1/runs/bulk", method: .post,
                                         headers: [.authorization: "Bearer view-token-0123456789abcdef", .contentType: "application/json"], body: retry) {
                    #expect($0.status == .forbidden)
                }
                let result = try await client.execute(uri: "/api/v1/runs/bulk", method: .post, headers: Self.admin, body: retry) { response in
                    #expect(response.status == .ok)
                    return try TockJSON.decoder().decode(BulkResult.self, from: Data(body(response).utf8))
                }
                #expect(result.done == 4 && result.skipped == 0 && result.more == false)
                #expect(Set(result.runIds).isSuperset(of: failed))
                let retried = try await database.findRuns(filter: #"{"trigger": "retry", "status": "pending"}"#)
                #expect(Set(retried.map(\.id)) == Set(result.newRunIds ?? []))
                #expect(retried.allSatisfy { $0.attempt == 2 })

                // The audit log says who: the token's name, never the token.
                try await client.execute(uri: "/api/v1/audit?action=runs.retry", method: .get, headers: Self.reader) { response in
                    let entries = try TockJSON.decoder().decode([AuditEntry].self, from: Data(body(response).utf8))
                    let entry = try #require(entries.first)
                    #expect(entries.count == 1)
                    #expect(entry.actor == "ops" && entry.via == "api")
                    #expect(entry.after.map { $0.compactText.contains("\"done\":4") } == true)
                }
                try await client.execute(uri: "/api/v1/audit?limit=1000", method: .get, headers: Self.reader) { response in
                    #expect(!body(response).contains("ops-token-0123456789abcdef"))
                    let entries = try TockJSON.decoder().decode([AuditEntry].self, from: Data(body(response).utf8))
                    #expect(entries.filter { $0.action == "job.create" }.map(\.actor) == ["ops", "ops"])
                    // Runs started by SQL (the helper above) are recorded as the login that started them.
                    #expect(entries.contains { $0.action == "run.trigger" && $0.via == "sql" })
                }
            }
        }
    }

    @Test("a pause leaves an audit entry naming the token; the job's history reads it; cancel and delete in bulk")
    func pauseCancelDelete() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "report", script: "x.sh"))
            let app = Application(router: buildRouter(database: database, access: try APIAccess.parse(Self.tokens)))
            try await app.test(.router) { client in
                try await client.execute(uri: "/api/v1/jobs/report/pause", method: .post, headers: Self.admin) { #expect($0.status == .ok) }
                try await client.execute(uri: "/api/v1/audit?job=report", method: .get, headers: Self.reader) { response in
                    let entries = try TockJSON.decoder().decode([AuditEntry].self, from: Data(body(response).utf8))
                    #expect(entries.first?.action == "job.pause")
                    #expect(entries.first?.actor == "ops")
                    #expect(entries.first?.before == .object(["enabled": .bool(true)]))
                    #expect(entries.first?.after == .object(["enabled": .bool(false)]))
                    #expect(entries.last?.action == "job.create")
                }
                let pending = [try await database.runNow("report"), try await database.runNow("report")]
                let done = try await endedRuns(database, job: "report", count: 2, status: .succeeded)
                let cancel = ByteBuffer(string: #"{"action": "cancel", "ids": [\#(pending[0]), \#(pending[1]), \#(done[0])]}"#)
                try await client.execute(uri: "/api/v1/runs/bulk", method: .post, headers: Self.admin, body: cancel) { response in
                    let result = try TockJSON.decoder().decode(BulkResult.self, from: Data(body(response).utf8))
                    #expect(result.done == 2 && result.skipped == 1 && Set(result.runIds) == Set(pending))
                }
                let delete = ByteBuffer(string: #"{"action": "delete", "filter": {"job": "report", "status": "succeeded"}, "limit": 1}"#)
                try await client.execute(uri: "/api/v1/runs/bulk", method: .post, headers: Self.admin, body: delete) { response in
                    let result = try TockJSON.decoder().decode(BulkResult.self, from: Data(body(response).utf8))
                    #expect(result.done == 1 && result.more == true && result.runIds == [done[1]])
                }
                await #expect(throws: TockError.self) { _ = try await database.run(done[1]) }
                #expect(try await database.run(done[0]).status == "succeeded")
            }
        }
    }

    @Test("bulk and filter input an attacker would send is refused, naming the field, and changes nothing")
    func hostileInput() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "report", script: "x.sh"))
            let failed = try await endedRuns(database, job: "report", count: 2, status: .failed)
            let app = Application(router: buildRouter(database: database, access: try APIAccess.parse(Self.tokens)))
            try await app.test(.router) { client in
                for (bodyText, field) in [
                    (#"{"action": "retry", "ids": [1], "where": "true"}"#, "where"),
                    (#"{"action": "retry", "ids": [true]}"#, "ids"),
                    (#"{"action": "retry", "ids": [1.5]}"#, "ids"),
                    (#"{"action": "retry", "ids": [-1]}"#, "ids"),
                    (#"{"action": "drop", "ids": [1]}"#, "action"),
                    (#"{"ids": [1]}"#, "action"),
                    (#"{"action": "retry"}"#, "ids"),
                    (#"{"action": "retry", "ids": [1], "filter": {"status": "failed"}}"#, "ids"),
                    (#"{"action": "retry", "filter": {"status": "failed' OR true --"}}"#, "status"),
                    (#"{"action": "retry", "filter": {"status": ["failed", 1]}}"#, "status"),
                    (#"{"action": "retry", "filter": {"since": "now(); DROP TABLE tock.jobs"}}"#, "since"),
                    (#"{"action": "retry", "filter": {"owner": "x"}}"#, "owner"),
                    (#"{"action": "retry", "filter": {"status": "failed"}, "limit": 5000}"#, "limit"),
                    (#"{"action": "delete", "filter": {}}"#, "filter"),
                    (#"{"action": "delete", "filter": {"job": "", "status": ""}}"#, "filter"),
                    (#"{"action": "delete", "ids": [\#((1...1001).map(String.init).joined(separator: ","))]}"#, "ids"),
                ] {
                    try await client.execute(uri: "/api/v1/runs/bulk", method: .post, headers: Self.admin, body: ByteBuffer(string: bodyText)) { response in
                        #expect(response.status == .unprocessableContent, "\(bodyText.prefix(80))")
                        let error = try object(response)["error"] as? [String: Any]
                        #expect(error?["field"] as? String == field, "\(bodyText.prefix(80)): \(body(response))")
                    }
                }
                try await client.execute(uri: "/api/v1/runs/bulk", method: .post, headers: Self.admin,
                                         body: ByteBuffer(string: #"{"action": "retry", "filter": {"job": "nope'; --"}}"#)) {
                    #expect($0.status == .notFound)
                }
                try await client.execute(uri: "/api/v1/runs?status=failed%27%20OR%20true", method: .get, headers: Self.reader) {
                    #expect($0.status == .unprocessableContent)
                }
                try await client.execute(uri: "/api/v1/runs?worker=x%27%20OR%20true%20--", method: .get, headers: Self.reader) { response in
                    #expect(response.status == .ok)
                    #expect(body(response).filter { !$0.isWhitespace } == "[]")
                }
                try await client.execute(uri: "/api/v1/audit?limit=0", method: .get, headers: Self.reader) {
                    #expect($0.status == .unprocessableContent)
                }
                // A search may be made shorter than the API's bound, never longer.
                for scan in ["0", "40001", "-5", "many"] {
                    for path in ["/api/v1/runs?trigger=retry&scan=\(scan)", "/api/v1/runs/count?trigger=retry&scan=\(scan)"] {
                        try await client.execute(uri: path, method: .get, headers: Self.reader) { response in
                            #expect(response.status == .unprocessableContent, "\(path)")
                            let error = try object(response)["error"] as? [String: Any]
                            #expect(error?["field"] as? String == "scan", "\(path)")
                        }
                    }
                }
                try await client.execute(uri: "/api/v1/activity?hours=100000", method: .get, headers: Self.reader) {
                    #expect($0.status == .unprocessableContent)
                }
            }
            // Nothing changed: both runs still failed, none retried, and only their own entries are in the log.
            #expect(try await database.findRuns(filter: #"{"status": "failed"}"#).map(\.id).sorted() == failed.sorted())
            #expect(try await database.findRuns(filter: #"{"trigger": "retry"}"#).isEmpty)
            #expect(try await database.audit(action: "runs.").isEmpty)
        }
    }

    @Test("a filter on trigger searches a bounded number of runs, says how far back it looked, and looking further finds each match once")
    func boundedSearch() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "report", script: "x.sh"))
            // 30 finished runs and 10 in flight, newer; 4 of the finished and 2 in flight are retries.
            let finished = try await endedRuns(database, job: "report", count: 30, status: .succeeded).sorted()
            var started: [Int64] = []
            for _ in 0..<10 { started.append(try await database.runNow("report")) }
            let inFlight = started
            let retries = [finished[3], finished[4], finished[17], finished[29], inFlight[1], inFlight[6]]
            _ = try await database.client.query("UPDATE tock.finished_runs SET trigger = 'retry' WHERE id = ANY (\(retries))")
            _ = try await database.client.query("UPDATE tock.runs SET trigger = 'retry' WHERE id = ANY (\(retries))")
            #expect(try await database.findRuns(filter: #"{"trigger": "retry"}"#).map(\.id) == retries.sorted(by: >))

            let app = Application(router: buildRouter(database: database, access: try APIAccess.parse(Self.tokens)))
            try await app.test(.router) { client in
                // Each page reads at most 4 runs of each half: the search stops short of the span, says where, and
                // the next page's link goes on below it until every match is found, each once, newest first.
                var uri: String? = "/api/v1/runs?trigger=retry&limit=3&scan=4"
                var found: [Int64] = []
                var shortPages = 0
                var pages = 0
                while let next = uri, pages < 40 {
                    pages += 1
                    uri = try await client.execute(uri: next, method: .get, headers: Self.reader) { response in
                        #expect(response.status == .ok)
                        let runs = try TockJSON.decoder().decode([RunInfo].self, from: Data(body(response).utf8))
                        #expect(runs.allSatisfy { $0.trigger == "retry" })
                        found += runs.map(\.id)
                        let searchedTo = response.headers[HTTPFields.Element.Name("Tock-Searched-To")!]
                        let link = response.headers[HTTPFields.Element.Name("Link")!]
                        if let searchedTo {
                            #expect(runs.count < 3 && TockJSON.parseTimestamp(searchedTo) != nil && link != nil)
                            shortPages += 1
                        }
                        guard let link, let start = link.firstIndex(of: "<"), let end = link.firstIndex(of: ">") else { return nil }
                        #expect(link.contains("trigger=retry"))
                        return String(link[link.index(after: start)..<end]) + "&scan=4"
                    }
                }
                #expect(found == retries.sorted(by: >), "pages: \(pages)")
                #expect(shortPages > 0)
                // A search that reaches the end of the span reads it all: one page, no link, no stop.
                try await client.execute(uri: "/api/v1/runs?trigger=retry&limit=50", method: .get, headers: Self.reader) { response in
                    let runs = try TockJSON.decoder().decode([RunInfo].self, from: Data(body(response).utf8))
                    #expect(runs.map(\.id) == retries.sorted(by: >))
                    #expect(response.headers[HTTPFields.Element.Name("Link")!] == nil)
                    #expect(response.headers[HTTPFields.Element.Name("Tock-Searched-To")!] == nil)
                }
                // The count beside the page: bounded as the page is, saying so; whole when the span was read.
                try await client.execute(uri: "/api/v1/runs/count?trigger=retry&scan=4", method: .get, headers: Self.reader) { response in
                    let count = try TockJSON.decoder().decode(RunCount.self, from: Data(body(response).utf8))
                    // Each half read its newest 4: a retry in each (finished[29], inFlight[6]); the higher stop is
                    // the in-flight half's 4th newest run, inFlight[6].
                    #expect(count == RunCount(count: 2, capped: false, searchedToId: inFlight[6]))
                }
                try await client.execute(uri: "/api/v1/runs/count?trigger=retry", method: .get, headers: Self.reader) { response in
                    let count = try TockJSON.decoder().decode(RunCount.self, from: Data(body(response).utf8))
                    #expect(count == RunCount(count: 6, capped: false))
                }
            }
        }
    }

    @Test("a failure the engine is already retrying, or one retried by hand, is not retried again; each names its retry")
    func retriedOnce() async throws {
        try await TestDatabase.withFresh { database, _ in
            var flaky = JobDefinition(name: "flaky", script: "x.sh")
            flaky.maxAttempts = 3
            _ = try await database.createJob(flaky)
            _ = try await database.createJob(JobDefinition(name: "plain", script: "x.sh"))
            // flaky's first attempt fails: the engine enqueues attempt 2 itself.
            let automatic = try await endedRuns(database, job: "flaky", count: 1, status: .failed)
            let first = try await database.run(automatic[0])
            let second = try #require(first.retriedBy)
            #expect(try await database.run(second).attempt == 2)
            // plain fails twice; one is retried by hand.
            let plain = try await endedRuns(database, job: "plain", count: 2, status: .failed)
            let byHand = try await database.retry(plain[0])
            #expect(try await database.run(plain[0]).retriedBy == byHand)

            let bulk = try await database.bulkRuns("retry", ids: nil, filter: #"{"status": "failed"}"#)
            #expect(bulk.runIds == [plain[1]] && bulk.newRunIds?.count == 1)
            #expect(try await database.run(plain[1]).retriedBy == bulk.newRunIds?.first)
            // Once more: nothing left to retry, by filter or by id.
            #expect(try await database.bulkRuns("retry", ids: nil, filter: #"{"status": "failed"}"#).done == 0)
            let again = try await database.bulkRuns("retry", ids: [automatic[0], plain[0], plain[1]], filter: nil)
            #expect(again.done == 0 && again.skipped == 3)
            #expect(try await database.countRuns(filter: #"{"status": "failed"}"#, action: "retry").count == 0)
        }
    }

    @Test("TOCK_API_TOKENS: token:role:name; a token is never split into a name, names are checked and unique")
    func tokenNames() throws {
        let access = try APIAccess.parse("Kx9fQ2mZ7pLw=R4tY8uN1vB6cD3eF0gH:admin, reader-token-0123456789, other-token-0123456789:read:grafana")
        #expect(access.tokens["Kx9fQ2mZ7pLw=R4tY8uN1vB6cD3eF0gH"] == APIAccess.Grant(role: .admin, name: "token-1"))
        #expect(access.tokens["reader-token-0123456789"] == APIAccess.Grant(role: .read, name: "token-2"))
        #expect(access.tokens["other-token-0123456789"] == APIAccess.Grant(role: .read, name: "grafana"))
        for bad in ["long-enough-token-0123:admin:9lives", "long-enough-token-0123:admin:ops:extra",
                    "long-enough-token-0123:admin:ops,other-enough-token-0123:read:ops",
                    "long-enough-token-0123:admin:ops,long-enough-token-0123:read:grafana"] {
            #expect(throws: InputError.self, "\(bad)") { try APIAccess.parse(bad) }
        }
    }
}
