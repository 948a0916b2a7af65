import Foundation
import PostgresNIO
import TockCLI
import TockCore
import TockPostgres

extension BenchReport {
    /// What an idle process costs: transactions it made in the benchmark database over the window (each of
    /// Tock's queries is one), and its resident memory at the end.
    struct IdleProcess: Encodable {
        var process: String
        var seconds: Int
        var transactions: Int
        /// What the process is expected to issue in that time: heartbeats, and for the scheduler its rescue checks.
        var expected: String
        /// Resident memory at the end, in MiB.
        var rssMegabytes: Double
    }
}

extension BenchRun {
    /// An idle `tock worker`, then an idle `tock scheduler` (one job due tomorrow), each alone with the database for
    /// `seconds`: the processes users run, so their memory is what a deployment pays.
    /// Counted from pg_stat_database (xact_commit + xact_rollback), which PostgreSQL flushes with a delay of up
    /// to a few seconds: a count is good to about ±2 over a minute.
    func idle(seconds: Int) async throws -> [BenchReport.IdleProcess] {
        try await sql("TRUNCATE tock.runs, tock.run_leases, tock.run_output, tock.finished_runs")
        try await sql("DELETE FROM tock.jobs WHERE name LIKE 'due-%'")
        // Due tomorrow at the earliest: the scheduler has a job to look at, and nothing runs.
        try await sql("INSERT INTO tock.jobs (name, script, schedule) VALUES ('idle-daily', 'report.sh', 'daily at 06:00')")
        // Autovacuum's own transactions would count too: the tables are vacuumed now and left alone meanwhile.
        let tables = ["tock.runs", "tock.jobs", "tock.workers", "tock.run_output", "tock.run_leases"]
        for table in tables {
            try await sql("VACUUM ANALYZE \(unescaped: table)")
            try await sql("ALTER TABLE \(unescaped: table) SET (autovacuum_enabled = false)")
        }
        func resetAutovacuum() async {
            for table in tables { try? await sql("ALTER TABLE \(unescaped: table) RESET (autovacuum_enabled)") }
        }
        do {
            let report = try await watchIdle(seconds: seconds)
            await resetAutovacuum()
            return report
        } catch {
            await resetAutovacuum()
            throw error
        }
    }

    private func watchIdle(seconds: Int) async throws -> [BenchReport.IdleProcess] {
        var report: [BenchReport.IdleProcess] = []
        // Each process settles first: its start (registration, the listener's probe, a first claim or tick)
        // is not idle cost, and its backends' statistics reach pg_stat_database up to a second late.
        let settle = Duration.seconds(3)
        let workers = try await startWorkers(1, concurrency: 4, kind: .scripts)
        report.append(try await stopping(workers) {
            try await Task.sleep(for: settle)
            let count = try await transactions(over: seconds)
            return BenchReport.IdleProcess(process: "worker", seconds: seconds, transactions: count,
                                           expected: "\(seconds) heartbeats (1 s)", rssMegabytes: Self.rssMegabytes(workers[0].processIdentifier))
        })
        let scheduler = try startTock(["scheduler"], log: "scheduler-idle")
        try await Task.sleep(for: settle)
        report.append(try await stopping([scheduler]) {
            let count = try await transactions(over: seconds)
            return BenchReport.IdleProcess(process: "scheduler", seconds: seconds, transactions: count,
                                           expected: "\(seconds) rescue checks (1 s), \(max(seconds / 60, 1)) tick sweep and purge (60 s)",
                                           rssMegabytes: Self.rssMegabytes(scheduler.processIdentifier))
        })
        try await sql("DELETE FROM tock.jobs WHERE name = 'idle-daily'")
        return report
    }

    /// Transactions the benchmark database saw over `seconds`, less this count's own.
    func transactions(over seconds: Int) async throws -> Int {
        try await withDatabase(settings, logger: logger) { _, client in
            func read() async throws -> Int64 {
                // Ours first: our own backend's pending counts are flushed before the read.
                _ = try await client.fetch("SELECT pg_stat_force_next_flush()", logger: logger)
                return try await client.fetch("""
                    SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()
                    """, logger: logger).first?.decode(Int64.self) ?? 0
            }
            let before = try await read()
            try await Task.sleep(for: .seconds(seconds))
            let after = try await read()
            // The two statements of each read are transactions of their own: the first read's second
            // statement and the second read's first are inside the window.
            return Int(after - before) - 2
        }
    }

    static func rssMegabytes(_ pid: Int32) -> Double {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kB = Double(line.split(separator: " ").dropFirst().first ?? "") else { return .nan }
        return (kB / 1024 * 10).rounded() / 10
    }
}
