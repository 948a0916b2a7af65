import Foundation
import Logging
import PostgresNIO
import Synchronization
import TockCore

/// Tells a refused connection from a slow server. When PostgreSQL is down or refuses this login, the pool keeps
/// retrying its connection and a call waits for its whole deadline; but a refused connect (nothing listens on the
/// port, the socket file is missing) or a refused startup (no such database, a wrong password, no TLS) will not
/// turn into an answer within it, so the call fails at once with the cause. A server that accepts and stays
/// silent, or a connect that cannot be decided within two seconds, is left to the deadline.
enum PostgresReachability {
    /// Calls that finish sooner never probe: no extra connection while the database answers.
    static let delay: Duration = .milliseconds(200)

    /// One probe per server per second, shared by every call waiting meanwhile: a slow database is not also
    /// sent a connection per waiting call (each accepted TCP connection is a process forked by PostgreSQL).
    private static let recent = Mutex<[String: (at: ContinuousClock.Instant, probe: Task<TockError?, Never>)]>([:])

    /// After `delay`, an `.unavailable` error when a direct connect to `settings`' server is refused, else nil.
    static func refusal(of settings: ConnectionSettings?) async -> (any Error)? {
        guard let settings, (try? await Task.sleep(for: delay)) != nil else { return nil }
        let now = ContinuousClock.now
        let probe = recent.withLock { recent in
            if let last = recent[settings.displayName], now - last.at < .seconds(1) { return last.probe }
            let probe = Task.detached { await Self.probe(settings) }
            recent[settings.displayName] = (now, probe)
            return probe
        }
        return await probe.value
    }

    static func probe(_ settings: ConnectionSettings) async -> TockError? {
        let endpoint = settings.endpoint
        let reason: String? = await withCheckedContinuation { continuation in
            // getaddrinfo and poll block: a thread of their own, not one of the cooperative pool's.
            DispatchQueue.global().async { continuation.resume(returning: refusalReason(endpoint)) }
        }
        if let reason { return TockError(.unavailable, "cannot reach PostgreSQL at \(settings.displayName): \(reason)") }
        return await startupRefusal(settings).map {
            TockError(.unavailable, "PostgreSQL at \(settings.displayName) refused the connection: \($0)")
        }
    }

    /// Why the server refuses a session for `settings` (what it said, with its SQLSTATE), or nil when a session
    /// starts, or nothing decides within two seconds.
    static func startupRefusal(_ settings: ConnectionSettings) async -> String? {
        guard var probing = try? settings.connectionConfiguration() else { return nil }
        probing.options.connectTimeout = .seconds(2)
        probing.options.additionalStartupParameters = [("application_name", "tock-probe")]
        let configuration = probing
        let outcome: Result<Void, any Error>
        do {
            // The connection is closed by the task that opened it: abandoned at the deadline, a connection that
            // starts later (a slow SCRAM exchange on a busy machine) is still closed, never dropped open.
            outcome = .success(try await awaitAbandoning(timeout: .seconds(2)) {
                let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: Self.quiet)
                try? await connection.close()
            })
        } catch {
            outcome = .failure(error)
        }
        switch outcome {
        case .success:
            return nil
        case .failure(let error as PSQLError):
            if let server = error.serverInfo, let state = server[.sqlState] {
                return "\(server[.message] ?? "refused") (SQLSTATE \(state))"
            }
            switch error.code {
            case .sslUnsupported:
                return "it does not accept TLS, and the connection settings require it (sslmode=require)"
            case .authMechanismRequiresPassword:
                return "it asks for a password and the connection settings have none (put it in DATABASE_URL or PGPASSWORD)"
            case .unsupportedAuthMechanism:
                return "it asks for an authentication method Tock does not support (use scram-sha-256, md5 or trust)"
            case .saslError:
                return "the password exchange (SCRAM) failed"
            default:
                return nil
            }
        case .failure:
            return nil
        }
    }

    private static let quiet = Logger(label: "tock.probe", factory: { _ in SwiftLogNoOpLogHandler() })

    /// Why connecting to `endpoint` is refused (every address refuses, or the socket file is missing), or nil when
    /// it connects or this cannot tell.
    static func refusalReason(_ endpoint: ConnectionSettings.Endpoint) -> String? {
        switch endpoint {
        case .unixSocket(let path):
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let capacity = MemoryLayout.size(ofValue: address.sun_path)
            guard path.utf8.count < capacity else { return nil }
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                raw.copyBytes(from: path.utf8)
                raw[path.utf8.count] = 0
            }
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return nil }
            defer { close(fd) }
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            if rc == 0 { return nil }
            switch errno {
            case ENOENT: return "the socket \(path) does not exist"
            case ECONNREFUSED: return "nothing listens on \(path) (connection refused)"
            default: return nil
            }
        case .tcp(let host, let port):
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var list: UnsafeMutablePointer<addrinfo>?
            let resolved = getaddrinfo(host, String(port), &hints, &list)
            if resolved == EAI_NONAME { return "\(host) does not resolve" }
            guard resolved == 0, let first = list else { return nil }
            defer { freeaddrinfo(first) }
            var entry: UnsafeMutablePointer<addrinfo>? = first
            var reasons: [String] = []
            while let current = entry {
                entry = current.pointee.ai_next
                guard let reason = connectRefusal(current.pointee) else { return nil }  // connected, or cannot tell
                reasons.append(reason)
            }
            return reasons.isEmpty ? nil : Set(reasons).sorted().joined(separator: ", ").lowercased()
        }
    }

    /// Connects to one address within a second: the reason it was refused, or nil.
    static func connectRefusal(_ info: addrinfo) -> String? {
        let fd = socket(info.ai_family, info.ai_socktype | Int32(SOCK_NONBLOCK.rawValue), info.ai_protocol)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var error: Int32 = 0
        if connect(fd, info.ai_addr, info.ai_addrlen) == 0 { return nil }
        if errno == EINPROGRESS {
            var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard poll(&poller, 1, 1000) == 1 else { return nil }
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 else { return nil }
        } else {
            error = errno
        }
        switch error {
        case ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, EADDRNOTAVAIL: return String(cString: strerror(error))
        default: return nil
        }
    }
}
