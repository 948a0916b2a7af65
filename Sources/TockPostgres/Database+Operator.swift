import Foundation
import PostgresNIO
import TockCore

/// The operator's reads and bulk actions: runs by filter, failures by job, activity over time, the audit log.
extension Database {
    /// Runs matching `filter` (a JSON object of status, job, trigger, worker, pool, since, until, which
    /// `tock.checked_run_filter` checks), newest first, ids below `before`.
    public func findRuns(filter: String?, before: Int64? = nil, limit: Int = 50) async throws(TockError) -> [RunInfo] {
        try await rows(RunInfo.self, """
            SELECT row_to_json(v)::text FROM tock.find_runs(\(filter)::jsonb, \(before), \(Int32(clamping: limit))) v
            """)
    }

    /// A page of `findRuns` whose search is bounded: a filter on trigger, worker or pool reads at most the newest
    /// `scan` runs below `before` of each half (finished, in flight), and says where it stopped (`tock.find_runs_page`).
    public func findRunsPage(filter: String?, before: Int64? = nil, limit: Int = 50, scan: Int) async throws(TockError) -> RunPage {
        guard let page = try await rows(RunPage.self, """
            SELECT tock.find_runs_page(\(filter)::jsonb, \(before), \(Int32(clamping: limit)), \(Int32(clamping: scan)))::text
            """).first else {
            throw TockError(.failed, "the database returned no row")
        }
        return page
    }

    /// How many runs `filter` matches (of those `action` would act on: retry, cancel, delete), up to 10,000;
    /// `scan` bounds the search as `findRunsPage`'s.
    public func countRuns(filter: String?, action: String? = nil, scan: Int? = nil) async throws(TockError) -> RunCount {
        let query: PostgresQuery = """
            SELECT row_to_json(c)::text FROM tock.count_runs(\(filter)::jsonb, p_action => \(action), p_scan => \(scan.map { Int32(clamping: $0) })) c
            """
        guard let count = try await rows(RunCount.self, query).first else {
            throw TockError(.failed, "the database returned no row")
        }
        return count
    }

    /// Retries, cancels or deletes the runs `ids` names, or the newest `limit` that `filter` matches, in one
    /// transaction (`tock.bulk_runs`).
    public func bulkRuns(_ action: String, ids: [Int64]?, filter: String?, limit: Int = 1000) async throws(TockError) -> BulkResult {
        guard let result = try await rows(BulkResult.self, """
            SELECT tock.bulk_runs(\(action), \(ids), \(filter)::jsonb, \(Int32(clamping: limit)))::text
            """, committed: true).first else {
            throw TockError(.failed, "the database returned no row")
        }
        return result
    }

    /// The jobs whose runs failed, timed out or died since `since` (`1h`, `7d`, or a timestamp), most recent first.
    public func failureGroups(since: String) async throws(TockError) -> [FailureGroup] {
        try await rows(FailureGroup.self, "SELECT row_to_json(f)::text FROM tock.failure_groups(\(since)) f")
    }

    /// Runs ended and failed per bucket over the last `hours`, oldest first.
    public func activity(hours: Int, bucketMinutes: Int) async throws(TockError) -> [ActivityBucket] {
        try await rows(ActivityBucket.self, """
            SELECT row_to_json(a)::text
            FROM tock.activity(make_interval(hours => \(Int32(clamping: hours))), make_interval(mins => \(Int32(clamping: bucketMinutes)))) a
            """)
    }

    /// The audit log, newest first: of one job, one actor, one action (or a kind: `job.`), ids below `before`.
    public func audit(job: String? = nil, actor: String? = nil, action: String? = nil, before: Int64? = nil,
                      limit: Int = 50) async throws(TockError) -> [AuditEntry] {
        try await rows(AuditEntry.self, """
            SELECT row_to_json(a)::text FROM tock.audit_page(\(job), \(actor), \(action), \(before), \(Int32(clamping: limit))) a
            """)
    }
}
