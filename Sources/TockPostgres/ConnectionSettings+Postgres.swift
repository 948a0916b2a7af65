import Logging
import NIOSSL
import PostgresNIO
import TockCore

extension ConnectionSettings {
    /// The pool configuration for these settings.
    public func clientConfiguration(maximumConnections: Int = 20) -> PostgresClient.Configuration {
        var configuration: PostgresClient.Configuration
        switch endpoint {
        case .tcp(let host, let port):
            configuration = .init(host: host, port: port, username: username, password: password, database: database,
                                  tls: requireTLS ? .require(.makeClientConfiguration()) : .disable)
        case .unixSocket(let path):
            configuration = .init(unixSocketPath: path, username: username, password: password, database: database)
        }
        configuration.options.maximumConnections = maximumConnections
        configuration.options.connectTimeout = .seconds(5)
        // Idle connections are not pinged: Tock's own heartbeats keep the pool honest, and an idle Tock issues
        // no queries but those.
        configuration.options.keepAliveBehavior = nil
        configuration.options.additionalStartupParameters = [("application_name", "tock")]
        return configuration
    }

    /// A single connection's configuration (LISTEN needs a connection of its own).
    public func connectionConfiguration() throws -> PostgresConnection.Configuration {
        var configuration: PostgresConnection.Configuration
        switch endpoint {
        case .tcp(let host, let port):
            configuration = .init(host: host, port: port, username: username, password: password, database: database,
                                  tls: requireTLS ? .require(try NIOSSLContext(configuration: .makeClientConfiguration())) : .disable)
        case .unixSocket(let path):
            configuration = .init(unixSocketPath: path, username: username, password: password, database: database)
        }
        configuration.options.additionalStartupParameters = [("application_name", "tock-listen")]
        return configuration
    }

    /// Where, for messages: never the password.
    public var displayName: String {
        switch endpoint {
        case .tcp(let host, let port): return "\(username)@\(host):\(port)/\(database)"
        case .unixSocket(let path): return "\(username)@\(path)/\(database)"
        }
    }
}
