import Foundation
import TockCore

/// Every option of the long-running commands (`tock worker`, `scheduler`, `api` and `up`) can come from the
/// environment instead, for containers and systemd's `EnvironmentFile`: `--scripts-dir DIR` is
/// `TOCK_SCRIPTS_DIR=DIR`, the flag `--no-api` is `TOCK_NO_API=true`. What the command line gives wins. The options
/// every command shares keep their own variables (DATABASE_URL, TOCK_HOME, TOCK_LOG_LEVEL, TOCK_LOG_FORMAT).
/// docs/operations.md ("Configuration") has the table; CLI tests check it against each command's options.
public enum EnvironmentOptions {
    public struct Option: Sendable, Equatable {
        /// The long name without its dashes: `scripts-dir`.
        public var name: String
        public var isFlag = false

        /// `TOCK_SCRIPTS_DIR` for `scripts-dir`.
        public var variable: String { "TOCK_" + name.uppercased().replacingOccurrences(of: "-", with: "_") }
    }

    static let worker = ["name", "pools", "concurrency", "scripts-dir", "sweep-seconds", "heartbeat-seconds", "shutdown-grace-seconds",
                         "kill-grace-seconds", "output-cap", "run-as", "containment", "secrets-file", "http-allow"].map { Option(name: $0) }
    static let api = ["api-host", "api-port", "allowed-origins"].map { Option(name: $0) }
    static let metrics = ["metrics-port", "metrics-host"].map { Option(name: $0) }
    static let notifier = ["webhook-allow", "webhook-concurrency", "webhook-timeout-seconds"].map { Option(name: $0) }

    /// The options each command takes from the environment.
    public static let commands: [String: [Option]] = [
        "worker": worker + metrics,
        "scheduler": metrics + [Option(name: "sweep-seconds")],
        "api": api + metrics,
        "notifier": notifier + metrics,
        "up": worker + api + notifier + metrics + [Option(name: "no-api", isFlag: true)],
    ]

    /// `arguments` (without the executable) with what the environment gives for the command they name, after them.
    /// A flag's variable is true or false (1/0, yes/no); an empty variable is ignored, and so is one that holds a
    /// service link (`tcp://…`: Kubernetes sets TOCK_API_PORT so for a Service named tock-api), which `ignored`
    /// names.
    public static func arguments(_ arguments: [String], environment: [String: String],
                                 ignored: inout [String]) throws(TockError) -> [String] {
        guard let command = arguments.first, let options = commands[command] else { return arguments }
        var result = arguments
        for option in options {
            guard let value = environment[option.variable], !value.isEmpty else { continue }
            guard !value.contains("://") else {
                ignored.append(option.variable)
                continue
            }
            let flag = "--" + option.name
            guard !arguments.contains(where: { $0 == flag || $0.hasPrefix(flag + "=") }) else { continue }
            if option.isFlag {
                switch value.lowercased() {
                case "1", "true", "yes", "on": result.append(flag)
                case "0", "false", "no", "off": continue
                default:
                    throw TockError(.invalidInput, field: option.variable,
                                    "\(option.variable): '\(value)' is not true or false (\(flag))")
                }
            } else {
                result.append(flag + "=" + value)
            }
        }
        return result
    }
}
