import ArgumentParser
import Foundation
import Logging
import TockCore

struct GlobalOptions: ParsableArguments {
    @Option(name: .customLong("database-url"), help: "postgres://user:pass@host:port/db (default: DATABASE_URL, PG*, or the embedded cluster)")
    var databaseURL: String?

    @Option(help: "Where the embedded cluster lives (default: TOCK_HOME or ./.tock).")
    var home: String?

    @Option(help: "trace, debug, info, notice, warning, error or critical (default: TOCK_LOG_LEVEL or info for services, warning otherwise).")
    var logLevel: String?

    @Option(help: "text or json: one line per event either way; json for log shippers (default: TOCK_LOG_FORMAT or text).")
    var logFormat: String?

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func validate() throws {
        if let logFormat, LogFormat(rawValue: logFormat.lowercased()) == nil {
            throw ValidationError("--log-format: '\(logFormat)' is not text or json")
        }
    }

    var homeDirectory: String {
        home ?? ProcessInfo.processInfo.environment["TOCK_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? ".tock"
    }

    func logger(label: String, defaultLevel: Logger.Level) -> Logger {
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
    var exitCode: Int32 {
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
func fail(_ error: TockError) -> ExitCode {
    // One line, whatever the message carries (a user name from DATABASE_URL may hold a newline).
    let message = TextLogHandler.needsEscape(error.message) ? TextLogHandler.escaped(error.message) : error.message
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    return ExitCode(error.exitCode)
}

func printJSON<T: Encodable>(_ value: T) throws {
    let data = try TockJSON.encoder().encode(value)
    print(String(decoding: data, as: UTF8.self))
}

enum Display {
    static func time(_ date: Date?) -> String {
        guard let date else { return "-" }
        return date.formatted(Date.VerbatimFormatStyle(
            format: "\(year: .defaultDigits)-\(month: .twoDigits)-\(day: .twoDigits) \(hour: .twoDigits(clock: .twentyFourHour, hourCycle: .zeroBased)):\(minute: .twoDigits):\(second: .twoDigits) \(timeZone: .specificName(.short))",
            timeZone: .current, calendar: Calendar(identifier: .gregorian)))
    }

    static func duration(_ seconds: Double?) -> String {
        guard let seconds else { return "-" }
        if seconds < 1 { return String(format: "%.0fms", seconds * 1000) }
        if seconds < 60 { return String(format: "%.1fs", seconds) }
        return DurationText.format(seconds: seconds)
    }
}
