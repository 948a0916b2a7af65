import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import TockCore

/// Sends an HTTP job's request (tock.checked_http) and says how the run ended: succeeded when the status is one the
/// job expects, failed otherwise, timed out past the job's timeout. Its output is the status line, the time it took
/// and the start of the answer's body. Only to hosts the worker's `--http-allow` lists (deny by default: a job's
/// address is chosen by whoever may edit jobs, and the worker must not become their way into addresses only it can
/// reach), never following a redirect (which could lead anywhere).
final class HTTPJobRunner: Sendable {
    let allow: HostAllowList
    private let client: HTTPClient?
    /// How much of an answer's body becomes the run's output.
    static let bodyKept = 64 * 1024

    init(allow: HostAllowList) {
        self.allow = allow
        guard !allow.isEmpty else {
            client = nil
            return
        }
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow,
                                                     timeout: .init(connect: .seconds(10)))
        configuration.httpVersion = .http1Only
        // A refused connection fails the attempt at once; the job's own retries say what happens next.
        configuration.connectionPool.retryConnectionEstablishment = false
        client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }

    func shutdown() async {
        try? await client?.shutdown()
    }

    /// Why `url` may not be sent to from this worker, or nil.
    func refusal(of url: String) -> String? {
        guard client != nil, !allow.isEmpty else {
            return "this worker sends no HTTP requests: start it with --http-allow HOST (TOCK_HTTP_ALLOW), the hosts HTTP jobs may reach"
        }
        return allow.refusal(of: url, option: "this worker's --http-allow (TOCK_HTTP_ALLOW)")
    }

    /// Sends `spec` with `headers` as given (secrets put in by the caller), within `timeoutSeconds`; stops early when
    /// `control` is cancelled.
    func send(_ spec: HTTPRequestSpec, timeoutSeconds: Double, control: ScriptControl) async -> RunOutcome {
        if let refusal = refusal(of: spec.url) {
            return RunOutcome(status: .failed, error: Self.storable(refusal))
        }
        guard let client else { return RunOutcome(status: .failed, error: "no HTTP client") }
        let started = ContinuousClock.now
        let timeout = Duration.milliseconds(Int64(max(timeoutSeconds, 0.001) * 1000))
        let method = spec.method ?? "POST"
        let exchange = Task { () async throws -> (Int, String, String, Int) in
            var request = HTTPClientRequest(url: spec.url)
            request.method = HTTPMethod(rawValue: method)
            request.headers.add(name: "user-agent", value: "tock/\(TockVersion.current)")
            for (name, value) in spec.headers ?? [:] { request.headers.replaceOrAdd(name: name, value: value) }
            if let body = spec.body {
                request.body = .bytes(ByteBuffer(string: body))
            }
            let response = try await client.execute(request, timeout: .milliseconds(Int64(max(timeoutSeconds, 0.001) * 1000)))
            // The start of the body; the rest is read and dropped, so the exchange ends.
            var kept = ByteBuffer()
            var total = 0
            for try await part in response.body {
                total += part.readableBytes
                if kept.readableBytes < Self.bodyKept {
                    var part = part
                    if let slice = part.readSlice(length: min(part.readableBytes, Self.bodyKept - kept.readableBytes)) {
                        kept.writeImmutableBuffer(slice)
                    }
                }
            }
            return (Int(response.status.code), Self.storable(response.status.reasonPhrase), Self.storable(String(buffer: kept)), total)
        }
        // Cancelled by the operator, or past the job's timeout: the request stops.
        let watch = Task {
            while !Task.isCancelled {
                if control.isCancelled || ContinuousClock.now - started > timeout { exchange.cancel(); return }
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        defer { watch.cancel() }
        do {
            let (code, reason, body, total) = try await exchange.value
            let took = ContinuousClock.now - started
            let milliseconds = Int((Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18) * 1000)
            var output = "HTTP \(code) \(reason) in \(milliseconds) ms\n" + body
            if total > Self.bodyKept { output += "\n[… \(total - Self.bodyKept) more bytes of the answer not kept]\n" }
            let bytes = output.utf8.count
            guard spec.expects(code) else {
                return RunOutcome(status: .failed, error: "HTTP \(code) is not what the job expects (\(spec.expect ?? "2xx"))",
                                  output: output, outputBytes: bytes)
            }
            return RunOutcome(status: .succeeded, output: output, outputBytes: bytes)
        } catch {
            if control.isCancelled {
                return RunOutcome(status: .cancelled, error: "cancelled; the request was abandoned")
            }
            if ContinuousClock.now - started >= timeout || Self.isTimeout(error) {
                return RunOutcome(status: .timedOut, error: "no whole answer within the job's timeout (\(DurationText.format(seconds: timeoutSeconds)))")
            }
            return RunOutcome(status: .failed, error: "the request failed: \(Self.describe(error))")
        }
    }

    static func isTimeout(_ error: any Error) -> Bool {
        guard let client = error as? HTTPClientError else { return false }
        return client == .deadlineExceeded || client == .readTimeout || client == .connectTimeout
    }

    static func describe(_ error: any Error) -> String {
        if let client = error as? HTTPClientError { return storable("\(client)".prefix(300).description) }
        return storable(String(describing: error).prefix(300).description)
    }

    /// Text PostgreSQL takes: a zero byte (a binary answer, a hostile server) would make the run's finish, and every
    /// other run's in its batch, fail.
    static func storable(_ text: String) -> String {
        text.replacingOccurrences(of: "\u{0}", with: "\u{FFFD}")
    }
}
