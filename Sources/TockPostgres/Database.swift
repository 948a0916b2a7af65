import Foundation
import Logging
import PostgresNIO
import TockCore

/// Typed calls to the `tock.*` SQL functions and views. Every rule lives in SQL; this only moves values and
/// turns PostgreSQL's errors into `TockError`s.
public struct Database: Sendable {
    /// The pool of one server; nil when calls follow the primary of several (`following`).
    private let fixedClient: PostgresClient?
    private let fixedSettings: ConnectionSettings?
    /// Several servers: the one that accepts writes, followed when it moves.
    private let following: PrimaryClient?
    public let logger: Logger
    /// The longest any call may take. A long-running process must never wait forever on the database: after a
    /// restart the pool can hold a lease back indefinitely, and the caller's retry path is what recovers.
    public var callTimeout: Duration = .seconds(30)
    /// The secret of the worker this copy acts for (see `WorkerLease`): every worker call presents it. Nil: the
    /// caller is the schema's owner, which may act as any worker (tests).
    public var leaseToken: String?
    /// Who this copy's writes are for in the audit log (`AuditActor`), unless the task says (`AuditActor.current`).
    public var actor: String?

    public init(client: PostgresClient, logger: Logger, settings: ConnectionSettings? = nil) {
        (fixedClient, fixedSettings, following) = (client, settings, nil)
        self.logger = logger
    }

    /// Calls go to the server `primary` found accepting writes, and follow it.
    public init(primary: PrimaryClient, logger: Logger) {
        (fixedClient, fixedSettings, following) = (nil, nil, primary)
        self.logger = logger
    }

    /// The pool of the server calls go to now.
    public var client: PostgresClient {
        following?.client ?? fixedClient!
    }

    /// The settings of the server calls go to now.
    public var settings: ConnectionSettings? {
        following?.settings ?? fixedSettings
    }

    /// The follower of the primary, when the settings name several servers (NotificationListener follows it too).
    public var primary: PrimaryClient? { following }

    /// Runs `body` within `callTimeout`, mapping any error to a `TockError` (a timeout is `.unavailable`, and so is
    /// a refused connection, at once: `PostgresReachability`). A call
    /// that times out, or whose caller is cancelled, is cancelled and abandoned, not awaited: a lease stuck in the
    /// pool may ignore cancellation, and the caller must get on with its retry (or its exit).
    func mapped<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws(TockError) -> T {
        let timeout = callTimeout
        let settings = settings
        do {
            return try await awaitAbandoning(timeout: timeout, timedOut: {
                TockError(.unavailable, "PostgreSQL did not answer within \(timeout)")
            }, failFast: { await PostgresReachability.refusal(of: settings) }, body)
        } catch is CancellationError {
            throw TockError(.unavailable, "the call to PostgreSQL was cancelled")
        } catch {
            if let primary, TockError.suggestsFailover(error) { primary.suspect() }
            throw TockError(from: error, settings: settings)
        }
    }

    /// Decodes every row of `query`, whose only column is `row_to_json(…)::text`.
    func rows<T: Decodable & Sendable>(_ type: T.Type, _ query: PostgresQuery, committed: Bool = false) async throws(TockError) -> [T] {
        try await mapped {
            let decoder = TockJSON.decoder()
            let rows = committed ? try await client.fetchCommitted(query, actor: AuditActor.current ?? actor, logger: logger)
                                 : try await client.fetch(query, logger: logger)
            return try rows.map { row in
                try decoder.decode(T.self, from: Data(try row.decode(String.self).utf8))
            }
        }
    }

    /// The first column of the first row of `query`. `committed`: answered only once the statement's transaction
    /// has committed (`fetchCommitted`), for a write whose caller acts on the answer.
    func scalar<T: PostgresDecodable & Sendable>(_ type: T.Type, _ query: PostgresQuery,
                                                 committed: Bool = false) async throws(TockError) -> T {
        try await mapped {
            let rows = committed ? try await client.fetchCommitted(query, actor: AuditActor.current ?? actor, logger: logger)
                                 : try await client.fetch(query, logger: logger)
            guard let value = try rows.first?.decode(T.self) else {
                throw TockError(.failed, "the database returned no row")
            }
            return value
        }
    }

