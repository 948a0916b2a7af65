import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Hummingbird
import HummingbirdTesting
import Logging
import PostgresNIO
import ServiceLifecycle
import Testing
import TockAPI
import TockCore
import TockPostgres
import TockTesting

/// The API's boundary: what a caller without a token, another web page, a rebinding name or a slow client can and
/// cannot do. Each of these was possible before the boundary had one decision, deny by default.
@Suite("the API boundary: paths, tokens, content types, origins, hosts, slow clients, headers")
struct BoundaryTests {
    static let admin = "admin-token-0123456789"
    static let tokens = "\(admin):admin"

    @Test("no spelling of a path reaches a handler without a token: odd paths are 404, the rest 401, never data")
    func pathVariants() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "job", script: "x.sh"))
            let run = try await database.runNow("job")
            let app = Application(router: buildRouter(database: database, access: try APIAccess.parse(Self.tokens)))
            let json: HTTPFields = [.contentType: "application/json"]
            let variants: [(String, HTTPRequest.Method)] = [
                ("//api/v1/jobs", .get), ("/./api/v1/jobs", .get), ("/api/v1/../api/v1/jobs", .get), ("/api/v1/jobs/", .get),
                ("/api/v1//jobs", .get), ("/api%2Fv1/jobs", .get), ("/api/v1%2fjobs", .get), ("/api/v1/jobs%2F", .get),
                ("api/v1/jobs", .get), ("/api/v1/jobs/job/..", .get), ("/api/v1/jobs/%2E%2E", .get), ("/api\\v1\\jobs", .get),
                ("//api/v1/runs/\(run)/output", .get), ("/api/v1/runs/\(run)/output/", .get), ("//api/v1/events", .get),
                ("//metrics", .get), ("/metrics/", .get), ("/metrics/.", .get), ("/METRICS", .get),
                ("//api/v1/jobs", .post), ("//api/v1/jobs/job", .delete), ("/api/v1/jobs/job/", .delete),
                ("//api/v1/jobs/job/trigger", .post), ("/api/v1/jobs/job/trigger/", .post), ("//api/v1/runs/\(run)/cancel", .post),
                ("/api/v1/jobs", .get), ("/api/v1/runs/\(run)/output", .get), ("/metrics", .get), ("/api/v1/health", .get),
            ]
            try await app.test(.router) { client in
                for (uri, method) in variants {
                    let body = method == .post ? ByteBuffer(string: #"{"name": "sneaky", "script": "x.sh"}"#) : nil
                    try await client.execute(uri: uri, method: method, headers: json, body: body) { response in
                        #expect([401, 404].contains(response.status.code), "\(method) \(uri): \(response.status) \(String(buffer: response.body))")
                        #expect(!String(buffer: response.body).contains("\"name\""), "\(method) \(uri) answered data")
                        #expect(response.headers[.contentType] == "application/json", "\(method) \(uri): the JSON error shape")
                    }
                }
                // With the token, the canonical spelling works and the odd ones are still 404: one rule for everyone.
                let withToken: HTTPFields = [.authorization: "Bearer \(Self.admin)", .contentType: "application/json"]
                try await client.execute(uri: "/api/v1/jobs", method: .get, headers: withToken) { #expect($0.status == .ok) }
                for uri in ["//api/v1/jobs", "/api/v1/jobs/", "/./api/v1/jobs", "/api/v1/jobs/job/..", "//metrics"] {
                    try await client.execute(uri: uri, method: .get, headers: withToken) { response in
                        #expect(response.status == .notFound, "\(uri): \(response.status)")
                    }
                }
                // The public files need no token, and only those.
                for uri in ["/", "/portal/app.js", "/portal/style.css", "/api/v1/openapi.json"] {
                    try await client.execute(uri: uri, method: .get) { #expect($0.status == .ok, "\(uri)") }
                }
                try await client.execute(uri: "/portal/app.js", method: .post, headers: json) { #expect($0.status == .unauthorized) }
            }
            #expect(try await database.jobs().map(\.name) == ["job"], "nothing created or deleted")
            #expect(try await database.runs(job: "job").map(\.status) == ["pending"], "nothing triggered or cancelled")
        }
    }

    @Test("a write without Content-Type: application/json is 415 and changes nothing, body or not",
          arguments: [nil, "text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded",
                      "multipart/form-data; boundary=x", "application/jsonp", "application/json-patch+json"])
    func contentTypes(contentType: String?) async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "job", script: "x.sh"))
            let run = try await database.runNow("job")
            let app = Application(router: buildRouter(database: database))
            let headers: HTTPFields = contentType.map { [.contentType: $0] } ?? [:]
            let body = #"{"name": "sneaky", "script": "x.sh"}"#
            let writes: [(String, HTTPRequest.Method, String?)] = [
                ("/api/v1/jobs", .post, body), ("/api/v1/jobs/job/trigger", .post, nil), ("/api/v1/jobs/job/pause", .post, nil),
                ("/api/v1/jobs/job", .put, #"{"priority": 1}"#), ("/api/v1/jobs/job", .delete, nil),
                ("/api/v1/runs/\(run)/cancel", .post, nil),
            ]
            try await app.test(.router) { client in
                for (uri, method, text) in writes {
                    try await client.execute(uri: uri, method: method, headers: headers, body: text.map { ByteBuffer(string: $0) }) { response in
                        #expect(response.status == .unsupportedMediaType, "\(method) \(uri) with \(contentType ?? "none"): \(response.status)")
                        let error = try object(response)["error"] as? [String: Any]
                        #expect(error?["code"] as? String == "unsupported_media_type")
                        #expect((error?["message"] as? String ?? "").contains("Content-Type: application/json"))
                    }
                }
            }
            #expect(try await database.jobs().map(\.name) == ["job"])
            #expect(try await database.job("job").state == "enabled")
            #expect(try await database.job("job").priority != 1)
            #expect(try await database.runs(job: "job").map(\.id) == [run], "no run triggered")
            #expect(try await database.run(run).status == "pending", "not cancelled")
        }
    }

    @Test("application/json in any case and with parameters is a write")
    func jsonVariants() async throws {
        try await TestDatabase.withFresh { database, _ in
            let app = Application(router: buildRouter(database: database))
            try await app.test(.router) { client in
                for (index, type) in ["application/json", "Application/JSON; charset=utf-8", "application/json;charset=UTF-8"].enumerated() {
                    try await client.execute(uri: "/api/v1/jobs", method: .post, headers: [.contentType: type],
                                             body: ByteBuffer(string: #"{"name": "j\#(index)", "script": "x.sh"}"#)) { response in
                        #expect(response.status == .created, "\(type): \(response.status)")
                    }
                }
            }
            #expect(try await database.jobs().count == 3)
        }
    }

    @Test("another web origin is refused (403); this server's own origin and --allowed-origins are not")
    func origins() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "job", script: "x.sh"))
            let access = APIAccess(allowedOrigins: try APIAccess.parseOrigins("https://tock.example.com/"))
            let app = Application(router: buildRouter(database: database, access: access))
            try await app.test(.router) { client in  // the test client's Host is "localhost"
                for origin in ["https://evil.example", "http://localhost.evil.example", "null", "http://localhost:9999",
                               "http://127.0.0.1", "https://tock.example.com.evil.example"] {
                    for (uri, method) in [("/api/v1/jobs/job/trigger", HTTPRequest.Method.post), ("/api/v1/jobs", .get)] {
                        try await client.execute(uri: uri, method: method, headers: [.origin: origin, .contentType: "application/json"]) { response in
                            #expect(response.status == .forbidden, "\(origin) \(method) \(uri): \(response.status)")
                            let error = try object(response)["error"] as? [String: Any]
                            #expect(error?["code"] as? String == "forbidden_origin")
                        }
                    }
                }
                for origin in ["http://localhost", "HTTP://LOCALHOST", "https://tock.example.com"] {
                    try await client.execute(uri: "/api/v1/jobs/job/trigger", method: .post,
                                             headers: [.origin: origin, .contentType: "application/json"]) { response in
                        #expect(response.status == .accepted, "\(origin): \(response.status)")
                    }
                }
            }
            #expect(try await database.runs(job: "job").count == 3, "only the three allowed triggers ran")
            #expect(throws: InputError.self) { try APIAccess.parseOrigins("tock.example.com") }
            #expect(throws: InputError.self) { try APIAccess.parseOrigins("https://tock.example.com/portal") }
        }
    }

    @Test("the loopback check resolves names: only loopback addresses and localhost may serve without tokens")
    func loopback() async throws {
        for host in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "::ffff:127.0.0.1"] {
            #expect(APIAccess.loopbackAddress(of: host) != nil, "\(host)")
        }
        for host in ["127.0.0.1.nip.io", "127.evil.example", "localhost.invalid", "10.1.2.3", "0.0.0.0", "::", "example.com",
                     "128.0.0.1", "::2", ""] {
            #expect(APIAccess.loopbackAddress(of: host) == nil, "\(host)")
        }
        #expect(APIAccess.loopbackAddress(of: "localhost").map(APIAccess.isLoopbackAddress) == true, "binds what it checked")
        for authority in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST", "[::1]:8080", "127.0.0.1"] {
            #expect(APIAccess.isLoopbackAuthority(authority), "\(authority)")
        }
        for authority in ["evil.example:8080", "127.0.0.1.nip.io:8080", "localhost.evil.example", "10.1.2.3:8080", "", "[::2]:80"] {
            #expect(!APIAccess.isLoopbackAuthority(authority), "\(authority)")
        }
        try await TestDatabase.withFresh { database, settings in
            for host in ["127.0.0.1.nip.io", "localhost.invalid", "10.1.2.3"] {
                #expect(throws: TockError.self, "\(host)") {
                    _ = try buildAPIServices(database: database, settings: settings, host: host, port: 0, access: APIAccess(),
                                             logger: TestDatabase.logger)
                }
            }
            _ = try buildAPIServices(database: database, settings: settings, host: "10.1.2.3", port: 0,
                                     access: try APIAccess.parse(Self.tokens), logger: TestDatabase.logger)
        }
    }

    @Test("every response carries the security headers: a CSP without inline script, no framing, nosniff, no referrer")
    func securityHeaders() async throws {
        try await TestDatabase.withFresh { database, _ in
            let app = Application(router: buildRouter(database: database, access: try APIAccess.parse(Self.tokens)))
            try await app.test(.router) { client in
                for (uri, status) in [("/", 200), ("/portal/app.js", 200), ("/api/v1/openapi.json", 200), ("/api/v1/jobs", 401),
                                      ("/nowhere", 401), ("//api/v1/jobs", 404)] {
                    try await client.execute(uri: uri, method: .get) { response in
                        #expect(response.status.code == status, "\(uri)")
                        let csp = response.headers[.contentSecurityPolicy] ?? ""
                        #expect(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"), "\(uri): \(csp)")
                        #expect(csp.contains("frame-ancestors 'none'"))
                        #expect(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"))
                        #expect(response.headers[.xContentTypeOptions] == "nosniff")
                        #expect(response.headers[HTTPFields.Element.Name("Referrer-Policy")!] == "no-referrer")
                        #expect(response.headers[HTTPFields.Element.Name("X-Frame-Options")!] == "DENY")
                    }
                }
                // What the policy allows is all the portal needs: no inline script, handler or style attribute.
                let html = try await client.execute(uri: "/", method: .get) { String(buffer: $0.body) }
                let js = try await client.execute(uri: "/portal/app.js", method: .get) { String(buffer: $0.body) }
                #expect(html.ranges(of: /<script[^>]*>/).count == html.ranges(of: /<script src="\/portal\/[a-z]+\.js"><\/script>/).count)
                #expect(html.firstMatch(of: /(?i)\son[a-z]+\s*=|\sstyle\s*=|javascript:|<style/) == nil)
                #expect(js.firstMatch(of: /\bstyle:|innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function/) == nil)
            }
        }
    }

    @Test("a refused PostgreSQL connection answers 503 at once; a server that accepts and stays silent waits the deadline")
    func unavailableFast() async throws {
        let server = try TestDatabase.serverSettings()
        // A port nothing listens on, and a socket file that does not exist.
        let closed = try TestPorts.free()
        var refused = server
        refused.endpoint = .tcp(host: "127.0.0.1", port: closed)
        var missing = server
        missing.endpoint = .unixSocket(path: "/tmp/tock-no-such-dir-\(getpid())/.s.PGSQL.5432")
        for settings in [refused, missing] {
            // Far below the deadline, not a speed target: a refusal is seen at once, the deadline is 120 s (20 s
            // seen for a refusal on two cores busy with another suite).
            let elapsed = try await Self.timeRequest(settings: settings, callTimeout: .seconds(120), expect: 503)
            #expect(elapsed < .seconds(60), "\(settings.displayName): \(elapsed)")
        }
        // A listener that never accepts: the kernel completes the connect, nothing answers.
        let silent = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(silent) }
        let port = try Self.bindLoopback(silent)
        #expect(listen(silent, 16) == 0)
        var quiet = server
        quiet.endpoint = .tcp(host: "127.0.0.1", port: port)
        let waited = try await Self.timeRequest(settings: quiet, callTimeout: .milliseconds(1500), expect: 503)
        #expect(waited >= .milliseconds(1500), "a silent server is not a refused one: \(waited)")
    }

    /// How long `GET /api/v1/jobs` took against a pool on `settings`, which must answer `expect`.
    static func timeRequest(settings: ConnectionSettings, callTimeout: Duration, expect: Int) async throws -> Duration {
        try await TestDatabase.withClient(settings) { client in
            var database = Database(client: client, logger: TestDatabase.logger, settings: settings)
            database.callTimeout = callTimeout
            let app = Application(router: buildRouter(database: database))
            return try await app.test(.router) { client in
                let start = ContinuousClock.now
                try await client.execute(uri: "/api/v1/jobs", method: .get) { response in
                    #expect(response.status.code == expect, "\(String(buffer: response.body))")
                    let message = (try object(response)["error"] as? [String: Any])?["message"] as? String ?? ""
                    print("unavailableFast: \(settings.displayName) answered \(response.status.code) after \(ContinuousClock.now - start): \(message)")
                }
                return ContinuousClock.now - start
            }
        }
    }

    @Test("without tokens, a Host that is not loopback (DNS rebinding) is refused over real HTTP; the server's own is not")
    func rebinding() async throws {
        try await TestDatabase.withFresh { database, settings in
            _ = try await database.createJob(JobDefinition(name: "job", script: "x.sh"))
            try await Self.withLiveAPI(database: database, settings: settings) { port in
                for host in ["evil.example:\(port)", "127.0.0.1.nip.io:\(port)", "attacker.example"] {
                    let response = try await RawHTTP.exchange(port: port, "GET /api/v1/jobs HTTP/1.1\r\nHost: \(host)\r\n\r\n")
                    #expect(response.status == 421, "\(host): \(response.text)")
                    #expect(!response.text.contains("\"name\""))
                    let write = try await RawHTTP.exchange(port: port, "POST /api/v1/jobs/job/trigger HTTP/1.1\r\nHost: \(host)\r\n"
                                                     + "Content-Type: application/json\r\nContent-Length: 0\r\n\r\n")
                    #expect(write.status == 421, "\(host): \(write.text)")
                }
                for host in ["127.0.0.1:\(port)", "localhost:\(port)"] {
                    let response = try await RawHTTP.exchange(port: port, "GET /api/v1/jobs HTTP/1.1\r\nHost: \(host)\r\n\r\n")
                    #expect(response.status == 200, "\(host): \(response.text)")
                }
                // No Host at all (HTTP/1.0) or two of them: refused too.
                #expect(try await RawHTTP.exchange(port: port, "GET /api/v1/jobs HTTP/1.0\r\n\r\n").status == 421)
                #expect(try await RawHTTP.exchange(port: port, "GET /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n").status == 400)
                // The doubled slash over the wire, as the probe sent it.
                #expect(try await RawHTTP.exchange(port: port, "GET //api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").status == 404)
                // A cross-site "simple" form post from a page on another origin.
                let form = try await RawHTTP.exchange(port: port, "POST /api/v1/jobs/job/trigger HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n"
                                                + "Origin: https://evil.example\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}")
                #expect(form.status == 403, "\(form.text)")
            }
            #expect(try await database.runs(job: "job").isEmpty)
        }
    }

    @Test("300 half-sent requests are closed after the header timeout, and /api/v1/health answers before that")
    func slowClients() async throws {
        try await TestDatabase.withFresh { database, settings in
            let limits = HTTPLimits(idleTimeout: .seconds(3))
            try await Self.withLiveAPI(database: database, settings: settings, limits: limits) { port in
                let started = ContinuousClock.now  // no slow client is older
                // Connected on a thread of their own: a connect() waits while the server's accept queue is full (a
                // busy machine), and on the cooperative pool that wait starved every other test in the process.
                let clients = try await RawHTTP.offPool { () throws -> [(fd: Int32, opened: ContinuousClock.Instant)] in
                    var clients: [(fd: Int32, opened: ContinuousClock.Instant)] = []
                    for index in 0..<300 {
                        let fd = try RawHTTP.connect(port: port)
                        clients.append((fd, ContinuousClock.now))
                        // A head that never ends, and (every other one) a body that never comes.
                        let text = index % 2 == 0 ? "GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
                            : "POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
                        try RawHTTP.send(fd, text)
                    }
                    return clients
                }
                let slow = clients.map(\.fd)
                defer { slow.forEach { close($0) } }
                let opened = ContinuousClock.now
                let health = try await RawHTTP.exchange(port: port, "GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                let healthTook = ContinuousClock.now - opened
                let healthAnswered = ContinuousClock.now - started
                #expect(health.status == 200, "\(health.text)")
                // Every slow connection is closed by the server (EOF, or an error response then EOF) after the timeout.
                let closedAfter = try await RawHTTP.closeTimes(slow, since: started, timeout: .seconds(60))
                #expect(!closedAfter.contains(nil), "\(closedAfter.filter { $0 == nil }.count) of 300 slow clients were kept open")
                // Each connection's time open, from its own connect.
                let open = zip(clients, closedAfter).compactMap { client, closed in
                    closed.map { started + $0 - client.opened }
                }
                let first = closedAfter.compactMap { $0 }.min() ?? .zero
                let shortest = open.min() ?? .zero, longest = open.max() ?? .zero
                print("slowClients: health answered in \(healthTook); 300 slow clients opened in \(opened - started), each closed \(shortest) to \(longest) after it connected")
                #expect(shortest >= .milliseconds(2900), "closed before the timeout: \(shortest)")
                #expect(healthAnswered < first, "health waited \(healthAnswered) behind the slow clients")
                #expect(longest < .seconds(20), "closed within the timeout and a (generous: a loaded machine) margin: \(longest)")
                #expect(try await RawHTTP.exchange(port: port, "GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").status == 200)
            }
        }
    }

    @Test("beyond the connection limit new clients wait in the backlog, and are served once the slow ones time out")
    func connectionLimit() async throws {
        try await TestDatabase.withFresh { database, settings in
            let limits = HTTPLimits(idleTimeout: .seconds(1), maxConnections: 20)
            #expect(limits.effectiveMaxConnections == 20)
            try await Self.withLiveAPI(database: database, settings: settings, limits: limits) { port in
                let slow = try await RawHTTP.offPool { () throws -> [Int32] in
                    var slow: [Int32] = []
                    for _ in 0..<40 {
                        let fd = try RawHTTP.connect(port: port)
                        slow.append(fd)
                        try RawHTTP.send(fd, "GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                    }
                    return slow
                }
                defer { slow.forEach { close($0) } }
                let start = ContinuousClock.now
                async let health = RawHTTP.exchange(port: port, "GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", timeout: .seconds(60))
                let closedAfter = try await RawHTTP.closeTimes(slow, since: start, timeout: .seconds(60)).compactMap { $0 }
                #expect(closedAfter.count == 40, "every slow client is closed in the end")
                // Without the limit all 40 would time out together; with it, the first wave is the 20 accepted (and
                // the few NIO accepts in one read beyond them), the rest are accepted as those close.
                let firstWave = closedAfter.filter { $0 < (closedAfter.min() ?? .zero) + .milliseconds(500) }.count
                #expect(firstWave <= 24, "\(firstWave) connections were held at once")
                let served = try await health
                #expect(served.status == 200)
                print("connectionLimit: first wave \(firstWave) of 40 closed; health answered after \(ContinuousClock.now - start)")
            }
        }
    }

    // MARK: Helpers

    /// Runs the API as `tock api` does (buildAPIServices: limits, loopback binding) on a free port.
    static func withLiveAPI(database: Database, settings: ConnectionSettings, access: APIAccess = APIAccess(),
                            limits: HTTPLimits = HTTPLimits(), _ body: @Sendable (Int) async throws -> Void) async throws {
        let port = try TestPorts.free()
        let services = try buildAPIServices(database: database, settings: settings, host: "127.0.0.1", port: port,
                                            access: access, limits: limits, logger: TestDatabase.logger)
        let group = ServiceGroup(configuration: .init(services: services.map { .init(service: $0) }, logger: TestDatabase.logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let outcome: Result<Void, any Error>
            do {
                #expect(try await eventually(timeout: .seconds(20)) { (try? RawHTTP.connect(port: port)).map { close($0) } != nil })
                try await body(port)
                outcome = .success(())
            } catch {
                outcome = .failure(error)
            }
            // Shut down and wait, never cancel: cancelling the server while it holds accepted connections that
            // it has not handed out yet traps in NIO ("Deinited NIOAsyncWriter without calling finish()").
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            try outcome.get()
        }
    }

    /// Binds `fd` to 127.0.0.1 on a port the kernel picks, and returns the port.
    static func bindLoopback(_ fd: Int32) throws -> Int {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw TockError(.failed, "bind: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// HTTP/1.1 over a plain socket: the bytes exactly as written (a Host of any name, a head that never ends).
enum RawHTTP {
    struct Response {
        var status: Int
        var text: String
    }

    static func connect(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw TockError(.unavailable, "connect 127.0.0.1:\(port): \(reason)")
        }
        return fd
    }

    static func send(_ fd: Int32, _ text: String) throws {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw TockError(.unavailable, "send: \(String(cString: strerror(errno)))") }
            sent += n
        }
    }

    /// Runs blocking socket calls on a thread of their own: the cooperative pool (two threads on two cores) is
    /// the server's too, and a test blocking it would starve the very server it waits on.
    static func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
        }
    }

    static func exchange(port: Int, _ request: String, timeout: Duration = .seconds(10)) async throws -> Response {
        try await offPool { try exchangeBlocking(port: port, request, timeout: timeout) }
    }

    /// Sends `request` on a new connection and reads until the server closes it or a whole response is in.
    static func exchangeBlocking(port: Int, _ request: String, timeout: Duration) throws -> Response {
        let fd = try connect(port: port)
        defer { close(fd) }
        try send(fd, request)
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 100) >= 0 else { break }
            if poller.revents == 0 { continue }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            received += buffer[0..<n]
            let text = String(decoding: received, as: UTF8.self)
            if let end = text.range(of: "\r\n\r\n") {
                let head = text[..<end.lowerBound].lowercased()
                let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                    .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) }
                if let length, text.utf8.count - text.utf8.distance(from: text.startIndex, to: end.upperBound) >= length { break }
            }
        }
        let text = String(decoding: received, as: UTF8.self)
        let status = Int(text.split(separator: " ").dropFirst().first ?? "") ?? 0
        return Response(status: status, text: text)
    }

    /// When the server closed each of `fds` (EOF or a reset; an error response before that is fine), counted from
    /// `since`; nil for one still open after `timeout`.
    static func closeTimes(_ fds: [Int32], since: ContinuousClock.Instant, timeout: Duration) async throws -> [Duration?] {
        try await offPool {
            var times = [Duration?](repeating: nil, count: fds.count)
            var buffer = [UInt8](repeating: 0, count: 4096)
            let deadline = ContinuousClock.now + timeout
            while times.contains(nil) && ContinuousClock.now < deadline {
                var pollers = fds.enumerated().filter { times[$0.offset] == nil }.map { pollfd(fd: $0.element, events: Int16(POLLIN), revents: 0) }
                guard poll(&pollers, nfds_t(pollers.count), 50) >= 0 else { break }
                for poller in pollers where poller.revents != 0 {
                    if recv(poller.fd, &buffer, buffer.count, 0) <= 0, let index = fds.firstIndex(of: poller.fd) {
                        times[index] = ContinuousClock.now - since
                    }
                }
            }
            return times
        }
    }
}
