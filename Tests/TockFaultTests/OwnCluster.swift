import Foundation
import Testing
import TockCluster
import TockCore
import TockTesting

/// A PostgreSQL cluster of one fault test's own, Tock's schema migrated: for a setting that needs a restart
/// (max_connections, listen_addresses) the shared cluster, which serves the other fault tests, must not get.
/// `remove()` stops and deletes it.
struct OwnCluster {
    let cluster: EmbeddedCluster
    let home: String
    /// Its tock database, as the superuser.
    private(set) var owner: ConnectionSettings

    /// `name` goes into its directory's name; `tock migrate` runs from `directory`, where its log goes.
    init(_ name: String, migratingFrom directory: String) async throws {
        home = FileManager.default.temporaryDirectory
            .appendingPathComponent("tock-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let cluster = EmbeddedCluster(directory: home, logger: TestDatabase.logger)
        self.cluster = cluster
        owner = try await offThePool { try cluster.start() }
        owner.database = "tock"
        let migrate = try TockProcess(["migrate"], settings: owner, directory: directory)
        #expect(try await migrate.wait() == 0, "\(migrate.log)")
    }

    /// Its data directory's pg_hba.conf.
    var hbaFile: String { home + "/postgres/data/pg_hba.conf" }

    /// Stopped and started again: what ALTER SYSTEM set takes effect.
    mutating func restart() async throws {
        let cluster = cluster
        try await offThePool { try cluster.stop() }
        owner = try await offThePool { try cluster.start() }
        owner.database = "tock"
    }

    func remove() {
        try? cluster.stop()
        try? FileManager.default.removeItem(atPath: home)
    }
}
