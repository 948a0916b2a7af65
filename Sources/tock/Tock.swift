import ArgumentParser
import TockCore

@main
struct Tock: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tock",
        abstract: "Scheduled and on-demand scripts, run by workers that claim from PostgreSQL.",
        discussion: """
            Connects to DATABASE_URL or the PG* variables. With neither, it uses the embedded cluster under \
            ./.tock (TOCK_HOME), which `tock up` creates and starts.
            """,
        version: TockVersion.current,
        subcommands: [
            Up.self, Migrate.self, SchedulerCommand.self, WorkerCommand.self, APICommand.self,
            JobCommand.self, Runs.self, RunCommand.self, Workers.self, Queue.self, Status.self, Doctor.self, SchedulePreview.self,
            ClusterCommand.self, GuardScripts.self,
        ]
    )
}
