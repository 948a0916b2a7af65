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
            ./.tock (TOCK_HOME), which `tock up` creates and starts. Every option of worker, scheduler, api, notifier and up \
            can also come from the environment: --scripts-dir DIR as TOCK_SCRIPTS_DIR=DIR, --no-api as \
            TOCK_NO_API=true; the command line wins.
            """,
        version: TockVersion.current,
        subcommands: [
            Up.self, Migrate.self, SchedulerCommand.self, WorkerCommand.self, APICommand.self, NotifierCommand.self,
            JobCommand.self, PoolCommand.self, ConfigCommand.self, HookCommand.self, DeliveriesCommand.self, Runs.self, RunCommand.self, Bulk.self, Audit.self, Workers.self, Queue.self, Status.self, Doctor.self, SchedulePreview.self,
            ClusterCommand.self, GuardScripts.self,
        ]
    )

    /// The command line, with the options the environment gives (EnvironmentOptions) after it. A bad variable is a
    /// usage error, as a bad option is (exit 64).
    static func main() async {
        let arguments: [String]
        var ignored: [String] = []
        do {
            arguments = try EnvironmentOptions.arguments(Array(CommandLine.arguments.dropFirst()),
                                                         environment: ProcessInfo.processInfo.environment, ignored: &ignored)
        } catch {
            _ = fail(error)
            exit(withError: ExitCode.validationFailure)
        }
        for variable in ignored {
            FileHandle.standardError.write(Data(
                "tock: ignoring \(variable): it holds a URL (a Kubernetes service link? set enableServiceLinks: false)\n".utf8))
        }
        await main(arguments)
    }
}
