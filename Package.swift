// swift-tools-version:6.1
import PackageDescription

// One set of settings for every target.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "tock",
    platforms: [.macOS(.v14)],
    products: [
        // What users install.
        .executable(name: "tock", targets: ["tock"]),
        // The benchmarks: built by bench/ and ops/test, never by ops/up.
        .executable(name: "tock-bench", targets: ["tock-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // Pure values: no I/O.
        .target(name: "TockCore", swiftSettings: swiftSettings),
        // Typed calls to the tock.* SQL functions, the migrator, LISTEN with reconnect.
        .target(
            name: "TockPostgres",
            dependencies: [
                "TockCore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            resources: [.copy("SQL")],
            swiftSettings: swiftSettings
        ),
        // Spawning with what Swift cannot import: posix_spawn into a process group (the embedded cluster), scripts
        // opened with openat2 and run with execveat in a cgroup or under a subreaper supervisor, the script guard.
        .target(name: "CTockSpawn"),
        // The embedded PostgreSQL cluster under ./.tock (initdb, pg_ctl, passwords): `tock up`, `tock cluster`, the tests.
        .target(
            name: "TockCluster",
            dependencies: ["TockCore", "CTockSpawn", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        // The Prometheus registry and metric names: the runtime counts, the API prints.
        .target(
            name: "TockMetrics",
            dependencies: ["TockCore", .product(name: "Prometheus", package: "swift-prometheus")],
            swiftSettings: swiftSettings
        ),
        // Long-running services: worker, scheduler, script runner, the script guard, and HTTP jobs' requests.
        .target(
            name: "TockRuntime",
            dependencies: [
                "TockCore", "TockPostgres", "TockMetrics", "CTockSpawn",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The delivery service: webhooks from tock.deliveries, signed as Standard Webhooks says.
        .target(
            name: "TockNotify",
            dependencies: [
                "TockCore", "TockPostgres", "TockRuntime",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The JSON API over the views; writes call the SQL functions, so it adds no rules of its own.
        .target(
            name: "TockAPI",
            dependencies: [
                "TockCore", "TockPostgres", "TockMetrics",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            resources: [.copy("Resources")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TockTesting",
            dependencies: ["TockCore", "TockPostgres", "TockCluster", "TockRuntime", "CTockSpawn"],
            swiftSettings: swiftSettings
        ),
        // What the two executables share: global options, log formats, connecting, a worker's options, running services.
        .target(
            name: "TockCLI",
            dependencies: [
                "TockCore", "TockPostgres", "TockMetrics", "TockRuntime", "TockAPI", "TockCluster", "TockNotify",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The command line users install: parse arguments, build services, run them. No benchmark code.
        .executableTarget(
            name: "tock",
            dependencies: [
                "TockCLI", "TockCore", "TockPostgres", "TockMetrics", "TockRuntime", "TockAPI", "TockCluster", "TockNotify",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        // The benchmarks: the scenarios, and `tock-bench worker`, which injects a run executor that finishes at once.
        .executableTarget(
            name: "tock-bench",
            dependencies: [
                "TockCLI", "TockCore", "TockPostgres", "TockRuntime",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "TockCoreTests", dependencies: ["TockCore"], swiftSettings: swiftSettings),
        .testTarget(name: "TockPostgresTests", dependencies: ["TockTesting"], swiftSettings: swiftSettings),
        .testTarget(name: "TockRuntimeTests", dependencies: ["TockTesting", "TockRuntime"], swiftSettings: swiftSettings),
        .testTarget(name: "TockClusterTests", dependencies: ["TockTesting", "TockCluster"], swiftSettings: swiftSettings),
        .testTarget(
            name: "TockAPITests",
            dependencies: ["TockTesting", "TockAPI", .product(name: "HummingbirdTesting", package: "hummingbird")],
            swiftSettings: swiftSettings
        ),
        // The binaries end to end (both are built for it), and what they share.
        .testTarget(name: "TockCLITests", dependencies: ["TockTesting", "TockCLI", "TockNotify", "tock", "tock-bench"],
                    swiftSettings: swiftSettings),
        // Real processes killed, stopped and restarted under load (run alone: it restarts PostgreSQL).
        .testTarget(name: "TockFaultTests", dependencies: ["TockTesting", "TockRuntime", "tock"], swiftSettings: swiftSettings),
    ]
)
