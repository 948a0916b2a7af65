import Foundation
import TockCore

/// A worker's secrets (`--secrets-file`): `NAME:JOBS=value` lines (blank lines and `#` comments aside) in a regular
/// file of the worker's user that no one else may read. JOBS says which jobs may have it, comma separated, or `*`
/// for every job: whoever may edit jobs chooses which secrets a job names and where an HTTP job sends them, so a
/// secret open to every job is open to them. A job names the secrets it needs (tock.jobs.secrets); their values go
/// into its scripts' environment from here, never through the database, and are masked in those runs' output before
/// it is stored or streamed.
public struct SecretsFile: Sendable {
    public let path: String
    private let values: [String: String]
    /// The jobs each may go to; nil: every job.
    private let jobs: [String: Set<String>?]

    /// Values shorter than this could not be masked without masking ordinary text too.
    static let shortest = 4

    public init(path: String, values: [String: String], jobs: [String: Set<String>?] = [:]) {
        self.path = path
        self.values = values
        self.jobs = jobs
    }

    public var names: [String] { values.keys.sorted() }

    /// `name`'s value when `job` may have it.
    public func value(_ name: String, for job: String) -> String? {
        guard let value = values[name] else { return nil }
        if let allowed = jobs[name] ?? nil, !allowed.contains(job) { return nil }
        return value
    }

    /// Reads and checks the file; every refusal names the file and the fix.
    public static func load(_ path: String) throws(TockError) -> SecretsFile {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            throw TockError(.invalidInput, field: "secrets-file",
                            "secrets-file: cannot open \(path) (\(String(cString: strerror(errno)))); give a regular file, not a symbolic link")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw TockError(.invalidInput, field: "secrets-file", "secrets-file: \(path) is not a regular file")
        }
        guard info.st_uid == geteuid() else {
            throw TockError(.invalidInput, field: "secrets-file",
                            "secrets-file: \(path) belongs to uid \(info.st_uid), not this worker's user (uid \(geteuid())): chown it")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw TockError(.invalidInput, field: "secrets-file", String(
                format: "secrets-file: %@ may be read by others (mode %o): chmod 600 %@", path, Int(info.st_mode & 0o777), path))
        }
        guard info.st_size <= 1 << 20 else {
            throw TockError(.invalidInput, field: "secrets-file", "secrets-file: \(path) is over 1 MiB")
        }
        var data = [UInt8](repeating: 0, count: Int(info.st_size))
        let count = data.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count == data.count else {
            throw TockError(.invalidInput, field: "secrets-file", "secrets-file: could not read \(path)")
        }
        return try parse(String(decoding: data, as: UTF8.self), path: path)
    }

    /// `NAME:JOBS=value` lines; the value is the rest of the line as it is (no quotes are taken off).
    public static func parse(_ text: String, path: String) throws(TockError) -> SecretsFile {
        var values: [String: String] = [:]
        var scopes: [String: Set<String>?] = [:]
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine
            if line.allSatisfy(\.isWhitespace) || line.first == "#" { continue }
            let place = "secrets-file: \(path) line \(index + 1)"
            guard let equals = line.firstIndex(of: "=") else {
                throw TockError(.invalidInput, field: "secrets-file", "\(place) is not NAME:JOBS=value")
            }
            let head = line[..<equals]
            let value = String(line[line.index(after: equals)...])
            guard let colon = head.firstIndex(of: ":") else {
                throw TockError(.invalidInput, field: "secrets-file", """
                    \(place): say which jobs may have \(head.prefix(64)): \(head.prefix(64)):deploy,backup=value, or \(head.prefix(64)):*=value for every job
                    """)
            }
            let name = String(head[..<colon])
            let scope = head[head.index(after: colon)...].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            guard !scope.isEmpty, scope.allSatisfy({ !$0.isEmpty }) else {
                throw TockError(.invalidInput, field: "secrets-file", "\(place): give \(name)'s jobs after the colon, or *")
            }
            guard let first = name.unicodeScalars.first, first == "_" || (first.isASCII && CharacterSet.letters.contains(first)),
                  name.unicodeScalars.allSatisfy({ $0 == "_" || ($0.isASCII && CharacterSet.alphanumerics.contains($0)) }),
                  name.count <= 64 else {
                throw TockError(.invalidInput, field: "secrets-file", "\(place): '\(name.prefix(64))' is not a name (letters, digits, _)")
            }
            guard values[name] == nil else {
                throw TockError(.invalidInput, field: "secrets-file", "\(place): \(name) is given twice")
            }
            guard value.count >= shortest else {
                throw TockError(.invalidInput, field: "secrets-file",
                                "\(place): \(name)'s value is shorter than \(shortest) characters, too short to be masked in output")
            }
            values[name] = value
            scopes[name] = scope.contains("*") ? Optional<Set<String>>.none : Set(scope)
        }
        return SecretsFile(path: path, values: values, jobs: scopes)
    }
}

/// Replaces the values of a run's secrets in its output with `***`, longest first (a value that contains another
/// is replaced whole).
public struct SecretMask: Sendable {
    private let values: [String]

    public init(_ values: [String]) {
        self.values = values.filter { !$0.isEmpty }.sorted { $0.count > $1.count }
    }

    public var isEmpty: Bool { values.isEmpty }

    /// `outcome` with its output and error masked.
    public func apply(to outcome: RunOutcome) -> RunOutcome {
        guard !isEmpty else { return outcome }
        var masked = outcome
        masked.output = apply(outcome.output)
        masked.error = outcome.error.map(apply)
        return masked
    }

    public func apply(_ text: String) -> String {
        // Literal: compared as Unicode text, a value followed by a combining mark would not match, and be kept.
        values.reduce(text) { masked, value in masked.replacingOccurrences(of: value, with: "***", options: .literal) }
    }
}