    /// Fails at once with the cause (`.unavailable`) when the server cannot be reached or refuses this login (no
    /// such database, a wrong password, no TLS): every command asks first, so a wrong DATABASE_URL is reported in
    /// a moment rather than after the call timeout. A server that accepts and stays silent still takes the timeout.
    public func checkConnection() async throws(TockError) {
        _ = try await scalar(Int32.self, "SELECT 1")
    }

    // MARK: Jobs

    public func createJob(_ job: JobDefinition) async throws(TockError) -> Int64 {
        let (params, env, http) = (try Self.json(job.params), try Self.json(job.env), try Self.json(job.http))
        return try await scalar(Int64.self, """
            SELECT tock.create_job(
                p_name => \(job.name), p_script => \(job.script), p_args => \(job.args), p_schedule => \(job.schedule),
                p_timezone => \(job.timezone), p_priority => \(job.priority)::int, p_timeout => make_interval(secs => \(job.timeoutSeconds)),
                p_max_attempts => \(job.maxAttempts)::int, p_overlap => \(job.overlap), p_enabled => \(job.enabled),
                p_retry_base => make_interval(secs => \(job.retryBaseSeconds)),
                p_retry_cap => make_interval(secs => \(job.retryCapSeconds)), p_misfire => \(job.misfire),
                p_pool => \(job.pool), p_max_running => \(job.maxRunning.map { Int32(clamping: $0) })::int, p_rate => \(job.rate),
                p_params => \(params)::jsonb, p_description => \(job.description), p_env => \(env)::jsonb,
                p_secrets => \(job.secrets)::text[], p_http => \(http)::jsonb)
            """, committed: true)
    }

    /// `value` as JSON, for a jsonb parameter (nil stays NULL).
    static func json<Value: Encodable>(_ value: Value?) throws(TockError) -> String? {
        guard let value else { return nil }
        do {
            return String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
        } catch {
            throw TockError(.failed, "could not encode \(Value.self): \(error)")
        }
    }

    /// Changes the fields named in `changes` (keys as in `tock.update_job`: schedule, timezone, priority, …).
    public func updateJob(_ job: String, changes: [String: JobChange]) async throws(TockError) -> Int64 {
        let json: String
        do {
            json = String(decoding: try JSONEncoder().encode(changes), as: UTF8.self)
        } catch {
            throw TockError(.failed, "could not encode the changes: \(error)")
        }
        return try await scalar(Int64.self, "SELECT tock.update_job(\(job), \(json)::jsonb)", committed: true)
    }

    /// Creates a job from its JSON (the API's request body as sent): `tock.create_job_json` checks every field.
    public func createJob(json: String) async throws(TockError) -> Int64 {
        try await scalar(Int64.self, "SELECT tock.create_job_json(\(json)::jsonb)", committed: true)
    }

    /// Changes the fields present in `json`, a JSON object checked by `tock.update_job`.
    public func updateJob(_ job: String, json: String) async throws(TockError) -> Int64 {
        try await scalar(Int64.self, "SELECT tock.update_job(\(job), \(json)::jsonb)", committed: true)
    }

    @discardableResult
    public func deleteJob(_ job: String) async throws(TockError) -> Int64 {
        try await scalar(Int64.self, "SELECT tock.delete_job(\(job))", committed: true)
    }

    @discardableResult
    public func setJobEnabled(_ job: String, _ enabled: Bool) async throws(TockError) -> Int64 {
        try await scalar(Int64.self, "SELECT tock.set_job_enabled(\(job), \(enabled))", committed: true)
    }

