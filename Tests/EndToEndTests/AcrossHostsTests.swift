#if canImport(Glibc)
import Glibc
#endif
import Bench
import Foundation
import Kernel
import TestSupport
import Testing

/// `muxlab bench` with cells across hosts, for real: test hosts on this machine (network namespaces on a
/// bridge, each with its own sshd and a key made for the test), the server on one, the load on one and then
/// two others, over OpenSSH and `muxlab agent`; then a load host killed mid-cell. Each time: rows kept, and
/// nothing left running on any host, no ssh connection left, the namespaces gone.
@Suite("End to end: cells across hosts over ssh", .serialized)
struct AcrossHostsTests {
    static func workload(_ hosts: TestHosts, duration: String = "1s", matrix: String) -> String {
        """
        title = "across hosts (test)"
        \(hosts.hostsTOML())
        [defaults]
        duration = "\(duration)"
        warmup = "0.3s"
        repeat = 1
        server_cpus = "1"
        client_cpus = "0"

        [[experiment]]
        id = "across"
        claims = []
        [experiment.base]
        model = "reactor"
        io = "epoll-et"
        protocol = "echo"
        connections = 8
        server_host = "a"
        [experiment.matrix]
        \(matrix)

        """
    }

    static func bench(_ name: String, _ text: String, timeout: Double = 120) throws -> (TestSupport.Finished, [[String: String]], String) {
        let out = "/tmp/muxlab-e2e-across-\(getpid())-\(name)"
        try? FileManager.default.removeItem(atPath: out)
        try text.write(toFile: out + ".toml", atomically: true, encoding: .utf8)
        let done = try TestSupport.runToEnd(try TestSupport.muxlab, ["bench", out + ".toml", "--out", out], timeout: timeout)
        let rows = (try? CSVTable.read(path: out + "/results.csv").rows) ?? []
        return (done, rows, out)
    }

    /// The ssh connections a driver left: its control directories (/tmp/muxlab-ssh-<pid>-<host>).
    static func controlDirectories() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []).filter { $0.hasPrefix("muxlab-ssh-") }
    }

    @Test("the server on host a, the load on b and then on b and c: ok rows with the hosts' columns, nothing left anywhere")
    func serverOnOneLoadOnTwo() throws {
        if let reason = TestHosts.unavailableReason() { Issue.record("not run: \(reason); make test runs as root with openssh-server installed"); return }
        let hosts = try TestHosts(["a", "b", "c"], net: 3)
        let before = Self.controlDirectories()
        let (done, rows, out) = try Self.bench("two", Self.workload(hosts, matrix: "load_hosts = [[\"b\"], [\"b\", \"c\"]]"))
        #expect(done.status == .exited(0), "\(done.stderr.suffix(600))")
        try #require(rows.count == 2, "\(done.stderr.suffix(600))")
        #expect(rows.map { $0["status"] } == ["ok", "ok"], "\(rows.map { $0["reason"] ?? "" })")
        #expect(rows.map { $0["hosts"] } == ["server=a load=b", "server=a load=b,c"])
        for row in rows {
            let requests = Int(row["requests"] ?? "") ?? 0
            let served = Int(row["server_requests"] ?? "") ?? 0
            #expect(requests > 1000 && abs(requests - served) * 100 <= requests, "load \(requests), server \(served)")
            #expect(Int(row["latency_samples"] ?? "") ?? 0 > 0 && !(row["latency_p99_us"] ?? "").isEmpty)
            #expect(Double(row["cpu_us_per_req"] ?? "") ?? 0 > 0, "server CPU from the cgroup on host a")
            // The server's host probes the server: a 64 B echo makes one data read and one write per request.
            #expect(row["probe_status"]?.hasPrefix("ok") == true, "\(row["probe_status"] ?? "")")
            let reads = Double(row["reads_per_req"] ?? "") ?? 0, writes = Double(row["writes_per_req"] ?? "") ?? 0
            #expect(abs(writes - 1) < 0.05 && reads >= 0.95 && reads < 2.1, "reads \(reads), writes \(writes) per request")
            #expect(Double(row["probe_overhead"] ?? "") ?? 0 > 0.5, "evidence over timing throughput: \(row["probe_overhead"] ?? "")")
        }
        func named(_ column: String, _ row: [String: String]) -> [String] {
            (row[column] ?? "").split(separator: " ").compactMap { $0.split(separator: "=").first.map(String.init) }
        }
        #expect(named("client_cpu_us_per_req_hosts", rows[1]) == ["b", "c"])
        #expect(named("host_window_s", rows[1]) == ["a", "b", "c"])
        #expect(named("clock_offset_us", rows[1]) == ["a", "b", "c"])
        // One kernel under every host: each clock offset is within a millisecond.
        for entry in (rows[1]["clock_offset_us"] ?? "").split(separator: " ") {
            #expect(abs(Double(entry.split(separator: "=").last ?? "") ?? 1e9) < 1000, "\(entry)")
        }
        #expect(FileManager.default.fileExists(atPath: out + "/histograms/cell-2.hgrm"))
        for name in hosts.names { #expect(hosts.processes(in: name).isEmpty, "host \(name) still runs \(hosts.processes(in: name))") }
        #expect(Self.controlDirectories() == before, "an ssh connection the driver held is left")
        #expect(hosts.remove().isEmpty)
    }

    @Test("a load host's agent killed mid-cell: that cell fails naming the host, the next cell runs, nothing left")
    func loadHostKilled() throws {
        if let reason = TestHosts.unavailableReason() { Issue.record("not run: \(reason); make test runs as root with openssh-server installed"); return }
        let hosts = try TestHosts(["a", "b"], net: 4)
        let text = Self.workload(hosts, duration: "4s", matrix: "load_hosts = [[\"b\"]]\nmessage_size = [64, 32]")
        let out = "/tmp/muxlab-e2e-across-\(getpid())-killed"
        try? FileManager.default.removeItem(atPath: out)
        try text.write(toFile: out + ".toml", atomically: true, encoding: .utf8)
        let driver = try ChildProcess(executable: try TestSupport.muxlab, arguments: ["bench", out + ".toml", "--out", out, "--probes", "off"],
                                      stderrPath: out + ".err")
        // Once host b runs a load (its agent and the load), kill b's agent: the session breaks mid-cell.
        var killed: Int32?
        _ = TestSupport.eventually(20) {
            let pids = hosts.processes(in: "b")
            func runs(_ word: String) -> Int32? {
                pids.first { (readSmallFile("/proc/\($0)/cmdline", limit: 4096) ?? "").split(separator: "\0").contains { $0 == word } }
            }
            guard runs("load") != nil, let agent = runs("agent") else { return false }
            kill(agent, SIGKILL)
            killed = agent
            return true
        }
        #expect(killed != nil, "host b never ran the load")
        let status = driver.wait(timeout: 120) ?? driver.stop()
        let rows = (try? CSVTable.read(path: out + "/results.csv").rows) ?? []
        #expect(status == .exited(1), "one failed cell: exit 1")
        #expect(rows.map { $0["status"] } == ["failed", "ok"], "\(rows.map { $0["reason"] ?? "" })")
        #expect(rows.first?["reason"]?.hasPrefix("host b (root@\(hosts.addresses["b"]!)): ") == true, "\(rows.first?["reason"] ?? "")")
        for name in hosts.names { #expect(TestSupport.eventually(5) { hosts.processes(in: name).isEmpty }, "host \(name) still runs \(hosts.processes(in: name))") }
        #expect(hosts.remove().isEmpty)
    }
}
