#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Kernel
import TestSupport
import Testing

/// `make install`'s steps (mk/install.sh) on the tree `make test` built: the installed muxlab runs with the
/// Swift runtime it carries, not the toolchain's, serves and loads, and names the commit it was built from.
@Suite("Install: muxlab under a prefix, runnable without the toolchain", .serialized)
struct InstallTests {
    @Test("installed under a prefix: --version names the build's commit, a server maps libswiftCore from the prefix and none of the toolchain, and the load gets every answer")
    func installedRuns() throws {
        let prefix = "/tmp/muxlab-install-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: prefix) }
        let installed = try TestSupport.runToEnd("/bin/sh", [TestSupport.packageRoot + "/mk/install.sh", prefix], timeout: 120)
        #expect(installed.status == .exited(0), "mk/install.sh: \(installed.status): \(installed.stderr)")
        #expect(installed.stdout.last?.contains("muxlab: installed") == true, "\(installed.stdout)")
        let binary = prefix + "/bin/muxlab"
        let version = try TestSupport.runToEnd(binary, ["--version"], timeout: 30).stdout.first ?? ""
        let built = try TestSupport.runToEnd(try TestSupport.muxlab, ["--version"], timeout: 30).stdout.first ?? ""
        let stamp = (try? String(contentsOfFile: TestSupport.packageRoot + "/.build/release/muxlab.commit", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "(no muxlab.commit)"
        #expect(version.contains("(commit \(stamp))") && version == built, "installed: \(version); built: \(built); muxlab.commit: \(stamp)")

        let server = try ChildProcess(executable: binary, arguments: ["serve", "--port", "0", "--protocol", "http", "--io", "epoll-et"],
                                      stderrPath: prefix + "/serve.err")
        defer { server.stop() }
        let ready = server.readLine(timeout: 10) ?? ""
        let port = TestSupport.keyValues(ready)["port"].flatMap { UInt16($0) }
        #expect(port != nil, "installed serve printed no ready line: \(ready) \(server.stderrTail(3))")
        // Read to the end: procfs reports size 0, and a single sized read returns only its first page.
        let maps = FileHandle(forReadingAtPath: "/proc/\(server.pid)/maps").map { String(decoding: $0.readDataToEndOfFile(), as: UTF8.self) } ?? ""
        let mapped = Set(maps.split(separator: "\n").compactMap { $0.split(separator: " ", omittingEmptySubsequences: true).last }
            .map(String.init).filter { $0.hasSuffix(".so") || $0.contains(".so.") })
        #expect(mapped.contains(prefix + "/lib/muxlab/swift/libswiftCore.so"), "libswiftCore not from the prefix: \(mapped.sorted())")
        let toolchain = mapped.filter { $0.hasPrefix("/opt/swift/") }
        #expect(toolchain.isEmpty, "the installed muxlab still maps the toolchain's \(toolchain.sorted())")
        guard let port else { return }
        let load = try TestSupport.runToEnd(binary, ["load", "--target", "127.0.0.1:\(port)", "--protocol", "http", "--connections", "4",
                                                     "--duration", "0.3s", "--warmup", "0s", "--json"], timeout: 30)
        let summary = load.stdout.joined()
        #expect(load.status == .exited(0) && summary.contains("\"errors_total\":0"), "installed load: \(load.status) \(summary.prefix(400)) \(load.stderr)")
    }

    @Test("run where nothing is built, it names the missing file and make build; nothing is installed")
    func unbuiltTree() throws {
        let tree = "/tmp/muxlab-install-empty-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: tree) }
        try FileManager.default.createDirectory(atPath: tree + "/mk", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: TestSupport.packageRoot + "/mk/install.sh", toPath: tree + "/mk/install.sh")
        let result = try TestSupport.runToEnd("/bin/sh", [tree + "/mk/install.sh", tree + "/prefix"], timeout: 30)
        #expect(result.status == .exited(1))
        #expect(result.stderr.contains(".build/release/muxlab is missing: run make build first"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: tree + "/prefix"))
    }
}