    /// Jobs in name order. `after` pages on (the jobs whose names sort after it), `search` keeps the names that
    /// contain it (case-insensitive, taken literally), `limit` nil means every job.
    public func jobs(after: String? = nil, search: String? = nil, limit: Int? = nil) async throws(TockError) -> [JobInfo] {
        try await rows(JobInfo.self, """
            SELECT row_to_json(v)::text FROM tock.list_jobs(\(after), \(search), \(limit.map(Int32.init))) v
            """)
    }

    /// `tock.job_stats` for one job: its 24 h and 7 d figures.
    public func jobStats(_ job: String) async throws(TockError) -> [JobStats] {
        try await rows(JobStats.self, """
            SELECT row_to_json(s)::text FROM tock.job_stats s WHERE s.job_id = tock.find_job(\(job)) ORDER BY s.period
            """)
    }

    /// One job by name or id.
    public func job(_ job: String) async throws(TockError) -> JobInfo {
        let found = try await rows(JobInfo.self,
            "SELECT row_to_json(v)::text FROM tock.job_overview v WHERE v.id = tock.find_job(\(job))")
        guard let first = found.first else { throw TockError(.notFound, field: "job", "job: unknown job '\(job)'") }
        return first
    }

    /// Enqueues a run now; `trigger` is manual (CLI), api or sql.
    public func runNow(_ job: String, trigger: String = "manual") async throws(TockError) -> Int64 {
        try await scalar(Int64.self, "SELECT tock.run_now(\(job), \(trigger))", committed: true)
    }

    /// Enqueues a run now, once per `key`: the same key for the same job within 24 hours answers the first run's id
    /// (`replayed`) and enqueues nothing. A nil key always enqueues. `params`: the values of the job's parameters,
    /// a JSON object (`{"env": "prod"}`) that `tock.resolved_params` checks; nil gives none.
    public func runNow(_ job: String, trigger: String = "manual", key: String?, params: String? = nil) async throws(TockError) -> TriggeredRun {
        let found = try await rows(TriggeredRun.self, """
            SELECT row_to_json(k)::text
            FROM tock.run_now_keyed(\(job), p_trigger => \(trigger), p_key => \(key), p_params => \(params)::jsonb) k
            """, committed: true)
        guard let run = found.first else { throw TockError(.failed, "the database returned no row") }
        return run
    }

    /// `runNow` with the values of a trigger's body, a JSON object whose "params" holds them (the API's POST
    /// …/trigger; its fields were checked by the caller).
    public func runNow(_ job: String, trigger: String, key: String?, body: String) async throws(TockError) -> TriggeredRun {
        let found = try await rows(TriggeredRun.self, """
            SELECT row_to_json(k)::text
            FROM tock.run_now_keyed(\(job), p_trigger => \(trigger), p_key => \(key), p_params => \(body)::jsonb -> 'params') k
            """, committed: true)
        guard let run = found.first else { throw TockError(.failed, "the database returned no row") }
        return run
    }

    public func nextFireTimes(schedule: String, timezone: String, after: Date = Date(), count: Int = 5,
                              anchor: Date? = nil) async throws(TockError) -> [Date] {
        try await mapped {
            try await client.fetch("""
                SELECT t FROM tock.next_fire_times(\(schedule), \(timezone), \(after), \(count)::int, \(anchor)) t
                """, logger: logger).map { try $0.decode(Date.self) }
        }
    }

    /// A schedule in words ("daily at 06:00"); an invalid one raises naming the field.
    public func describeSchedule(_ schedule: String) async throws(TockError) -> String {
        try await scalar(String.self, "SELECT tock.describe_schedule(\(schedule))")
    }

    // MARK: Runs

