import Foundation
import TockCore

/// A worker's secrets (`--secrets-file`): `NAME=value` lines (blank lines and `#` comments aside) in a regular file
/// of the worker's user that no one else may read. A job names the secrets it needs (tock.jobs.secrets); their
/// values go into its scripts' environment from here, never through the database, and are masked in those runs'
/// output before it is stored or streamed.
public struct SecretsFile: Sendable {
    public let path: String
    private let values: [String: String]

    /// Values shorter than this could not be masked without masking ordinary text too.
    static let shortest = 4

    public init(path: String, values: [String: String]) {
        self.path = path
        self.values = values
    }

    public var names: [String] { values.keys.sorted() }

    public func value(_ name: String) -> String? { values[name] }

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

    /// `NAME=value` lines; the value is the rest of the line as it is (no quotes are taken off).
    static func parse(_ text: String, path: String) throws(TockError) -> SecretsFile {
        var values: [String: String] = [:]
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine
            if line.allSatisfy(\.isWhitespace) || line.first == "#" { continue }
            let place = "secrets-file: \(path) line \(index + 1)"
            guard let equals = line.firstIndex(of: "=") else {
                throw TockError(.invalidInput, field: "secrets-file", "\(place) is not NAME=value")
            }
            let name = String(line[..<equals])
            let value = String(line[line.index(after: equals)...])
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
        }
        return SecretsFile(path: path, values: values)
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

    public func apply(_ text: String) -> String {
        values.reduce(text) { masked, value in masked.replacingOccurrences(of: value, with: "***") }
    }
}
