/// Tock's version, in one place: `tock --version` prints it, a worker registers with it (`tock.workers.version`,
/// shown by `tock workers` and `GET /api/v1/workers`), and `GET /api/v1/health` reports it.
public enum TockVersion {
    public static let current = "0.1.0"
}
