import Foundation
import Hummingbird
import Logging
import TockCore

/// Every error becomes one JSON shape, `{"error": {"code", "message", "field"}}`, with the status its kind
/// implies: 400 malformed, 401/403 auth, 404, 409, 413, 415 not JSON, 421 wrong Host, 422 invalid values. Never
/// a stack trace; a 500 only for what is truly the server's fault, and then the detail goes to the log.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let problem as APIProblem {
            return try errorResponse(status: problem.status, code: problem.code, message: problem.message, field: problem.field)
        } catch let error as HTTPError {
            let code = switch error.status {
            case .notFound: "not_found"
            case .unauthorized: "unauthorized"
            case .forbidden: "forbidden"
            case .contentTooLarge: "body_too_large"
            case .methodNotAllowed: "method_not_allowed"
            case .serviceUnavailable: "unavailable"
            case .unsupportedMediaType: "unsupported_media_type"
            default: "bad_request"
            }
            let message = error.body ?? (error.status == .notFound
                ? "no such endpoint: \(request.method) \(request.uri.path) (see /api/v1/openapi.json)" : error.status.reasonPhrase)
            return try errorResponse(status: error.status, code: code, message: message, field: nil)
        } catch {
            let tock = TockError(from: error)
            let status: HTTPResponse.Status = switch tock.kind {
            case .invalidInput: .unprocessableContent
            case .notFound: .notFound
            case .conflict: .conflict
            case .unavailable: .serviceUnavailable
            case .forbidden: .forbidden
            case .failed: .internalServerError
            }
            if tock.kind == .failed { logger.error("request failed", metadata: ["error": "\(String(reflecting: error))"]) }
            return try errorResponse(status: status, code: Self.code(tock),
                                     message: tock.kind == .failed ? "internal error; see the server's log" : tock.message,
                                     field: tock.field)
        }
    }

    /// `invalid_schedule` for a bad `schedule.cron`, `unknown_field`, `conflict`, …: what a client can branch on.
    static func code(_ error: TockError) -> String {
        guard error.kind == .invalidInput else { return error.kind.rawValue }
        if error.message.contains("unknown field") { return "unknown_field" }
        guard let field = error.field, let head = field.split(separator: ".").first else { return "invalid_input" }
        return "invalid_\(head)"
    }

    func errorResponse(status: HTTPResponse.Status, code: String, message: String, field: String?) throws -> Response {
        struct Body: Encodable {
            struct Detail: Encodable { var code: String; var message: String; var field: String? }
            var error: Detail
        }
        return try json(Body(error: .init(code: code, message: message, field: field)), status: status)
    }
}
