import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockTesting

/// The queue's table is often empty when autovacuum analyzes it, so its statistics often say "no rows in these
/// pages" while tens of thousands wait. Plans made from them walked a whole index, or every run in flight, where a
/// few probes do: a claim of 100 read 16,000 index pages, and one heartbeat took 61 s, holding its worker's row
/// while every finish of that worker queued behind it.
@Suite("the calls workers and schedulers repeat read the runs they are about, whatever the statistics say")
struct PlanTests {
    struct Read: CustomStringConvertible {
        /// Rows a sequential scan returned and entries an index scan returned.
        var rows: Int
        /// Pages looked at (from shared buffers or disk), index pages included.
        var pages: Int
        var description: String { "\(rows) rows or index entries in \(pages) pages" }
    }

    /// What the statement read of tock.runs and tock.run_leases and their indexes, in a transaction rolled back.
    /// The counters include what the session read before and has not reported yet: the difference is the statement's.
    static func read(_ connection: PostgresConnection, _ statement: String) async throws -> Read {
        func counters() async throws -> Read {
            let (rows, pages) = try await connection.query("""
                SELECT sum(pg_stat_get_xact_tuples_returned(c.oid))::int8, sum(pg_stat_get_xact_blocks_fetched(c.oid))::int8
                FROM pg_class c
                WHERE c.oid IN ('tock.runs'::regclass, 'tock.run_leases'::regclass)
                   OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid IN ('tock.runs'::regclass, 'tock.run_leases'::regclass))
                """, logger: TestDatabase.logger).decode((Int, Int).self).all().first ?? (0, 0)
            return Read(rows: rows, pages: pages)
        }
        _ = try await connection.query("BEGIN", logger: TestDatabase.logger).collect()
        let before = try await counters()
        do {
            _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: TestDatabase.logger).collect()
        } catch {
            _ = try? await connection.query("ROLLBACK", logger: TestDatabase.logger).collect()
            throw error
        }
        let after = try await counters()
        _ = try await connection.query("ROLLBACK", logger: TestDatabase.logger).collect()
        return Read(rows: after.rows - before.rows, pages: after.pages - before.pages)
    }

    /// The statistics a queue of 20,000 runs may be planned on: 0, analyzed drained (no rows in its pages); 1,
    /// analyzed full; 2, analyzed drained and then vacuumed (truncated); 3, vacuumed drained, never analyzed.
    @Test("with the statistics of a drained queue, a vacuumed one or a full one, 20,000 runs pending and 100 running: each call reads about the 100 runs it is about",
          arguments: [0, 1, 2, 3])
    func statisticsOfAnEmptyQueue(mode: Int) async throws {
        let analyzedFull = mode == 1
        try await TestDatabase.withFresh { database, _ in
            // The statistics are the test's: autovacuum must not analyze the tables in between (under load it did).
            for table in ["tock.runs", "tock.run_leases"] {
                _ = try await database.client.query(PostgresQuery(unsafeSQL: "ALTER TABLE \(table) SET (autovacuum_enabled = false)")).collect()
            }
            _ = try await database.createJob(JobDefinition(name: "job", script: "x.sh"))
            let worker = try await database.registerWorker(host: "t", pid: 1, concurrency: 100, scriptsDirectory: nil, version: nil)
            func enqueue() async throws {
                _ = try await database.client.query("""
                    INSERT INTO tock.runs (job_id, trigger, run_after) SELECT 1, 'sql', now() FROM generate_series(1, 20100)
                    """).collect()
            }
            // A queue drained, then analyzed: pages, and no row in them (what autovacuum finds between bursts).
            // Emptied by TRUNCATE, not DELETE, and the pages put back in the statistics by hand: a DELETE left 20,100
            // dead index entries ahead of the live ones, which the claims walked whenever another session's
            // snapshot kept them from being marked dead (full runs, under load): 20,428 entries read, the dead
            // ones, not the plan, which is what this measures.
            try await enqueue()
            _ = try await database.claimRuns(worker: worker, max: 100)
            let pages = try await database.client.query(
                "SELECT (pg_relation_size('tock.runs') / current_setting('block_size')::int)::int").decode(Int.self).all().first ?? 0
            _ = try await database.client.query("TRUNCATE tock.run_leases, tock.runs").collect()
            if mode != 3 {
                _ = try await database.client.query("ANALYZE tock.runs, tock.run_leases, tock.run_output").collect()
            }
            if mode < 2 {
                _ = try await database.client.query(PostgresQuery(unsafeSQL:
                    "UPDATE pg_class SET relpages = \(pages), reltuples = 0 WHERE oid = 'tock.runs'::regclass")).collect()
            }
            if mode >= 2 {
                _ = try await database.client.query("VACUUM tock.runs, tock.run_leases").collect()
            }
            try await enqueue()
            if analyzedFull {
                _ = try await database.client.query("ANALYZE tock.runs, tock.run_leases, tock.run_output").collect()
            }
            let claimed = try await database.claimRuns(worker: worker, max: 100).map(\.runId)
            #expect(claimed.count == 100)
            let ids = "'{\(claimed.map(String.init).joined(separator: ","))}'::bigint[]"
            let calls = [
                "claim": "SELECT * FROM tock.claim_runs(\(worker), 100)",
                "finish": """
                    SELECT tock.finish_runs(\(worker), \(ids), array_fill('succeeded'::text, ARRAY[100]),
                                            array_fill(0, ARRAY[100]), array_fill(NULL::text, ARRAY[100]),
                                            array_fill(''::text, ARRAY[100]), array_fill(0::bigint, ARRAY[100]),
                                            array_fill(false, ARRAY[100]))
                    """,
                // Two minutes on, holding none of them: every one is looked up, and put back.
                "heartbeat": "SELECT tock.heartbeat(\(worker), now() + interval '2 minutes', '{}')",
                "rescue": "SELECT tock.rescue()",
                "cancel requests": "SELECT tock.cancel_requests(\(worker))",
                "stuck runs": "SELECT count(*) FROM tock.stuck_runs",
                "next delayed run": "SELECT tock.next_delayed_run()",
            ]
            try await database.client.withConnection { connection in
                for (name, statement) in calls.sorted(by: { $0.key < $1.key }) {
                    let read = try await Self.read(connection, statement)
                    // The 100 runs, their leases and index entries, a few times over. A walk of the pending runs for
                    // each of them reads 2,000,000 rows, or 16,000 pages of an index.
                    #expect(read.rows <= 1000 && read.pages <= 2000, "\(name): read \(read)")
                }
            }
        }
    }
}
