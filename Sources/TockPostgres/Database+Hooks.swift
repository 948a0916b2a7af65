import Foundation
import PostgresNIO
import TockCore

/// Hooks and their deliveries (`tock.add_hook`, `tock.claim_deliveries`, …): every rule is in SQL.
extension Database {
    /// Adds a webhook from its JSON (`tock.add_hook_json` checks every field); its id and signing secret.
    public func addHook(json: String) async throws(TockError) -> NewHook {
        let found = try await rows(NewHook.self, """
            SELECT row_to_json(h)::text FROM tock.add_hook_json(\(json)::jsonb) h
            """, committed: true)
        guard let hook = found.first else { throw TockError(.failed, "tock.add_hook_json answered no row") }
        return hook
    }

    /// The hooks of `job` (and the fleet's, which apply to it), or every hook.
    public func hooks(job: String? = nil) async throws(TockError) -> [HookInfo] {
        try await rows(HookInfo.self, "SELECT row_to_json(h)::text FROM tock.job_hooks(\(job)) h")
    }

    @discardableResult
    public func removeHook(_ hook: Int64) async throws(TockError) -> Int64 {
        try await scalar(Int64.self, "SELECT tock.remove_hook(\(hook))", committed: true)
    }

    /// Deliveries newest first (`tock.delivery_page`): of `job`, in `status`, ids below `before`; at most `limit`
    /// (1-1,000; the function refuses others, and an unknown status).
    public func deliveries(job: String? = nil, run: Int64? = nil, status: String? = nil, before: Int64? = nil,
                           limit: Int = 100) async throws(TockError) -> [DeliveryInfo] {
        try await rows(DeliveryInfo.self, """
            SELECT row_to_json(d)::text
            FROM tock.delivery_page(\(job), \(run), \(status), \(before), \(Int32(clamping: limit))) d
            """)
    }

    public func delivery(_ id: Int64) async throws(TockError) -> DeliveryInfo {
        guard let found = try await rows(DeliveryInfo.self,
                                         "SELECT row_to_json(d)::text FROM tock.delivery_overview d WHERE d.id = \(id)").first else {
            throw TockError(.notFound, field: "delivery", "delivery: unknown delivery \(id)")
        }
        return found
    }

    /// Sends a failed (or waiting) delivery again, at once.
    public func retryDelivery(_ id: Int64) async throws(TockError) -> String {
        try await scalar(String.self, "SELECT tock.retry_delivery(\(id))", committed: true)
    }

    /// Takes up to `max` due deliveries, each held for `hold`; and when the next one not yet due comes due.
    public func claimDeliveries(max: Int, hold: Duration) async throws(TockError) -> (deliveries: [ClaimedDelivery], nextDue: Date?) {
        try await mapped {
            let rows = try await client.fetchCommitted("""
                SELECT delivery_id, attempt, message_id, url, body, secret, next_due
                FROM tock.claim_deliveries(\(Int32(max)), make_interval(secs => \(Double(hold.wholeMilliseconds) / 1000)))
                """, logger: logger)
            var deliveries: [ClaimedDelivery] = []
            var nextDue: Date?
            for row in rows {
                let (id, attempt, messageId, url, body, secret, due) = try row.decode(
                    (Int64?, Int32?, String?, String?, String?, String?, Date?).self)
                nextDue = due
                guard let id, let attempt, let messageId, let url, let body, let secret else { continue }
                deliveries.append(ClaimedDelivery(id: id, attempt: Int(attempt), messageId: messageId, url: url, body: body,
                                                  secret: secret))
            }
            return (deliveries, nextDue)
        }
    }

    /// Records how an attempt went (`tock.finish_delivery`); the delivery's status after it.
    @discardableResult
    public func finishDelivery(_ id: Int64, attempt: Int, code: Int?, error: String?, startedAt: Date,
                               duration: Duration, final: Bool = false) async throws(TockError) -> String {
        try await scalar(String.self, """
            SELECT tock.finish_delivery(\(id), \(Int32(attempt)), \(code.map { Int32(clamping: $0) })::int, \(error),
                                        \(startedAt), \(Double(duration.wholeMilliseconds)), \(final))
            """, committed: true)
    }
}
