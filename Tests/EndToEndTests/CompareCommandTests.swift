#if canImport(Glibc)
import Glibc
#endif
import Bench
import Foundation
import Kernel
import TestSupport
import Testing

/// `muxlab compare` as CI runs it, on two run directories the test writes, and the histograms a real
/// small cell leaves in its run directory.
@Suite("Compare CLI: exit 0, 2 (a regression, named) or 1 (an error)", .serialized)
struct CompareCommandTests {
    static func muxlab(_ arguments: [String], timeout: Double = 60) throws -> TestSupport.Finished {
        try TestSupport.runToEnd(try TestSupport.muxlab, arguments, timeout: timeout)
    }

    /// A run directory with 3 repeats of two reactor variants (poll and epoll-et at 100 connections);
    /// `epollCPU` scales epoll-et's CPU per request. Cell numbers differ from run to run on purpose.
    static func runDirectory(_ name: String, epollCPU scale: Double = 1, firstCell: Int = 1) throws -> String {
        let dir = "/tmp/muxlab-compare-\(getpid())-\(name)"
        try? FileManager.default.removeItem(atPath: dir)
        let csv = try ResultsCSV(path: dir + "/results.csv")
        var cell = firstCell
        for pass in 1...3 {
            for io in ["poll", "epoll-et"] {
                var row = ResultRow(experiment: "idle-scaling", model: "reactor", io: io, protocol: "echo")
                row.connections = 100
                row.active = 10
                row.messageBytes = 64
                row.serverCPUs = "1"
                row.clientCPUs = "0"
                row.label = "io=\(io) connections=100"
                row.cell = cell
                row.repetition = pass
                let jitter = [0.0, 0.1, -0.1][pass - 1]
                row.cpuUsPerReq = (10 + jitter) * (io == "epoll-et" ? scale : 1)
                row.throughputRPS = 50_000 + jitter * 100
                row.latencyP99Us = 300 + jitter
                try csv.append(row)
                cell += 1
            }
        }
        return dir
    }

    @Test("the same figures under other cell numbers: exit 0, compare.md and compare.csv written into NEW")
    func unchanged() throws {
        let base = try Self.runDirectory("base0"), new = try Self.runDirectory("new0", firstCell: 40)
        let run = try Self.muxlab(["compare", base, new])
        #expect(run.status == .exited(0), "\(run.status): \(run.stderr)")
        #expect(run.stdout.contains { $0.hasPrefix("Summary: 0 regressed, 0 improved, 6 unchanged") }, "\(run.stdout)")
        #expect(FileManager.default.fileExists(atPath: new + "/compare.md"))
        let csv = try CSVTable.read(path: new + "/compare.csv")
        #expect(csv.rows.count == 6 && csv.rows.allSatisfy { $0["verdict"] == "unchanged" })
    }

    @Test("epoll-et 40 % more CPU per request: exit 2, stderr names cpu_us_per_req, the cell's label and its cells in NEW")
    func regressed() throws {
        let base = try Self.runDirectory("base2"), new = try Self.runDirectory("new2", epollCPU: 1.4, firstCell: 11)
        let run = try Self.muxlab(["compare", base, new])
        #expect(run.status == .exited(2), "\(run.status): \(run.stderr)")
        let lines = run.stderr.split(separator: "\n").filter { $0.contains("regressed:") }
        #expect(lines.count == 1, "\(run.stderr)")
        let line = String(lines.first ?? "")
        #expect(line.contains("cpu_us_per_req") && line.contains("idle-scaling io=epoll-et connections=100"), "\(line)")
        #expect(line.contains("cells 12, 14, 16 in \(new)"), "\(line)")
        // A wider threshold lets the same runs pass.
        let lenient = try Self.muxlab(["compare", base, new, "--threshold", "cpu_us_per_req=50"])
        #expect(lenient.status == .exited(0), "\(lenient.status): \(lenient.stderr)")
    }

    @Test("a missing directory, a directory without results.csv and a bad --threshold exit 1 and say what is wrong")
    func errors() throws {
        let base = try Self.runDirectory("base1")
        let missing = try Self.muxlab(["compare", base, "/tmp/muxlab-compare-no-such-dir"])
        #expect(missing.status == .exited(1), "\(missing.status)")
        #expect(missing.stderr.contains("/tmp/muxlab-compare-no-such-dir: no such directory"), "\(missing.stderr)")

        let empty = "/tmp/muxlab-compare-\(getpid())-empty"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let noCSV = try Self.muxlab(["compare", empty, base])
        #expect(noCSV.status == .exited(1) && noCSV.stderr.contains("\(empty)/results.csv: no such file"), "\(noCSV.stderr)")

        let bad = try Self.muxlab(["compare", base, base, "--threshold", "cpu_us_per_req=150"])
        #expect(bad.status == .exited(1), "\(bad.status)")
        #expect(bad.stderr.contains("\"150\" is not a percent greater than 0 and less than 100"), "\(bad.stderr)")
        let unknown = try Self.muxlab(["compare", base, base, "--threshold", "p99=5"])
        #expect(unknown.status == .exited(1) && unknown.stderr.contains("unknown metric \"p99\""), "\(unknown.stderr)")
    }

    @Test("a real small cell keeps its timing window's histogram: cell-1.hgrm, and cell-1.counts holding every request")
    func histogramsOfARealCell() throws {
        let out = "/tmp/muxlab-compare-\(getpid())-hist"
        try? FileManager.default.removeItem(atPath: out)
        let workload = out + ".toml"
        try """
        [[experiment]]
        id = "histograms"
        [experiment.base]
        model = "reactor"
        connections = 4
        active = 4
        duration = "1s"
        warmup = "0.5s"
        server_cpus = "1"
        client_cpus = "0"
        """.write(toFile: workload, atomically: true, encoding: .utf8)
        let bench = try Self.muxlab(["bench", workload, "--out", out, "--probes", "off"], timeout: 90)
        #expect(bench.status == .exited(0), "\(bench.status): \(bench.stderr)")
        let row = try #require(try CSVTable.read(path: out + "/results.csv").rows.first)
        let hgrm = try String(contentsOfFile: out + "/histograms/cell-1.hgrm", encoding: .utf8)
        #expect(hgrm.contains("Percentile") && hgrm.contains("#[Max"), "\(hgrm.prefix(300))")
        let counts = try LatencyHistogramFiles.read(counts: out + "/histograms/cell-1.counts")
        // The histogram is the load's own window's: every request it timed there, none twice.
        #expect(counts.totalCount > 0 && String(counts.totalCount) == row["latency_samples"], "\(counts.totalCount) vs \(row["latency_samples"] ?? "")")
        let p99 = Double(counts.valueAtPercentile(99)) / 1000
        let reported = try #require(Double(row["latency_p99_us"] ?? ""))
        #expect(abs(p99 - reported) <= 0.01 * reported, "the file's p99 \(p99) µs vs the row's \(reported)")

        // compare adds the histograms' p99 beside the rows' (a run against itself: one sample a side, undecided).
        let compare = try Self.muxlab(["compare", out, out])
        #expect(compare.status == .exited(0), "\(compare.status): \(compare.stderr)")
        let line = try #require(try CSVTable.read(path: out + "/compare.csv").rows.first { $0["metric"] == "latency_p99_us" })
        #expect(line["verdict"] == "undecided" && line["base_merged_p99_us"] == formatDecimal(p99), "\(line)")
    }
}
