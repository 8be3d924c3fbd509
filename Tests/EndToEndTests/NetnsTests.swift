#if canImport(Glibc)
import Glibc
#endif
import Bench
import Foundation
import Kernel
import TestSupport
import Testing

/// `topology = "netns"` for real: the driver makes two network namespaces joined by a veth
/// pair per cell, runs server and load across them, and removes them on every path; serve
/// and load accept a non-loopback address only inside a namespace muxlab made.
/// Needs root and iproute2 (CI has both); elsewhere each test records why it did not run.
@Suite("End to end: topology = netns", .serialized)
struct NetnsTests {
    /// Why namespaces cannot be made here, or nil once one was made and removed.
    static func unavailable() -> String? {
        if let reason = CellNetwork.unavailableReason() { return "topology = \"netns\" \(reason)" }
        let probe = "muxlab-\(getpid())-probe"
        let made = ip(["netns", "add", probe])
        guard made.status == .exited(0) else { return "`ip netns add \(probe)` failed here: \(made.stderr)" }
        _ = ip(["netns", "del", probe])
        return nil
    }

    /// Records why a test could not run (it must not pass silently); true when it can.
    static func canRun() -> Bool {
        guard let reason = unavailable() else { return true }
        Issue.record("not run: \(reason); make test runs as root with iproute2 installed")
        return false
    }

    /// Runs `ip arguments` to its end: its exit status, stdout lines and stderr.
    @discardableResult
    static func ip(_ arguments: [String]) -> (status: Kernel.ExitStatus?, stdout: [String], stderr: String) {
        guard let path = executablesOnPath(named: "ip", extraDirectories: ["/usr/sbin", "/sbin"]).first,
              let child = try? ChildProcess(executable: path, arguments: arguments, stderrPath: scratch("ip.err")) else {
            return (nil, [], "ip is not installed")
        }
        let lines = child.readRemaining(timeout: 10)
        let status = child.wait(timeout: 10)
        return (status, lines, child.stderrTail(5).joined(separator: " | "))
    }

    static func scratch(_ name: String) -> String { "/tmp/muxlab-e2e-netns-\(getpid())-\(name)" }

    /// The muxlab-created namespaces of driver `pid` that `ip netns list` still shows.
    static func namespacesListed(driver pid: Int32) -> [String] {
        ip(["netns", "list"]).stdout.compactMap { $0.split(separator: " ").first.map(String.init) }
            .filter { $0.hasPrefix("muxlab-\(pid)-") }
    }

    /// Runs `muxlab bench` on `workload`; returns the child (ended) and the rows.
    static func bench(_ name: String, _ workload: String, timeout: Double = 120) throws -> (ChildProcess, [[String: String]]) {
        let out = scratch(name)
        try? FileManager.default.removeItem(atPath: out)
        try workload.write(toFile: out + ".toml", atomically: true, encoding: .utf8)
        let child = try ChildProcess(executable: try TestSupport.muxlab, arguments: ["bench", out + ".toml", "--out", out],
                                     stderrPath: out + ".err")
        if child.wait(timeout: timeout) == nil { child.stop() }
        let rows = (try? CSVTable.read(path: out + "/results.csv").rows) ?? []
        return (child, rows)
    }

    static let defaults = """
        [defaults]
        server_cpus = "1"
        client_cpus = "0"
        connections = 10
        topology = "netns"

        """

