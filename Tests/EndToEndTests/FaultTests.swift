#if canImport(Glibc)
import Glibc
#endif
import Bench
import Foundation
import Kernel
import TestSupport
import Testing

/// Faults caused for real against `muxlab bench`: what the user sees, which rows survive,
/// and that no server or load generator outlives the driver.
@Suite("Faults: a dying server, an interrupted or killed driver, a full disk", .serialized)
struct FaultTests {
    static func workload(cells io: [String], duration: String = "1s") -> String {
        """
        [defaults]
        duration = "\(duration)"
        warmup = "0.2s"
        server_cpus = "1"
        client_cpus = "0"
        connections = 8
        [[experiment]]
        id = "fault"
        [experiment.matrix]
        io = [\(io.map { "\"\($0)\"" }.joined(separator: ", "))]
        """
    }

    /// A fresh output directory and a workload file beside it.
    static func prepare(_ name: String, _ text: String) throws -> (workload: String, out: String) {
        let out = "/tmp/muxlab-fault-\(name)-\(getpid())"
        try? FileManager.default.removeItem(atPath: out)
        try text.write(toFile: out + ".toml", atomically: true, encoding: .utf8)
        return (out + ".toml", out)
    }

    /// The bench's children running `muxlab <role>` (serve or load).
    static func children(of pid: Int32, role: String) -> [Int32] {
        ProcessStats.processTree(pid).filter { child in
            guard child != pid, let text = readSmallFile("/proc/\(child)/cmdline") else { return false }
            return text.split(separator: "\0").dropFirst().first == Substring(role)
        }
    }

    /// Waits up to `seconds` for `condition`.
    static func waitFor(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let end = monotonicNanos() + UInt64(seconds * 1e9)
        while monotonicNanos() < end {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }

    /// Gone, or a zombie waiting for init to reap it: either way it runs no more.
    static func isDead(_ pid: Int32) -> Bool {
        guard let stat = readSmallFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return true }
        let state = stat[stat.index(close, offsetBy: 2)]
        return state == "Z" || state == "X"
    }

    static func rows(_ out: String) throws -> [[String: String]] {
        try CSVTable.read(path: out + "/results.csv").rows
    }

