import Foundation
import Logging
import PostgresNIO
import Synchronization
import TockCLI
import TockCore
import TockPostgres

/// What `tock-bench soak` was asked for.
struct SoakPlan: Sendable {
    /// The soak's length: a whole number of intervals.
    var intervals: Int
    var intervalSeconds: Int
    var warmupSeconds: Int
    var jobs: Int
    /// No-op runs per second; nil: half the capacity measured first.
    var load: Double?
    var runNowMs: Int
    var concurrency: Int
    /// The kinds of check that decide the exit status (timing, growth, memory, loss).
    var enforced: Set<String>

    var seconds: Int { intervals * intervalSeconds }
}

/// What the soak's generators share with its sampler.
final class SoakState: Sendable {
    /// No-op runs inserted so far (the capacity measure's included).
    let inserted = Atomic<Int>(0)
    /// Each run-now's id, and CLOCK_MONOTONIC just before it was asked for.
    let runNows = Mutex<[Int64: Int64]>([:])
    /// The soak's own calls that failed: the first few messages, and how many.
    let errors = Mutex<(first: [String], count: Int)>(([], 0))

    func failed(_ what: String, _ error: any Error) {
        let message = "\(what): \(TockError(from: error).message)"
        let first = errors.withLock { errors in
            errors.count += 1
            if errors.first.count < 5 { errors.first.append(message) }
            return errors.count == 1
        }
        if first { FileHandle.standardError.write(Data("tock-bench soak: \(message)\n".utf8)) }
    }
}

/// One sample's raw timings, kept to compare whole windows (a p99 of p99s would not be one).
struct SoakSamples {
    var toScript: [Int64] = []
    var toClaimed: [Int64] = []
    var lateness: [Int64] = []
}

extension BenchRun {
    /// The scheduled jobs' schedules, taken in turn: intervals from 10 s to a minute, and a cron schedule whose
    /// jobs all fire at the same second, each minute.
    static let soakSchedules = ["every 10s", "every 15s", "every 20s", "every 30s", "every 1m", "*/1 * * * *"]
    /// Tables that hold definitions and bookkeeping, not runs: everything else unpartitioned in schema tock is
    /// in flight, and must stop growing.
    static let soakDefinitionTables: Set<String> = ["tock.jobs", "tock.workers", "tock.timezones", "tock.migrations", "tock.config"]
    /// Logs kept by a retention of their own, a day or more whatever the history's (the audit log: at least a day,
    /// an entry per run-now; run-now idempotency keys: 24 hours): they grow through any soak shorter than that by
    /// design. Reported, not judged.
    static let soakLogTables: Set<String> = ["tock.audit", "tock.trigger_keys"]
    static let soakWorkers = 2
    static let soakSchedulers = 2

    /// The soak: 2 `tock-bench worker`s (runs of soak-noop-* finish at once and are written down; the others run
    /// their script), 2 `tock scheduler`s, `plan.jobs` scheduled jobs, a run-now of a real script every
    /// `plan.runNowMs` and a steady no-op load; sampled every interval; then checked.
    func soak(_ plan: SoakPlan, machine: BenchReport.Machine, database: String) async throws -> SoakReport {
        var notes: [String] = []
        let retention = try await soakRetention(notes: &notes)
        try TockClock.build(into: directory + "/scripts")
        let scriptLog = directory + "/script-runs.log"
        _ = FileManager.default.createFile(atPath: scriptLog, contents: nil)
        // Written by the script, as whoever the worker runs scripts as.
        chmod(scriptLog, 0o666)
        let workerLogs = (0..<Self.soakWorkers).map { directory + "/ran-\($0).log" }
        try await sql("""
            INSERT INTO tock.jobs (name, script, args) VALUES ('soak-script', 'tock-clock', \([scriptLog])),
                                                              ('soak-noop-load', 'noop.sh', '{}')
            """)
        let workers = try await startWorkers(Self.soakWorkers, concurrency: plan.concurrency, kind: .noop) { index in
            ["--noop-jobs", "soak-noop-*", "--ran-log", workerLogs[index]]
        }
        // Named as their logs are: worker-0.log, scheduler-0.log, …
        var processes = workers.enumerated().map { ("worker-\($0.offset)", $0.element) }
        do {
            for index in 0..<Self.soakSchedulers {
                processes.append(("scheduler-\(index)", try startTock(["scheduler"], log: "scheduler-\(index)")))
            }
        } catch {
            await stopWorkers(processes.map(\.1))
            throw error
        }
        let started = processes, setupNotes = notes
        return try await stopping(started.map(\.1)) {
            try await withDatabase(self.settings, logger: self.logger) { _, client in
                try await self.soak(plan, client: client, processes: started, scriptLog: scriptLog, workerLogs: workerLogs,
                                    retention: retention, notes: setupNotes, machine: machine, database: database)
            }
        }
    }

