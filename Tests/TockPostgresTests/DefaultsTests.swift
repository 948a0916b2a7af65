import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockTesting

@Suite("fleet defaults: what a job leaves out it inherits from tock.config, and keeps inheriting")
struct DefaultsTests {
    @Test("a job inherits what it leaves out; a new default reaches those jobs only; null inherits again; all or nothing")
    func inheritance() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "plain", script: "x.sh"))
            var own = JobDefinition(name: "own", script: "x.sh")
            (own.maxAttempts, own.timeoutSeconds, own.overlap) = (5, 300, "allow")
            _ = try await database.createJob(own)
            #expect(try await database.job("plain").inherited == ["max_attempts", "overlap", "pool", "retry_base", "retry_cap", "timeout"])
            #expect(try await database.job("own").inherited == ["pool", "retry_base", "retry_cap"])

            #expect(try await database.setConfig("max_attempts", "3") == "3")
            #expect(try await database.setConfig("timeout", "2h") == "2h")
            #expect(try await database.setConfig("overlap", "queue") == "queue")
            let plain = try await database.job("plain")
            #expect(plain.maxAttempts == 3 && plain.timeoutSeconds == 7200 && plain.overlap == "queue")
            let kept = try await database.job("own")
            #expect(kept.maxAttempts == 5 && kept.timeoutSeconds == 300 && kept.overlap == "allow")
            // A job created now takes the new defaults.
            _ = try await database.createJob(JobDefinition(name: "later", script: "x.sh"))
            #expect(try await database.job("later").maxAttempts == 3)

            // Null: back to the default, and following it; a value: the job's own from then on.
            _ = try await database.updateJob("own", json: #"{"max_attempts": null, "timeout_seconds": null}"#)
            _ = try await database.updateJob("plain", json: #"{"overlap": "skip"}"#)
            let back = try await database.job("own")
            #expect(back.maxAttempts == 3 && back.timeoutSeconds == 7200
                    && back.inherited == ["max_attempts", "pool", "retry_base", "retry_cap", "timeout"])
            #expect(try await database.job("plain").inherited == ["max_attempts", "pool", "retry_base", "retry_cap", "timeout"])
            _ = try await database.setConfig("overlap", "allow")
            #expect(try await database.job("plain").overlap == "skip")

            // Retry backoff: a base above the cap raises the cap with it; a cap below the base is refused.
            #expect(try await database.setConfig("retry_base", "20m") == "20m")
            #expect(try await database.job("plain").retryCapSeconds == 1200)
            let shortCap = await #expect(throws: TockError.self) { _ = try await database.setConfig("retry_cap", "1m") }
            #expect(shortCap?.field == "retry_cap")

            // A new default pool moves the inheriting jobs and their pending runs.
            let run = try await database.runNow("later")
            #expect(try await database.setConfig("pool", "etl") == "etl")
            #expect(try await database.job("later").pool == "etl")
            #expect(try await database.client.query("SELECT pool FROM tock.runs WHERE id = \(run)").decode(String.self).all() == ["etl"])

            // Bad settings change nothing, and a JSON body applies all or none.
            for (key, value) in [("max_attempts", "0"), ("max_attempts", "three"), ("timeout", "forever"), ("timeout", "90d"),
                                 ("overlap", "sometimes"), ("pool", "no way"), ("colour", "blue"), ("history_retention", "10s")] {
                let error = await #expect(throws: TockError.self) { _ = try await database.setConfig(key, value) }
                #expect(error?.kind == .invalidInput, "\(key)=\(value): \(String(describing: error))")
            }
            let partly = await #expect(throws: TockError.self) {
                _ = try await database.setConfig(json: #"{"max_attempts": 7, "timeout": "never"}"#)
            }
            #expect(partly?.field == "timeout")
            let settings = try await database.configSettings()
            #expect(settings.first { $0.key == "max_attempts" }?.value == "3")
            #expect(settings.map(\.key) == ["max_attempts", "retry_base", "retry_cap", "timeout", "overlap", "pool", "history_retention", "audit_retention", "portal_url"])
            // A base and a cap in one body: the base first, whatever the JSON's order, and the pair checked.
            let backwards = await #expect(throws: TockError.self) {
                _ = try await database.setConfig(json: #"{"retry_cap": "30m", "retry_base": "1h"}"#)
            }
            #expect(backwards?.field == "retry_cap")
            _ = try await database.setConfig(json: #"{"retry_cap": "5m", "retry_base": "1m"}"#)
            // A job with its own base that inherits the cap follows a cap raised with the fleet's base.
            _ = try await database.updateJob("own", json: #"{"retry_base_seconds": 120}"#)
            _ = try await database.setConfig("retry_base", "10m")
            #expect(try await database.job("own").retryCapSeconds == 600)
            let both = await #expect(throws: TockError.self) {
                _ = try await database.updateJob("own", json: #"{"timeout": null, "timeout_seconds": 30}"#)
            }
            #expect(both?.field == "timeout")
            _ = try await database.setConfig(json: #"{"max_attempts": 7, "history_retention": "7d"}"#)
            #expect(try await database.configSettings().filter { ["max_attempts", "history_retention"].contains($0.key) }.map(\.value)
                    == ["7", "7d"])
        }
    }
}
