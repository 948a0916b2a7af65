import PostgresNIO
import TockCore

extension TockError {
    /// Turns what PostgreSQL said into an error a person can act on. Tock's SQL raises 22023 (bad input, the
    /// field in COLUMN), P0002 (unknown job or run) and 23505 (duplicate); constraint names map to the rule.
    public init(from error: any Error, settings: ConnectionSettings? = nil) {
        if let tock = error as? TockError {
            self = tock
            return
        }
        guard let psql = error as? PSQLError else {
            // The pool's own refusals (its module is underscored, so its type is matched by name): above all its
            // circuit breaker, which fails every request for a while after connections could not be created (a
            // server with no connection free). A passing condition: the caller retries, as for the server's 53300.
            if "\(type(of: error))" == "ConnectionPoolError", "\(error)".contains("CircuitBreakerTripped") {
                self.init(.unavailable, "PostgreSQL gave this process no connection for a while; trying again (\(error))")
                return
            }
            self.init(.failed, String(describing: error))
            return
        }
        if let server = psql.serverInfo, let state = server[.sqlState] {
            let message = server[.message] ?? "the database refused the request"
            let field = server[.columnName]
            switch state {
            case "22023", "22P02", "22007", "22008", "22003":
                self.init(.invalidInput, field: field, message)
            case _ where state.hasPrefix("22"):
                // Any other data exception (a NUL escape in JSON, a number too large for its type) is bad input too.
                self.init(.invalidInput, field: field, "\(message) (SQLSTATE \(state))")
            case "P0002":
                self.init(.notFound, field: field, message)
            case "23505", "55000":
                self.init(.conflict, field: field, message)
            case "25006" where settings?.followsPrimary == true:
                // A standby with several servers named: a failover under way, which PrimaryClient follows.
                self.init(.unavailable, "PostgreSQL at \(settings.map { $0.endpoint.displayName } ?? "?") is read-only now "
                    + "(\(message)): looking for the server that accepts writes")
            case "25006":
                // One server named, and it is a standby (or read-only by default): a mistake to report, not to wait out.
                self.init(.failed, "PostgreSQL\(settings.map { " at \($0.endpoint.displayName)" } ?? "") is read-only "
                    + "(\(message)): a standby, not the primary. Name every server in DATABASE_URL "
                    + "(postgres://h1,h2/tock?target_session_attrs=read-write) and Tock connects to the one that accepts writes")
            case _ where state.hasPrefix("08") || state.hasPrefix("57P"):
                // Connection failures and the server shutting down or restarting: try again later.
                self.init(.unavailable, "PostgreSQL is unavailable (\(message))")
            case _ where state.hasPrefix("53") || state.hasPrefix("40") || state == "55P03" || state == "57014":
                // Passing conditions, not bad requests: too many connections, a full disk or out of memory (class 53),
                // a deadlock or serialization failure (class 40), a lock or statement timeout. Unavailable, so a
                // worker retries its report rather than dropping a run's result, and the API answers 503.
                self.init(.unavailable, "PostgreSQL could not do it now; try again (\(message), SQLSTATE \(state))")
            case "23514", "23503", "23502":
                let constraint = server[.constraintName] ?? ""
                self.init(.invalidInput, field: TockError.field(ofConstraint: constraint),
                          "\(message) (\(TockError.rule(ofConstraint: constraint)))")
            case "42501" where message.contains("lease token") || message.hasPrefix("p_now:"):
                // Tock's own refusals (a worker's identity, the clock): the role is fine, the call is not.
                self.init(.forbidden, message)
            case "42501":
                self.init(.forbidden, "\(message): the database role lacks Tock's privileges; connect as a member of "
                    + "tock_admin (jobs, runs, scheduler, API), tock_worker (workers) or tock_viewer (read-only)")
            case "42P01", "42883", "3F000":
                self.init(.unavailable, "Tock's schema is missing or out of date (\(message)); run `tock migrate`")
            default:
                self.init(.failed, "\(message) (SQLSTATE \(state))")
            }
            return
        }
        let place = settings.map { " at \($0.displayName)" } ?? ""
        switch psql.code {
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .poolClosed, .uncleanShutdown:
            self.init(.unavailable, "cannot reach PostgreSQL\(place): \(String(reflecting: psql.underlying.map { "\($0)" } ?? "\(psql.code)"))")
        default:
            self.init(.failed, "PostgreSQL\(place): \(String(reflecting: psql))")
        }
    }

    /// A passing shortage to wait out rather than fail on: no connection free (SQLSTATE 53300, `max_connections`
    /// reached, or the pool's circuit breaker after it) or a server still starting (57P03). Read from the message,
    /// which carries the SQLSTATE whether the refusal came from the connect probe (PostgresReachability) or the pool.
    /// A wrong password, database or address, or a server that does not answer, is not one.
    public var waitsOut: Bool {
        kind == .unavailable
            && ["SQLSTATE 53300", "SQLSTATE 57P03", "too many clients", "no connection for a while"].contains { message.contains($0) }
    }

    /// Whether `error` is what a failover looks like from a client: the server unreachable or silent, a connection
    /// lost, the server shutting down or starting, or read-only (a standby). Not a shortage of connections or a
    /// busy server: those send no look for another primary (PrimaryClient), each a connection to every server.
    static func suggestsFailover(_ error: any Error) -> Bool {
        if let psql = error as? PSQLError {
            if let state = psql.serverInfo?[.sqlState] {
                return state == "25006" || state == "57P01" || state == "57P02" || state.hasPrefix("08")
            }
            switch psql.code {
            case .connectionError, .serverClosedConnection, .uncleanShutdown: return true
            default: return false
            }
        }
        // A refused connect (PostgresReachability) or a call timeout.
        if let tock = error as? TockError { return tock.kind == .unavailable && !tock.waitsOut }
        return false
    }

    static func field(ofConstraint name: String) -> String? {
        // jobs_timezone_is_valid -> timezone
        let parts = name.split(separator: "_")
        guard parts.count >= 3 else { return nil }
        return parts.dropFirst().prefix { $0 != "is" && $0 != "are" && $0 != "has" && $0 != "iff" }.joined(separator: "_")
    }

    static func rule(ofConstraint name: String) -> String {
        name.isEmpty ? "a database rule" : "rule \(name)"
    }
}
