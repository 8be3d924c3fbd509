#if canImport(Glibc)
import Glibc
#endif
import Bench
import Foundation
import Kernel
import TestSupport
import Testing

@Suite("End to end: muxlab bench on a tiny matrix, for real", .serialized)
struct EndToEndTests {
    @Test("workloads/ci.toml: one ok row per cell, requests > 0, no errors, a manifest, no child left")
    func ciMatrix() throws {
        let out = "/tmp/muxlab-e2e-\(getpid())"
        try? FileManager.default.removeItem(atPath: out)
        let workload = TestSupport.packageRoot + "/workloads/ci.toml"
        let bench = try ChildProcess(executable: try TestSupport.muxlab, arguments: ["bench", workload, "--out", out],
                                     stderrPath: out + ".err")
        let status = bench.wait(timeout: 120)
        #expect(status == .exited(0), "bench ended with \(String(describing: status)): \(bench.stderrTail(10))")

        let cells = try Workload.load(path: workload).cells()
        let table = try CSVTable.read(path: out + "/results.csv")
        #expect(table.missingColumns(ResultRow.columns).isEmpty)
        #expect(table.rows.count == cells.count)
        for row in table.rows {
            #expect(row["status"] == "ok", "\(row["label"] ?? ""): \(row["reason"] ?? "")")
            #expect((Int(row["requests"] ?? "") ?? 0) > 0)
            #expect(row["errors"] == "0")
            #expect(row["server_cpus"] == "1")
            #expect(Double(row["cpu_us_per_req"] ?? "") != nil)
        }
        #expect(Set(table.column("io")) == ["select", "poll", "epoll-lt", "epoll-et"])
        let manifest = try Manifest.read(path: out + "/manifest.json")
        #expect(manifest.status == .complete)
        #expect(manifest.cellsDone == cells.count)
        #expect(FileManager.default.fileExists(atPath: out + "/syscalls.csv"))

        // No server or load generator outlives the run.
        let leftovers = ProcessStats.processTree(bench.pid)
        #expect(leftovers.count <= 1)
    }

    @Test("a bad workload file is refused before anything runs, naming the key and what is allowed")
    func badWorkload() throws {
        let path = "/tmp/muxlab-bad-\(getpid()).toml"
        try """
        [[experiment]]
        id = "bad"
        [experiment.base]
        io = "kqueue"
        """.write(toFile: path, atomically: true, encoding: .utf8)
        let bench = try ChildProcess(executable: try TestSupport.muxlab, arguments: ["bench", path, "--out", path + ".out"],
                                     stderrPath: path + ".err")
        #expect(bench.wait(timeout: 30) == .exited(2))
        let message = bench.stderrTail(3).joined(separator: "\n")
        #expect(message.contains("io"))
        #expect(message.contains("kqueue"))
        #expect(message.contains("epoll-et"))
        #expect(!FileManager.default.fileExists(atPath: path + ".out/results.csv"))
    }

    @Test("a select cell past FD_SETSIZE is recorded as not applicable with its reason, not run")
    func selectPastFDSetSize() throws {
        let out = "/tmp/muxlab-e2e-na-\(getpid())"
        try? FileManager.default.removeItem(atPath: out)
        let path = out + ".toml"
        try """
        [[experiment]]
        id = "m1"
        claims = ["M1"]
        [experiment.base]
        io = "select"
        connections = 2000
        active = 1
        duration = 0.2
        warmup = 0
        """.write(toFile: path, atomically: true, encoding: .utf8)
        let bench = try ChildProcess(executable: try TestSupport.muxlab, arguments: ["bench", path, "--out", out],
                                     stderrPath: out + ".err")
        #expect(bench.wait(timeout: 30) == .exited(0))
        let rows = try CSVTable.read(path: out + "/results.csv").rows
        #expect(rows.count == 1)
        #expect(rows.first?["status"] == "not-applicable")
        #expect(rows.first?["reason"]?.contains("FD_SETSIZE = 1024") == true)
        #expect(rows.first?["requests"] == "")
    }
}
