// swift-tools-version: 6.1
import PackageDescription

// The ecosystem's own peer (issue 16): a small SwiftNIO HTTP/1.1 server with nginx's route in
// workloads/peers/nginx.conf (any path: 200 "Hello, World!", keep-alive). A package of its own so
// that `make test` never resolves or builds SwiftNIO; `make bench-peers` builds it
// (`make swiftnio-peer`) into .build-swiftnio/ at the repository root.
let package = Package(
    name: "muxlab-swiftnio-peer",
    products: [.executable(name: "muxlab-swiftnio", targets: ["MuxlabSwiftNIO"])],
    dependencies: [.package(url: "https://github.com/apple/swift-nio", from: "2.101.2")],
    targets: [
        .executableTarget(
            name: "MuxlabSwiftNIO",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
    ]
)
