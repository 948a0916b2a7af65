import ArgumentParser
import TockCLI
import TockCore
import TockRuntime

/// `tock-bench worker`: the production worker (claims, NOTIFY, heartbeats, batched finishes), with a run executor
/// that finishes every run at once as succeeded instead of running its script. The queue and schedule scenarios
/// time the claim → finish machinery with it, on the terms the peers are compared on (no-op jobs). The script
/// name is ignored: jobs name ordinary scripts, which need not exist.
struct BenchWorker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "A worker that finishes every run it claims at once as succeeded, without running its script.",
        discussion: "The options of `tock worker`; --scripts-dir must exist, though no script in it is run.")

    @OptionGroup var options: GlobalOptions
    @OptionGroup var worker: WorkerOptions
    @OptionGroup var metrics: MetricsOptions

    /// Every run succeeds at once with exit 0 and no output.
    static let finishAtOnce: Worker.RunExecutor = { _ in RunOutcome(status: .succeeded, exitCode: 0) }

    func run() async throws {
        try await runServices(options, metricsOptions: metrics, createEmbedded: false, migrate: false) {
            database, settings, metrics, logger throws(TockError) in
            var configuration = try worker.configuration()
            // No script ever starts, so there is nothing for a script guard to stop if this process dies.
            configuration.guardExecutable = nil
            return [try Worker(database: database, settings: settings, configuration: configuration, metrics: metrics,
                               executor: Self.finishAtOnce, logger: logger)]
        }
    }
}
