import Foundation
import Kernel
import Testing
@testable import Bench

/// The workload keys for broken variants, timelines and repeats; the preflight;
/// the stability table built from timeline.csv.
@Suite("workload keys, preflight and stability")
struct RunKeysTests {
    func load(_ text: String) throws -> Workload { try WorkloadText.load(text) }
    func error(_ text: String) throws -> String { try WorkloadText.error(text) }

    @Test("repeat runs the matrix round by round and numbers the passes")
    func repeatRounds() throws {
        let cells = try load("""
            [[experiment]]
            id = "r"
            [experiment.base]
            repeat = 3
            [experiment.matrix]
            io = ["poll", "epoll-et"]
            """).cells()
        #expect(cells.map(\.io) == ["poll", "epoll-et", "poll", "epoll-et", "poll", "epoll-et"])
        #expect(cells.map(\.repetition) == [1, 1, 2, 2, 3, 3])
        #expect(cells.map(\.index) == Array(1...6))
        #expect(ResultRow(cell: cells[3]).repetition == 2)
    }

    @Test("repeat is not a matrix axis; allow_errors is a boolean; request_timeout and timeline are durations")
    func keyErrors() throws {
        #expect(try error("[[experiment]]\nid = \"r\"\n[experiment.matrix]\nrepeat = [1, 2]").contains("repeat is not a matrix axis"))
        #expect(try error("[[experiment]]\nid = \"r\"\n[experiment.base]\nallow_errors = \"yes\"").contains("allow_errors = \"yes\": must be true or false"))
        #expect(try error("[[experiment]]\nid = \"r\"\n[experiment.base]\nrequest_timeout = \"0s\"").contains("request_timeout"))
        #expect(try error("[[experiment]]\nid = \"r\"\n[experiment.base]\ntimeline = -1").contains("timeline"))
        let cell = try load("""
            [[experiment]]
            id = "k"
            [experiment.base]
            allow_errors = true
            request_timeout = "250ms"
            timeline = "10s"
            """).cells()[0]
        #expect(cell.allowErrors && cell.requestTimeout == 0.25 && cell.timeline == 10)
    }

    @Test("preflight names a missing CPU or NUMA node with what the machine has, once per experiment and value")
    func preflight() {
        var cell = Cell(experiment: "x", serverCPUs: CPUList([1]), clientCPUs: CPUList([0]))
        #expect(Preflight.problems([cell], online: CPUList([0, 1]), numaNodes: 1).isEmpty)
        cell.serverCPUs = CPUList([5])
        cell.numaNode = 2
        let problems = Preflight.problems([cell, cell], online: CPUList([0, 1]), numaNodes: 1)
        #expect(problems == [
            "experiment \"x\": server_cpus = \"5\": CPU 5 does not exist; this machine has CPUs 0-1",
            "experiment \"x\": numa_node = 2 does not exist; this machine has NUMA node 0",
        ])
    }

    @Test("stability: flat within 5 % over the measured window only; drift and missing samples say no")
    func stability() {
        func sample(_ cell: Int, _ t: Double, _ phase: String, fds: Int, rss: Int) -> TimelineSample {
            // Through the CSV record, as `muxlab report` reads timeline.csv.
            try! TimelineSample(record: ["cell": String(cell), "label": "c\(cell)", "t_s": String(t), "phase": phase,
                                         "server_fds": String(fds), "server_rss_kb": String(rss)])
        }
        let rows = [
            sample(1, 0, "warmup", fds: 5, rss: 1000),  // before the window: ignored
            sample(1, 10, "measure", fds: 10_005, rss: 40_000),
            sample(1, 20, "measure", fds: 10_005, rss: 40_800),
            sample(1, 30, "measure", fds: 10_004, rss: 41_000),
            sample(2, 10, "measure", fds: 100, rss: 40_000),
            sample(2, 20, "measure", fds: 150, rss: 40_000),
        ]
        let report = StabilityReport(samples: rows)
        #expect(report.series.count == 2)
        #expect(report.series[0].flat)
        #expect(report.series[0].fds?.first == 10_005 && report.series[0].rssKB?.last == 41_000)
        #expect(report.series[0].seconds == 20)
        #expect(!report.series[1].flat)
        #expect(report.markdown.contains("| 2 | c2 | 2 | 10 | 100 → 150 (50 %)"))
        #expect(!StabilityReport(samples: [sample(3, 1, "measure", fds: 0, rss: 10)]).series[0].flat, "an unusable sample is not flat")
    }
}
