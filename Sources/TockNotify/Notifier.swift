import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization
import TockCore
import TockPostgres
import TockRuntime

/// How a delivery service sends.
public struct NotifierConfiguration: Sendable {
    /// The hosts it may send to; empty: none (each delivery fails, saying so).
    public var allow: HostAllowList
    /// Deliveries sent at once.
    public var concurrency = 8
    /// How long a receiver may take to answer.
    public var timeout: Duration = .seconds(10)
    /// How long a claimed delivery is held: if this service dies mid-send, another sends it again after it.
    public var hold: Duration = .seconds(60)
    /// The longest sleep between looks for due deliveries: a safety net for a NOTIFY missed.
    public var sweep: Duration = .seconds(30)

    public init(allow: HostAllowList) {
        self.allow = allow
    }
}

/// The delivery service (`tock notifier`, and part of `tock up`): takes due webhook deliveries from
/// `tock.deliveries` (any number of services at once: SKIP LOCKED), POSTs each, signed as Standard Webhooks 1.0 says,
/// and records how it went; tock.finish_delivery decides on retries. Woken by NOTIFY tock_deliveries.
/// At least once: a service killed mid-send leaves its deliveries held for `hold`, then another sends them again
/// with the same webhook-id, for the receiver to drop the repeat.
public final class Notifier: Service, Sendable {
    let database: Database
    let settings: ConnectionSettings
    let configuration: NotifierConfiguration
    let logger: Logger
    let wake = WakeSignal()
    private let stopping = Atomic<Bool>(false)

    public init(database: Database, settings: ConnectionSettings, configuration: NotifierConfiguration, logger: Logger) {
        self.database = database
        self.settings = settings
        self.configuration = configuration
        self.logger = logger
    }

    public func run() async throws {
        var http = HTTPClient.Configuration(redirectConfiguration: .disallow,
                                            timeout: .init(connect: .seconds(5), read: .seconds(configuration.timeout.components.seconds)))
        http.httpVersion = .http1Only
        // One backoff only, tock.finish_delivery's: a refused connection fails the attempt at once.
        http.connectionPool.retryConnectionEstablishment = false
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: http)
        var listening = NotificationListener(settings: settings, channels: ["tock_deliveries"], logger: logger)
        listening.follow = database.primary
        let listener = listening
        if configuration.allow.isEmpty {
            // Idle rather than failing deliveries another service, with hosts allowed, would send.
            logger.warning("no host may receive webhooks: this delivery service sends nothing until --webhook-allow (TOCK_WEBHOOK_ALLOW) names some")
        }
        logger.info("delivery service started", metadata: [
            "allow": "\(configuration.allow.patterns.joined(separator: ","))", "concurrency": "\(configuration.concurrency)"])
        await withGracefulShutdownHandler {
            guard !self.configuration.allow.isEmpty else {
                while !self.stopping.load(ordering: .acquiring), !Task.isCancelled { await self.wake.wait(timeout: .seconds(3600)) }
                return
            }
            await withDiscardingTaskGroup { group in
                group.addTask { await listener.run { _ in self.wake.signal() } }
                await self.deliverLoop(client)
                group.cancelAll()
            }
        } onGracefulShutdown: {
            self.stopping.store(true, ordering: .releasing)
            self.wake.signal()
        }
        try? await client.shutdown()
        logger.info("delivery service stopped")
    }

    private func deliverLoop(_ client: HTTPClient) async {
        var backoff = RetryBackoff(initial: .milliseconds(200))
        while !stopping.load(ordering: .acquiring), !Task.isCancelled {
            do {
                let (deliveries, nextDue) = try await database.claimDeliveries(max: configuration.concurrency, hold: configuration.hold)
                backoff.reset()
                guard !deliveries.isEmpty else {
                    let untilDue = nextDue.map { Duration.milliseconds(max(Int64($0.timeIntervalSinceNow * 1000) + 1, 1)) }
                    await wake.wait(timeout: min(untilDue ?? configuration.sweep, configuration.sweep))
                    continue
                }
                await withDiscardingTaskGroup { group in
                    for delivery in deliveries { group.addTask { await self.send(delivery, client) } }
                }
            } catch {
                logger.warning("could not take deliveries; retrying", metadata: ["error": "\(error.message)"])
                await wake.wait(timeout: backoff.next())
            }
        }
    }

    /// One attempt: POST the body, signed; then record the answer.
    func send(_ delivery: ClaimedDelivery, _ client: HTTPClient) async {
        var logger = logger
        logger[metadataKey: "delivery"] = "\(delivery.id)"
        logger[metadataKey: "attempt"] = "\(delivery.attempt)"
        let startedAt = Date()
        let started = ContinuousClock.now
        var code: Int?
        var failure: String?
        var final = false
        if let refusal = refusal(of: delivery.url) {
            (failure, final) = (refusal, true)
        } else {
            do {
                // The whole exchange within the timeout: a receiver that answers its head and then drips its body must
                // not hold this attempt (nor the batch it is in) for longer.
                code = try await awaitAbandoning(timeout: configuration.timeout, timedOut: {
                    TockError(.unavailable, "the receiver did not answer in time")
                }) { [configuration] () async throws -> Int in
                let body = Array(delivery.body.utf8)
                var request = HTTPClientRequest(url: delivery.url)
                request.method = .POST
                request.headers.add(name: "content-type", value: "application/json")
                request.headers.add(name: "user-agent", value: "tock/\(TockVersion.current)")
                let timestamp = Int64(Date().timeIntervalSince1970)
                request.headers.add(name: "webhook-id", value: delivery.messageId)
                request.headers.add(name: "webhook-timestamp", value: String(timestamp))
                request.headers.add(name: "webhook-signature", value: try WebhookSignature.sign(
                    secret: delivery.secret, id: delivery.messageId, timestamp: timestamp, body: body))
                request.body = .bytes(ByteBuffer(bytes: body))
                let response = try await client.execute(request, timeout: .seconds(configuration.timeout.components.seconds))
                // Read (and drop) a little of the answer, so the connection can be reused.
                _ = try? await response.body.collect(upTo: 64 * 1024)
                return Int(response.status.code)
                }
            } catch let error as TockError {
                // A secret that does not decode can never be sent; a timeout is tried again.
                (failure, final) = (error.message, error.kind == .invalidInput)
            } catch {
                failure = Self.describe(error)
            }
        }
        let took = ContinuousClock.now - started
        do {
            let status = try await database.finishDelivery(delivery.id, attempt: delivery.attempt, code: code, error: failure,
                                                           startedAt: startedAt, duration: took, final: final)
            logger.info("webhook sent", metadata: [
                "to": "\(HostAllowList.origin(delivery.url))", "code": "\(code.map(String.init) ?? "-")",
                "error": "\(failure ?? "-")", "status": "\(status)"])
        } catch {
            // Held until its hold runs out, then sent again: at least once.
            logger.warning("could not record a delivery's attempt; it will be sent again", metadata: ["error": "\(error.message)"])
        }
    }

    /// Why `url` may not be sent to (its host is not allowed), or nil.
    func refusal(of url: String) -> String? {
        configuration.allow.refusal(of: url, option: "this delivery service's --webhook-allow (TOCK_WEBHOOK_ALLOW)")
    }

    static func describe(_ error: any Error) -> String {
        if let client = error as? HTTPClientError {
            switch client {
            case .deadlineExceeded, .readTimeout, .connectTimeout: return "the receiver did not answer in time"
            default: return "HTTP: \(client)"
            }
        }
        return String(describing: error).prefix(300).description
    }
}
