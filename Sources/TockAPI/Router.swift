import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import TockCore
import TockPostgres
import TockMetrics

/// The JSON API and the portal: reads come from the tock.* views, writes call the SQL functions (through
/// `Database`), so the API adds no rules of its own. `events` feeds `/api/v1/events`; without it that endpoint
/// answers 503. `/metrics` prints `metrics` (this process's counters) with the database's gauges.
public func buildRouter(database: Database, access: APIAccess = APIAccess(), events: EventHub? = nil,
                        metrics: TockMetrics = TockMetrics(), maxBodyBytes: Int = 64 * 1024) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: SecurityHeadersMiddleware())
    router.add(middleware: ErrorMiddleware(logger: database.logger))
    router.add(middleware: AccessMiddleware(access: access))
    router.get("metrics") { _, _ -> Response in
        metrics.refresh(gauges: try await database.gauges())
        return prometheusResponse(metrics)
    }
    let api = router.group("api/v1")

    api.get("health") { _, _ -> Response in
        struct Health: Encodable {
            var status: String
            var version = TockVersion.current
            var database: String
            var migrationsCurrent: Bool
            var workersAlive: Int
            var schedulersAlive: Int
            var workersClaimFailing: Int
            var queue: QueueDepth
        }
        let alive = try await database.workers().filter(\.alive)
        let workers = alive.count
        let failing = alive.filter { $0.claimError != nil }.count
        let schedulers = try await database.schedulersAlive()
        let current = try await database.migrationsCurrent()
        return try json(Health(status: workers > 0 && failing == 0 && schedulers > 0 && current ? "ok" : "degraded",
                               database: "reachable", migrationsCurrent: current, workersAlive: workers,
                               schedulersAlive: schedulers, workersClaimFailing: failing,
                               queue: try await database.queueDepth()))
    }
    api.get("openapi.json") { _, _ -> Response in
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: PortalFiles.openAPI))
    }
    api.get("stats") { _, _ -> Response in
        Response(status: .ok, headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(string: try await database.stats())))
    }
    api.get("events") { _, _ -> Response in
        guard let events else { throw HTTPError(.serviceUnavailable, message: "this server has no event stream") }
        return eventStream(events)
    }
    api.get("schedule/preview") { request, _ -> Response in
        struct Preview: Encodable {
            var schedule: String
            var timezone: String
            var description: String
            var next: [Date]
        }
        let query = request.uri.queryParameters
        guard let schedule = query.get("schedule").map({ String($0) }), !schedule.isEmpty else {
            throw TockError(.invalidInput, field: "schedule", "schedule: give ?schedule=… (e.g. 'daily at 06:00')")
        }
        let timezone = query.get("timezone").map { String($0) } ?? "UTC"
        let count = try integer(request, "count", default: 5, range: 1...100)
        let next = try await database.nextFireTimes(schedule: schedule, timezone: timezone, count: count)
        return try json(Preview(schedule: schedule, timezone: timezone,
                                description: try await database.describeSchedule(schedule), next: next))
    }

    api.get("jobs") { request, _ -> Response in
        let page = try JobPage(request)
        return try page.response(try await database.jobs(after: page.after, search: page.search, limit: page.limit))
    }
    api.post("jobs") { request, _ -> Response in
        let id = try await database.createJob(json: try await jsonBody(request, limit: maxBodyBytes))
        let job = try await database.job(String(id))
        return try json(job, status: .created, headers: [.location: "/api/v1/jobs/\(job.name)"])
    }
    api.get("jobs/:job") { _, context -> Response in
        try json(try await database.job(try context.parameters.require("job")))
    }
    api.put("jobs/:job") { request, context -> Response in
        let id = try await database.updateJob(try context.parameters.require("job"),
                                              json: try await jsonBody(request, limit: maxBodyBytes))
        return try json(try await database.job(String(id)))
    }
    api.delete("jobs/:job") { _, context -> Response in
        struct Deleted: Encodable { var jobId: Int64; var deleted: Bool }
        return try json(Deleted(jobId: try await database.deleteJob(try context.parameters.require("job")), deleted: true))
    }
    api.post("jobs/:job/pause") { _, context -> Response in
        try json(try await database.job(String(try await database.setJobEnabled(try context.parameters.require("job"), false))))
    }
    api.post("jobs/:job/resume") { _, context -> Response in
        try json(try await database.job(String(try await database.setJobEnabled(try context.parameters.require("job"), true))))
    }
    api.post("jobs/:job/trigger") { request, context -> Response in
        let job = try context.parameters.require("job"), key = try idempotencyKey(request)
        let run: TriggeredRun
        if let body = try await triggerBody(request) {
            run = try await database.runNow(job, trigger: "api", key: key, body: body)
        } else {
            run = try await database.runNow(job, trigger: "api", key: key)
        }
        let location: HTTPFields = [.location: "/api/v1/runs/\(run.runId)"]
        guard run.replayed else {
            return try json(RunAction(runId: run.runId, status: "pending"), status: .accepted, headers: location)
        }
        // The key's first call enqueued it: this one answers that run as it is now (purged when the history no
        // longer holds it), and says so.
        var headers = location
        headers[.idempotentReplayed] = "true"
        return try json(RunAction(runId: run.runId, status: run.status, replayed: true), headers: headers)
    }
    api.get("jobs/:job/stats") { _, context -> Response in
        try json(try await database.jobStats(try context.parameters.require("job")))
    }
    api.get("jobs/:job/runs") { request, context -> Response in
        let job = try context.parameters.require("job")
        let page = try RunPage(request)
        return try page.response(try await database.runs(job: job, status: page.status, before: page.before, limit: page.limit),
                                 path: "/api/v1/jobs/\(job)/runs")
    }

    addOperatorRoutes(to: api, database: database)
    api.get("runs/:id") { _, context -> Response in try json(try await database.run(try runID(context))) }
    api.get("runs/:id/output") { _, context -> Response in
        let run = try await database.run(try runID(context))
        return Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"],
                        body: .init(byteBuffer: ByteBuffer(string: run.output ?? "")))
    }
    api.post("runs/:id/cancel") { _, context -> Response in
        let id = try runID(context)
        return try json(RunAction(runId: id, status: try await database.cancel(id)), status: .accepted)
    }
    api.post("runs/:id/retry") { _, context -> Response in
        let run = try await database.retry(try runID(context))
        return try json(RunAction(runId: run, status: "pending"), status: .accepted, headers: [.location: "/api/v1/runs/\(run)"])
    }
    api.get("dead-letter") { request, _ -> Response in
        let page = try RunPage(request, fixedStatus: .dead)
        return try page.response(try await database.runs(status: .dead, before: page.before, limit: page.limit),
                                 path: "/api/v1/dead-letter")
    }
    api.get("workers") { _, _ -> Response in try json(try await database.workers()) }
    api.get("pools") { _, _ -> Response in try json(try await database.pools()) }
    api.get("config") { _, _ -> Response in try json(try await database.configSettings()) }
    api.put("config") { request, _ -> Response in
        try json(try await database.setConfig(json: try await jsonBody(request, limit: maxBodyBytes)))
    }
    api.put("pools/:pool") { request, context -> Response in
        try json(try await database.setPool(try context.parameters.require("pool"), json: try await jsonBody(request, limit: maxBodyBytes)))
    }
    api.get("hooks") { request, _ -> Response in
        try json(try await database.hooks(job: request.uri.queryParameters.get("job").map { String($0) }))
    }
    api.post("hooks") { request, _ -> Response in
        let hook = try await database.addHook(json: try await jsonBody(request, limit: maxBodyBytes))
        return try json(hook, status: .created, headers: [.location: "/api/v1/hooks/\(hook.hookId)"])
    }
    api.delete("hooks/:id") { _, context -> Response in
        struct Removed: Encodable { var hookId: Int64; var deleted: Bool }
        return try json(Removed(hookId: try await database.removeHook(try positiveID(context, "hook")), deleted: true))
    }
    api.get("deliveries") { request, _ -> Response in
        let query = request.uri.queryParameters
        let status = query.get("status").map { String($0) }  // checked by tock.delivery_page
        let before = try positiveQueryID(request, "before", what: "delivery")
        let run = try positiveQueryID(request, "run", what: "run")
        let limit = try integer(request, "limit", default: 50, range: 1...1000)
        let deliveries = try await database.deliveries(job: query.get("job").map { String($0) }, run: run, status: status,
                                                       before: before, limit: limit)
        guard deliveries.count == limit, let last = deliveries.last else { return try json(deliveries) }
        var next = "limit=\(limit)&before=\(last.id)"
        if let status { next += "&status=\(status)" }
        if let run { next += "&run=\(run)" }
        if let job = query.get("job") {
            next += "&job=" + percentEncoded(String(job))
        }
        return try json(deliveries, headers: nextPageLink(path: "/api/v1/deliveries", query: next))
    }
    api.get("deliveries/:id") { _, context -> Response in
        try json(try await database.delivery(try positiveID(context, "delivery")))
    }
    api.post("deliveries/:id/retry") { _, context -> Response in
        let id = try positiveID(context, "delivery")
        return try json(DeliveryAction(deliveryId: id, status: try await database.retryDelivery(id)), status: .accepted)
    }

    PortalFiles.addRoutes(to: router)
    return router
}