    /// Runs newest first (`tock.recent_runs`, or `tock.job_runs` for one job); `before` pages on: the runs with ids
    /// below it.
    public func runs(job: String? = nil, status: RunStatus? = nil, before: Int64? = nil,
                     limit: Int = 50) async throws(TockError) -> [RunInfo] {
        guard let job else {
            return try await rows(RunInfo.self, """
                SELECT row_to_json(v)::text FROM tock.recent_runs(\(status?.rawValue), \(before), \(Int32(clamping: limit))) v
                """)
        }
        return try await rows(RunInfo.self, """
            SELECT row_to_json(v)::text FROM tock.job_runs(\(job), \(status?.rawValue), \(before), \(Int32(clamping: limit))) v
            """)
    }

    /// Stores what a running run has printed so far; false when it is no longer running on this worker.
    @discardableResult
    public func reportOutput(_ run: Int64, worker: Int64, output: OutputTail) async throws(TockError) -> Bool {
        try await reportOutput(run, worker: worker, output: output.text, totalBytes: output.totalBytes, truncated: output.truncated)
    }

    /// A running run's output so far, as the worker may show it (its secrets masked).
    public func reportOutput(_ run: Int64, worker: Int64, output: String, totalBytes: Int, truncated: Bool) async throws(TockError) -> Bool {
        try await scalar(Bool.self, """
            SELECT tock.report_output(\(run), \(worker), \(output), \(Int64(totalBytes)), \(truncated),
                                      p_lease_token => \(leaseToken))
            """)
    }

    public func run(_ id: Int64, withOutput: Bool = true) async throws(TockError) -> RunInfo {
        let found = try await rows(RunInfo.self, """
            SELECT d::text FROM tock.run_detail(\(id), \(withOutput)) d WHERE d IS NOT NULL
            """)
        guard let run = found.first else {
            throw TockError(.notFound, field: "run", "run: unknown run \(id) (tock runs lists recent runs)")
        }
        return run
    }

    // MARK: Workers and the queue

    /// The pools that have jobs and no live worker (tock.pool_overview).
    public func unservedPools() async throws(TockError) -> [(pool: String, jobs: Int, pending: Int)] {
        try await mapped {
            try await client.fetch("""
                SELECT pool, jobs::int8, pending::int8 FROM tock.pool_overview WHERE jobs > 0 AND workers_alive = 0 ORDER BY pool
                """, logger: logger).map { row in
                let (pool, jobs, pending) = try row.decode((String, Int, Int).self)
                return (pool: pool, jobs: jobs, pending: pending)
            }
        }
    }

    /// The fleet-wide settings (`tock.config_settings`): the defaults jobs inherit, and the history's retention.
    public func configSettings() async throws(TockError) -> [ConfigSetting] {
        try await rows(ConfigSetting.self, "SELECT row_to_json(s)::text FROM tock.config_settings s")
    }

    /// Sets one fleet-wide setting (`tock.set_config`); the jobs that inherit it follow. Returns the value as shown.
    public func setConfig(_ key: String, _ value: String) async throws(TockError) -> String {
        try await scalar(String.self, "SELECT tock.set_config(\(key), \(value))", committed: true)
    }

    /// Sets settings from a JSON object as sent (the API's body), all or none (`tock.set_config_json`).
    public func setConfig(json: String) async throws(TockError) -> [ConfigSetting] {
        _ = try await scalar(Bool.self, "SELECT tock.set_config_json(\(json)::jsonb) IS NULL", committed: true)
        return try await configSettings()
    }

    /// Every pool with jobs, runs in flight, live workers or limits (tock.pool_overview), by name.
    public func pools() async throws(TockError) -> [PoolInfo] {
        try await rows(PoolInfo.self, "SELECT row_to_json(v)::text FROM tock.pool_overview v ORDER BY v.pool LIMIT 1000")
    }

    /// Sets a pool's limits (`tock.set_pool`): max_running and rate; `.none` removes one, a key left out keeps it.
    public func setPool(_ pool: String, changes: [String: JobChange]) async throws(TockError) -> PoolInfo {
        let json: String
        do {
            json = String(decoding: try JSONEncoder().encode(changes), as: UTF8.self)
        } catch {
            throw TockError(.failed, "could not encode the changes: \(error)")
        }
        return try await setPool(pool, json: json)
    }

