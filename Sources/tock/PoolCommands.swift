import ArgumentParser
import Foundation
import TockCLI
import TockCore
import TockPostgres

/// --max-running and --rate, for a pool (tock pool set) and a job (tock job add, edit): as the changes tock.set_pool
/// and tock.update_job take, which check them. `none` removes a limit.
struct LimitOptions: ParsableArguments {
    @Option(help: "At most this many runs at once, across every worker and host ('none': no limit).")
    var maxRunning: String?
    @Option(help: "At most N starts per period, across every worker and host: 10/1m, 100/1h, 5/30s ('none': no limit).")
    var rate: String?

    func changes() throws(TockError) -> [String: JobChange] {
        var changes: [String: JobChange] = [:]
        if let maxRunning {
            if maxRunning.lowercased() == "none" {
                changes["max_running"] = JobChange.none
            } else if let count = Int(maxRunning) {
                changes["max_running"] = .integer(count)
            } else {
                throw TockError(.invalidInput, field: "max_running",
                                "max_running: '\(maxRunning)' is not a whole number (or 'none' for no limit)")
            }
        }
        if let rate { changes["rate"] = rate.lowercased() == "none" ? JobChange.none : .text(rate) }
        return changes
    }
}

struct PoolCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pool", abstract: "Pools: the workers that serve each, its queue, and its limits.",
        subcommands: [List.self, Set.self], defaultSubcommand: List.self)

    static func render(_ pools: [PoolInfo]) -> String {
        var table = TextTable("POOL", "JOBS", "READY", "PENDING", "RUNNING", "OLDEST READY", "WORKERS", "MAX RUNNING", "RATE")
        for pool in pools {
            table.append([pool.pool, "\(pool.jobs)", "\(pool.ready)", "\(pool.pending)", "\(pool.running)",
                          pool.ready > 0 ? Display.duration(pool.oldestReadyAgeSeconds) : "-",
                          pool.workersAlive > 0 ? "\(pool.workersAlive)" : (pool.jobs > 0 || pool.pending > 0 ? "NONE" : "0"),
                          pool.maxRunning.map(String.init) ?? "-", pool.rate ?? "-"])
        }
        return table.render()
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Every pool with jobs, runs, live workers or limits (tock.pool_overview).")
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            let json = options.json
            try await oneShot(options) { database, _ in
                let pools = try await database.pools()
                if json { return try printJSON(pools) }
                print(pools.isEmpty ? "no pools: every job and worker is in pool 'default' once one exists" : PoolCommand.render(pools))
            }
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Limit a pool across every worker and host: how many of its runs at once, how many starts per period.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The pool's name.") var pool: String
        @OptionGroup var limits: LimitOptions

        func run() async throws {
            let changes: [String: JobChange]
            do {
                changes = try limits.changes()
            } catch {
                throw fail(error)
            }
            guard !changes.isEmpty else {
                throw fail(TockError(.invalidInput, "nothing to set: give --max-running N and/or --rate N/PERIOD ('none' removes one)"))
            }
            let (json, pool) = (options.json, pool)
            try await oneShot(options) { [changes] database, _ in
                let info = try await database.setPool(pool, changes: changes)
                if json { return try printJSON(info) }
                print("pool \(info.pool): max running \(info.maxRunning.map(String.init) ?? "no limit"), rate \(info.rate ?? "no limit")")
            }
        }
    }
}
