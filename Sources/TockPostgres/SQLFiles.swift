import Foundation
import Synchronization

/// Tock's SQL, shipped inside the binary's resource bundle (Sources/TockPostgres/SQL links to the repository's sql/).
public struct SQLFiles: Sendable {
    public struct File: Sendable, Equatable {
        /// 1 for `0001_init.sql`; functions files have no version.
        public var version: Int
        public var name: String
        public var text: String
    }

    public var migrations: [File]
    /// Run in a migration's transaction after it (the migration's name): what clients of the release before need until
    /// the functions step that follows replaces their functions. Not part of the migration's checksum.
    public var bridges: [File]
    public var functions: [File] { didSet { functionsText = Self.joined(functions) } }
    /// The functions and views as one text, the unit their checksum is recorded for: joined once, not on every
    /// GET /api/v1/health.
    public private(set) var functionsText: String

    static func joined(_ functions: [File]) -> String {
        functions.map { "-- \($0.name)\n\($0.text)" }.joined(separator: "\n")
    }

    /// The files in `directory` (which holds `migrations/`, `functions/` and maybe `bridges/`), in the order they apply.
    public init(directory: URL) throws {
        func files(_ folder: String, optional: Bool = false) throws -> [File] {
            let url = directory.appendingPathComponent(folder)
            // The SQL of a release before bridges (bench/migrate-history's TOCK_SQL_DIR) has none.
            if optional && !FileManager.default.fileExists(atPath: url.path) { return [] }
            let names = try FileManager.default.contentsOfDirectory(atPath: url.path)
                .filter { $0.hasSuffix(".sql") }.sorted()
            return try names.map { name in
                let text = try String(contentsOf: url.appendingPathComponent(name), encoding: .utf8)
                let version = Int(name.prefix(while: \.isNumber)) ?? 0
                return File(version: version, name: String(name.dropLast(4)), text: text)
            }
        }
        migrations = try files("migrations")
        bridges = try files("bridges", optional: true)
        functions = try files("functions")
        functionsText = Self.joined(functions)
        let versions = migrations.map(\.version)
        guard !versions.contains(0), Set(versions).count == versions.count else {
            throw TockErrorFactory.failed("every file in \(directory.path)/migrations must start with a unique number above 0 (0001_init.sql)")
        }
        if let stray = bridges.first(where: { bridge in !migrations.contains { $0.name == bridge.name } }) {
            throw TockErrorFactory.failed("\(directory.path)/bridges/\(stray.name).sql names no migration; "
                + "a bridge takes the name of the migration it follows (0012_history.sql)")
        }
    }

    /// The SQL the binary was built with, or `TOCK_SQL_DIR` when set (to try a change without rebuilding).
    /// Read once per process and directory: GET /api/v1/health asks for them on every call.
    public static func bundled(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> SQLFiles {
        let override = environment["TOCK_SQL_DIR"].flatMap { $0.isEmpty ? nil : $0 }
        if let cached = loaded.withLock({ $0[override ?? ""] }) { return cached }
        let directory: URL
        if let override {
            directory = URL(fileURLWithPath: override)
        } else {
            guard let url = Bundle.module.url(forResource: "SQL", withExtension: nil) else {
                throw TockErrorFactory.failed("the SQL files are missing from this build of tock; set TOCK_SQL_DIR to the repository's sql/ directory")
            }
            directory = url
        }
        let files = try SQLFiles(directory: directory)
        loaded.withLock { $0[override ?? ""] = files }
        return files
    }

    private static let loaded = Mutex<[String: SQLFiles]>([:])
}

import TockCore

enum TockErrorFactory {
    static func failed(_ message: String) -> TockError { TockError(.failed, message) }
}