    /// Sets a pool's limits from a JSON object as sent (the API's request body): `tock.set_pool` checks every field.
    public func setPool(_ pool: String, json: String) async throws(TockError) -> PoolInfo {
        let name = try await scalar(String.self, "SELECT tock.set_pool(\(pool), \(json)::jsonb)", committed: true)
        let found = try await rows(PoolInfo.self, "SELECT row_to_json(v)::text FROM tock.pool_overview v WHERE v.pool = \(name)")
        // A pool with no jobs, runs, workers or limits left is no row of tock.pool_overview.
        return found.first ?? PoolInfo(empty: name)
    }

    public func workers() async throws(TockError) -> [WorkerInfo] {
        try await rows(WorkerInfo.self, """
            SELECT row_to_json(v)::text FROM tock.worker_overview v
            ORDER BY v.alive DESC, v.last_heartbeat_at DESC LIMIT 200
            """)
    }

    public func queueDepth() async throws(TockError) -> QueueDepth {
        guard let depth = try await rows(QueueDepth.self, "SELECT row_to_json(v)::text FROM tock.queue_depth v").first else {
            throw TockError(.failed, "tock.queue_depth returned no row")
        }
        return depth
    }

    /// `tock.stats()`: counts by status, queue, liveness and per-job figures, as a JSON document.
    public func stats() async throws(TockError) -> String {
        try await scalar(String.self, "SELECT tock.stats()::text")
    }

    /// Whether every migration and the current functions are applied.
    public func migrationsCurrent() async throws(TockError) -> Bool {
        try await mapped { [client, logger] in
            try await Migrator(client: client, files: try SQLFiles.bundled(), logger: logger).isUpToDate()
        }
    }

    /// `tock.lag`: pending runs per priority and pool, highest priority first.
    public func lag() async throws(TockError) -> [LagRow] {
        try await rows(LagRow.self, "SELECT row_to_json(v)::text FROM tock.lag v ORDER BY v.priority DESC, v.pool")
    }

    /// `tock.stuck_runs`: running past their timeout or on a dead worker, oldest first.
    public func stuckRuns() async throws(TockError) -> [StuckRun] {
        try await rows(StuckRun.self, "SELECT row_to_json(v)::text FROM tock.stuck_runs v ORDER BY v.started_at")
    }

    /// Ends a job's stuck runs and moves its schedule to the next fire time from now.
    public func resetJob(_ job: String) async throws(TockError) -> JobReset {
        guard let reset = try await rows(JobReset.self, "SELECT tock.reset_job(\(job))::text", committed: true).first else {
            throw TockError(.failed, "tock.reset_job returned no row")
        }
        return reset
    }

    /// Deletes one batch of finished runs older than the retention; returns how many.
    public func purgeHistory() async throws(TockError) -> Int {
        try await scalar(Int.self, "SELECT tock.purge_history()")
    }

    /// `tock.gauges()`: what only the database knows, for `/metrics`.
    public func gauges() async throws(TockError) -> [DatabaseGauge] {
        try await rows(DatabaseGauge.self, "SELECT row_to_json(g)::text FROM tock.gauges() g")
    }

    /// How many schedulers are connected.
    public func schedulersAlive() async throws(TockError) -> Int {
        try await scalar(Int.self, "SELECT tock.schedulers_alive()")
    }

    /// Registers a worker with `leaseToken`, which its later calls present. Only the schema's owner may leave it out
    /// (tests).
    public func registerWorker(host: String, pid: Int, concurrency: Int, scriptsDirectory: String?,
                               version: String?, name: String? = nil, pools: [String] = ["default"]) async throws(TockError) -> Int64 {
        try await scalar(Int64.self, """
            SELECT tock.register_worker(\(host), \(pid)::int, \(concurrency)::int, \(scriptsDirectory), \(version),
                                        p_lease_token => \(leaseToken), p_name => \(name), p_pools => \(pools))
            """, committed: true)
    }

