import ArgumentParser
import Foundation
import TockCLI
import TockCore
import TockPostgres

struct HookCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hook",
        abstract: "Webhooks sent, or jobs run, when a job's run fails, dies, times out, succeeds, recovers or is late.",
        subcommands: [List.self, Add.self, Remove.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The hooks (of a job, with the fleet's that apply to it): where each goes, never its secret.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "A job's name or id (default: every hook).") var job: String?

        func run() async throws {
            let (json, job) = (options.json, job)
            try await oneShot(options) { database, _ in
                let hooks = try await database.hooks(job: job)
                if json { return try printJSON(hooks) }
                guard !hooks.isEmpty else { return print("no hooks: add one with tock hook add JOB --on failed --webhook URL") }
                var table = TextTable("ID", "JOB", "ON", "TO", "ATTEMPTS")
                for hook in hooks {
                    table.append(["\(hook.id)", hook.jobName, hook.event + (hook.lateAfter.map { " (\($0))" } ?? ""),
                                  hook.runJob.map { "run job \($0)" } ?? hook.urlOrigin ?? "-",
                                  hook.runJob == nil ? "\(hook.maxAttempts)" : "-"])
                }
                print(table.render())
            }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send a webhook, or run another job, when a job's run ends a certain way.",
            discussion: """
                --webhook: the POST carries JSON ({type, timestamp, data, text}; Slack and Teams show text) and the \
                Standard Webhooks headers webhook-id, webhook-timestamp and webhook-signature; the signing secret is \
                printed once. A delivery service (tock notifier, or tock up) sends it, to hosts in its \
                --webhook-allow only.
                --run-job: the run's end enqueues a run of that job, in the same transaction (trigger chain); its \
                script gets TOCK_UPSTREAM_RUN_ID, TOCK_UPSTREAM_JOB and TOCK_UPSTREAM_STATUS, and its parameters' \
                defaults. A chain that would close a cycle is refused.
                """)
        @OptionGroup var options: GlobalOptions
        @Argument(help: "A job's name or id, or '*' for every job.") var job: String
        @Option(help: "failed, dead, timed_out, succeeded, recovered (first success after a failure), or late.") var on: String
        @Option(help: "The URL to POST to (http:// or https://).") var webhook: String?
        @Option(help: "Instead of a webhook: the job to run (by name or id).") var runJob: String?
        @Option(help: "For --on late: how long after its fire time a scheduled run that has not started is late (5m).")
        var lateAfter: String?
        @Option(help: "A whsec_ signing secret to use (default: a new one, printed once).") var secret: String?
        @Option(help: "Attempts before a delivery fails for good (1-50; 12 spans about 5 hours).") var maxAttempts: Int = 12

        func run() async throws {
            guard (webhook == nil) != (runJob == nil) else {
                throw fail(TockError(.invalidInput, field: "webhook", "webhook: give --webhook URL or --run-job JOB"))
            }
            var hook: [String: Any] = ["job": job, "event": on]
            hook["url"] = webhook
            hook["run_job"] = runJob
            if webhook != nil { hook["max_attempts"] = maxAttempts }
            hook["late_after"] = lateAfter
            hook["secret"] = secret
            let json = String(decoding: try JSONSerialization.data(withJSONObject: hook), as: UTF8.self)
            let asJSON = options.json
            let said = "\(runJob ?? "") runs after \(job)'s run ends \(on)"
            try await oneShot(options) { database, _ in
                let added = try await database.addHook(json: json)
                if asJSON { return try printJSON(added) }
                guard let secret = added.secret else { return print("hook \(added.hookId) added: \(said)") }
                print("hook \(added.hookId) added. Its signing secret (shown this once; give it to the receiver):")
                print(secret)
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a hook (its past deliveries stay).")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The hook's id (tock hook list).") var id: Int64

        func run() async throws {
            let id = id
            try await oneShot(options) { database, _ in
                try await database.removeHook(id)
                print("hook \(id) removed")
            }
        }
    }
}

struct DeliveriesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deliveries", abstract: "Webhook deliveries: pending, delivered or failed, with their attempts; retry one.",
        subcommands: [List.self, Retry.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Deliveries, newest first (tock.delivery_overview).")
        @OptionGroup var options: GlobalOptions
        @Option(help: "Only this job's (name or id).") var job: String?
        @Option(help: "Only those pending, sending, delivered or failed.") var status: String?
        @Option(help: "How many (1-1000).") var limit: Int = 50

        func run() async throws {
            let (json, job, status, limit) = (options.json, job, status, limit)
            try await oneShot(options) { database, _ in
                let deliveries = try await database.deliveries(job: job, status: status, limit: limit)
                if json { return try printJSON(deliveries) }
                guard !deliveries.isEmpty else { return print("no deliveries") }
                var table = TextTable("ID", "JOB", "RUN", "EVENT", "TO", "STATUS", "ATTEMPTS", "LAST")
                for delivery in deliveries {
                    let last = delivery.lastError ?? delivery.lastCode.map { "HTTP \($0)" } ?? "-"
                    table.append(["\(delivery.id)", delivery.jobName ?? "#\(delivery.jobId)", "\(delivery.runId)", delivery.event,
                                  delivery.urlOrigin ?? "-", delivery.status, "\(delivery.attempts)/\(delivery.maxAttempts)",
                                  String(last.prefix(60))])
                }
                print(table.render())
            }
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Send a failed delivery again, at once.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The delivery's id.") var id: Int64

        func run() async throws {
            let id = id
            try await oneShot(options) { database, _ in
                _ = try await database.retryDelivery(id)
                print("delivery \(id) is pending again")
            }
        }
    }
}
