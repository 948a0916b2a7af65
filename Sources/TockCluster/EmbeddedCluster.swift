import CTockSpawn
import Foundation
import Logging
import TockCore

/// The embedded default: a private PostgreSQL cluster under `<directory>/postgres` (default `./.tock`),
/// listening on a unix socket only (no TCP). Created with initdb on first use, started with pg_ctl.
/// As root, the server runs as the `postgres` OS user, because initdb and postgres refuse root.
/// Every connection needs the superuser's password (scram-sha-256), generated at creation and kept in
/// `<directory>/postgres/password` (mode 0600): with `trust`, any process that reached the socket, a job's script
/// among them, was the superuser.
public struct EmbeddedCluster: Sendable {
    public let directory: String
    public let logger: Logger

    public init(directory: String = ".tock", logger: Logger) {
        self.directory = URL(fileURLWithPath: directory).standardizedFileURL.path
        self.logger = logger
    }

    var clusterDirectory: String { directory + "/postgres" }
    var dataDirectory: String { clusterDirectory + "/data" }
    var logFile: String { clusterDirectory + "/server.log" }
    var passwordFile: String { clusterDirectory + "/password" }
    static let port = 5432
    static let superuser = "postgres"
    public static let databaseName = "tock"

    /// The socket directory: inside the cluster when the path is short enough for a unix socket (107 bytes),
    /// else a directory under /tmp named after the cluster.
    var socketDirectory: String {
        let inside = clusterDirectory + "/run"
        if (inside + "/.s.PGSQL.\(Self.port)").utf8.count < 100 { return inside }
        var hash: UInt64 = 1469598103934665603
        for byte in clusterDirectory.utf8 { hash = (hash ^ UInt64(byte)) &* 1099511628211 }
        return "/tmp/tock-" + String(hash, radix: 16)
    }

    /// Settings for the `tock` database (created by `start()`), or for `database`.
    public func settings(database: String = EmbeddedCluster.databaseName) -> ConnectionSettings {
        ConnectionSettings(endpoint: .unixSocket(path: socketDirectory + "/.s.PGSQL.\(Self.port)"),
                           username: Self.superuser, password: password, database: database)
    }

    /// The superuser's password, nil before the cluster exists (or when this user may not read it).
    var password: String? {
        (try? String(contentsOfFile: passwordFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static var isRoot: Bool { geteuid() == 0 }

    /// Creates the cluster if needed and starts it if it is not running. Returns the settings to connect with.
    @discardableResult
    public func start() throws(TockError) -> ConnectionSettings {
        // One starter at a time: `tock up` creating the cluster while another tock command finds it half-made
        // would otherwise start it twice, or connect before its socket exists.
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o755])
        } catch {
            throw TockError(.failed, "cannot create \(directory): \(error.localizedDescription)")
        }
        let lock = open(directory + "/cluster.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard lock >= 0, flock(lock, LOCK_EX) == 0 else {
            throw TockError(.failed, "cannot lock \(directory)/cluster.lock: \(String(cString: strerror(errno)))")
        }
        defer { close(lock) }
        return try startLocked()
    }

