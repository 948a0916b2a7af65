import ArgumentParser
import Foundation
import TockCLI
import TockCore
import TockPostgres

struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Fleet-wide settings: the defaults jobs inherit, and the history's retention.",
        subcommands: [Show.self, Set.self], defaultSubcommand: Show.self)

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every setting and its value (tock.config_settings).")
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            let json = options.json
            try await oneShot(options) { database, _ in
                let settings = try await database.configSettings()
                if json { return try printJSON(settings) }
                var table = TextTable("SETTING", "VALUE", "WHAT")
                for setting in settings { table.append([setting.key, setting.value, setting.description]) }
                print(table.render())
            }
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set one: jobs that did not set their own take the new value at once.",
            discussion: "tock config set max_attempts 3; tock config set timeout 2h; tock config set pool etl")
        @OptionGroup var options: GlobalOptions
        @Argument(help: """
            max_attempts, retry_base, retry_cap, timeout, overlap, pool, history_retention, portal_url or \
            audit_retention (the schema's owner only).
            """) var key: String
        @Argument(help: "The new value: 3, 90s, 2h, queue, etl, 30d, …") var value: String

        func run() async throws {
            let (json, key, value) = (options.json, key, value)
            try await oneShot(options) { database, _ in
                let shown = try await database.setConfig(key, value)
                struct Set: Encodable { var key: String; var value: String }
                if json { return try printJSON(Set(key: key, value: shown)) }
                print("\(key) = \(shown)")
            }
        }
    }
}
