import Foundation
import Hummingbird
import TockCore

/// The API's one access decision, deny by default, made for every request after the router has matched it and
/// before any handler runs. In order:
/// 1. The path is canonical: `/` or `/segment/…` of letters, digits and `._~-`, no `.` or `..` segment. The
///    router ignores empty segments and does not decode `%2F`, so `//api/v1/jobs`, `/metrics/` and the like would
///    reach a handler under another spelling; they are answered 404 instead, whoever asks.
/// 2. Without tokens, `Host` names a loopback address or `localhost` (or an allowed origin's host): a page that
///    rebinds its own name to 127.0.0.1 still sends its own name.
/// 3. An `Origin`, when sent, is this server's (`http(s)://` + `Host`) or an allowed origin: no other web page
///    may call the API from an operator's browser.
/// 4. With tokens, every endpoint but the public ones needs a valid token, and writes an admin token. The
///    public ones hold no data: the portal's files and the OpenAPI document. They are named by the route the
///    router matched, so what is public is what that route serves, under any spelling the router accepts.
/// 5. Anything but GET/HEAD carries `Content-Type: application/json`, body or not: a cross-site form or a
///    "simple" fetch cannot set it without a CORS preflight, which this server never grants.
struct AccessMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let access: APIAccess

    /// The field the server turns into the authority; a second one stays a field.
    static let host = HTTPFields.Element.Name("Host")!

    /// Route patterns (as the router names the endpoint it matched) that GET and HEAD may read without a token.
    static let publicEndpoints: Set<String> = ["/", "/portal/{file}", "/api/v1/openapi.json"]

    /// Runs the handler with the caller as the audit log names it: `api:` and the token's name, or `api:anonymous`
    /// without tokens.
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let caller = try check(request, endpoint: context.endpointPath)
        return try await AuditActor.$current.withValue("api:\(caller ?? "anonymous")") {
            try await next(request, context)
        }
    }

    /// Lets the request through or throws; returns the name of the token it carried, if any.
    @discardableResult
    func check(_ request: Request, endpoint: String?) throws(APIProblem) -> String? {
        let path = request.uri.path
        guard Self.isCanonical(path) else {
            throw APIProblem(.notFound, code: "not_found",
                             "no such endpoint: \(request.method) \(path) (paths have no empty, '.' or '..' segments and no %-escapes; see /api/v1/openapi.json)")
        }
        if request.headers[Self.host] != nil {
            throw APIProblem(.badRequest, code: "bad_request", "the request has more than one Host header")
        }
        let authority = request.head.authority ?? ""
        if access.isOpen && !APIAccess.isLoopbackAuthority(authority) && !isAllowed(origins: ["http://\(authority)", "https://\(authority)"]) {
            throw APIProblem(.misdirectedRequest, code: "wrong_host",
                             "Host '\(authority)' is not this server's loopback address: without TOCK_API_TOKENS the API answers only requests to 127.0.0.1, ::1 or localhost (or a host of --allowed-origins)")
        }
        let origins = request.headers[values: .origin]
        if origins.count > 1 {
            throw APIProblem(.forbidden, code: "forbidden_origin", "the request has more than one Origin header")
        }
        if let origin = origins.first?.lowercased(), !isSameOrigin(origin, authority: authority), !isAllowed(origins: [origin]) {
            throw APIProblem(.forbidden, code: "forbidden_origin",
                             "a page of \(origin) may not call this API: only this server's own pages and --allowed-origins (TOCK_ALLOWED_ORIGINS) may")
        }
        let reads = request.method == .get || request.method == .head
        var caller: String?
        if !access.isOpen && !(reads && endpoint.map(Self.publicEndpoints.contains) == true) {
            let header: String = request.headers[.authorization] ?? ""
            // EventSource cannot send headers, so the event stream also takes the token as ?access_token=.
            var token: String?
            if header.hasPrefix("Bearer ") {
                token = String(header.dropFirst(7))
            } else if endpoint == "/api/v1/events", let query = request.uri.queryParameters.get("access_token") {
                token = String(query)
            }
            guard let token, let grant = access.tokens[token] else {
                throw APIProblem(.unauthorized, code: "unauthorized", "send Authorization: Bearer <token> (a token from TOCK_API_TOKENS)")
            }
            if !reads && grant.role != .admin {
                throw APIProblem(.forbidden, code: "forbidden", "this token is read-only; writes need an admin token")
            }
            caller = grant.name
        }
        if !reads && !Self.isJSON(request.headers[.contentType]) {
            throw APIProblem(.unsupportedMediaType, code: "unsupported_media_type",
                             "\(request.method) needs Content-Type: application/json, even without a body (got \(request.headers[.contentType].map { "'\($0)'" } ?? "none"))")
        }
        return caller
    }

    /// `/` or `/a/b` where every segment is letters, digits or `._~-`, and none is `.` or `..`.
    static func isCanonical(_ path: String) -> Bool {
        if path == "/" { return true }
        guard path.hasPrefix("/") else { return false }
        for segment in path.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst() {
            guard !segment.isEmpty, !segment.elementsEqual(".".utf8), !segment.elementsEqual("..".utf8) else { return false }
            for byte in segment {
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                     UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "-"):
                    continue
                default:
                    return false
                }
            }
        }
        return true
    }

    /// `application/json`, with or without parameters (`; charset=utf-8`), in any case.
    static func isJSON(_ contentType: String?) -> Bool {
        guard let contentType else { return false }
        let mediaType = contentType.split(separator: ";", maxSplits: 1).first ?? ""
        return mediaType.trimmingCharacters(in: .whitespaces).lowercased() == "application/json"
    }

    func isSameOrigin(_ origin: String, authority: String) -> Bool {
        !authority.isEmpty && (origin == "http://\(authority.lowercased())" || origin == "https://\(authority.lowercased())")
    }

    func isAllowed(origins: [String]) -> Bool {
        origins.contains { access.allowedOrigins.contains($0.lowercased()) }
    }
}