    /// The worker's state after the heartbeat, or nil when it is no longer registered as alive. With `held` (every
    /// run the worker holds, sent while none of its claims is under way), its runs claimed more than `unheldAfter`
    /// ago that it does not hold go back to the queue: claims whose answer it never got.
    /// `claimError`: the error of the worker's claims while they keep failing (nil once one works), for health.
    public func heartbeat(worker: Int64, held: [Int64]? = nil, unheldAfter: Duration = .seconds(60),
                          claimError: String? = nil) async throws(TockError) -> String? {
        try await scalar(String?.self, """
            SELECT tock.heartbeat(\(worker), p_held => \(held)::bigint[],
                                  p_unheld_after => \(unheldAfter.wholeMilliseconds)::float8 * interval '1 millisecond',
                                  p_lease_token => \(leaseToken), p_claim_error => \(claimError))
            """)
    }

    public func setWorkerState(worker: Int64, state: String) async throws(TockError) {
        _ = try await scalar(Bool.self, "SELECT tock.set_worker_state(\(worker), \(state), p_lease_token => \(leaseToken))", committed: true)
    }

    public func claimRuns(worker: Int64, max: Int) async throws(TockError) -> [ClaimedRun] {
        try await claim(worker: worker, max: max).runs
    }

    /// A claim's runs, and when it took fewer than `max`, when the first run of the worker's pools not yet due at the
    /// claim's time comes due (nil: none), which no NOTIFY announces: the worker sleeps until then at most.
    public func claim(worker: Int64, max: Int) async throws(TockError) -> (runs: [ClaimedRun], nextDelayed: Date?) {
        // A procedure that answers only once its claim has committed: the scripts of a claim the server rolled back
        // must never start (tock.claim_committed says how they did). One row, one array per column.
        try await mapped {
            let rows = try await client.fetch("""
                CALL tock.claim_committed(\(worker), \(max)::int, \(leaseToken), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                          NULL::timestamptz, NULL::text[])
                """, logger: logger)
            guard let row = rows.first else { throw TockError(.failed, "tock.claim_committed answered no row") }
            let (runs, jobs, names, scripts, args, timeouts, attempts, triggers, scheduled, nextDelayed, extras) = try row.decode(
                ([Int64], [Int64], [String], [String], [String], [Double], [Int32], [String], [Double], Date?, [String]).self)
            guard [jobs.count, names.count, scripts.count, args.count, timeouts.count, attempts.count, triggers.count,
                   scheduled.count, extras.count].allSatisfy({ $0 == runs.count }) else {
                throw TockError(.failed, "tock.claim_committed answered columns of different lengths")
            }
            // tock.run_extras: {"env": {...}, "secrets": [...]}, or '' for none.
            struct Extras: Decodable { var env: [String: String]?; var secrets: [String]?; var http: HTTPRequestSpec? }
            let claimed = try runs.indices.map { index in
                let extra = extras[index].isEmpty ? Extras() : try JSONDecoder().decode(Extras.self, from: Data(extras[index].utf8))
                return ClaimedRun(runId: runs[index], jobId: jobs[index], jobName: names[index], script: scripts[index],
                           args: args[index] == "[]" ? [] : try JSONDecoder().decode([String].self, from: Data(args[index].utf8)),
                           timeoutSeconds: timeouts[index], attempt: Int(attempts[index]), trigger: triggers[index],
                           scheduledFor: scheduled[index].isNaN ? nil : Date(timeIntervalSince1970: scheduled[index]),
                           environment: extra.env ?? [:], secrets: extra.secrets ?? [], http: extra.http)
            }
            return (runs: claimed, nextDelayed: nextDelayed)
        }
    }