extension HTTPFields.Element.Name {
    static let idempotencyKey = Self("Idempotency-Key")!
    static let idempotentReplayed = Self("Idempotent-Replayed")!
}

/// The trigger's Idempotency-Key header, if any: one, of 1 to 200 characters and no control characters (the rule
/// tock.run_now_keyed keeps; checked here too, so a long header never reaches the database).
func idempotencyKey(_ request: Request) throws -> String? {
    let values = request.headers[values: .idempotencyKey]
    guard values.count <= 1 else {
        throw TockError(.invalidInput, field: "key", "key: give one Idempotency-Key header, not \(values.count)")
    }
    guard let key = values.first else { return nil }
    guard (1...200).contains(key.count),
          !key.unicodeScalars.contains(where: { $0.value < 0x20 || (0x7f...0x9f).contains($0.value) }) else {
        throw TockError(.invalidInput, field: "key",
                        "key: an Idempotency-Key has 1 to 200 characters and no control characters; this one has \(key.count)")
    }
    return key
}

func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) throws -> Response {
    let data = try TockJSON.encoder().encode(value)
    var fields = headers
    fields[.contentType] = "application/json"
    return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

/// A request body that must be one JSON object, at most `limit` bytes; returned as text for the SQL to check.
func jsonBody(_ request: Request, limit: Int) async throws -> String {
    let buffer: ByteBuffer
    do {
        buffer = try await request.body.collect(upTo: limit)
    } catch {
        throw APIProblem(.contentTooLarge, code: "body_too_large", field: "body",
                         "the request body is larger than \(limit / 1024) KiB")
    }
    let data = Data(buffer.readableBytesView)
    let parsed: Any
    do {
        parsed = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
    } catch {
        throw APIProblem(.badRequest, code: "malformed_json",
                         "the request body is not valid JSON (send a JSON object with Content-Type: application/json)")
    }
    guard parsed is [String: Any] else {
        throw APIProblem(.badRequest, code: "malformed_json", field: "body", "the request body must be a JSON object of job fields")
    }
    return String(decoding: data, as: UTF8.self)
}

/// A trigger's body: none (or empty), or a JSON object of at most 64 KiB whose only field is "params" (the values
/// of the job's parameters, which tock.resolved_params checks). Anything else is refused, naming it: a field Tock
/// does not understand is never silently ignored.
func triggerBody(_ request: Request) async throws -> String? {
    let buffer: ByteBuffer
    do {
        buffer = try await request.body.collect(upTo: 64 * 1024)
    } catch {
        throw APIProblem(.contentTooLarge, code: "body_too_large", field: "body", "the request body is larger than 64 KiB")
    }
    let data = Data(buffer.readableBytesView)
    guard data.contains(where: { !" \t\r\n".utf8.contains($0) }) else { return nil }
    guard let object = (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) as? [String: Any] else {
        throw APIProblem(.badRequest, code: "malformed_json", field: "body",
                         #"the request body must be a JSON object, {"params": {"name": "value"}}, or empty"#)
    }
    let unknown = object.keys.filter { $0 != "params" }.sorted().map { String($0.unicodeScalars.filter { $0.value >= 0x20 }.prefix(80)) }
    guard unknown.isEmpty else {
        throw TockError(.invalidInput, field: unknown[0],
                        "\(unknown[0]): unknown field(s) \(unknown.joined(separator: ", ")); a trigger takes params")
    }
    return String(decoding: data, as: UTF8.self)
}

/// An error with a status and code of its own (malformed JSON is a 400, not a 422).
struct APIProblem: Error {
    var status: HTTPResponse.Status
    var code: String
    var field: String?
    var message: String

    init(_ status: HTTPResponse.Status, code: String, field: String? = nil, _ message: String) {
        self.status = status
        self.code = code
        self.field = field
        self.message = message
    }
}

/// What a retry of a delivery answers.
struct DeliveryAction: Codable {
    var deliveryId: Int64
    var status: String
}

/// The path's `:id`, a positive whole number naming a `what` (hook, delivery).
func positiveID(_ context: BasicRequestContext, _ what: String) throws -> Int64 {
    let text = try context.parameters.require("id")
    guard let id = Int64(text), id > 0 else {
        throw TockError(.invalidInput, field: "id", "id: '\(text.prefix(40))' is not a \(what) id (a positive whole number)")
    }
    return id
}

func runID(_ context: BasicRequestContext) throws -> Int64 {
    try positiveID(context, "run")
}

func integer(_ request: Request, _ name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
    guard let text = request.uri.queryParameters.get(name) else { return value }
    guard let number = Int(text), range.contains(number) else {
        throw TockError(.invalidInput, field: name, "\(name): '\(text)' is not a number from \(range.lowerBound) to \(range.upperBound)")
    }
    return number
}

/// `?status=&limit=&before=` on run lists: newest first; a full page carries `Link: <…before=N>; rel="next"`.
struct RunPage {
    var status: RunStatus?
    var limit: Int
    var before: Int64?

    init(_ request: Request, fixedStatus: RunStatus? = nil) throws {
        let query = request.uri.queryParameters
        status = fixedStatus
        if fixedStatus == nil, let text = query.get("status") {
            do { status = try RunStatus(userInput: String(text)) } catch let error as InputError { throw TockError(error) }
        }
        limit = try integer(request, "limit", default: 50, range: 1...1000)
        before = try positiveQueryID(request, "before", what: "run")
    }

    func response(_ runs: [RunInfo], path: String) throws -> Response {
        guard runs.count == limit, let last = runs.last else { return try json(runs) }
        var query = "limit=\(limit)&before=\(last.id)"
        if let status { query += "&status=\(status.rawValue)" }
        return try json(runs, headers: nextPageLink(path: path, query: query))
    }
}

/// The header of a full page of a list: where the next page is.
func nextPageLink(path: String, query: String) -> HTTPFields {
    [HTTPFields.Element.Name("Link")!: "<\(path)?\(query)>; rel=\"next\""]
}

/// `?limit=&after=&q=` on the job list: name order, at most `limit` (default 500); a full page carries
/// `Link: <…after=NAME>; rel="next"`. `q` keeps the names that contain it.
struct JobPage {
    var limit: Int
    var after: String?
    var search: String?

    init(_ request: Request) throws {
        let query = request.uri.queryParameters
        limit = try integer(request, "limit", default: 500, range: 1...1000)
        after = query.get("after").map { String($0) }
        search = query.get("q").map { String($0) }.flatMap { $0.isEmpty ? nil : $0 }
        for (name, value) in [("after", after), ("q", search)] where (value?.utf8.count ?? 0) > 200 {
            throw TockError(.invalidInput, field: name, "\(name): longer than any job name (names have at most 100 characters)")
        }
    }

    func response(_ jobs: [JobInfo]) throws -> Response {
        guard jobs.count == limit, let last = jobs.last else { return try json(jobs) }
        var query = "limit=\(limit)&after=\(percentEncoded(last.name))"
        if let search { query += "&q=\(percentEncoded(search))" }
        return try json(jobs, headers: nextPageLink(path: "/api/v1/jobs", query: query))
    }

}

/// `text/event-stream`: one `data:` line per event (JSON with a `type`), a comment line as keep-alive.
func eventStream(_ events: EventHub) -> Response {
    let (id, messages) = events.subscribe()
    let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
    return Response(status: .ok, headers: headers, body: ResponseBody { writer in
        defer { events.unsubscribe(id) }
        try await writer.write(ByteBuffer(string: "retry: 2000\n: connected\n\n"))
        for await message in messages {
            switch message {
            case .event(let payload): try await writer.write(ByteBuffer(string: "data: \(payload)\n\n"))
            case .keepAlive: try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
            }
        }
        try await writer.finish(nil)
    })
}

/// How long and how many: what one slow or idle client may hold. `idleTimeout` closes a connection that has not
/// sent a complete request head within that time of opening (or of its last response), and one whose body stalls
/// that long; a response in progress (the event stream) is never cut. `maxConnections` stops accepting beyond
/// that many open connections (the rest wait in the kernel's backlog) so that descriptors never run out: it is
/// capped at half the process's descriptor limit, leaving the rest to the database pool and the scripts.
public struct HTTPLimits: Sendable {
    public var idleTimeout: Duration = .seconds(10)
    public var maxConnections: Int = 1024

    public init(idleTimeout: Duration = .seconds(10), maxConnections: Int = 1024) {
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
    }

    /// `maxConnections`, at most half the soft RLIMIT_NOFILE (and at least 16).
    public var effectiveMaxConnections: Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max else { return maxConnections }
        return max(16, min(maxConnections, Int(clamping: limit.rlim_cur / 2)))
    }

    var idleTimeoutNanoseconds: Int64 {
        idleTimeout.components.seconds * 1_000_000_000 + idleTimeout.components.attoseconds / 1_000_000_000
    }
}

/// An HTTP/1.1 server of `router` on `host:port` within `limits`.
func limitedApplication(router: Router<BasicRequestContext>, host: String, port: Int, limits: HTTPLimits,
                        logger: Logger) -> any Service {
    Application(router: router, server: .http1(configuration: .init(idleTimeout: .nanoseconds(limits.idleTimeoutNanoseconds))),
                // A backlog as deep as the connection cap: a burst of connects beyond the default 256, arriving
                // faster than a busy server accepts, would otherwise wait on TCP's SYN-ACK retransmits (1, 2, 4, 8 s
                // …) rather than in the queue, and its idle timeout would start that much later.
                configuration: .init(address: .hostname(host, port: port), serverName: "tock",
                                     backlog: max(256, limits.effectiveMaxConnections),
                                     availableConnectionsDelegate: .maximum(limits.effectiveMaxConnections, logger: logger)),
                logger: logger)
}

/// The API server and its event hub, ready to join a ServiceGroup (in this order: the hub stops first, ending
/// open event streams). Without tokens it listens only on a loopback address (a name must be `localhost` and
/// resolve to loopback alone), and binds the address it checked.
public func buildAPIServices(database: Database, settings: ConnectionSettings, host: String, port: Int,
                             access: APIAccess, metrics: TockMetrics = TockMetrics(), limits: HTTPLimits = HTTPLimits(),
                             logger: Logger) throws(TockError) -> [any Service] {
    var address = host
    if access.isOpen {
        guard let loopback = APIAccess.loopbackAddress(of: host) else {
            throw TockError(.invalidInput, field: "host",
                            "refusing to listen on \(host) without API tokens: set TOCK_API_TOKENS (token:admin,token:read) or use 127.0.0.1, ::1 or localhost")
        }
        address = loopback
        logger.warning("API without tokens: listening on loopback only", metadata: ["address": "\(address):\(port)"])
    }
    let events = EventHub(settings: settings, follow: database.primary, logger: logger)
    let application = limitedApplication(router: buildRouter(database: database, access: access, events: events, metrics: metrics),
                                         host: address, port: port, limits: limits, logger: logger)
    return [application, events]
}

func prometheusResponse(_ metrics: TockMetrics) -> Response {
    Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
             body: .init(byteBuffer: ByteBuffer(string: metrics.render())))
}

/// `--metrics-port`: a worker's or scheduler's own `/metrics` (its counters only: these roles read no views), on
/// loopback unless told otherwise.
public func buildMetricsServer(metrics: TockMetrics, host: String, port: Int, logger: Logger) -> any Service {
    let router = Router(context: BasicRequestContext.self)
    router.get("metrics") { _, _ -> Response in prometheusResponse(metrics) }
    return limitedApplication(router: router, host: host, port: port, limits: HTTPLimits(), logger: logger)
}
