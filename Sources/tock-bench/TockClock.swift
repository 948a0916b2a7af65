import Foundation
import TockCore

/// tock-clock, the latency scenario's script: it prints CLOCK_MONOTONIC in nanoseconds and exits. The first thing
/// the new process does is read the clock, so the reading marks "the script is running". A C program linked
/// against libc alone: a shell, or the Swift runtime that SwiftPM links into every executable it builds (C ones
/// too), would add milliseconds of start-up before the reading. So tock-bench builds it with the C compiler when
/// the scenario starts, into the benchmark's scripts directory.
enum TockClock {
    static let source = """
        #include <stdio.h>
        #include <time.h>

        int main(void) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            printf("%lld\\n", (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
            return 0;
        }

        """

    /// Writes the source to `directory`/tock-clock.c and compiles `directory`/tock-clock with `-O2`.
    static func build(into directory: String) throws {
        let compiler = try findCompiler()
        let sourcePath = directory + "/tock-clock.c"
        try Data(source.utf8).write(to: URL(fileURLWithPath: sourcePath))
        defer { try? FileManager.default.removeItem(atPath: sourcePath) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: compiler)
        process.arguments = ["-O2", "-o", directory + "/tock-clock", sourcePath]
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw TockError(.failed, "tock-bench: \(compiler) could not build tock-clock: \(message)")
        }
    }

    /// $CC, else the clang of the Swift toolchain on PATH, else cc, clang or gcc on PATH.
    static func findCompiler() throws -> String {
        let environment = ProcessInfo.processInfo.environment
        let path = (environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map(String.init)
        func onPath(_ name: String) -> String? {
            path.map { $0 + "/" + name }.first { FileManager.default.isExecutableFile(atPath: $0) }
        }
        if let cc = environment["CC"], !cc.isEmpty { return cc.contains("/") ? cc : onPath(cc) ?? cc }
        if let swift = onPath("swift") {
            let clang = URL(fileURLWithPath: swift).resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("clang").path
            if FileManager.default.isExecutableFile(atPath: clang) { return clang }
        }
        if let found = ["cc", "clang", "gcc"].lazy.compactMap(onPath).first { return found }
        throw TockError(.unavailable, "tock-bench latency needs a C compiler for its script, tock-clock: "
            + "set CC, or put the Swift toolchain (its clang) or cc on PATH")
    }
}