    /// Records how a run ended; false when it was no longer running on this worker (a late or duplicate report).
    @discardableResult
    public func finishRun(_ run: Int64, worker: Int64, outcome: RunOutcome) async throws(TockError) -> Bool {
        try await scalar(Bool.self, """
            SELECT tock.finish_run(\(run), \(worker), \(outcome.status.rawValue), \(outcome.exitCode)::int, \(outcome.error),
                                   \(outcome.output), \(Int64(outcome.outputBytes)), \(outcome.outputTruncated),
                                   p_lease_token => \(leaseToken))
            """)
    }

    /// Records how a batch of runs ended in one transaction; returns the runs it finished (the others were no
    /// longer running on this worker).
    public func finishRuns(worker: Int64, _ runs: [(run: Int64, outcome: RunOutcome)]) async throws(TockError) -> Set<Int64> {
        let ids = runs.map(\.run), outcomes = runs.map(\.outcome)
        // postgres-nio binds no arrays with NULLs: no exit code travels as Int64.min, no error as "".
        let exitCodes = outcomes.map { $0.exitCode.map(Int64.init) ?? Int64.min }
        let errors = outcomes.map { $0.error ?? "" }
        // Committed before it answers, as a claim is (tock.finish_committed): a finish taken for done that the server
        // rolled back would leave the run running, and the heartbeat would start it again.
        let finished = try await scalar([Int64].self, """
            CALL tock.finish_committed(\(worker), \(leaseToken), \(ids), \(outcomes.map(\.status.rawValue)), \(exitCodes),
                \(errors), \(outcomes.map(\.output)), \(outcomes.map { Int64($0.outputBytes) }), \(outcomes.map(\.outputTruncated)), NULL)
            """)
        return Set(finished)
    }

    /// Cancels a run: "cancelled" (it was pending) or "cancelling" (its worker is stopping the script).
    public func cancel(_ run: Int64) async throws(TockError) -> String {
        try await scalar(String.self, "SELECT tock.cancel(\(run))", committed: true)
    }

    /// Runs an ended run again as a new attempt; returns the new run's id.
    public func retry(_ run: Int64) async throws(TockError) -> Int64 {
        try await scalar(Int64.self, "SELECT tock.retry(\(run))", committed: true)
    }

    /// Recovers the runs of dead workers; returns how many.
    public func rescue() async throws(TockError) -> Int {
        try await scalar(Int.self, "SELECT tock.rescue()")
    }

    /// Runs of this worker whose cancel was asked for (catch-up for a missed NOTIFY tock_cancel).
    public func cancelRequests(worker: Int64) async throws(TockError) -> [Int64] {
        try await mapped {
            try await client.fetch("SELECT tock.cancel_requests(\(worker), p_lease_token => \(leaseToken))", logger: logger)
                .map { try $0.decode(Int64.self) }
        }
    }

    /// When the earliest delayed run becomes claimable (nil: none): of the pending runs not yet due `since` ago,
    /// so a run that came due while the worker's claim was answered is in it (a time already past: claim again).
    public func nextDelayedRun(since: Duration = .zero, worker: Int64? = nil) async throws(TockError) -> Date? {
        try await scalar(Date?.self, """
            SELECT tock.next_delayed_run(now() - \(since.wholeMilliseconds + 1)::float8 * interval '1 millisecond',
                                         \(worker))
            """)
    }

    /// Puts a run this worker holds back to pending, keeping its attempt (graceful shutdown).
    @discardableResult
    public func releaseRun(_ run: Int64, worker: Int64) async throws(TockError) -> Bool {
        try await scalar(Bool.self, "SELECT tock.release_run(\(run), \(worker), p_lease_token => \(leaseToken))", committed: true)
    }

    /// Enqueues the due runs (fire times up to `lookahead` ahead, held until due); returns when to tick again (nil: none scheduled).
    public func tick(limit: Int = 1000, lookahead: Duration = .zero) async throws(TockError) -> Date? {
        try await scalar(Date?.self,
                         "SELECT tock.tick(now(), \(limit)::int, \(lookahead.wholeMilliseconds)::float8 * interval '1 millisecond')")
    }
}