    @Test("epoll-ET reactor, echo and http across a veth pair: ok rows with probes, no namespace left, a dead driver's swept")
    func acrossVeth() throws {
        guard NetnsTests.canRun() else { return }
        // A namespace of a driver that cannot be running (past pid_max): the run must sweep it.
        let pidMax = Int(readSmallFile("/proc/sys/kernel/pid_max", limit: 64)?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 4_194_304
        let stale = "muxlab-\(pidMax + 1)-1-s"
        let planted = NetnsTests.ip(["netns", "add", stale])
        #expect(planted.status == .exited(0), "ip netns add \(stale): \(planted.stderr)")
        defer { if NetworkNamespace.muxlabNamespaces().contains(stale) { NetnsTests.ip(["netns", "del", stale]) } }

        let (bench, rows) = try NetnsTests.bench("ok", NetnsTests.defaults + """
            duration = "2s"
            warmup = "0.5s"

            [[experiment]]
            id = "netns"
            [experiment.base]
            model = "reactor"
            io = "epoll-et"
            [experiment.matrix]
            protocol = ["echo", "http"]
            """)
        let log = bench.stderrTail(20).joined(separator: "\n")
        #expect(bench.status == .exited(0), "bench: \(String(describing: bench.status)): \(log)")
        #expect(rows.count == 2)
        for row in rows {
            let what = row["label"] ?? ""
            #expect(row["status"] == "ok", "\(what): \(row["reason"] ?? "")")
            #expect(row["topology"] == "netns", "\(what)")
            #expect(row["verify"] == "ok", "\(what): \(row["verify"] ?? "")")
            #expect((Int(row["requests"] ?? "") ?? 0) > 0, "\(what): \(row["requests"] ?? "no") requests")
            #expect(row["errors"] == "0", "\(what): errors \(row["errors"] ?? "")")
            // The sampler attached by the pid the driver holds: ip netns exec exec'd the server in place.
            #expect(row["probe_status"]?.hasPrefix("ok") == true, "\(what): probe_status \(row["probe_status"] ?? "")")
            for column in ["syscalls_per_req", "mux_calls_per_req", "ctx_switches_per_req", "copy_bytes_per_req"] {
                #expect(Double(row[column] ?? "") != nil, "\(what): \(column) is empty")
            }
            // Read from each side's own namespace: both columns measured (numbers, not empty).
            #expect(Int(row["time_wait_server"] ?? "") != nil && Int(row["time_wait_client"] ?? "") != nil, "\(what)")
        }
        #expect(Set(rows.map { $0["protocol"] ?? "" }) == ["echo", "http"])
        #expect(NetnsTests.namespacesListed(driver: bench.pid).isEmpty, "left behind: \(NetnsTests.namespacesListed(driver: bench.pid))")
        #expect(!NetworkNamespace.muxlabNamespaces().contains(stale), "the stale namespace \(stale) is still there")
        #expect(log.contains("removed stale network namespace \(stale)"), "\(log)")
    }

    @Test("a server that cannot start fails its row, and the cell's namespaces are still removed")
    func serverCannotStart() throws {
        guard NetnsTests.canRun() else { return }
        let (bench, rows) = try NetnsTests.bench("fail", NetnsTests.defaults + """
            duration = "0.5s"
            warmup = "0s"

            [[experiment]]
            id = "netns-fail"
            [experiment.base]
            server_args = ["--read-size", "0"]
            """, timeout: 60)
        #expect(bench.status == .exited(1), "bench: \(String(describing: bench.status)): \(bench.stderrTail(10))")
        #expect(rows.count == 1)
        #expect(rows.first?["status"] == "failed")
        #expect(rows.first?["reason"]?.contains("exited before ready") == true, "\(rows.first?["reason"] ?? "")")
        #expect(rows.first?["reason"]?.contains("--read-size") == true, "\(rows.first?["reason"] ?? "")")
        #expect(NetnsTests.namespacesListed(driver: bench.pid).isEmpty, "left behind: \(NetnsTests.namespacesListed(driver: bench.pid))")
    }

    @Test("SIGINT to the driver mid-cell removes the cell's namespaces")
    func interrupted() throws {
        guard NetnsTests.canRun() else { return }
        let out = NetnsTests.scratch("int")
        try? FileManager.default.removeItem(atPath: out)
        try (NetnsTests.defaults + """
            duration = "20s"
            warmup = "0s"

            [[experiment]]
            id = "netns-int"
            """).write(toFile: out + ".toml", atomically: true, encoding: .utf8)
        let bench = try ChildProcess(executable: try TestSupport.muxlab, arguments: ["bench", out + ".toml", "--out", out],
                                     stderrPath: out + ".err")
        defer { bench.stop() }
        let made = TestSupport.eventually(15) { NetnsTests.namespacesListed(driver: bench.pid).count == 2 }
        #expect(made, "the cell's namespaces did not appear: \(bench.stderrTail(5))")
        kill(bench.pid, SIGINT)
        let status = bench.wait(timeout: 30)
        #expect(status == .exited(128 + SIGINT), "bench: \(String(describing: status)): \(bench.stderrTail(5))")
        #expect(NetnsTests.namespacesListed(driver: bench.pid).isEmpty, "left behind: \(NetnsTests.namespacesListed(driver: bench.pid))")
    }

    @Test("serve --listen and load --target take a non-loopback address only inside a namespace muxlab made")
    func loopbackRule() throws {
        let muxlab = try TestSupport.muxlab
        let address = "10.1.2.3"
        // Outside any namespace: refused, naming the address and the way out.
        let load = try ChildProcess(executable: muxlab, arguments: ["load", "--target", "\(address):80", "--connections", "1",
                                                                    "--duration", "0.2s", "--warmup", "0s"],
                                    stderrPath: NetnsTests.scratch("rule-load.err"))
        #expect(load.wait(timeout: 10) == .exited(2))
        let refusal = load.stderrTail(3).joined(separator: " ")
        #expect(refusal.contains("\(address):80") && refusal.contains("network namespace muxlab created"), "\(refusal)")
        let serve = try ChildProcess(executable: muxlab, arguments: ["serve", "--listen", address, "--port", "0"],
                                     stderrPath: NetnsTests.scratch("rule-serve.err"))
        let served = serve.wait(timeout: 10)
        if served == nil { serve.stop() }
        #expect(served != nil && served != .exited(0))
        let serveRefusal = serve.stderrTail(40).joined(separator: " ")
        #expect(serveRefusal.contains(address) && serveRefusal.contains("network namespace muxlab created"), "\(serveRefusal)")

        guard NetnsTests.canRun() else { return }
        // A namespace muxlab made (its name and place) with the address on its lo: accepted.
        let ours = "muxlab-\(getpid())-rule"
        let theirs = "mxtest-\(getpid())-rule"
        defer {
            for namespace in [ours, theirs] where NetnsTests.namespaceExists(namespace) { NetnsTests.ip(["netns", "del", namespace]) }
        }
        for namespace in [ours, theirs] {
            for step in [["netns", "add", namespace], ["-n", namespace, "link", "set", "lo", "up"],
                         ["-n", namespace, "addr", "add", address + "/32", "dev", "lo"]] {
                let done = NetnsTests.ip(step)
                try #require(done.status == .exited(0), "ip \(step.joined(separator: " ")): \(done.stderr)")
            }
        }
        let ip = executablesOnPath(named: "ip", extraDirectories: ["/usr/sbin", "/sbin"]).first!
        let server = try ChildProcess(executable: ip, arguments: ["netns", "exec", ours, muxlab, "serve", "--listen", address, "--port", "0"],
                                      stderrPath: NetnsTests.scratch("rule-inside-serve.err"))
        defer { server.stop() }
        let ready = server.readLine(timeout: 10) ?? ""
        try #require(ready.hasPrefix("ready "), "serve --listen \(address) inside \(ours): \(server.stderrTail(3))")
        #expect(TestSupport.keyValues(ready)["pid"] == String(server.pid), "ip netns exec did not exec in place: \(ready)")
        let port = TestSupport.keyValues(ready)["port"] ?? "0"
        func loadInside(_ namespace: String) throws -> (Kernel.ExitStatus?, [String], String) {
            let child = try ChildProcess(executable: ip, arguments: ["netns", "exec", namespace, muxlab, "load", "--target", "\(address):\(port)",
                                                                     "--connections", "2", "--duration", "0.3s", "--warmup", "0s", "--json"],
                                         stderrPath: NetnsTests.scratch("rule-inside-load-\(namespace).err"))
            let lines = child.readRemaining(timeout: 15)
            let status = child.wait(timeout: 5)
            if status == nil { child.stop() }
            return (status, lines, child.stderrTail(3).joined(separator: " "))
        }
        let (status, lines, stderr) = try loadInside(ours)
        #expect(status == .exited(0), "load inside \(ours): \(String(describing: status)): \(stderr)")
        let summary = lines.first { $0.hasPrefix("{") }.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect((summary?["requests"] as? Int ?? 0) > 0, "\(lines)")
        // Any other namespace is not enough: the rule asks for one of muxlab's own.
        let (otherStatus, _, otherStderr) = try loadInside(theirs)
        #expect(otherStatus == .exited(2), "load inside \(theirs): \(String(describing: otherStatus))")
        #expect(otherStderr.contains("\(address):\(port) is not a loopback address"), "\(otherStderr)")
    }

    static func namespaceExists(_ name: String) -> Bool {
        access(NetworkNamespace.directory + "/" + name, F_OK) == 0
    }
}
