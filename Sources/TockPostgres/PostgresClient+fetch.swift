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

    /// `fetch` in a transaction of its own, answered only once its COMMIT has been: a statement on its own commits
    /// at the Sync after its rows have gone, and postgres-nio hands the rows over at CommandComplete, so a server
    /// that stopped between the two rolled back a write its caller had taken for done (a run id shown for a run
    /// that never was). Two round trips more: for writes whose answer someone acts on.
    /// `actor`: who the write is for, set as `tock.actor` for the transaction alone, so that the audit log the
    /// write's SQL keeps names them (`tock.audit_actor`).
    public func fetchCommitted(_ query: PostgresQuery, actor: String? = nil, logger: Logger) async throws -> [PostgresRow] {
        try await withConnection { connection in
            _ = try await connection.query("BEGIN", logger: logger).collect()
            do {
                if let actor {
                    _ = try await connection.query("SELECT set_config('tock.actor', \(actor), true)", logger: logger).collect()
                }
                let rows = try await connection.query(query, logger: logger).all()
                _ = try await connection.query("COMMIT", logger: logger).collect()
                return rows
            } catch {
                // After a failed statement (or a COMMIT that failed, which ended the transaction): the connection
                // goes back to the pool outside any transaction.
                _ = try? await connection.query("ROLLBACK", logger: logger).collect()
                throw error
            }
        }
    }
}
