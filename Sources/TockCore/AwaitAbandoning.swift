import Synchronization

/// Awaits `body`, run in a task of its own, but stops waiting when `timeout` passes (throwing `timedOut()`) or when
/// the waiting task is cancelled (throwing `CancellationError`), or when `failFast` returns an error (it runs
/// beside the body, which has then no hope: a refused connection). The body is then cancelled and abandoned, not
/// awaited: a call stuck in a connection pool may ignore cancellation, and whoever waits on it must get on (a
/// retry, or a worker's exit while its database is away).
public func awaitAbandoning<T: Sendable>(
    timeout: Duration? = nil, timedOut: @escaping @Sendable () -> any Error = { CancellationError() },
    failFast: (@Sendable () async -> (any Error)?)? = nil,
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let once = OnceResume<T>()
    let work = Task {
        do { once.resume(.success(try await body())) } catch { once.resume(.failure(error)) }
    }
    let timer = timeout.map { timeout in
        Task {
            guard (try? await Task.sleep(for: timeout)) != nil else { return }  // cancelled: the call finished
            once.resume(.failure(timedOut()))
        }
    }
    let watcher = failFast.map { check in
        Task {
            if let error = await check(), !Task.isCancelled { once.resume(.failure(error)) }
        }
    }
    defer { watcher?.cancel() }
    let result = await withTaskCancellationHandler {
        await withCheckedContinuation { once.arm($0) }
    } onCancel: {
        once.resume(.failure(CancellationError()))
    }
    // Ends the timer's sleep at once; cancels the call only if it is still running (abandoned).
    timer?.cancel()
    work.cancel()
    return try result.get()
}

/// A continuation resumed by whichever comes first (the result, the timer, a cancellation), even one that comes
/// before the waiter has armed it.
final class OnceResume<T: Sendable>: Sendable {
    private enum State {
        case waiting
        case armed(CheckedContinuation<Result<T, any Error>, Never>)
        case early(Result<T, any Error>)
        case done
    }

    private let state = Mutex<State>(.waiting)

    func arm(_ continuation: CheckedContinuation<Result<T, any Error>, Never>) {
        let early = state.withLock { state -> Result<T, any Error>? in
            guard case .early(let result) = state else {
                state = .armed(continuation)
                return nil
            }
            state = .done
            return result
        }
        if let early { continuation.resume(returning: early) }
    }

    func resume(_ result: Result<T, any Error>) {
        let continuation = state.withLock { state -> CheckedContinuation<Result<T, any Error>, Never>? in
            switch state {
            case .waiting:
                state = .early(result)
                return nil
            case .armed(let continuation):
                state = .done
                return continuation
            case .early, .done:
                return nil
            }
        }
        continuation?.resume(returning: result)
    }
}