    // swiftlint:disable:next function_parameter_count
    private func soak(_ plan: SoakPlan, client: PostgresClient, processes: [(String, Process)], scriptLog: String,
                      workerLogs: [String], retention: String, notes: [String], machine: BenchReport.Machine,
                      database: String) async throws -> SoakReport {
        var notes = notes
        let state = SoakState()
        let loadJob = try await client.fetch("SELECT id FROM tock.jobs WHERE name = 'soak-noop-load'", logger: logger)[0].decode(Int64.self)
        // The scheduled jobs, after the schedulers are up (the insert's NOTIFY has them plan at once), anchored at
        // whole milliseconds spread over a minute so the interval jobs do not all fire together; the cron jobs do.
        // Overlap 'allow': every fire time must yield a run however deep the queue. With the default 'skip' a fire
        // time is dropped, by design, while the job's previous run still waits; lateness is judged on its own.
        _ = try await client.fetch("""
            INSERT INTO tock.jobs (name, script, schedule, anchor_at, overlap)
            SELECT 'soak-noop-' || i, 'noop.sh', (\(Self.soakSchedules)::text[])[1 + i % \(Self.soakSchedules.count)],
                   date_trunc('milliseconds', now()) - interval '1 minute' + ((i * 7919) % 60000) * interval '1 millisecond',
                   'allow'
            FROM generate_series(1, \(plan.jobs)) i
            """, logger: logger)
        let scheduled = "name LIKE 'soak-noop-%' AND name <> 'soak-noop-load'"
        let scheduledJobs = try await client.fetch("SELECT id FROM tock.jobs WHERE \(unescaped: scheduled)", logger: logger)
            .map { try $0.decode(Int64.self) }
        let mix = try await client.fetch("""
            SELECT schedule, count(*)::int FROM tock.jobs WHERE \(unescaped: scheduled) GROUP BY schedule ORDER BY min(id)
            """, logger: logger).map { row in
            let (schedule, jobs) = try row.decode((String, Int).self)
            return SoakReport.ScheduleMix(schedule: schedule, jobs: jobs)
        }
        let ledger = SoakLedger(workerLogs: workerLogs, scriptLog: scriptLog, loadJob: loadJob, scheduledJobs: Set(scheduledJobs))
        // The load: given, or half the capacity measured now, with the scheduled jobs firing and the history's
        // maintenance running, as the soak will run it.
        var capacity: Double?
        let load: Double
        if let given = plan.load {
            load = given
        } else {
            let measured = try await soakCapacity(job: loadJob, client: client, ledger: ledger, state: state)
            capacity = measured
            load = measured / 2
        }
        // The scheduled runs the measure's backlog held up start first: the soak's clock starts when the queue has
        // caught up (no run due more than a second ago still waiting), so the first window does not carry them.
        try await waitFor(every: .milliseconds(200), {
            "soak: the queue did not catch up in 10 minutes after the capacity measure; see \(directory)/worker-*.log"
        }) {
            try await client.fetch("SELECT coalesce(max(oldest_ready_age_seconds), 0) <= 1 FROM tock.lag", logger: logger)[0]
                .decode(Bool.self)
        }
        // The measure's scheduled runs and script readings count for the loss checks, not the first sample's timings.
        ledger.read()
        _ = ledger.takeNew()
        let measured = capacity.map { " (half of \(Int($0)) measured)" } ?? ""
        FileHandle.standardError.write(Data(
            "tock-bench soak: \(format(Double(plan.seconds) / 60)) min, no-op load \(Int(load)) runs/s\(measured)\n".utf8))
        let historyPartitioned = try await client.fetch("""
            SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE n.nspname = 'tock' AND c.relkind = 'p')
            """, logger: logger)[0].decode(Bool.self)
        if !historyPartitioned {
            notes.append("finished runs stay in tock.runs (no partitioned table in schema tock): its size grows with the "
                + "history kept, so the growth check compares its bytes per live row (bloat) instead of its bytes")
        }

        // Drive and sample.
        let startedAt = try await client.fetch("SELECT now()", logger: logger)[0].decode(Date.self)
        let start = ContinuousClock.now
        let deadline = start + .seconds(plan.seconds)
        var intervals: [SoakReport.Interval] = []
        var samples: [SoakSamples] = []
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await self.soakLoad(rate: load, job: loadJob, until: deadline, client: client, state: state) }
            group.addTask { await self.soakRunNows(every: plan.runNowMs, until: deadline, client: client, state: state) }
            var previous = try await soakCounters(client: client)
            for index in 0..<plan.intervals {
                try await Task.sleep(until: start + .seconds(plan.intervalSeconds * (index + 1)), clock: .continuous)
                let (interval, sample, counters) = try await soakSample(
                    index: index, seconds: plan.intervalSeconds, previous: previous, client: client, ledger: ledger,
                    state: state, processes: processes)
                previous = counters
                intervals.append(interval)
                samples.append(sample)
                FileHandle.standardError.write(Data(Self.progress(interval, of: plan.intervals).utf8))
            }
            try await group.waitForAll()
        }

        // The last fire time every job must have run; then wait for what is still in flight: 2 minutes, or a fifth
        // of the soak when that is longer (a queue that fell behind needs time to drain).
        let cutoff = try await client.fetch("SELECT now()", logger: logger)[0].decode(Date.self)
        let cutoffMs = Int64((cutoff.timeIntervalSince1970 * 1000).rounded(.down))
        let cutoffNanos = monotonicNanos()  // the run-nows' clock (SoakState.runNows)
        let expected = try await soakExpectedFires(jobs: scheduledJobs, cutoff: cutoff, client: client)
        let expectedCount = expected.values.reduce(0) { $0 + $1.count }
        let inserted = state.inserted.load(ordering: .relaxed)
        let runNows = state.runNows.withLock { $0 }
        let waitStart = ContinuousClock.now
        let waitUntil = waitStart + .seconds(max(120, plan.seconds / 5))
        while ContinuousClock.now < waitUntil {
            ledger.read()
            let fires = ledger.fires.values.reduce(0) { $0 + $1.filter { $0 <= cutoffMs }.count }
            if ledger.loadRecorded >= inserted, fires >= expectedCount, runNows.keys.allSatisfy({ ledger.scriptRuns[$0] != nil }) {
                break
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        let waited = (ContinuousClock.now - waitStart).components.seconds
        // What never started: a queue that did not drain in time is told apart from runs lost.
        let queued = try await client.fetch("""
            SELECT count(*)::int FROM tock.run_history WHERE status = 'pending' AND run_after <= \(cutoff)
            """, logger: logger)[0].decode(Int.self)
        // Stopped before the last look: each worker's log gets its last lines when the worker has drained.
        await stopWorkers(processes.map(\.1))
        ledger.read()

        var checks = try await soakLossChecks(
            ledger: ledger, expected: expected, cutoff: cutoff, cutoffMs: cutoffMs, cutoffNanos: cutoffNanos, inserted: inserted, runNows: runNows,
            state: state, client: client)
        checks.insert(SoakReport.Check(
            name: "the queue drained", kind: "loss", enforced: true, passed: queued == 0,
            detail: queued == 0 ? "no run due by the end was still waiting \(waited) s after it"
                : "\(grouped(Int64(queued))) runs due by the end were still waiting \(waited) s after it "
                    + "(not lost: the checks below count them as not run)"), at: 0)
        // Retention by dropping partitions: once the soak outlasts the retention (5 minutes) and a partition's width
        // past it, no partition of the history may begin before the soak did.
        if historyPartitioned {
            let (partitions, fromBeginning, oldest) = try await client.fetch("""
                SELECT count(*)::int, coalesce(bool_or(lower IS NULL), false), min(lower)
                FROM tock.history_partitions WHERE NOT is_default
                """, logger: logger)[0].decode((Int, Bool, Date?).self)
            let judged = plan.seconds >= 8 * 60 && retention.hasPrefix("5 minutes")
            // And while the load ran, not only once it stopped: minute-wide partitions, 5 kept and 5 made ahead
            // (tock.purge_history), the current one, the default, and two a maintenance may not have reached yet.
            let bound = 5 + 5 + 1 + 1 + 2
            let during = Self.soakWindows(plan).last.filter(intervals.indices.contains).compactMap { index in
                intervals[index].relations.first { $0.name == "tock.finished_runs" }?.partitions
            }.max() ?? 0
            let rolled = !fromBeginning && (oldest.map { $0 > startedAt } ?? false) && during <= bound
            checks.append(SoakReport.Check(
                name: "the history's partitions rolled over", kind: "growth", enforced: true, passed: !judged || rolled,
                detail: (judged ? "" : "not judged (a soak shorter than 8 minutes, or a retention other than 5 minutes): ")
                    + "at most \(during) partitions in the last window (\(bound) or fewer expected); "
                    + "\(partitions) partitions at the end, the oldest from "
                    + (fromBeginning ? "the beginning" : oldest.map { TockJSON.formatTimestamp($0) } ?? "none")
                    + ", the soak began at \(TockJSON.formatTimestamp(startedAt))"))
        }
        let windows = Self.soakWindows(plan)
        var comparisons: [SoakReport.Comparison] = []
        Self.soakTimingChecks(windows: windows, intervals: intervals, samples: samples, comparisons: &comparisons, checks: &checks)
        Self.soakGrowthChecks(windows: windows, intervals: intervals, historyPartitioned: historyPartitioned,
                              comparisons: &comparisons, checks: &checks)
        for index in checks.indices { checks[index].enforced = plan.enforced.contains(checks[index].kind) }
        let setup = SoakReport.Setup(
            minutes: Double(plan.seconds) / 60, intervalSeconds: plan.intervalSeconds, warmupSeconds: plan.warmupSeconds,
            jobs: plan.jobs, schedules: mix, capacityRunsPerSecond: capacity, loadRunsPerSecond: load, runNowMs: plan.runNowMs,
            workers: Self.soakWorkers, schedulers: Self.soakSchedulers, concurrency: plan.concurrency, retention: retention,
            historyPartitioned: historyPartitioned, notes: notes, machine: machine, database: database)
        return SoakReport(setup: setup, windows: windows, intervals: intervals, comparisons: comparisons, checks: checks,
                          passed: !checks.contains { $0.enforced && !$0.passed })
    }

    /// Five minutes, so the history's partitions are minutes wide where finished runs are partitioned by time;
    /// where the retention cannot be that short (finished runs purged by DELETE from tock.runs, at least an
    /// hour), an hour.
    private func soakRetention(notes: inout [String]) async throws -> String {
        do {
            try await sql("SELECT tock.set_history_retention('5 minutes')")
            return "5 minutes"
        } catch {
            let reason = TockError(from: error).message
            try await sql("SELECT tock.set_history_retention('1 hour')")
            let note = "retention 1 hour: tock.set_history_retention('5 minutes') was refused (\(reason))"
            notes.append(note)
            FileHandle.standardError.write(Data("tock-bench soak: \(note)\n".utf8))
            return "1 hour"
        }
    }

    // MARK: Load

    /// The queue's no-op capacity with the soak's workers and scheduled jobs, enqueueing included: a first drain
    /// of 2,000 runs for the rate, then one of about 10 seconds at that rate (first claim to last finish on the
    /// database's clock), then 30 seconds of runs inserted at that rate as the load inserts them, and the load
    /// job's runs finished per second in its last 20. Measured before the scheduled jobs existed (a 10-second
    /// feed), the capacity was twice what the soak then sustained, and half of it did not hold; the scheduled
    /// jobs' bursts and the history's maintenance are part of what the load must leave room for.
    private func soakCapacity(job: Int64, client: PostgresClient, ledger: SoakLedger, state: SoakState) async throws -> Double {
        /// Waits until every load run inserted so far has reached a worker (its ran log).
        func drained(_ what: String) async throws {
            try await waitFor(every: .milliseconds(20), { "soak: \(what) did not drain in 10 minutes; see \(directory)/worker-*.log" }) {
                ledger.read()
                return ledger.loadRecorded >= state.inserted.load(ordering: .relaxed)
            }
        }
        var size = 2000
        var rate = 0.0
        for _ in 0..<2 {
            // Held back 2 s: the workers are idle and listening when the runs become claimable together.
            let row = try await client.fetch("""
                WITH i AS (INSERT INTO tock.runs (job_id, trigger, run_after)
                           SELECT \(job), 'sql', now() + interval '2 seconds' FROM generate_series(1, \(size)) RETURNING id)
                SELECT count(*)::int, min(id), max(id) FROM i
                """, logger: logger)[0].decode((Int, Int64, Int64).self)
            state.inserted.add(row.0, ordering: .relaxed)
            try await drained("the capacity drain of \(size) runs")
            // Reached a worker is not finished: wait for the last finish to commit.
            var seconds: Double?
            for _ in 0..<500 where seconds == nil {
                seconds = try await client.fetch("""
                    SELECT extract(epoch FROM max(finished_at) - min(started_at))::float8
                    FROM tock.run_history WHERE id BETWEEN \(row.1) AND \(row.2) AND job_id = \(job)
                    HAVING count(finished_at) = \(row.0)
                    """, logger: logger).first?.decode(Double?.self) ?? nil
                if seconds == nil { try await Task.sleep(for: .milliseconds(20)) }
            }
            guard let seconds, seconds > 0 else {
                throw TockError(.failed, "soak: the capacity drain's runs have no start and finish times after 10 s")
            }
            rate = Double(size) / seconds
            size = Int(min(max(rate * 10, 2000), 1_000_000))
        }
        let feeding = ContinuousClock.now
        async let fed: Void = soakLoad(rate: rate, job: job, until: feeding + .seconds(30), client: client, state: state)
        try await Task.sleep(until: feeding + .seconds(10), clock: .continuous)
        let from = try await client.fetch("SELECT clock_timestamp()", logger: logger)[0].decode(Date.self)
        try await Task.sleep(until: feeding + .seconds(30), clock: .continuous)
        let to = try await client.fetch("SELECT clock_timestamp()", logger: logger)[0].decode(Date.self)
        await fed
        // What the feed left queued drains before the soak starts; then its window's finishes are all committed
        // but the last few hundred, which finished after the window anyway.
        try await drained("the capacity feed")
        let finished = try await client.fetch("""
            SELECT count(*)::int8 FROM tock.run_history
            WHERE job_id = \(job) AND finished_at >= \(from) AND finished_at < \(to)
            """, logger: logger)[0].decode(Int64.self)
        let sustained = Double(finished) / max(to.timeIntervalSince(from), 0.001)
        return min(rate, sustained)
    }

    /// `rate` no-op runs a second, inserted every 20 ms on a fixed timetable: a tick that comes late inserts what
    /// is due by then, so the rate holds whatever the database's pace.
    private func soakLoad(rate: Double, job: Int64, until deadline: ContinuousClock.Instant, client: PostgresClient,
                          state: SoakState) async {
        let tick = Duration.milliseconds(20)
        let start = ContinuousClock.now
        var issued = 0
        var ticks = 0
        while true {
            ticks += 1
            let at = start + tick * ticks
            guard at <= deadline, (try? await Task.sleep(until: at, clock: .continuous)) != nil else { return }
            let due = Int(rate * Double(ticks) * 0.02) - issued
            guard due > 0 else { continue }
            issued += due
            do {
                let count = try await client.fetch("""
                    WITH i AS (INSERT INTO tock.runs (job_id, trigger) SELECT \(job), 'sql' FROM generate_series(1, \(due)) RETURNING 1)
                    SELECT count(*)::int FROM i
                    """, logger: logger)[0].decode(Int.self)
                state.inserted.add(count, ordering: .relaxed)
            } catch {
                state.failed("inserting the no-op load", error)
            }
        }
    }

    /// A run-now of soak-script every `milliseconds`, each one's id kept with the clock just before it.
    private func soakRunNows(every milliseconds: Int, until deadline: ContinuousClock.Instant, client: PostgresClient,
                             state: SoakState) async {
        let start = ContinuousClock.now
        var count = 0
        while true {
            count += 1
            let at = start + .milliseconds(milliseconds) * count
            guard at <= deadline, (try? await Task.sleep(until: at, clock: .continuous)) != nil else { return }
            let asked = monotonicNanos()
            do {
                let run = try await client.fetch("SELECT tock.run_now('soak-script')", logger: logger)[0].decode(Int64.self)
                state.runNows.withLock { $0[run] = asked }
            } catch {
                state.failed("tock.run_now('soak-script')", error)
            }
        }
    }

    // MARK: Samples

    struct SoakCounters {
        var processed: Int
        var walBytes: Int64
    }

    private func soakCounters(client: PostgresClient) async throws -> SoakCounters {
        let row = try await client.fetch("""
            SELECT (SELECT coalesce(sum(runs_processed), 0)::int8 FROM tock.workers WHERE state IN ('running', 'stopping')),
                   pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::int8
            """, logger: logger)[0].decode((Int, Int64).self)
        return SoakCounters(processed: row.0, walBytes: row.1)
    }

    // swiftlint:disable:next function_parameter_count
    private func soakSample(index: Int, seconds: Int, previous: SoakCounters, client: PostgresClient, ledger: SoakLedger,
                            state: SoakState, processes: [(String, Process)]) async throws
        -> (SoakReport.Interval, SoakSamples, SoakCounters) {
        ledger.read()
        let new = ledger.takeNew()
        var sample = SoakSamples()
        let asked = state.runNows.withLock { runNows in new.scriptReadings.map { runNows[$0.run] } }
        for (reading, asked) in zip(new.scriptReadings, asked) {
            if let asked { sample.toScript.append(reading.reading - asked) }
        }
        // Run-now → claimed, as the latency scenario measures it, and each scheduled run's start behind its fire
        // time: from tock.run_history by id (a lookup by key, whatever the history's layout).
        let scriptRuns = new.scriptReadings.map(\.run)
        if !scriptRuns.isEmpty {
            sample.toClaimed = try await client.fetch("""
                SELECT (extract(epoch FROM started_at - enqueued_at) * 1e9)::int8 FROM tock.run_history
                WHERE id = ANY(\(scriptRuns)) AND started_at IS NOT NULL
                """, logger: logger).map { try $0.decode(Int64.self) }
        }
        for chunk in stride(from: 0, to: new.scheduleRuns.count, by: 20_000) {
            let ids = Array(new.scheduleRuns[chunk..<min(chunk + 20_000, new.scheduleRuns.count)])
            sample.lateness += try await client.fetch("""
                SELECT (extract(epoch FROM started_at - scheduled_for) * 1e9)::int8 FROM tock.run_history
                WHERE id = ANY(\(ids)) AND started_at IS NOT NULL
                """, logger: logger).map { try $0.decode(Int64.self) }
        }
        let counters = try await soakCounters(client: client)
        let (waiting, running) = try await client.fetch("""
            SELECT (SELECT coalesce(sum(waiting), 0)::int8 FROM tock.lag),
                   (SELECT coalesce(sum(running), 0)::int8 FROM tock.worker_overview)
            """, logger: logger)[0].decode((Int64, Int64).self)
        let relations = try await soakRelations(client: client)
        let processSamples = processes.map { name, process in
            SoakReport.ProcessSample(name: name, pid: process.processIdentifier,
                                     rssMegabytes: process.isRunning ? Self.rssMegabytes(process.processIdentifier) : 0)
        }
        let interval = SoakReport.Interval(
            index: index, minute: Double((index + 1) * seconds) / 60,
            runsPerSecond: Double(counters.processed - previous.processed) / Double(seconds),
            recordedPerSecond: Double(new.records) / Double(seconds),
            runNows: new.scriptReadings.count,
            toScriptP50Ms: percentileMs(sample.toScript, 0.5), toScriptP99Ms: percentileMs(sample.toScript, 0.99),
            toClaimedP50Ms: percentileMs(sample.toClaimed, 0.5), toClaimedP99Ms: percentileMs(sample.toClaimed, 0.99),
            scheduleRuns: new.scheduleRuns.count,
            latenessP50Ms: percentileMs(sample.lateness, 0.5), latenessP99Ms: percentileMs(sample.lateness, 0.99),
            queueWaiting: waiting, queueRunning: running, walBytes: counters.walBytes - previous.walBytes,
            relations: relations, processes: processSamples)
        return (interval, sample, counters)
    }

    /// Every table in schema tock with its partitions summed under it (pg_inherits, any depth, wherever they
    /// live), and every index, partitioned ones summed the same way; dead and live tuples from
    /// pg_stat_user_tables.
    private func soakRelations(client: PostgresClient) async throws -> [SoakReport.Relation] {
        try await client.fetch("""
            WITH RECURSIVE tree AS (
                SELECT c.oid AS top, c.oid AS rel
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'tock' AND c.relkind IN ('r', 'p', 'i', 'I') AND NOT c.relispartition
                UNION ALL
                SELECT t.top, i.inhrelid FROM tree t JOIN pg_inherits i ON i.inhparent = t.rel
            )
            SELECT 'tock.' || c.relname, c.relkind::text, 'tock.' || p.relname,
                   coalesce(sum(CASE WHEN c.relkind IN ('r', 'p') THEN pg_total_relation_size(t.rel)
                                     ELSE pg_relation_size(t.rel) END), 0)::int8,
                   coalesce(sum(s.n_dead_tup), 0)::int8, coalesce(sum(s.n_live_tup), 0)::int8, (count(*) - 1)::int
            FROM tree t
            JOIN pg_class c ON c.oid = t.top
            LEFT JOIN pg_index x ON x.indexrelid = t.top
            LEFT JOIN pg_class p ON p.oid = x.indrelid
            LEFT JOIN pg_stat_user_tables s ON s.relid = t.rel
            GROUP BY c.relname, c.relkind, p.relname
            ORDER BY 1
            """, logger: logger).map { row in
            let (name, kind, table, bytes, dead, live, partitions) = try row.decode((String, String, String?, Int64, Int64, Int64, Int).self)
            let kinds = ["r": "table", "p": "partitioned table", "i": "index", "I": "partitioned index"]
            return SoakReport.Relation(name: name, kind: kinds[kind] ?? kind, table: table, bytes: bytes, deadTuples: dead,
                                       liveTuples: live, partitions: partitions)
        }
    }

    static func progress(_ interval: SoakReport.Interval, of count: Int) -> String {
        func ms(_ value: Double?) -> String { value.map { String(format: "%.1f", $0) } ?? "-" }
        let runs = interval.relations.first { $0.name == "tock.runs" }.map { String(format: "%.1f MiB", Double($0.bytes) / 1_048_576) } ?? "-"
        let rss = interval.processes.map { String(format: "%.0f", $0.rssMegabytes) }.joined(separator: "/")
        return "soak \(interval.index + 1)/\(count) (\(format(interval.minute)) min): \(Int(interval.runsPerSecond)) runs/s, "
            + "run-now → script p99 \(ms(interval.toScriptP99Ms)) ms, lateness p99 \(ms(interval.latenessP99Ms)) ms, "
            + "waiting \(interval.queueWaiting), running \(interval.queueRunning), tock.runs \(runs), RSS \(rss) MiB\n"
    }

    // MARK: Checks

    /// Every fire time each scheduled job should have had after it was created, up to `cutoff`, from the
    /// database's own schedule arithmetic (tock.next_fire_times), ten minutes at a time (61 fire times cover ten
    /// minutes of the soak's shortest interval, 10 s).
    private func soakExpectedFires(jobs: [Int64], cutoff: Date, client: PostgresClient) async throws -> [Int64: [Int64]] {
        var expected: [Int64: [Int64]] = [:]
        for chunk in stride(from: 0, to: jobs.count, by: 1000) {
            let ids = Array(jobs[chunk..<min(chunk + 1000, jobs.count)])
            for row in try await client.fetch("""
                SELECT j.id, (extract(epoch FROM t) * 1000)::int8
                FROM tock.jobs j
                CROSS JOIN LATERAL generate_series(0, ceil(extract(epoch FROM \(cutoff) - j.created_at) / 600)::int) w
                CROSS JOIN LATERAL tock.next_fire_times(j.schedule, j.timezone, j.created_at + w * interval '10 minutes',
                                                        61, j.anchor_at) t
                WHERE j.id = ANY(\(ids)) AND t <= least(j.created_at + (w + 1) * interval '10 minutes', \(cutoff))
                """, logger: logger) {
                let (job, fire) = try row.decode((Int64, Int64).self)
                expected[job, default: []].append(fire)
            }
        }
        return expected
    }

    /// Nothing lost or doubled: from the files (what ran, whatever retention has purged since) and from
    /// tock.run_history (what it still holds).
    // swiftlint:disable:next function_parameter_count
    private func soakLossChecks(ledger: SoakLedger, expected: [Int64: [Int64]], cutoff: Date, cutoffMs: Int64, cutoffNanos: Int64, inserted: Int,
                                runNows: [Int64: Int64], state: SoakState, client: PostgresClient) async throws -> [SoakReport.Check] {
        func examples<T>(_ items: [T], _ show: (T) -> String) -> String {
            items.isEmpty ? "" : " (e.g. " + items.prefix(5).map(show).joined(separator: ", ") + ")"
        }
        func fireText(_ pair: (job: Int64, fire: Int64)) -> String {
            "job \(pair.job) at \(TockJSON.formatTimestamp(Date(timeIntervalSince1970: Double(pair.fire) / 1000)))"
        }
        var checks: [SoakReport.Check] = []
        checks.append(SoakReport.Check(
            name: "no-op load ran once each", kind: "loss", enforced: true, passed: ledger.loadRecorded == inserted,
            detail: "\(grouped(Int64(inserted))) inserted, \(grouped(Int64(ledger.loadRecorded))) recorded by the workers"))
        checks.append(SoakReport.Check(
            name: "no run recorded twice", kind: "loss", enforced: true, passed: ledger.doubled.isEmpty && ledger.strays.isEmpty,
            detail: "\(ledger.doubled.count) run ids recorded more than once\(examples(ledger.doubled) { "\($0)" }); "
                + "\(ledger.strays.count) records of other jobs or unreadable\(examples(ledger.strays) { "\($0)" })"))

        let fires = FireTimeCheck.compare(expected: expected, recorded: ledger.fires, cutoff: cutoffMs)
        checks.append(SoakReport.Check(
            name: "every fire time ran once", kind: "loss", enforced: true,
            passed: fires.expected > 0 || ledger.scheduledJobs.isEmpty ? fires.missing.isEmpty && fires.doubled.isEmpty && fires.unexpected.isEmpty : false,
            detail: "\(grouped(Int64(fires.expected))) fire times up to the end (tock.next_fire_times); "
                + "\(fires.missing.count) not run\(examples(fires.missing, fireText)), "
                + "\(fires.doubled.count) run twice\(examples(fires.doubled, fireText)), "
                + "\(fires.unexpected.count) run at a time the schedule does not have\(examples(fires.unexpected, fireText))"))

        let scriptMissing = runNows.keys.filter { ledger.scriptRuns[$0] == nil }.sorted()
        let scriptTwice = ledger.scriptRuns.filter { $0.value.count > 1 }.keys.sorted()
        let scriptUnknown = ledger.scriptRuns.keys.filter { runNows[$0] == nil }.sorted()
        checks.append(SoakReport.Check(
            name: "every run-now ran its script once", kind: "loss", enforced: true,
            passed: !runNows.isEmpty && scriptMissing.isEmpty && scriptTwice.isEmpty && scriptUnknown.isEmpty,
            detail: "\(grouped(Int64(runNows.count))) run-nows; \(scriptMissing.count) never ran\(examples(scriptMissing) { "\($0)" }), "
                + "\(scriptTwice.count) ran twice\(examples(scriptTwice) { "\($0)" }), "
                + "\(scriptUnknown.count) ran unasked\(examples(scriptUnknown) { "\($0)" })"))

        // The database's view of the fire times it still holds: one run each, and every finished one recorded by
        // a worker.
        var held: [Int64: [Int64]] = [:]
        var finished: [Int64: Set<Int64>] = [:]
        var heldCount = 0
        for row in try await client.fetch("""
            SELECT job_id, (extract(epoch FROM scheduled_for) * 1000)::int8, ended FROM (
                SELECT job_id, scheduled_for, trigger, false AS ended FROM tock.runs
                UNION ALL SELECT job_id, scheduled_for, trigger, true FROM tock.finished_runs) h
            WHERE trigger = 'schedule' AND scheduled_for <= \(cutoff)
            """, logger: logger) {
            let (job, fire, ended) = try row.decode((Int64, Int64, Bool).self)
            held[job, default: []].append(fire)
            if ended { finished[job, default: []].insert(fire) }
            heldCount += 1
        }
        var heldTwice: [(job: Int64, fire: Int64)] = []
        var heldNotRecorded: [(job: Int64, fire: Int64)] = []
        for (job, times) in held {
            let recorded = Set(ledger.fires[job] ?? [])
            let ended = finished[job] ?? []
            var seen = Set<Int64>()
            for fire in times {
                if !seen.insert(fire).inserted { heldTwice.append((job, fire)) }
                if ended.contains(fire) && !recorded.contains(fire) { heldNotRecorded.append((job, fire)) }
            }
        }

        checks.append(SoakReport.Check(
            name: "history: one run per fire time", kind: "loss", enforced: true,
            passed: heldTwice.isEmpty && heldNotRecorded.isEmpty,
            detail: "\(grouped(Int64(heldCount))) scheduled runs still stored (tock.runs, tock.finished_runs); \(heldTwice.count) fire times with "
                + "two runs\(examples(heldTwice, fireText)); \(heldNotRecorded.count) finished but not recorded by a worker\(examples(heldNotRecorded, fireText))"))
        let failed = try await client.fetch("""
            SELECT status, count(*)::int8 FROM tock.finished_runs WHERE status <> 'succeeded' GROUP BY status ORDER BY status
            """, logger: logger).map { try $0.decode((String, Int64).self) }
        checks.append(SoakReport.Check(
            name: "history: no run failed", kind: "loss", enforced: true, passed: failed.isEmpty,
            detail: failed.isEmpty ? "every finished run still stored (tock.finished_runs) succeeded"
                : failed.map { "\($0.1) \($0.0)" }.joined(separator: ", ") + " (see tock.run_history)"))

        // The run-nows from the database's side: each one it still stores ran once (one row, succeeded, no retry),
        // and every one asked for in the last 4 minutes (within the retention) is still there.
        let ids = Array(runNows.keys)
        let stored = try await client.fetch("""
            SELECT id, status FROM tock.finished_runs WHERE id = ANY(\(ids))
            UNION ALL SELECT id, status FROM tock.runs WHERE id = ANY(\(ids))
            """, logger: logger).map { try $0.decode((Int64, String).self) }
        let retried = try await client.fetch("""
            SELECT count(*)::int FROM (SELECT first_run_id FROM tock.finished_runs UNION ALL SELECT first_run_id FROM tock.runs) r
            WHERE r.first_run_id = ANY(\(ids))
            """, logger: logger)[0].decode(Int.self)
        let storedIds = Dictionary(grouping: stored, by: \.0)
        let notSucceeded = stored.filter { $0.1 != "succeeded" }.map(\.0).sorted()
        let storedTwice = storedIds.filter { $0.value.count > 1 }.keys.sorted()
        let recentMissing = runNows.filter { $0.value >= cutoffNanos - 240_000_000_000 && storedIds[$0.key] == nil }.keys.sorted()
        checks.append(SoakReport.Check(
            name: "history: every run-now stored once, succeeded", kind: "loss", enforced: true,
            passed: !stored.isEmpty && notSucceeded.isEmpty && storedTwice.isEmpty && recentMissing.isEmpty && retried == 0,
            detail: "\(grouped(Int64(storedIds.count))) of \(grouped(Int64(runNows.count))) run-nows still stored; "
                + "\(notSucceeded.count) not succeeded\(examples(notSucceeded) { "\($0)" }), \(storedTwice.count) stored twice, "
                + "\(retried) retries of them, \(recentMissing.count) of the last 4 minutes missing\(examples(recentMissing) { "\($0)" })"))
        let errors = state.errors.withLock { $0 }
        checks.append(SoakReport.Check(
            name: "the soak's own calls succeeded", kind: "loss", enforced: true, passed: errors.count == 0,
            detail: errors.count == 0 ? "every insert and run-now was answered"
                : "\(errors.count) failed: " + errors.first.joined(separator: "; ")))
        return checks
    }

    /// After the warm-up, the first and the last window: 10 minutes each, or a third of what is left when that is
    /// shorter.
    static func soakWindows(_ plan: SoakPlan) -> SoakReport.Windows {
        let warmup = Int((Double(plan.warmupSeconds) / Double(plan.intervalSeconds)).rounded(.up))
        let length = max(1, min(Int((600 / Double(plan.intervalSeconds)).rounded(.up)), (plan.intervals - warmup) / 3))
        let first = warmup..<(warmup + length)
        let last = (plan.intervals - length)..<plan.intervals
        func minutes(_ range: Range<Int>) -> String {
            format(Double(range.lowerBound * plan.intervalSeconds) / 60) + "-" + format(Double(range.upperBound * plan.intervalSeconds) / 60)
        }
        return SoakReport.Windows(warmupIntervals: warmup, first: first, last: last, firstMinutes: minutes(first),
                                  lastMinutes: minutes(last))
    }

    /// The p99s of the last window within 1.5× of the first's, each over every sample of its window.
    static func soakTimingChecks(windows: SoakReport.Windows, intervals: [SoakReport.Interval], samples: [SoakSamples],
                                 comparisons: inout [SoakReport.Comparison], checks: inout [SoakReport.Check]) {
        func pooled(_ range: Range<Int>, _ path: KeyPath<SoakSamples, [Int64]>) -> [Int64] {
            range.filter(samples.indices.contains).flatMap { samples[$0][keyPath: path] }
        }
        func mean(_ range: Range<Int>, _ path: KeyPath<SoakReport.Interval, Double>) -> Double {
            let values = range.filter(intervals.indices.contains).map { intervals[$0][keyPath: path] }
            return values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count)
        }
        comparisons.append(.init(name: "runs finished", unit: "runs/s", first: mean(windows.first, \.runsPerSecond),
                                 last: mean(windows.last, \.runsPerSecond)))
        let timings: [(String, KeyPath<SoakSamples, [Int64]>, Bool)] = [
            ("run-now → script running", \.toScript, true), ("run-now → claimed", \.toClaimed, false),
            ("schedule lateness", \.lateness, true)]
        for (name, path, checked) in timings {
            let first = pooled(windows.first, path), last = pooled(windows.last, path)
            comparisons.append(.init(name: "\(name) p50", unit: "ms", first: percentileMs(first, 0.5),
                                     last: percentileMs(last, 0.5)))
            let (p99First, p99Last) = (percentileMs(first, 0.99), percentileMs(last, 0.99))
            comparisons.append(.init(name: "\(name) p99", unit: "ms", first: p99First, last: p99Last,
                                     check: checked ? "\(name) p99 flat" : nil))
            guard checked else { continue }
            let passed = p99First != nil && p99Last != nil && p99Last! <= 1.5 * p99First!
            checks.append(SoakReport.Check(
                name: "\(name) p99 flat", kind: "timing", enforced: true, passed: passed,
                detail: "last \(p99Last.map(format) ?? "-") ms \(passed ? "≤" : ">") 1.5 × first \(p99First.map(format) ?? "-") ms "
                    + "(\(last.count) and \(first.count) samples)"))
        }
        let walFirst = mean(windows.first, \.walPerMinute), walLast = mean(windows.last, \.walPerMinute)
        comparisons.append(.init(name: "WAL", unit: "MiB/min", first: walFirst, last: walLast))
    }

    /// In-flight tables and their indexes stop growing, and so does every process's memory: the last window's
    /// largest figure within 1.2× of the first's (tables and indexes: plus 1 MiB, below which autovacuum's timing
    /// decides). Partitioned tables hold the history, whose size follows the retention: reported, not judged.
    /// Where finished runs stay in tock.runs, the in-flight tables grow with the history kept by design: their
    /// bytes per live row are judged instead, which stay flat unless dead tuples go unreclaimed.
    static func soakGrowthChecks(windows: SoakReport.Windows, intervals: [SoakReport.Interval], historyPartitioned: Bool,
                                 comparisons: inout [SoakReport.Comparison], checks: inout [SoakReport.Check]) {
        func largest(_ range: Range<Int>, _ value: (SoakReport.Interval) -> Double?) -> Double? {
            range.filter(intervals.indices.contains).compactMap { value(intervals[$0]) }.max()
        }
        let mebibyte = 1_048_576.0
        guard let latest = intervals.last else { return }
        let tables = Dictionary(latest.relations.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        func inFlight(_ relation: SoakReport.Relation) -> Bool {
            let table = relation.table.flatMap { tables[$0] } ?? relation
            return table.kind == "table" && table.partitions == 0 && !soakDefinitionTables.contains(table.name)
                && !soakLogTables.contains(table.name)
        }
        for relation in latest.relations {
            func bytes(_ interval: SoakReport.Interval) -> Double? {
                interval.relations.first { $0.name == relation.name }.map { Double($0.bytes) }
            }
            guard inFlight(relation) else {
                if relation.kind.hasSuffix("table") && relation.partitions > 0 || relation.kind == "partitioned table" {
                    comparisons.append(.init(name: "\(relation.name) (history, \(relation.partitions) partitions at the end)",
                                             unit: "MiB", first: (largest(windows.first, bytes) ?? 0) / mebibyte,
                                             last: (largest(windows.last, bytes) ?? 0) / mebibyte))
                }
                continue
            }
            let tableName = relation.table ?? relation.name
            func perRow(_ interval: SoakReport.Interval) -> Double? {
                guard let size = bytes(interval),
                      let rows = interval.relations.first(where: { $0.name == tableName })?.liveTuples, rows > 0 else { return nil }
                return size / Double(rows)
            }
            let name = "\(relation.name) stops growing"
            if !historyPartitioned, let first = largest(windows.first, perRow), let last = largest(windows.last, perRow) {
                comparisons.append(.init(name: relation.name, unit: "bytes/row", first: first, last: last, check: name))
                let passed = last <= 1.2 * first
                checks.append(SoakReport.Check(
                    name: name, kind: "growth", enforced: true, passed: passed,
                    detail: "bytes per live row of \(tableName): last " + String(format: "%.1f", last)
                        + (passed ? " ≤ " : " > ") + "1.2 × first " + String(format: "%.1f", first)))
            } else {
                let first = (largest(windows.first, bytes) ?? 0) / mebibyte, last = (largest(windows.last, bytes) ?? 0) / mebibyte
                comparisons.append(.init(name: relation.name, unit: "MiB", first: first, last: last, check: name))
                let passed = last <= 1.2 * first + 1
                checks.append(SoakReport.Check(
                    name: name, kind: "growth", enforced: true, passed: passed,
                    detail: "largest: last " + String(format: "%.2f MiB", last) + (passed ? " ≤ " : " > ")
                        + "1.2 × first " + String(format: "%.2f MiB", first) + " + 1 MiB"))
            }
        }
        for process in latest.processes {
            func rss(_ interval: SoakReport.Interval) -> Double? {
                interval.processes.first { $0.name == process.name }.map(\.rssMegabytes).flatMap { $0 > 0 ? $0 : nil }
            }
            let first = largest(windows.first, rss) ?? 0, last = largest(windows.last, rss) ?? 0
            let name = "\(process.name) memory flat"
            comparisons.append(.init(name: "\(process.name) RSS", unit: "MiB", first: first, last: last, check: name))
            // A process with no reading in some interval had died (or never started): not flat, whatever its figures.
            let gone = intervals.filter { rss($0) == nil }.map(\.index)
            let passed = gone.isEmpty && first > 0 && last > 0 && last <= 1.2 * first
            checks.append(SoakReport.Check(
                name: name, kind: "memory", enforced: true, passed: passed,
                detail: gone.isEmpty ? "largest RSS: last " + String(format: "%.1f MiB", last) + (passed ? " ≤ " : " > ")
                    + "1.2 × first " + String(format: "%.1f MiB", first)
                    : "no reading in \(gone.count) intervals (first: \(gone[0] + 1)): the process was not running"))
        }
    }
}

extension SoakReport.Interval {
    /// WAL written per minute in this interval, in MiB.
    var walPerMinute: Double { Double(walBytes) / 1_048_576 / (minute / Double(index + 1)) }
}
