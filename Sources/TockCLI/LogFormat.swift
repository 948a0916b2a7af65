import Foundation
import Logging
import Synchronization

/// `--log-format`: `text` (swift-log's one line per event, metadata inline) or `json` (one JSON object per line,
/// for log shippers: time, level, message, then every metadata key such as run, job and worker at the top level).
public enum LogFormat: String, CaseIterable, Sendable {
    case text, json

    private static let bootstrapped = Mutex(false)

    /// Installs the format for every Logger of this process; the first call wins (swift-log bootstraps once).
    public static func bootstrap(_ format: LogFormat) {
        let first = bootstrapped.withLock { done in
            defer { done = true }
            return !done
        }
        guard first else { return }
        switch format {
        case .text: LoggingSystem.bootstrap { TextLogHandler(StreamLogHandler.standardError(label: $0)) }
        case .json: LoggingSystem.bootstrap(JSONLogHandler.init)
        }
    }
}

/// swift-log's own text lines, with the logger's metadata kept here and handed over with each event. The stream
/// handler formats its metadata again on every change, and a worker sets a run's and a job's on every run: a large
/// share of its CPU on short runs, for lines a `warning` level never prints. The output is the same: the
/// stream handler merges the event's metadata over its own, which is empty here.
struct TextLogHandler: LogHandler {
    var stream: StreamLogHandler
    var metadata: Logger.Metadata = [:]

    init(_ stream: StreamLogHandler) {
        self.stream = stream
    }

    var logLevel: Logger.Level {
        get { stream.logLevel }
        set { stream.logLevel = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { stream.metadataProvider }
        set { stream.metadataProvider = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var event = event
        var merged = metadata
        // The provider's values go through the escape too: explicit metadata wins over the stream's own merge.
        if let provider = stream.metadataProvider { merged.merge(provider.get(), uniquingKeysWith: { $1 }) }
        merged.merge(event.metadata ?? [:], uniquingKeysWith: { $1 })
        if let error = event.error {  // as the stream handler would add it, but escaped
            merged["error.message"] = "\(error)"
            merged["error.type"] = "\(String(reflecting: type(of: error)))"
            event.error = nil
        }
        event.metadata = merged.mapValues(Self.escaped)
        if Self.needsEscape(event.message.description) { event.message = "\(Self.escaped(event.message.description))" }
        stream.log(event: event)
    }

    /// One event, one line: a value with a newline (a script's name, a database's error message) would otherwise
    /// start a line that reads as an event of its own. Control characters become `\n`, `\r`, `\t` or `\u{1b}`,
    /// and a backslash doubles, so an escape in the value itself cannot pass for one.
    static func escaped(_ value: Logger.Metadata.Value) -> Logger.Metadata.Value {
        switch value {
        case .string(let text): return needsEscape(text) ? .string(escaped(text)) : value
        case .stringConvertible(let convertible):
            let text = convertible.description
            return needsEscape(text) ? .string(escaped(text)) : value
        case .array(let values): return .array(values.map(escaped))
        case .dictionary(let values): return .dictionary(values.mapValues(escaped))
        }
    }

    static func needsEscape(_ text: String) -> Bool {
        text.unicodeScalars.contains { $0.properties.generalCategory == .control || $0 == "\\" || $0 == "\u{2028}" || $0 == "\u{2029}" }
    }

    static func escaped(_ text: String) -> String {
        var result = ""
        result.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case "\\": result += "\\\\"
            case _ where scalar.properties.generalCategory == .control || scalar == "\u{2028}" || scalar == "\u{2029}":
                result += "\\u{\(String(scalar.value, radix: 16))}"
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }
}

/// One JSON object per line on stderr. Lines are written whole under a lock, so concurrent events never interleave.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    private static let output = Mutex(FileHandle.standardError)

    init(label: String) {
        self.label = label
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields: [String: Any] = [
            "time": Self.timestamp(),
            "level": event.level.rawValue,
            "message": event.message.description,
            "logger": label,
        ]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) {
            fields[key] = Self.plain(value)
        }
        if event.level >= .error { fields["source"] = "\(event.file):\(event.line)" }
        guard var line = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        line.append(0x0A)
        Self.output.withLock { $0.write(line) }
    }

    static func plain(_ value: Logger.Metadata.Value) -> Any {
        switch value {
        case .string(let text): return text
        case .stringConvertible(let value): return value.description
        case .array(let values): return values.map(plain)
        case .dictionary(let values): return values.mapValues(plain)
        }
    }

    static func timestamp() -> String {
        Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }
}