    private func startLocked() throws(TockError) -> ConnectionSettings {
        let binaries = try PostgresBinaries.find()
        let fileManager = FileManager.default
        if !fileManager.fileExists(atPath: dataDirectory + "/PG_VERSION") {
            try createDirectories()
            logger.info("creating the embedded PostgreSQL cluster", metadata: ["data": "\(dataDirectory)"])
            let password = try writeNewPassword()
            // initdb reads the password from a file the server's OS user can read, removed once it has.
            let initialPassword = clusterDirectory + "/initdb.password"
            try writePrivate(initialPassword, password, ownedByServer: true)
            defer { unlink(initialPassword) }
            try runAsOwner([binaries.initdb, "-D", dataDirectory, "-U", Self.superuser, "--auth=scram-sha-256",
                            "--pwfile=" + initialPassword, "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions"],
                           what: "initdb")
            let settings = """

                # Tock's embedded cluster: unix socket only, reachable by this cluster's owner.
                listen_addresses = ''
                unix_socket_directories = '\(socketDirectory)'
                unix_socket_permissions = 0700
                port = \(Self.port)
                max_connections = 200
                log_min_messages = warning
                """
            guard let handle = FileHandle(forWritingAtPath: dataDirectory + "/postgresql.conf") else {
                throw TockError(.failed, "cannot write \(dataDirectory)/postgresql.conf")
            }
            handle.seekToEndOfFile()
            handle.write(Data(settings.utf8))
            try? handle.close()
        }
        try createDirectories()
        let wasTrusting = try requirePasswords()
        if !isRunning(binaries) {
            logger.info("starting the embedded PostgreSQL cluster", metadata: ["socket": "\(socketDirectory)"])
            try runAsOwner([binaries.pgCtl, "-D", dataDirectory, "-l", logFile, "-w", "-t", "60", "start"],
                           what: "pg_ctl start")
        } else if wasTrusting {
            try runAsOwner([binaries.pgCtl, "-D", dataDirectory, "reload"], what: "pg_ctl reload")
        }
        let psql = [binaries.psql, "-X", "-q", "-t", "-A", "-h", socketDirectory, "-p", "\(Self.port)",
                    "-U", Self.superuser, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c"]
        let exists = try runAsOwner(psql + ["SELECT 1 FROM pg_database WHERE datname = '\(Self.databaseName)'"],
                                    what: "looking for the tock database")
        if exists.trimmingCharacters(in: .whitespacesAndNewlines) != "1" {
            try runAsOwner(psql + ["CREATE DATABASE \(Self.databaseName)"], what: "creating the tock database")
        }
        return settings()
    }

    /// A new random password for the superuser in `passwordFile` (0600, this user's); returns it.
    private func writeNewPassword() throws(TockError) -> String {
        let password = WorkerLease.newToken()
        try writePrivate(passwordFile, password, ownedByServer: false)
        return password
    }

    /// A new file of mode 0600 (O_EXCL: never through a link someone left there), given to the server's OS user
    /// by its descriptor when we are root and `ownedByServer`.
    private func writePrivate(_ path: String, _ text: String, ownedByServer: Bool) throws(TockError) {
        unlink(path)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw TockError(.failed, "cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let written = text.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count - 1) }
        guard written == text.utf8.count else { throw TockError(.failed, "cannot write \(path)") }
        if ownedByServer && Self.isRoot {
            guard let server = getpwnam(Self.superuser), fchown(fd, server.pointee.pw_uid, server.pointee.pw_gid) == 0 else {
                throw TockError(.failed, "cannot give \(path) to the \(Self.superuser) OS user: \(String(cString: strerror(errno)))")
            }
        }
    }

    /// A cluster made before passwords (its pg_hba.conf trusts every local connection) gets a password and
    /// scram-sha-256, while its trust still lets this set the password. Returns whether it changed anything (a
    /// running server then reloads pg_hba.conf).
    private func requirePasswords() throws(TockError) -> Bool {
        let hba = dataDirectory + "/pg_hba.conf"
        guard let rules = try? String(contentsOfFile: hba, encoding: .utf8) else {
            throw TockError(.failed, "cannot read \(hba)")
        }
        let trusting = rules.split(separator: "\n").contains { line in
            !line.hasPrefix("#") && line.split(whereSeparator: { $0 == " " || $0 == "\t" }).last == "trust"
        }
        guard trusting else { return false }
        logger.warning("the embedded cluster trusted every local connection; setting a password (scram-sha-256)")
        let binaries = try PostgresBinaries.find()
        let password = try writeNewPassword()
        let wasRunning = isRunning(binaries)
        if !wasRunning {
            try runAsOwner([binaries.pgCtl, "-D", dataDirectory, "-l", logFile, "-w", "-t", "60", "start"], what: "pg_ctl start")
        }
        // The password travels in psql's environment (readable by its user and root), never in its arguments
        // (which any local user can read with ps): the script only names the variable.
        let script = clusterDirectory + "/set-password.sql"
        try writePrivate(script, """
            \\getenv tock_password TOCK_NEW_PASSWORD
            SET password_encryption = 'scram-sha-256';
            ALTER ROLE \(Self.superuser) PASSWORD :'tock_password';

            """, ownedByServer: true)
        defer { unlink(script) }
        try runAsOwner([binaries.psql, "-X", "-q", "-h", socketDirectory, "-p", "\(Self.port)", "-U", Self.superuser,
                        "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-f", script],
                       what: "setting the superuser's password", environment: ["TOCK_NEW_PASSWORD": password])
        let scram = "# Tock's embedded cluster: local connections only, each with a password.\n"
            + "local all all scram-sha-256\n"
        let staging = clusterDirectory + "/pg_hba.conf.new"
        try writePrivate(staging, scram, ownedByServer: true)
        guard rename(staging, hba) == 0 else {
            throw TockError(.failed, "cannot replace \(hba): \(String(cString: strerror(errno)))")
        }
        if !wasRunning {
            try runAsOwner([binaries.pgCtl, "-D", dataDirectory, "-m", "fast", "-w", "stop"], what: "pg_ctl stop")
        }
        return wasRunning
    }

    /// A fast restart: every session is cut, as when a production server restarts.
    public func restart() throws(TockError) {
        let binaries = try PostgresBinaries.find()
        try runAsOwner([binaries.pgCtl, "-D", dataDirectory, "-l", logFile, "-m", "fast", "-w", "-t", "60", "restart"],
                       what: "pg_ctl restart")
    }

    /// Stops the server: `fast` (the default) ends every session and flushes everything; `immediate` is a crash as
    /// far as the data is concerned (no checkpoint; the next start replays the WAL), which the fault tests use.
    public func stop(mode: String = "fast") throws(TockError) {
        let binaries = try PostgresBinaries.find()
        guard isRunning(binaries) else { return }
        try runAsOwner([binaries.pgCtl, "-D", dataDirectory, "-m", mode, "-w", "stop"], what: "pg_ctl stop")
    }

    func isRunning(_ binaries: PostgresBinaries) -> Bool {
        (try? runAsOwner([binaries.pgCtl, "-D", dataDirectory, "status"], what: "pg_ctl status", quiet: true)) != nil
    }

    private func createDirectories() throws(TockError) {
        // The home (created searchable by start()) lets the server's OS user reach its private directory inside.
        for path in [clusterDirectory, socketDirectory] {
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch {
                throw TockError(.failed, "cannot create \(path): \(error.localizedDescription)")
            }
            if Self.isRoot {
                _ = try? runProcess(["/bin/chown", "-R", "postgres:postgres", path], what: "chown")
            }
        }
        if Self.isRoot, (try? runProcess(["/usr/sbin/runuser", "-u", "postgres", "--", "test", "-w", clusterDirectory],
                                         what: "access check", quiet: true)) == nil {
            throw TockError(.failed, "the postgres OS user cannot reach \(clusterDirectory) (a parent directory is "
                + "not searchable by others); run from a directory it can reach, or set DATABASE_URL")
        }
    }

    /// Runs a PostgreSQL tool as the cluster's owner: `postgres` when we are root, else ourselves.
    @discardableResult
    /// psql gets the password in PGPASSWORD; the server's tools do not (the postmaster would keep it in its
    /// environment).
    private func runAsOwner(_ arguments: [String], what: String, quiet: Bool = false,
                            environment: [String: String] = [:]) throws(TockError) -> String {
        let command = Self.isRoot ? ["/usr/sbin/runuser", "-u", "postgres", "--"] + arguments : arguments
        var environment = environment
        if URL(fileURLWithPath: arguments[0]).lastPathComponent == "psql" { environment["PGPASSWORD"] = password }
        return try runProcess(command, what: what, quiet: quiet, environment: environment)
    }

    /// Runs a tool to completion with plain waitpid. (Foundation's Process notices exit through a socket the
    /// child inherits, which the daemonized postmaster keeps open, so `pg_ctl start` would never return.)
    @discardableResult
    func runProcess(_ arguments: [String], what: String, quiet: Bool = false,
                    environment extra: [String: String] = [:]) throws(TockError) -> String {
        let outputPath = FileManager.default.temporaryDirectory
            .appendingPathComponent("tock-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).out").path
        let fd = open(outputPath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw TockError(.failed, "\(what): cannot create \(outputPath)") }
        defer {
            close(fd)
            unlink(outputPath)
        }
        var pid: pid_t = 0
        let argv = arguments.map { strdup($0) } + [nil]
        var inherited = ProcessInfo.processInfo.environment
        inherited.merge(extra) { $1 }
        let environment = inherited.map { strdup("\($0.key)=\($0.value)") } + [nil]
        let rc = tock_spawn(&pid, arguments[0], argv, environment, "/", fd)
        argv.forEach { free($0) }
        environment.forEach { free($0) }
        guard rc == 0 else {
            throw TockError(.failed, "\(what): cannot run \(arguments[0]): \(String(cString: strerror(rc)))")
        }
        var exitCode: Int32 = -1
        var signal: Int32 = -1
        _ = tock_wait(pid, 1, &exitCode, &signal)
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        guard exitCode == 0 else {
            if !quiet { logger.error("\(what) failed", metadata: ["output": "\(text)"]) }
            throw TockError(.failed, "\(what) failed (exit \(exitCode)): "
                + text.trimmingCharacters(in: .whitespacesAndNewlines) + (what.hasPrefix("pg_ctl start") ? " (see \(logFile))" : ""))
        }
        return text
    }
}

/// Where PostgreSQL's server tools are: on PATH, else the newest /usr/lib/postgresql/N/bin.
struct PostgresBinaries: Sendable {
    var initdb: String
    var pgCtl: String
    var psql: String

    static func find() throws(TockError) -> PostgresBinaries {
        var directories = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map(String.init)
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        directories += versions.compactMap(Int.init).sorted(by: >).map { "/usr/lib/postgresql/\($0)/bin" }
        func locate(_ name: String) -> String? {
            directories.map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
        }
        guard let initdb = locate("initdb"), let pgCtl = locate("pg_ctl"), let psql = locate("psql") else {
            throw TockError(.unavailable, "PostgreSQL's server tools (initdb, pg_ctl) are not installed: run ops/up, "
                + "or `apt-get install -y postgresql`, or point DATABASE_URL at an existing server")
        }
        return PostgresBinaries(initdb: initdb, pgCtl: pgCtl, psql: psql)
    }
}
