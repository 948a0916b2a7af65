import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import TockCore
import TockPostgres

/// The JSON API: reads come from the tock.* views, writes call the SQL functions (through `Database`), so the
/// API adds no rules of its own. Errors are `{"error": {"code", "message", "field"}}` with a 4xx, never a trace.
public func buildRouter(database: Database, access: APIAccess = APIAccess()) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: ErrorMiddleware(logger: database.logger))
    router.add(middleware: AuthMiddleware(access: access))
    let api = router.group("api/v1")

    api.get("health") { _, _ -> Response in
        struct Health: Encodable {
            var status: String
            var database: String
            var workersAlive: Int
            var queue: QueueDepth
        }
        let alive = try await database.workers().filter(\.alive).count
        return try json(Health(status: alive > 0 ? "ok" : "degraded", database: "reachable", workersAlive: alive,
                               queue: try await database.queueDepth()))
    }
    api.get("jobs") { _, _ -> Response in try json(try await database.jobs()) }
    api.get("jobs/:job") { _, context -> Response in
        try json(try await database.job(try context.parameters.require("job")))
    }
    api.post("jobs/:job/trigger") { _, context -> Response in
        let run = try await database.runNow(try context.parameters.require("job"), trigger: "api")
        return try json(RunAction(runId: run, status: "pending"), status: .accepted)
    }
    api.get("jobs/:job/runs") { request, context -> Response in
        let job = try context.parameters.require("job")
        var status: RunStatus?
        if let text = request.uri.queryParameters.get("status") {
            do { status = try RunStatus(userInput: String(text)) } catch let error as InputError { throw TockError(error) }
        }
        return try json(try await database.runs(job: job, status: status, limit: try limit(request)))
    }
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
        try json(RunAction(runId: try await database.retry(try runID(context)), status: "pending"), status: .accepted)
    }
    api.get("dead-letter") { request, _ -> Response in
        try json(try await database.runs(status: .dead, limit: try limit(request)))
    }
    api.get("workers") { _, _ -> Response in try json(try await database.workers()) }
    return router
}

func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
    let data = try TockJSON.encoder().encode(value)
    return Response(status: status, headers: [.contentType: "application/json"],
                    body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

func runID(_ context: BasicRequestContext) throws -> Int64 {
    let text = try context.parameters.require("id")
    guard let id = Int64(text), id > 0 else {
        throw TockError(.invalidInput, field: "id", "id: '\(text)' is not a run id (a positive whole number)")
    }
    return id
}

func limit(_ request: Request) throws -> Int {
    guard let text = request.uri.queryParameters.get("limit") else { return 50 }
    guard let value = Int(text), (1...1000).contains(value) else {
        throw TockError(.invalidInput, field: "limit", "limit: '\(text)' is not a number from 1 to 1000")
    }
    return value
}

/// Every error becomes the one JSON shape, with the status its kind implies.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError {
            let code = error.status == .notFound ? "not_found" : error.status == .unauthorized ? "unauthorized"
                : error.status == .forbidden ? "forbidden" : "bad_request"
            return try errorResponse(status: error.status, code: code, message: error.body ?? error.status.reasonPhrase, field: nil)
        } catch {
            let tock = TockError(from: error)
            let status: HTTPResponse.Status = switch tock.kind {
            case .invalidInput: .unprocessableContent
            case .notFound: .notFound
            case .conflict: .conflict
            case .unavailable: .serviceUnavailable
            case .failed: .internalServerError
            }
            if tock.kind == .failed { logger.error("request failed", metadata: ["error": "\(String(reflecting: error))"]) }
            return try errorResponse(status: status, code: tock.kind == .invalidInput ? "invalid_input" : tock.kind.rawValue,
                                     message: tock.kind == .failed ? "internal error; see the server's log" : tock.message,
                                     field: tock.field)
        }
    }

    func errorResponse(status: HTTPResponse.Status, code: String, message: String, field: String?) throws -> Response {
        struct Body: Encodable {
            struct Detail: Encodable { var code: String; var message: String; var field: String? }
            var error: Detail
        }
        return try json(Body(error: .init(code: code, message: message, field: field)), status: status)
    }
}

/// Bearer tokens: any valid token reads; writes (anything but GET/HEAD) need an admin token.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let access: APIAccess

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard !access.isOpen else { return try await next(request, context) }
        let header = request.headers[.authorization] ?? ""
        guard header.hasPrefix("Bearer "), let role = access.tokens[String(header.dropFirst(7))] else {
            throw HTTPError(.unauthorized, message: "send Authorization: Bearer <token> (a token from TOCK_API_TOKENS)")
        }
        if request.method != .get && request.method != .head && role != .admin {
            throw HTTPError(.forbidden, message: "this token is read-only; writes need an admin token")
        }
        return try await next(request, context)
    }
}

/// The API server, ready to join a ServiceGroup. Refuses to listen beyond loopback without tokens.
public func buildAPIServer(database: Database, host: String, port: Int, access: APIAccess,
                           logger: Logger) throws(TockError) -> some Service {
    if access.isOpen && !APIAccess.isLoopback(host) {
        throw TockError(.invalidInput, field: "host",
                        "refusing to listen on \(host) without API tokens: set TOCK_API_TOKENS (token:admin,token:read) or use 127.0.0.1")
    }
    if access.isOpen {
        logger.warning("API without tokens: listening on loopback only", metadata: ["address": "\(host):\(port)"])
    }
    return Application(router: buildRouter(database: database, access: access),
                       configuration: .init(address: .hostname(host, port: port), serverName: "tock"),
                       logger: logger)
}
