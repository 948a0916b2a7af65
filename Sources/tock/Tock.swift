import ArgumentParser
import Foundation
import TockCLI
import TockCore

@main
struct Tock: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tock",
        abstract: "Scheduled and on-demand scripts, run by workers that claim from PostgreSQL.",
        discussion: """
            Connects to DATABASE_URL or the PG* variables. With neither, it uses the embedded cluster under \
            ./.tock (TOCK_HOME), which `tock up` creates and starts. Every option of worker, scheduler, api and up \
            can also come from the environment: --scripts-dir DIR as TOCK_SCRIPTS_DIR=DIR, --no-api as \
            TOCK_NO_API=true; the command line wins.
            """,
        version: TockVersion.current,
        subcommands: [
            Up.self, Migrate.self, SchedulerCommand.self, WorkerCommand.self, APICommand.self,
            JobCommand.self, Runs.self, RunCommand.self, Workers.self, Queue.self, Status.self, Doctor.self, SchedulePreview.self,
            ClusterCommand.self, GuardScripts.self,
        ]
    )

    /// The command line, with the options the environment gives (EnvironmentOptions) after it.
    static func main() async {
        let arguments: [String]
        do {
            arguments = try EnvironmentOptions.arguments(Array(CommandLine.arguments.dropFirst()),
                                                         environment: ProcessInfo.processInfo.environment)
        } catch {
            exit(withError: fail(error))
        }
        await main(arguments)
    }
}
