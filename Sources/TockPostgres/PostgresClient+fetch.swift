import Logging
import PostgresNIO

extension PostgresClient {
    /// Runs `query` on a connection leased for exactly that long and returns every row.
    ///
    /// Not `query(_:)`: in postgres-nio 1.33.2 its lease goes back to the pool when the row stream ends, and a
    /// stream whose error arrived before the caller took it ends without giving it back. The caller registers
    /// for the stream from another thread than the connection's, so under load a statement that raises (an
    /// unknown job, an invalid schedule) can lose its connection. A release build under the API fuzzer lost all
    /// of them in 30 s, and every later call waited for a lease that never came (PoolTests reproduces it).
    /// `withConnection` returns the lease when the closure ends, however the statement ended.
    public func fetch(_ query: PostgresQuery, logger: Logger) async throws -> [PostgresRow] {
        try await withConnection { connection in
            try await connection.query(query, logger: logger).all()
        }
    }
}

extension PostgresClient {
    /// Runs `query` in a transaction of its own and returns its rows once its COMMIT has succeeded.
    ///
    /// A statement alone commits at the Sync that follows it, after its rows and CommandComplete have been sent,
    /// and postgres-nio ends the row stream at CommandComplete: a commit that then fails (the server shutting down
    /// between the two) looked like success. A claim seen that way started the scripts of runs that the server had
    /// put back to pending, and another worker started them again (FaultTests' restart caught it). An explicit
    /// COMMIT answers only once the transaction has committed.
    public func fetchCommitted(_ query: PostgresQuery, logger: Logger) async throws -> [PostgresRow] {
        try await withConnection { connection in
            _ = try await connection.query("BEGIN", logger: logger).all()
            do {
                let rows = try await connection.query(query, logger: logger).all()
                _ = try await connection.query("COMMIT", logger: logger).all()
                return rows
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: logger).all()
                throw error
            }
        }
    }
}
