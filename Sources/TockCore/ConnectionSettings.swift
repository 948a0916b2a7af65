import Foundation

/// Where the database is: from `DATABASE_URL`, or the usual libpq `PG*` variables.
public struct ConnectionSettings: Sendable, Equatable {
    public enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        /// The socket file itself, e.g. `/srv/tock/.tock/run/.s.PGSQL.5432`.
        case unixSocket(path: String)
    }

    /// The server connections go to: the first named, or the one `PrimaryClient` found accepting writes.
    public var endpoint: Endpoint {
        // Set to a server not named: that server alone.
        didSet { if !servers.contains(endpoint) { servers = [endpoint] } }
    }
    /// Every server named, in order, as libpq takes them (`postgres://h1:5432,h2:5432/tock`, `PGHOST=h1,h2`):
    /// `endpoint` is one of them. One server: just `[endpoint]`.
    public var servers: [Endpoint]
    public var username: String
    public var password: String?
    public var database: String
    public var requireTLS: Bool = false
    /// libpq's `target_session_attrs=read-write`: only a server that accepts writes will do (Tock needs one).
    public var requireWritable: Bool = false

    /// Whether the process must find the server that accepts writes, and follow it when it moves (a failover):
    /// several servers are named, or `target_session_attrs=read-write` asks for it.
    public var followsPrimary: Bool { servers.count > 1 || requireWritable }

    public init(endpoint: Endpoint, username: String, password: String? = nil, database: String) {
        self.endpoint = endpoint
        self.servers = [endpoint]
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
        let user = environment["PGUSER"].flatMap { $0.isEmpty ? nil : $0 } ?? environment["USER"] ?? "postgres"
        let servers = try endpoints(hosts: environment["PGHOST"].flatMap { $0.isEmpty ? nil : $0 } ?? "/var/run/postgresql",
                                    ports: environment["PGPORT"].flatMap { $0.isEmpty ? nil : $0 }, field: "PGPORT")
        var settings = ConnectionSettings(
            endpoint: servers[0],
            username: user,
            password: environment["PGPASSWORD"],
            database: environment["PGDATABASE"].flatMap { $0.isEmpty ? nil : $0 } ?? user)
        settings.servers = servers
        settings.requireTLS = environment["PGSSLMODE"].map { ["require", "verify-ca", "verify-full"].contains($0) } ?? false
        settings.requireWritable = try requiresWritable(environment["PGTARGETSESSIONATTRS"], field: "PGTARGETSESSIONATTRS")
        return settings
    }

    /// libpq's host and port lists: `h1,h2` with one port for all or one per host (an empty one is 5432).
    static func endpoints(hosts: String, ports: String?, field: String) throws(InputError) -> [Endpoint] {
        let hostList = hosts.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        let portList = (ports ?? "").split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard hostList.count <= 16, !hostList.contains(where: \.isEmpty) else {
            throw InputError(field: field, message: "'\(hosts)' is not a list of 1 to 16 hosts, separated by commas")
        }
        guard portList.count <= 1 || portList.count == hostList.count else {
            throw InputError(field: field, message: "\(portList.count) ports for \(hostList.count) hosts: give one port, or one per host")
        }
        var servers: [Endpoint] = []
        for (index, host) in hostList.enumerated() {
            let text = portList.isEmpty ? "" : portList[portList.count == 1 ? 0 : index]
            guard let port = text.isEmpty ? 5432 : Int(text), (1...65535).contains(port) else {
                throw InputError(field: field, message: "'\(text)' is not a port number")
            }
            servers.append(endpoint(host: host, port: port))
        }
        return servers
    }

    /// `target_session_attrs`: Tock writes, so `any` (the default) or `read-write` (also `primary`).
    static func requiresWritable(_ value: String?, field: String) throws(InputError) -> Bool {
        switch value ?? "any" {
        case "", "any": return false
        case "read-write", "primary": return true
        case let other:
            throw InputError(field: field, message: "target_session_attrs '\(other)': Tock writes, so give read-write (or any)")
        }
    }

    /// `postgres://user:password@host:port/database?host=/socket/dir&sslmode=require`, and libpq's lists of
    /// servers: `postgres://h1:5432,h2:5432/tock?target_session_attrs=read-write`, `?host=/run/a,/run/b&port=5432`.
    static func parseURL(_ text: String, environment: [String: String]) throws(InputError) -> ConnectionSettings {
        // Said without its password: the message reaches logs.
        var shown = text
        if let schemeEnd = text.range(of: "://"), let at = text[schemeEnd.upperBound...].firstIndex(of: "@"),
           let colon = text[schemeEnd.upperBound..<at].firstIndex(of: ":") {
            shown = String(text[..<text.index(after: colon)]) + "***" + String(text[at...])
        }
        let bad = InputError(field: "DATABASE_URL",
                             message: "'\(shown)' is not a postgres:// URL (e.g. postgres://tock@db.example:5432/tock)")
        // URLComponents takes one host: a list in the authority is read here, and the URL parsed without it.
        var single = text
        var listed: String?
        if let schemeEnd = text.range(of: "://") {
            let rest = text[schemeEnd.upperBound...]
            let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
            let hostStart = authority.lastIndex(of: "@").map { authority.index(after: $0) } ?? authority.startIndex
            let hosts = authority[hostStart...]
            if hosts.contains(",") {
                listed = String(hosts)
                single = String(text[..<hosts.startIndex]) + "listed-hosts" + String(text[hosts.endIndex...])
            }
        }
        guard let components = URLComponents(string: single),
              let scheme = components.scheme, ["postgres", "postgresql"].contains(scheme) else {
            throw bad
        }
        let query = Dictionary((components.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { $1 })
        let servers: [Endpoint]
        if let hosts = query["host"] {
            servers = try endpoints(hosts: hosts, ports: query["port"] ?? components.port.map(String.init), field: "DATABASE_URL")
        } else if let listed {
            // h1:5432,h2,[::1]:5433: each with its own port, 5432 when it has none.
            var hosts: [String] = [], ports: [String] = []
            for item in listed.split(separator: ",", omittingEmptySubsequences: false) {
                if let colon = item.lastIndex(of: ":"), !item[item.index(after: colon)...].contains("]") {
                    hosts.append(String(item[..<colon]))
                    ports.append(String(item[item.index(after: colon)...]))
                } else {
                    hosts.append(String(item))
                    ports.append(query["port"] ?? "")
                }
            }
            hosts = hosts.map { $0.hasPrefix("[") && $0.hasSuffix("]") ? String($0.dropFirst().dropLast()) : $0 }
            servers = try endpoints(hosts: hosts.joined(separator: ","), ports: ports.joined(separator: ","), field: "DATABASE_URL")
        } else {
            var host = components.host.flatMap { $0.isEmpty ? nil : $0 } ?? "localhost"
            // An IP literal keeps its brackets in URLComponents.host.
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            servers = try endpoints(hosts: host, ports: components.port.map(String.init) ?? query["port"], field: "DATABASE_URL")
        }
        let user = components.user.flatMap { $0.removingPercentEncoding } ?? query["user"] ?? environment["USER"] ?? "postgres"
        var database = String(components.path.drop(while: { $0 == "/" }))
        database = database.removingPercentEncoding ?? database
        var settings = ConnectionSettings(
            endpoint: servers[0],
            username: user,
            password: components.password.flatMap { $0.removingPercentEncoding } ?? query["password"],
            database: database.isEmpty ? user : database)
        settings.servers = servers
        settings.requireTLS = ["require", "verify-ca", "verify-full"].contains(query["sslmode"] ?? "")
        settings.requireWritable = try requiresWritable(query["target_session_attrs"], field: "DATABASE_URL")
        return settings
    }

    /// The same settings, connecting to `server` (one of `servers`).
    public func at(_ server: Endpoint) -> ConnectionSettings {
        var copy = self
        copy.endpoint = server
        return copy
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

    /// A `DATABASE_URL` for child processes, naming every server; the password is left out of what is shown to
    /// people.
    public func url(includingPassword: Bool = true) -> String {
        let userPart = username.addingPercentEncoding(withAllowedCharacters: .urlUserAllowed) ?? username
        let passwordPart = includingPassword ? password.map {
            ":" + ($0.addingPercentEncoding(withAllowedCharacters: .urlPasswordAllowed) ?? $0)
        } ?? "" : ""
        var options = (requireTLS ? ["sslmode=require"] : []) + (requireWritable ? ["target_session_attrs=read-write"] : [])
        let hosts: String
        if servers.allSatisfy({ if case .tcp = $0 { true } else { false } }) {
            hosts = servers.map { server in
                guard case .tcp(let host, let port) = server else { return "" }
                return "\(host.contains(":") ? "[\(host)]" : host):\(port)"
            }.joined(separator: ",")
        } else {
            hosts = ""
            options.insert(contentsOf: ["host=" + servers.map(\.host).joined(separator: ","),
                                        "port=" + servers.map { String($0.port) }.joined(separator: ",")], at: 0)
        }
        return "postgres://\(userPart)\(passwordPart)@\(hosts)/\(database)" + (options.isEmpty ? "" : "?" + options.joined(separator: "&"))
    }
}


extension ConnectionSettings.Endpoint {
    /// The host as libpq names it: a name or address, or a socket's directory.
    public var host: String {
        switch self {
        case .tcp(let host, _): return host
        case .unixSocket(let path):
            return String(path[..<(path.range(of: "/.s.PGSQL.", options: .backwards)?.lowerBound ?? path.endIndex)])
        }
    }

    public var port: Int {
        switch self {
        case .tcp(_, let port): return port
        case .unixSocket(let path): return path.split(separator: ".").last.flatMap { Int($0) } ?? 5432
        }
    }

    /// host:port, or the socket's path.
    public var displayName: String {
        switch self {
        case .tcp(let host, let port): return "\(host):\(port)"
        case .unixSocket(let path): return path
        }
    }
}
