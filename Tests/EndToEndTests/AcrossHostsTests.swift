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

    @Test("the server on host a, the load here, then on b, then on b and c: ok rows with the hosts' columns, nothing left anywhere")
    func serverOnOneLoadOnTwo() throws {
        if let reason = TestHosts.unavailableReason() { Issue.record("not run: \(reason); make test runs as root with openssh-server installed"); return }
        let hosts = try TestHosts(["a", "b", "c"], net: 3)
        let before = Self.controlDirectories()
        let (done, rows, out) = try Self.bench("two", Self.workload(hosts, matrix: "load_hosts = [[], [\"b\"], [\"b\", \"c\"]]"))
        #expect(done.status == .exited(0), "\(done.stderr.suffix(600))")
        try #require(rows.count == 3, "\(done.stderr.suffix(600))")
        #expect(rows.map { $0["status"] } == ["ok", "ok", "ok"], "\(rows.map { $0["reason"] ?? "" })")
        #expect(rows.map { $0["hosts"] } == ["server=a load=local", "server=a load=b", "server=a load=b,c"])
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
        #expect(named("client_cpu_us_per_req_hosts", rows[0]) == ["local"] && named("host_window_s", rows[0]) == ["a", "local"])
        #expect(named("client_cpu_us_per_req_hosts", rows[2]) == ["b", "c"])
        #expect(named("host_window_s", rows[2]) == ["a", "b", "c"])
        #expect(named("clock_offset_us", rows[2]) == ["a", "b", "c"])
        // One kernel under every host: the true offset is 0, so each estimate is within half its round trip.
        func values(_ column: String) -> [Double] {
            (rows[2][column] ?? "").split(separator: " ").map { Double($0.split(separator: "=").last ?? "") ?? .nan }
        }
        let (offsets, trips) = (values("clock_offset_us"), values("clock_round_trip_us"))
        #expect(offsets.count == 3 && trips.count == 3)
        for (offset, trip) in zip(offsets, trips) { #expect(abs(offset) <= trip / 2 + 0.002, "offset \(offset) µs, round trip \(trip) µs") }
        #expect(FileManager.default.fileExists(atPath: out + "/histograms/cell-3.hgrm"))
        for name in hosts.names { #expect(hosts.processes(in: name).isEmpty, "host \(name) still runs \(hosts.processes(in: name))") }
        #expect(Self.controlDirectories() == before, "an ssh connection the driver held is left")
        Self.expectNothingLeft(hosts)
    }

    /// The pid on test host `name` whose command line has the word `word` ("agent", "serve", "load").
    static func running(_ word: String, on name: String, _ hosts: TestHosts) -> Int32? {
        hosts.processes(in: name).first { (readSmallFile("/proc/\($0)/cmdline", limit: 4096) ?? "").split(separator: "\0").contains { $0 == word } }
    }

    /// Once host b runs the cell's load, SIGKILL the process on host `name` whose command line has `word`;
    /// its pid, or nil when that never happened within 20 s.
    static func kill(_ word: String, on name: String, once hosts: TestHosts) -> Int32? {
        var killed: Int32?
        _ = TestSupport.eventually(20) {
            guard running("load", on: "b", hosts) != nil, let pid = running(word, on: name, hosts) else { return false }
            killed = Glibc.kill(pid, SIGKILL) == 0 ? pid : nil
            return true
        }
        return killed
    }

    /// Nothing runs on any test host (sshd aside), then the hosts are removed and the system lists none of them.
    static func expectNothingLeft(_ hosts: TestHosts, sourceLocation: SourceLocation = #_sourceLocation) {
        for name in hosts.names {
            #expect(TestSupport.eventually(5) { hosts.processes(in: name).isEmpty }, "host \(name) still runs \(hosts.processes(in: name))",
                    sourceLocation: sourceLocation)
        }
        #expect(hosts.remove().isEmpty, sourceLocation: sourceLocation)
        #expect(hosts.leftovers.isEmpty, "namespaces or bridge left: \(hosts.leftovers)", sourceLocation: sourceLocation)
    }

    /// Starts `muxlab bench` on `text` (probes off) in the background: the driver and its output directory.
    static func start(_ name: String, _ text: String) throws -> (ChildProcess, String) {
        let out = "/tmp/muxlab-e2e-across-\(getpid())-\(name)"
        try? FileManager.default.removeItem(atPath: out)
        try text.write(toFile: out + ".toml", atomically: true, encoding: .utf8)
        let driver = try ChildProcess(executable: try TestSupport.muxlab, arguments: ["bench", out + ".toml", "--out", out, "--probes", "off"],
                                      stderrPath: out + ".err")
        return (driver, out)
    }

    @Test("the server killed on its host mid-cell: the cell fails naming the host and how the server ended, nothing left")
    func serverKilled() throws {
        if let reason = TestHosts.unavailableReason() { Issue.record("not run: \(reason); make test runs as root with openssh-server installed"); return }
        let hosts = try TestHosts(["a", "b"], net: 5)
        let (driver, out) = try Self.start("server-killed", Self.workload(hosts, duration: "4s", matrix: "load_hosts = [[\"b\"]]"))
        #expect(Self.kill("serve", on: "a", once: hosts) != nil, "host a never ran the server")
        let status = driver.wait(timeout: 120) ?? driver.stop()
        let rows = (try? CSVTable.read(path: out + "/results.csv").rows) ?? []
        #expect(status == .exited(1) && rows.map { $0["status"] } == ["failed"], "\(rows.map { $0["reason"] ?? "" })")
        let reason = rows.first?["reason"] ?? ""
        #expect(reason.hasPrefix("host a (root@\(hosts.addresses["a"]!)): muxlab serve ended (killed by signal 9"), "\(reason)")
        Self.expectNothingLeft(hosts)
    }

    @Test("a server host without root: timing measured there, the evidence empty with the reason")
    func withoutRoot() throws {
        if let reason = TestHosts.unavailableReason() { Issue.record("not run: \(reason); make test runs as root with openssh-server installed"); return }
        guard access("/usr/bin/setpriv", X_OK) == 0 else { Issue.record("not run: needs /usr/bin/setpriv (util-linux) to run host a's agent as nobody"); return }
        // Host a's muxlab: this build installed under a prefix anyone may read, run as nobody (uid 65534).
        let prefix = "/tmp/muxlab-across-nonroot-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: prefix) }
        let installed = try TestSupport.runToEnd("/bin/sh", [TestSupport.packageRoot + "/mk/install.sh", prefix], timeout: 120)
        try #require(installed.status == .exited(0), "mk/install.sh: \(installed.stderr)")
        let wrapper = prefix + "/bin/muxlab-as-nobody"
        try "#!/bin/sh\nexec /usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups \(prefix)/bin/muxlab \"$@\"\n"
            .write(toFile: wrapper, atomically: true, encoding: .utf8)
        chmod(wrapper, 0o755)
        let hosts = try TestHosts(["a", "b"], net: 6)
        let text = Self.workload(hosts, matrix: "load_hosts = [[\"b\"]]")
            .replacingOccurrences(of: "[hosts.b]", with: "muxlab = \"\(wrapper)\"\n\n[hosts.b]")
        let (done, rows, _) = try Self.bench("nonroot", text)
        #expect(done.status == .exited(0), "\(done.stderr.suffix(600))")
        let row = try #require(rows.first, "\(done.stderr.suffix(600))")
        #expect(row["status"] == "ok" && Int(row["requests"] ?? "") ?? 0 > 1000, "\(row["reason"] ?? "")")
        #expect(row["probe_status"]?.hasPrefix("failed on host a: the probes cannot attach") == true, "\(row["probe_status"] ?? "")")
        #expect((row["syscalls_per_req"] ?? "").isEmpty && (row["probe_overhead"] ?? "").isEmpty)
        #expect(!(row["cpu_us_per_req"] ?? "").isEmpty && !(row["latency_p99_us"] ?? "").isEmpty)
        Self.expectNothingLeft(hosts)
    }

    @Test("a load host's agent killed mid-cell: that cell fails naming the host, the next cell runs, nothing left")
    func loadHostKilled() throws {
        if let reason = TestHosts.unavailableReason() { Issue.record("not run: \(reason); make test runs as root with openssh-server installed"); return }
        let hosts = try TestHosts(["a", "b"], net: 4)
        let (driver, out) = try Self.start("killed", Self.workload(hosts, duration: "4s", matrix: "load_hosts = [[\"b\"]]\nmessage_size = [64, 32]"))
        // Once host b runs a load (its agent and the load), kill b's agent: the session breaks mid-cell.
        #expect(Self.kill("agent", on: "b", once: hosts) != nil, "host b never ran the load")
        let status = driver.wait(timeout: 120) ?? driver.stop()
        let rows = (try? CSVTable.read(path: out + "/results.csv").rows) ?? []
        #expect(status == .exited(1), "one failed cell: exit 1")
        #expect(rows.map { $0["status"] } == ["failed", "ok"], "\(rows.map { $0["reason"] ?? "" })")
        #expect(rows.first?["reason"]?.hasPrefix("host b (root@\(hosts.addresses["b"]!)): ") == true, "\(rows.first?["reason"] ?? "")")
        Self.expectNothingLeft(hosts)
    }
}