    @Test("a server killed mid-cell: that cell is failed with the signal and the server's stderr, the rest run, exit 1 with a summary")
    func serverKilledMidCell() throws {
        let (workload, out) = try Self.prepare("server", Self.workload(cells: ["poll", "epoll-lt", "epoll-et"], duration: "1.5s"))
        let bench = try ChildProcess(executable: try TestSupport.muxlab, arguments: ["bench", workload, "--out", out, "--probes", "off"],
                                     stderrPath: out + ".err")
        defer { bench.stop() }
        var server: Int32 = 0
        #expect(Self.waitFor(20) {
            server = Self.children(of: bench.pid, role: "serve").first ?? 0
            return server > 0 && !Self.children(of: bench.pid, role: "load").isEmpty
        })
        usleep(700_000)  // inside the measured window
        kill(server, SIGKILL)
        let status = bench.wait(timeout: 60)
        #expect(status == .exited(1), "bench: \(String(describing: status))")
        let rows = try Self.rows(out)
        #expect(rows.count == 3)
        #expect(rows.first?["status"] == "failed")
        let reason = rows.first?["reason"] ?? ""
        #expect(reason.contains("server died"), "reason: \(reason)")
        #expect(reason.contains("signal 9"), "reason: \(reason)")
        #expect(reason.contains("last stderr"), "reason: \(reason)")
        #expect(rows.dropFirst().allSatisfy { $0["status"] == "ok" })
        let stderr = bench.stderrTail(5).joined(separator: "\n")
        #expect(stderr.contains("1 cell(s) failed"), "stderr: \(stderr)")
        #expect(try Manifest.read(path: out + "/manifest.json").status == .failed)
    }

    @Test("SIGINT or SIGTERM to the driver: children stopped, finished rows and an interrupted manifest kept, exit 128 + signal",
          arguments: [SIGINT, SIGTERM])
    func interrupted(signal: Int32) throws {
        let (workload, out) = try Self.prepare("int\(signal)", Self.workload(cells: ["select", "poll", "epoll-lt", "epoll-et"]))
        let bench = try ChildProcess(executable: try TestSupport.muxlab, arguments: ["bench", workload, "--out", out, "--probes", "off"],
                                     stderrPath: out + ".err")
        defer { bench.stop() }
        // After the first row, during the second cell.
        #expect(Self.waitFor(30) { ((try? Self.rows(out))?.count ?? 0) >= 1 && !Self.children(of: bench.pid, role: "load").isEmpty })
        let children = Self.children(of: bench.pid, role: "serve") + Self.children(of: bench.pid, role: "load")
        #expect(!children.isEmpty)
        kill(bench.pid, signal)
        let status = bench.wait(timeout: 20)
        #expect(status == .exited(128 + signal), "bench: \(String(describing: status))")
        let rows = try Self.rows(out)
        #expect(rows.count >= 1 && rows.count < 4)
        #expect(rows.allSatisfy { $0["status"] == "ok" }, "an interrupted cell is not a row")
        #expect(try Manifest.read(path: out + "/manifest.json").status == .interrupted)
        #expect(Self.waitFor(3) { children.allSatisfy(Self.isDead) }, "children left: \(children.filter { !Self.isDead($0) })")
        #expect(bench.stderrTail(3).joined().contains("interrupted by signal \(signal)"))
    }

    @Test("SIGKILL to the driver: its server and load generator die with it (PR_SET_PDEATHSIG), checked by pid")
    func driverKilled() throws {
        let (workload, out) = try Self.prepare("kill", Self.workload(cells: ["epoll-et"], duration: "5s"))
        let bench = try ChildProcess(executable: try TestSupport.muxlab, arguments: ["bench", workload, "--out", out, "--probes", "off"],
                                     stderrPath: out + ".err")
        var server: [Int32] = []
        var load: [Int32] = []
        #expect(Self.waitFor(20) {
            server = Self.children(of: bench.pid, role: "serve")
            load = Self.children(of: bench.pid, role: "load")
            return !server.isEmpty && !load.isEmpty
        })
        kill(bench.pid, SIGKILL)
        _ = bench.wait(timeout: 5)
        let children = server + load
        #expect(children.count == 2)
        #expect(Self.waitFor(2) { children.allSatisfy(Self.isDead) }, "still running: \(children.filter { !Self.isDead($0) })")
    }

    @Test("a CPU that does not exist in a workload is refused before anything runs, naming the value and the CPUs there are")
    func missingCPU() throws {
        let (workload, out) = try Self.prepare("cpu", Self.workload(cells: ["poll"]).replacingOccurrences(of: "server_cpus = \"1\"", with: "server_cpus = \"64\""))
        let bench = try ChildProcess(executable: try TestSupport.muxlab, arguments: ["bench", workload, "--out", out],
                                     stderrPath: out + ".err")
        #expect(bench.wait(timeout: 30) == .exited(2))
        let message = bench.stderrTail(3).joined(separator: "\n")
        #expect(message.contains("server_cpus = \"64\""), "\(message)")
        #expect(message.contains("this machine has CPUs \(Placement.onlineCPUs())"), "\(message)")
        #expect(!FileManager.default.fileExists(atPath: out + "/results.csv"))
    }

    @Test("an unwritable results directory is one clear error naming it; nothing runs")
    func unwritableDirectory() throws {
        let (workload, _) = try Self.prepare("unwritable", Self.workload(cells: ["poll"]))
        let bench = try ChildProcess(executable: try TestSupport.muxlab, arguments: ["bench", workload, "--out", "/proc/muxlab-results"],
                                     stderrPath: "/tmp/muxlab-fault-unwritable-\(getpid()).err")
        #expect(bench.wait(timeout: 30) == .exited(1))
        let message = bench.stderrTail(3).joined(separator: "\n")
        #expect(message.contains("cannot create the results directory"), "\(message)")
        #expect(message.contains("/proc/muxlab-results"), "\(message)")
    }

    @Test("a full disk mid-run: a clear error, exit 1, every row written before it intact and parseable")
    func fullDisk() throws {
        guard getuid() == 0 else {
            Issue.record("needs root to mount a small tmpfs (CI runs as root); not run here")
            return
        }
        let mountPoint = "/tmp/muxlab-fault-full-\(getpid())"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mount = try ChildProcess(executable: "/bin/mount", arguments: ["-t", "tmpfs", "-o", "size=64k", "tmpfs", mountPoint],
                                     stderrPath: mountPoint + ".mount.err")
        #expect(mount.wait(timeout: 10) == .exited(0), "mount: \(mount.stderrTail(2))")
        defer {
            let umount = try? ChildProcess(executable: "/bin/umount", arguments: [mountPoint], stderrPath: "/dev/null")
            _ = umount?.wait(timeout: 10)
        }
        // Leave 12 KiB: room for the manifest, its temporary copy and a few rows, not for twelve cells.
        let fill = open(mountPoint + "/fill", O_WRONLY | O_CREAT, 0o644)
        let block = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<13 { _ = block.withUnsafeBytes { write(fill, $0.baseAddress!, 4096) } }
        close(fill)
        let text = Self.workload(cells: ["select", "poll", "epoll-lt", "epoll-et"], duration: "0.3s")
            .replacingOccurrences(of: "[defaults]", with: "[defaults]\nrepeat = 3")
        let (workload, _) = try Self.prepare("full", text)
        let out = mountPoint + "/run"
        let bench = try ChildProcess(executable: try TestSupport.muxlab, arguments: ["bench", workload, "--out", out, "--probes", "off"],
                                     stderrPath: "/tmp/muxlab-fault-full-\(getpid()).err")
        let status = bench.wait(timeout: 120)
        #expect(status == .exited(1), "bench: \(String(describing: status))")
        let message = bench.stderrTail(3).joined(separator: "\n")
        #expect(message.contains("No space left on device"), "\(message)")
        #expect(message.contains("finished rows kept"), "\(message)")
        let table = try CSVTable.read(path: out + "/results.csv")
        #expect(table.missingColumns(ResultRow.columns).isEmpty)
        #expect(table.rows.count < 12)
        for row in table.rows { #expect(throws: Never.self) { try ResultRow(record: row) } }
        #expect((try? Manifest.read(path: out + "/manifest.json")) != nil, "the manifest is the last whole one, never half-written")
    }
}
