import Foundation

/// Where the database is: from `DATABASE_URL`, or the usual libpq `PG*` variables.
public struct ConnectionSettings: Sendable, Equatable {
    public enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        /// The socket file itself, e.g. `/srv/tock/.tock/run/.s.PGSQL.5432`.
        case unixSocket(path: String)
    }

    public var endpoint: Endpoint
    public var username: String
    public var password: String?
    public var database: String
    public var requireTLS: Bool = false

    public init(endpoint: Endpoint, username: String, password: String? = nil, database: String) {
        self.endpoint = endpoint
        self.username = username
        self.password = password
        self.database = database
    }

    /// From the environment, or nil when neither `DATABASE_URL` nor any `PGHOST`/`PGDATABASE`/… is set.
    public static func fromEnvironment(_ environment: [String: String]) throws(InputError) -> ConnectionSettings? {
        if let url = environment["DATABASE_URL"], !url.isEmpty {
            return try parseURL(url, environment: environment)
        }
        let keys = ["PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD"]
        guard keys.contains(where: { environment[$0].map { !$0.isEmpty } ?? false }) else { return nil }
        return try fromLibpqVariables(environment)
    }

    static func fromLibpqVariables(_ environment: [String: String]) throws(InputError) -> ConnectionSettings {
        let portText = environment["PGPORT"].flatMap { $0.isEmpty ? nil : $0 } ?? "5432"
        guard let port = Int(portText), (1...65535).contains(port) else {
            throw InputError(field: "PGPORT", message: "'\(portText)' is not a port number")
        }
        let user = environment["PGUSER"].flatMap { $0.isEmpty ? nil : $0 } ?? environment["USER"] ?? "postgres"
        let host = environment["PGHOST"].flatMap { $0.isEmpty ? nil : $0 } ?? "/var/run/postgresql"
        var settings = ConnectionSettings(
            endpoint: endpoint(host: host, port: port),
            username: user,
            password: environment["PGPASSWORD"],
            database: environment["PGDATABASE"].flatMap { $0.isEmpty ? nil : $0 } ?? user)
        settings.requireTLS = environment["PGSSLMODE"].map { ["require", "verify-ca", "verify-full"].contains($0) } ?? false
        return settings
    }

    /// `postgres://user:password@host:port/database?host=/socket/dir&sslmode=require`
    static func parseURL(_ text: String, environment: [String: String]) throws(InputError) -> ConnectionSettings {
        guard let components = URLComponents(string: text),
              let scheme = components.scheme, ["postgres", "postgresql"].contains(scheme) else {
            throw InputError(field: "DATABASE_URL",
                             message: "'\(text)' is not a postgres:// URL (e.g. postgres://tock@db.example:5432/tock)")
        }
        let query = Dictionary((components.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { $1 })
        let port = components.port ?? query["port"].flatMap(Int.init) ?? 5432
        let host = query["host"] ?? (components.host.flatMap { $0.isEmpty ? nil : $0 } ?? "localhost")
        let user = components.user.flatMap { $0.removingPercentEncoding } ?? query["user"] ?? environment["USER"] ?? "postgres"
        var database = String(components.path.drop(while: { $0 == "/" }))
        database = database.removingPercentEncoding ?? database
        var settings = ConnectionSettings(
            endpoint: endpoint(host: host, port: port),
            username: user,
            password: components.password.flatMap { $0.removingPercentEncoding } ?? query["password"],
            database: database.isEmpty ? user : database)
        settings.requireTLS = ["require", "verify-ca", "verify-full"].contains(query["sslmode"] ?? "")
        return settings
    }

    static func endpoint(host: String, port: Int) -> Endpoint {
        host.hasPrefix("/") ? .unixSocket(path: "\(host)/.s.PGSQL.\(port)") : .tcp(host: host, port: port)
    }

    /// The same server, another database (tests clone a template into throwaway databases).
    public func with(database: String) -> ConnectionSettings {
        var copy = self
        copy.database = database
        return copy
    }

    /// A `DATABASE_URL` for child processes; the password is left out of what is shown to people.
    public func url(includingPassword: Bool = true) -> String {
        let userPart = username.addingPercentEncoding(withAllowedCharacters: .urlUserAllowed) ?? username
        let passwordPart = includingPassword ? password.map {
            ":" + ($0.addingPercentEncoding(withAllowedCharacters: .urlPasswordAllowed) ?? $0)
        } ?? "" : ""
        switch endpoint {
        case .tcp(let host, let port):
            return "postgres://\(userPart)\(passwordPart)@\(host):\(port)/\(database)" + (requireTLS ? "?sslmode=require" : "")
        case .unixSocket(let path):
            let directory = String(path[..<(path.range(of: "/.s.PGSQL.", options: .backwards)?.lowerBound ?? path.endIndex)])
            let port = path.split(separator: ".").last.map(String.init) ?? "5432"
            return "postgres://\(userPart)\(passwordPart)@/\(database)?host=\(directory)&port=\(port)"
        }
    }
}

