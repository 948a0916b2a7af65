import ArgumentParser
import PostgresNIO

@main
enum TockMain {
    static func main() async {
        // Tasks run on the event loops that also do the connections' I/O (SwiftNIO's documented take-over of the
        // concurrency pool), not on a second pool: a NOTIFY read, the claim it triggers and the spawn that follows
        // no longer hop between threads. On this 2-core machine, with the worker starting the process before its
        // bookkeeping, run-now → script running went from 4.71 to 4.54 ms and run-now → claimed from 1.98 to 1.80
        // (medians of the p50s of 10 `tock bench latency` runs each, old and new binaries taking turns).
        // Nothing in tock blocks a task for long: scripts are watched on threads of their own (MonitorThreads), and
        // what does block (starting the embedded cluster, the bench's plain spawn loop) happens while no connection
        // is at work.
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        await Tock.main()
    }
}

struct Tock: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tock",
        abstract: "Scheduled and on-demand scripts, run by workers that claim from PostgreSQL.",
        discussion: """
            Connects to DATABASE_URL or the PG* variables. With neither, it uses the embedded cluster under \
            ./.tock (TOCK_HOME), which `tock up` creates and starts.
            """,
        version: "0.1.0",
        subcommands: [
            Up.self, Migrate.self, SchedulerCommand.self, WorkerCommand.self, APICommand.self,
            JobCommand.self, Runs.self, RunCommand.self, Workers.self, Queue.self, Status.self, Doctor.self, Bench.self, SchedulePreview.self,
            ClusterCommand.self,
        ]
    )
}
