import Foundation
import TockCore

/// tock-clock, the latency scenario's script: it prints CLOCK_MONOTONIC in nanoseconds and exits. The first thing
/// the new process does is read the clock, so the reading marks "the script is running". A C program linked
/// against libc alone: a shell, or the Swift runtime that SwiftPM links into every executable it builds (C ones
/// too), would add milliseconds of start-up before the reading. So tock-bench builds it with the C compiler when
/// the scenario starts, into the benchmark's scripts directory.
///
/// Given a file (the soak's run-now job), it appends `$TOCK_RUN_ID <reading>` to it instead, in one write(2) on an
/// O_APPEND descriptor, which keeps each line whole beside other runs' lines.
enum TockClock {
    static let source = """
        #include <fcntl.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <time.h>
        #include <unistd.h>

        int main(int argc, char **argv) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            long long reading = (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
            if (argc < 2) {
                printf("%lld\\n", reading);
                return 0;
            }
            const char *run = getenv("TOCK_RUN_ID");
            char line[80];
            int length = snprintf(line, sizeof line, "%s %lld\\n", run ? run : "-", reading);
            int fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
            if (fd < 0 || write(fd, line, length) != length) {
                perror(argv[1]);
                return 1;
            }
            return close(fd) == 0 ? 0 : 1;
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
        throw TockError(.unavailable, "tock-bench latency and soak need a C compiler for their script, tock-clock: "
            + "set CC, or put the Swift toolchain (its clang) or cc on PATH")
    }
}
