import ArgumentParser
import Foundation
import Logging
import TockCore

/// What every command of `tock` and `tock-bench` takes: where the database is, logging, JSON output.
public struct GlobalOptions: ParsableArguments {
    public init() {}

    @Option(name: .customLong("database-url"), help: "postgres://user:pass@host:port/db (default: DATABASE_URL, PG*, or the embedded cluster)")
    public var databaseURL: String?

    @Option(help: "Where the embedded cluster lives (default: TOCK_HOME or ./.tock).")
    public var home: String?

    @Option(help: "trace, debug, info, notice, warning, error or critical (default: TOCK_LOG_LEVEL or info for services, warning otherwise).")
    public var logLevel: String?

    @Option(help: "text or json: one line per event either way; json for log shippers (default: TOCK_LOG_FORMAT or text).")
    public var logFormat: String?

    @Flag(help: "Print JSON instead of a table.")
    public var json = false

    public func validate() throws {
        if let logFormat, LogFormat(rawValue: logFormat.lowercased()) == nil {
            throw ValidationError("--log-format: '\(logFormat)' is not text or json")
        }
    }

    public var homeDirectory: String {
        home ?? ProcessInfo.processInfo.environment["TOCK_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? ".tock"
    }

    public func logger(label: String, defaultLevel: Logger.Level) -> Logger {
        let format = logFormat ?? ProcessInfo.processInfo.environment["TOCK_LOG_FORMAT"] ?? "text"
        LogFormat.bootstrap(LogFormat(rawValue: format.lowercased()) ?? .text)
        var logger = Logger(label: label)
        let text = logLevel ?? ProcessInfo.processInfo.environment["TOCK_LOG_LEVEL"]
        logger.logLevel = text.flatMap(Logger.Level.init(rawValue:)) ?? defaultLevel
        return logger
    }
}

extension TockError {
    /// The process exit status for each kind, documented in docs/operations.md ("Checking on Tock").
    public var exitCode: Int32 {
        switch kind {
        case .invalidInput: return 2
        case .notFound: return 3
        case .conflict: return 4
        case .unavailable: return 5
        case .forbidden: return 6
        case .failed: return 1
        }
    }
}

/// Prints the error as `error: …` on stderr and exits with its code: no stack traces for people.
public func fail(_ error: TockError) -> ExitCode {
    // One line, whatever the message carries (a user name from DATABASE_URL may hold a newline).
    let message = TextLogHandler.needsEscape(error.message) ? TextLogHandler.escaped(error.message) : error.message
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    return ExitCode(error.exitCode)
}

public func printJSON<T: Encodable>(_ value: T) throws {
    let data = try TockJSON.encoder().encode(value)
    print(String(decoding: data, as: UTF8.self))
}
