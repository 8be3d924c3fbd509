// swift-tools-version: 6.0
import PackageDescription

// Language mode 5: the hot paths use raw pointers and single-threaded loops;
// strict-concurrency checking would add nothing but annotations there.
let swift5: [SwiftSetting] = [.swiftLanguageMode(.v5)]

let package = Package(
    name: "muxlab",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "muxlab", targets: ["muxlab"]),
        // Preloaded (LD_PRELOAD) into the processes muxlab starts, to count their allocations;
        // built beside muxlab as libMuxAllocCounter.so and never linked into it.
        .library(name: "MuxAllocCounter", type: .dynamic, targets: ["CAllocCounter"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // C that Swift cannot import: epoll, accept4, fd_set macros, CPU_SET, libnuma, spawn.
        .target(
            name: "CShims",
            linkerSettings: [.linkedLibrary("numa")]
        ),
        // eBPF programs (built by the Makefile into a skeleton) and their libbpf loader.
        .target(
            name: "CSampler",
            exclude: ["muxsampler.bpf.c"],
            cSettings: [.headerSearchPath("generated")],
            linkerSettings: [.linkedLibrary("bpf"), .linkedLibrary("elf"), .linkedLibrary("z")]
        ),
        // liburing's static inline API (SQE preparation, CQ reaping, buffer rings) as callable mux_uring_ functions.
        .target(name: "CUring", linkerSettings: [.linkedLibrary("uring")]),
        // The allocation counter behind libMuxAllocCounter.so; its region layout is CShims' muxalloccounts.h.
        // Linked as plain C: no Swift start-up object and no shared Swift runtime or its rpath, which
        // would load libswiftCore into every preloaded process (nginx included). -static-stdlib
        // names the runtime as an archive nothing here pulls from; libstdc++ and libm stay NEEDED.
        .target(
            name: "CAllocCounter",
            cSettings: [.headerSearchPath("../CShims/include")],
            linkerSettings: [.unsafeFlags(["-nostartfiles", "-static-stdlib", "-no-toolchain-stdlib-rpath"])]
        ),
        .target(name: "Kernel", dependencies: ["CShims"], swiftSettings: swift5),
        // The names of models, back-ends, protocols and modes, their defaults and allowed combinations:
        // one definition that the servers, the load, the workload loader and the claim rules all read.
        .target(name: "Vocabulary", dependencies: ["Kernel", "CShims"], swiftSettings: swift5),
        .target(name: "Servers", dependencies: ["Kernel", "Vocabulary", "CShims", "CUring"], swiftSettings: swift5),
        .target(
            name: "Load",
            dependencies: ["Kernel", "Vocabulary", "CShims", .product(name: "Histogram", package: "hdrhistogram-swift")],
            swiftSettings: swift5
        ),
        .target(name: "Probe", dependencies: ["Kernel", "CShims", "CSampler"], swiftSettings: swift5),
        .target(
            name: "Bench",
            dependencies: [
                "Kernel", "Vocabulary", "Load", "Probe", .product(name: "TOMLKit", package: "TOMLKit"),
                // The timing window's latency histogram, kept per cell in DIR/histograms/.
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: swift5
        ),
        .executableTarget(
            name: "muxlab",
            dependencies: [
                "Kernel", "Vocabulary", "Servers", "Load", "Probe", "Bench", "Plots",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swift5
        ),
        // `muxlab plot` runs plots/muxplot.py; it ships beside the binary in muxlab_Plots.resources/.
        .target(name: "Plots", path: "plots", resources: [.copy("muxplot.py")], swiftSettings: swift5),
        // Locating the built binary and starting servers, shared by the suites.
        .target(name: "TestSupport", dependencies: ["Kernel", "Vocabulary"], path: "Tests/TestSupport", swiftSettings: swift5),
        .testTarget(name: "KernelTests", dependencies: ["Kernel", "TestSupport"], swiftSettings: swift5),
        .testTarget(name: "ServersTests", dependencies: ["Servers", "Kernel", "Vocabulary", "TestSupport"], swiftSettings: swift5),
        .testTarget(name: "LoadTests", dependencies: ["Load", "Kernel", "Vocabulary", "TestSupport"], swiftSettings: swift5),
        .testTarget(
            name: "BenchTests",
            dependencies: ["Bench", "Load", "Vocabulary", "TestSupport", .product(name: "Histogram", package: "hdrhistogram-swift")],
            swiftSettings: swift5
        ),
        .testTarget(name: "VocabularyTests", dependencies: ["Vocabulary", "Kernel"], swiftSettings: swift5),
        .testTarget(name: "ProbeTests", dependencies: ["Probe", "Kernel", "TestSupport"], exclude: ["Fixtures"], swiftSettings: swift5),
        .testTarget(name: "EndToEndTests", dependencies: ["Bench", "Kernel", "Vocabulary", "TestSupport"], exclude: ["Fixtures"], swiftSettings: swift5),
    ]
)