/// A value in a job change: `tock job edit` and the API send only what changes.
public enum JobChange: Sendable, Encodable, Equatable {
    case text(String)
    case number(Double)
    case integer(Int)
    case flag(Bool)
    case list([String])
    case params([ParamDefinition])
    case variables([String: String])
    case request(HTTPRequestSpec)
    /// JSON null: the setting goes (a limit removed).
    case none

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .none: try container.encodeNil()
        case .text(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .integer(let value): try container.encode(value)
        case .flag(let value): try container.encode(value)
        case .list(let value): try container.encode(value)
        case .params(let value): try container.encode(value)
        case .variables(let value): try container.encode(value)
        case .request(let value): try container.encode(value)
        }
    }
}

// MARK: Diagnostics (tock doctor)

/// What `tock doctor` asks the server about itself and the current role.
public struct ServerFacts: Sendable, Decodable {
    public var version: String
    public var user: String
    public var database: String
    public var superuser: Bool
    public var now: Date
    /// tock_admin, tock_worker, tock_viewer: whether each exists and whether the current user is a member.
    public var roles: [RoleFact]
    public var retentionDays: Double?

    public struct RoleFact: Sendable, Decodable {
        public var name: String
        public var exists: Bool
        public var member: Bool
    }
}

extension Database {
    public func serverFacts() async throws(TockError) -> ServerFacts {
        guard let facts = try await rows(ServerFacts.self, """
            SELECT json_build_object(
                'version', current_setting('server_version'), 'user', current_user, 'database', current_database(),
                'superuser', (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), 'now', now(),
                'roles', (SELECT json_agg(json_build_object(
                              'name', n, 'exists', r.oid IS NOT NULL,
                              'member', r.oid IS NOT NULL AND pg_has_role(current_user, r.oid, 'MEMBER')) ORDER BY n)
                          FROM unnest(ARRAY['tock_admin', 'tock_viewer', 'tock_worker']) n
                          LEFT JOIN pg_roles r ON r.rolname = n),
                'retention_days', (SELECT extract(epoch FROM history_retention) / 86400 FROM tock.config))::text
            """).first else {
            throw TockError(.failed, "the server returned no facts")
        }
        return facts
    }

    /// LISTEN on a connection of its own, NOTIFY through the pool, and time the round trip; nil when the
    /// notification did not arrive within `timeout` (e.g. behind PgBouncer in transaction mode).
    public func notifyRoundTrip(timeout: Duration = .seconds(3)) async throws(TockError) -> Duration? {
        guard let settings else { throw TockError(.failed, "no connection settings to open a LISTEN connection with") }
        let channel = "tock_doctor_\(getpid())_\(UInt32.random(in: 0...UInt32.max))"
        return try await mapped { [client, logger] in
            let connection = try await PostgresConnection.connect(
                configuration: try settings.connectionConfiguration(), id: 1, logger: logger)
            defer { Task { try? await connection.close() } }
            return try await withThrowingTaskGroup(of: Duration?.self) { group in
                let (listening, listeningContinuation) = AsyncStream<Void>.makeStream()
                let start = Locked<ContinuousClock.Instant?>(nil)
                group.addTask {
                    try await connection.listen(on: channel) { notifications in
                        listeningContinuation.yield()
                        for try await _ in notifications {
                            return start.value.map { ContinuousClock.now - $0 }
                        }
                        return nil
                    }
                }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                for await _ in listening { break }
                // Every LISTEN is on the wire before this answer comes back.
                _ = try await connection.query("SELECT 1", logger: logger).collect()
                start.set(ContinuousClock.now)
                _ = try await client.fetch("SELECT pg_notify(\(channel), 'ping')", logger: logger)
                let result = try await group.next() ?? nil
                group.cancelAll()
                return result
            }
        }
    }
}
