#if canImport(Glibc)
import Glibc
#endif
import Bench
import Foundation
import Kernel
import TestSupport
import Testing

/// The `make bench` pipeline on a tiny E-claims matrix, for real: bench measures broken
/// variants without failing, the watchdog and the timeline record them, report and plot read the CSV.
@Suite("End to end: broken variants measured, then report and plot", .serialized)
struct ClaimsPipelineTests {
    static let workload = """
    [defaults]
    duration = "1s"
    warmup = "0.3s"
    server_cpus = "1"
    client_cpus = "0"

    [[experiment]]
    id = "e1-epollout"
    claims = ["E1"]
    [experiment.base]
    connections = 20
    active = 0
    [experiment.matrix]
    io = ["epoll-lt", "epoll-et"]
    server_args = [["--epollout", "always"], ["--epollout", "on-demand"]]

    [[experiment]]
    id = "e3-blocking"
    claims = ["E3"]
    [experiment.base]
    io = "epoll-et"
    connections = 10
    active = 10
    allow_errors = true
    request_timeout = "0.5s"
    [experiment.matrix]
    server_args = [[], ["--blocking"]]

    [[experiment]]
    id = "e4-emfile"
    claims = ["E4"]
    [experiment.base]
    io = "epoll-lt"
    connections = 40
    active = 40
    allow_errors = true
    request_timeout = "0.5s"
    timeline = "0.2s"
    server_args = ["--fd-limit", "24", "--emfile", "none"]
    """

    func run(_ executable: String, _ arguments: [String], log: String, timeout: Double) throws -> (Kernel.ExitStatus?, ChildProcess) {
        let child = try ChildProcess(executable: executable, arguments: arguments, stderrPath: log)
        return (child.wait(timeout: timeout), child)
    }

    @Test("busy loop, stall and EMFILE timeline land in the CSV; report and plot run on it")
    func pipeline() throws {
        let out = "/tmp/muxlab-e2e-claims-\(getpid())"
        try? FileManager.default.removeItem(atPath: out)
        let path = out + ".toml"
        try ClaimsPipelineTests.workload.write(toFile: path, atomically: true, encoding: .utf8)
        let muxlab = try TestSupport.muxlab

        let (status, bench) = try run(muxlab, ["bench", path, "--out", out], log: out + ".err", timeout: 120)
        #expect(status == .exited(0), "bench: \(String(describing: status)): \(bench.stderrTail(10))")
        let rows = try CSVTable.read(path: out + "/results.csv").rows
        #expect(rows.count == 7)
        func row(_ experiment: String, _ args: String, io: String? = nil) -> [String: String]? {
            rows.first { $0["experiment"] == experiment && $0["server_args"] == args && (io == nil || $0["io"] == io) }
        }
        for r in rows { #expect(r["status"] == "ok", "\(r["experiment"] ?? "") \(r["label"] ?? ""): \(r["reason"] ?? "")") }

        // E1: no traffic, yet LT with EPOLLOUT from accept on returns to epoll_wait thousands of times a second.
        let always = row("e1-epollout", "--epollout always", io: "epoll-lt")
        let onDemand = row("e1-epollout", "--epollout on-demand", io: "epoll-lt")
        #expect(always?["requests"] == "0")
        #expect(always?["cpu_us_per_req"] == "", "no requests: per-request figures stay empty")
        #expect((Double(always?["mux_calls_per_s"] ?? "") ?? 0) > 1000)
        #expect((Double(onDemand?["mux_calls_per_s"] ?? "") ?? .infinity) < 50)

        // E3: the watchdog sees the blocking variant's loop sit in read; the correct one never stalls.
        let blocking = row("e3-blocking", "--blocking")
        #expect((Double(blocking?["stall_s"] ?? "") ?? 0) >= 0.5)
        #expect(blocking?["stall_call"]?.isEmpty == false || (Double(blocking?["stall_s"] ?? "") ?? 0) < 1)
        #expect((Double(row("e3-blocking", "")?["stall_s"] ?? "") ?? 1) < 0.5)

        // E4: accept fails with EMFILE in a loop; clients past the limit are never served; the timeline has the curve.
        let emfile = row("e4-emfile", "--fd-limit 24 --emfile none")
        #expect((Double(emfile?["accepts_per_s"] ?? "") ?? 0) > 1000)
        #expect((Int(emfile?["connections_served"] ?? "") ?? 99) < 40)
        let timeline = try CSVTable.read(path: out + "/timeline.csv")
        #expect(timeline.missingColumns(TimelineCSV.columns).isEmpty)
        #expect(timeline.rows.count >= 5)
        #expect(Set(timeline.column("phase")).isSuperset(of: ["warmup", "measure"]))

        // The report and the plots come from the CSV alone.
        let (reportStatus, report) = try run(muxlab, ["report", out], log: out + ".report.err", timeout: 60)
        #expect(reportStatus == .exited(0), "report: \(report.stderrTail(5))")
        let findings = try CSVTable.read(path: out + "/findings.csv").rows
        let e1 = findings.first { $0["claim"] == "E1" }
        #expect(e1?["verdict"] == "supported", "E1: \(e1?["evidence"] ?? "missing")")
        #expect(findings.first { $0["claim"] == "M4" }?["verdict"] == "not run")
        let (plotStatus, plot) = try run(muxlab, ["plot", out], log: out + ".plot.err", timeout: 120)
        #expect(plotStatus == .exited(0), "plot: \(plot.stderrTail(5))")
        for png in ["lt-vs-et.png", "emfile.png"] {
            #expect(FileManager.default.fileExists(atPath: "\(out)/plots/\(png)"), "\(png) missing")
        }
    }
}
