#if canImport(Glibc)
import Glibc
#endif
import Bench
import Foundation
import Kernel
import TestSupport
import Testing

/// Issue 7's peers under the same harness, for real: nginx started from an argument list and a
/// config template, wrk as the load generator, both measured and probed like muxlab's own.
@Suite("End to end: nginx and wrk as peers", .serialized)
struct PeersTests {
    static func workload(template: String) -> String {
        """
        [defaults]
        duration = "1s"
        warmup = "0.5s"
        server_cpus = "1"
        client_cpus = "0"
        protocol = "http"
        connections = 10

        [[experiment]]
        id = "muxlab-under-wrk"
        [experiment.base]
        load = "wrk"

        [[experiment]]
        id = "nginx"
        [experiment.base]
        model = "nginx"
        server_command = ["taskset", "-c", "{cpus}", "nginx", "-p", "{workdir}", "-c", "{workdir}/nginx.conf"]
        server_config = "\(template)"
        [experiment.matrix]
        load = ["muxlab", "wrk"]
        """
    }

    @Test("nginx from a template and wrk's own report fill the same columns as muxlab's server and load")
    func nginxAndWrk() throws {
        for tool in ["nginx", "wrk", "taskset"] {
            let found = ["/usr/sbin/", "/usr/bin/", "/sbin/", "/bin/"].contains { access($0 + tool, X_OK) == 0 }
            guard found else { throw ValueError("\(tool) is not installed: `make test` installs nginx and wrk (apt-get) before the tests") }
        }
        let out = "/tmp/muxlab-e2e-peers-\(getpid())"
        try? FileManager.default.removeItem(atPath: out)
        let path = out + ".toml"
        try PeersTests.workload(template: TestSupport.packageRoot + "/workloads/peers/nginx.conf")
            .write(toFile: path, atomically: true, encoding: .utf8)
        let child = try ChildProcess(executable: try TestSupport.muxlab, arguments: ["bench", path, "--out", out],
                                     stderrPath: out + ".err")
        let status = child.wait(timeout: 120)
        #expect(status == .exited(0), "bench: \(String(describing: status)): \(child.stderrTail(10))")
        let rows = try CSVTable.read(path: out + "/results.csv").rows
        #expect(rows.count == 3)
        for r in rows {
            let what = "\(r["experiment"] ?? "") load=\(r["load"] ?? "")"
            #expect(r["status"] == "ok", "\(what): \(r["reason"] ?? "")")
            #expect((Int(r["requests"] ?? "") ?? 0) > 100, "\(what): \(r["requests"] ?? "no") requests")
            #expect(r["errors"] == "0", "\(what): errors \(r["errors"] ?? "")")
            #expect(Double(r["latency_p99_us"] ?? "") != nil, "\(what): no p99")
            // The whole distribution is kept for wrk's cells as for muxlab load's.
            let counts = try LatencyHistogramFiles.read(counts: out + "/histograms/cell-\(r["cell"] ?? "?").counts")
            // Kept over the load's own window: muxlab load's histogram holds exactly the requests it timed
            // (`latency_samples`; `requests` is over the driver's window and may differ by a few); wrk's
            // records every answer of its run, so holds at least the requests its report counts.
            let timed = UInt64(r["latency_samples"] ?? "") ?? .max
            if r["load"] == "muxlab" {
                #expect(counts.totalCount == timed, "\(what): \(counts.totalCount) latencies kept, \(r["latency_samples"] ?? "no") timed")
            } else {
                #expect(counts.totalCount >= timed, "\(what): \(counts.totalCount) latencies kept, \(r["latency_samples"] ?? "no") in wrk's report")
            }
            #expect(Double(r["cpu_us_per_req"] ?? "") != nil, "\(what): no CPU per request")
            // The load's own CPU: measured for muxlab load and wrk alike, and a load that ran has used some.
            let clientCPU = Double(r["client_cpu_util"] ?? "") ?? 0
            #expect(clientCPU > 0.01 && clientCPU < 1.5, "\(what): client_cpu_util \(r["client_cpu_util"] ?? "empty") on one client CPU")
            #expect(Double(r["client_cpu_us_per_req"] ?? "") != nil, "\(what): no client CPU per request")
            // PSS is read for any server tree; the slab's growth only over 1,000 connections or more (here 50: empty).
            #expect((Int(r["server_pss_kb"] ?? "") ?? 0) > 0, "\(what): server_pss_kb \(r["server_pss_kb"] ?? "empty")")
            #expect(Double(r["server_pss_kb_per_conn"] ?? "") != nil, "\(what): no PSS per connection")
            #expect(r["kernel_slab_kb_per_conn"] == "", "\(what): slab per connection over 50 connections: \(r["kernel_slab_kb_per_conn"] ?? "")")
            if geteuid() == 0 {
                #expect(Double(r["syscalls_per_req"] ?? "") != nil, "\(what): no syscalls per request (\(r["probe_status"] ?? ""))")
            }
        }
        let nginx = rows.filter { $0["model"] == "nginx" }
        #expect(nginx.count == 2 && nginx.allSatisfy { $0["io"] == "external" && $0["verify"] == "ok" })
        #expect(Set(rows.map { $0["load"] ?? "" }) == ["muxlab", "wrk"])
        // The harness stopped nginx: no process from this run's work directory is left.
        let pids = ProcessStats.allPIDs().filter { pid in
            (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8))?.contains(out) == true
        }
        #expect(pids.isEmpty, "left running: \(pids)")
    }
}
