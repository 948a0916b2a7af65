import TockRuntime

/// The safety sweep of workers and schedulers in tests: an hour, far beyond any test's deadline. The sweep rescues
/// a lost wake-up (a NOTIFY not sent, a delayed run not slept for); at its default of 60 s it equalled the tests'
/// longest waits, so a test could pass on the sweep with the wake-up broken (e0b90e3 fixed one such bug). With it
/// an hour away, a lost wake-up fails the test that depends on it.
public enum TestSweep {
    public static let interval: Duration = .seconds(3600)
    /// `--sweep-seconds` for `tock worker`, `tock scheduler` and `tock up` (TockProcess passes it unless told otherwise).
    public static let seconds = "3600"
}

extension WorkerConfiguration {
    /// A worker configuration for tests: scripts from `scriptsDirectory`, the safety sweep an hour away.
    public static func testing(scriptsDirectory: String) -> WorkerConfiguration {
        var configuration = WorkerConfiguration()
        configuration.scriptsDirectory = scriptsDirectory
        configuration.sweepInterval = TestSweep.interval
        return configuration
    }
}
