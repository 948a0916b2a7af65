import PostgresNIO
import Testing
import TockCore
@testable import TockPostgres
import TockTesting

/// What PostgreSQL raises, as the kind of TockError that decides what happens next: a worker retries an
/// unavailable report and drops nothing; the API answers 503, 4xx or 500.
@Suite("database errors")
struct DatabaseErrorTests {
    func raised(_ sqlState: String, _ database: Database) async -> TockError? {
        do {
            _ = try await database.client.fetch(
                "DO $$ BEGIN RAISE EXCEPTION 'raised by the test' USING ERRCODE = '\(unescaped: sqlState)'; END $$",
                logger: database.logger)
            return nil
        } catch {
            return TockError(from: error)
        }
    }

    @Test("passing conditions are unavailable (try again), not failures",
          arguments: ["40001", "40P01", "53100", "53200", "53300", "55P03", "57014", "57P01", "08006"])
    func transient(sqlState: String) async throws {
        try await TestDatabase.withFresh { database, _ in
            let error = try #require(await raised(sqlState, database))
            #expect(error.kind == .unavailable, "\(error)")
            #expect(error.message.contains("raised by the test"), "\(error)")
        }
    }

    @Test("bad requests and lasting faults keep their kinds",
          arguments: [("22023", TockError.Kind.invalidInput), ("P0002", .notFound), ("23505", .conflict),
                      ("42501", .forbidden), ("XX000", .failed)])
    func lasting(sqlState: String, kind: TockError.Kind) async throws {
        try await TestDatabase.withFresh { database, _ in
            let error = try #require(await raised(sqlState, database))
            #expect(error.kind == kind, "\(error)")
        }
    }

    @Test("a statement timeout set by a DBA is unavailable, so the call is tried again")
    func statementTimeout() async throws {
        try await TestDatabase.withFresh { database, _ in
            let error = try await database.client.withConnection { connection -> TockError? in
                _ = try await connection.query("BEGIN", logger: database.logger).collect()
                _ = try await connection.query("SET LOCAL statement_timeout = 20", logger: database.logger).collect()
                var raised: TockError?
                do {
                    _ = try await connection.query("SELECT pg_sleep(5)", logger: database.logger).collect()
                } catch {
                    raised = TockError(from: error)
                }
                _ = try await connection.query("ROLLBACK", logger: database.logger).collect()
                return raised
            }
            let timedOut = try #require(error)
            #expect(timedOut.kind == .unavailable, "\(timedOut)")
            #expect(timedOut.message.contains("57014"), "\(timedOut)")
        }
    }
}

@Suite("the reachability probe")
struct ReachabilityProbeTests {
    @Test("a server that accepts and stays silent is not a refusal: the call is left to its deadline")
    func silentServerIsNotRefused() async throws {
        let server = try FakePostgres(.silent)
        let settings = ConnectionSettings(endpoint: .tcp(host: "127.0.0.1", port: server.port), username: "tock", database: "tock")
        #expect(await PostgresReachability.probe(settings) == nil)
        withExtendedLifetime(server) {}  // listening to the end (see ConnectFailFastTests.tlsRefused)
    }

    @Test("a server that refuses the login is a refusal, with PostgreSQL's reason")
    func missingDatabaseIsRefused() async throws {
        let settings = try TestDatabase.serverSettings().with(database: "tock_no_such_database")
        let refusal = await PostgresReachability.probe(settings)
        #expect(refusal?.kind == .unavailable)
        #expect(refusal?.message.contains("SQLSTATE 3D000") == true, "\(refusal?.message ?? "nil")")
    }
}
