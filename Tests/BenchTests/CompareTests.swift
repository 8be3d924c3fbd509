import Foundation
import Histogram
import Load
import Testing
@testable import Bench

/// `muxlab compare` on rows built in code: variants matched by settings, verdicts only from intervals.
@Suite("Compare: two runs judged cell by cell by their intervals")
struct CompareTests {
    /// One ok row of the reactor at `connections`, as results.csv holds it.
    static func row(io: String = "epoll-et", connections: Int = 100, cell: Int, repeat pass: Int = 1, cpu: Double? = nil,
                    throughput: Double? = nil, status: CellStatus = .ok, extra: [String: String] = [:]) -> [String: String] {
        var r = ResultRow(experiment: "idle", model: "reactor", io: io, protocol: "echo")
        r.connections = connections
        r.active = 10
        r.messageBytes = 64
        r.serverCPUs = "1"
        r.clientCPUs = "0"
        r.label = "io=\(io) connections=\(connections)"
        r.cell = cell
        r.repetition = pass
        r.status = status
        r.cpuUsPerReq = cpu
        r.throughputRPS = throughput
        var fields = Dictionary(uniqueKeysWithValues: zip(ResultRow.columns, r.fields()))
        fields.merge(extra) { $1 }
        return fields
    }

    /// A table of `rows`; extra columns (sub-window samples) join the header.
    static func table(_ rows: [[String: String]]) -> CSVTable {
        let extra = Set(rows.flatMap(\.keys)).subtracting(ResultRow.columns).sorted()
        return CSVTable(header: ResultRow.columns + extra, rows: rows)
    }

    /// Rows of one variant with these CPU figures, one per repeat, numbered from `firstCell`.
    static func repeats(_ cpu: [Double], io: String = "epoll-et", firstCell: Int = 1, step: Int = 1) -> [[String: String]] {
        cpu.enumerated().map { row(io: io, cell: firstCell + $0.offset * step, repeat: $0.offset + 1, cpu: $0.element) }
    }

    static func line(_ c: Comparison, _ metric: CompareMetric, io: String = "epoll-et") -> CompareLine? {
        c.lines.first { $0.metric == metric && $0.key.values[2] == io }
    }

    @Test("a 30 % rise in CPU per request whose interval clears the 25 % threshold regressed, named with its cells in NEW")
    func regression() throws {
        let base = Self.repeats([10.0, 10.1, 9.9, 10.05, 9.95])
        let new = Self.repeats([13.0, 13.1, 12.9, 13.05, 12.95], firstCell: 7, step: 2)
        let c = try Comparison(base: Self.table(base), new: Self.table(new))
        let cpu = try #require(Self.line(c, .cpuUsPerReq))
        #expect(cpu.verdict == .regressed, "\(cpu.effect?.description ?? "no interval")")
        let effect = try #require(cpu.effect)
        #expect(effect.low > 1.25 && abs(effect.estimate - 1.3) < 0.01)
        #expect(c.regressions.count == 1)
        #expect(c.lines.count == 1, "only cpu_us_per_req has values: \(c.lines.map(\.metric))")
        let message = try #require(c.regressionMessages.first)
        #expect(message.contains("cpu_us_per_req") && message.contains("idle io=epoll-et connections=100"), "\(message)")
        #expect(message.contains("cells 7, 9, 11, 13, 15"), "\(message)")
        #expect(c.summary.hasPrefix("Summary: 1 regressed, 0 improved, 0 unchanged, 0 undecided"), "\(c.summary)")
    }

    @Test("a run with --server-extra (an injected cost) matches the run without it, and compare.md says what differs")
    func serverExtra() throws {
        let base = Self.repeats([10.0, 10.1, 9.9, 10.05, 9.95])
        let new = Self.repeats([13.0, 13.1, 12.9, 13.05, 12.95], firstCell: 7).map { row in
            row.merging(["server_extra": "--compute-us 2"]) { $1 }
        }
        let c = try Comparison(base: Self.table(base), new: Self.table(new))
        #expect(c.lines.allSatisfy { $0.verdict != .new && $0.verdict != .missing }, "server_extra is not a setting cells are matched on")
        #expect(try #require(Self.line(c, .cpuUsPerReq)).verdict == .regressed)
        #expect(c.markdown.contains("different `muxlab bench --server-extra` flags (not matched on): base none, new `--compute-us 2`"), "\(c.markdown)")
        let same = try Comparison(base: Self.table(base), new: Self.table(base))
        #expect(!same.markdown.contains("--server-extra"))
    }

    @Test("a p99 over fewer than 10,000 requests a run (under 100 beyond it) is undecided, however far apart")
    func sparseP99() throws {
        func p99Rows(_ values: [Double], requests: Int, firstCell: Int) -> [[String: String]] {
            values.enumerated().map { i, v in
                Self.row(cell: firstCell + i, repeat: i + 1, extra: ["latency_p99_us": String(v), "requests": String(requests)])
            }
        }
        let sparse = try Comparison(base: Self.table(p99Rows([438, 545], requests: 2000, firstCell: 1)),
                                    new: Self.table(p99Rows([2134, 2550], requests: 2000, firstCell: 3)))
        let line = try #require(Self.line(sparse, .latencyP99Us))
        #expect(line.verdict == .undecided, "\(line.effect?.description ?? "")")
        #expect(line.note.contains("p99 of a median 2000 requests a run: fewer than 100 beyond it"), "\(line.note)")
        let dense = try Comparison(base: Self.table(p99Rows([438, 445], requests: 200_000, firstCell: 1)),
                                   new: Self.table(p99Rows([2134, 2150], requests: 200_000, firstCell: 3)))
        #expect(try #require(Self.line(dense, .latencyP99Us)).verdict == .regressed)
    }

    @Test("a noisy difference whose interval straddles the threshold is undecided, not regressed")
    func noisy() throws {
        let c = try Comparison(base: Self.table(Self.repeats([10, 12, 8])), new: Self.table(Self.repeats([11, 14, 9])))
        let cpu = try #require(Self.line(c, .cpuUsPerReq))
        #expect(cpu.verdict == .undecided)
        let effect = try #require(cpu.effect)
        #expect(effect.low < 1.25 && effect.high > 1.25, "\(effect)")
        #expect(cpu.note.contains("more repeats"), "\(cpu.note)")
        #expect(c.regressions.isEmpty)
    }

    @Test("a regression in a window the host stole more than 10 % from is undecided, naming the side, cell and steal; steal in the other window does not count")
    func hostSteal() throws {
        let base = Self.repeats([10.0, 10.1, 9.9, 10.05, 9.95])
        var new = Self.repeats([13.0, 13.1, 12.9, 13.05, 12.95], firstCell: 7)
        new[2]["steal_share"] = "0.38"
        let c = try Comparison(base: Self.table(base), new: Self.table(new))
        let cpu = try #require(Self.line(c, .cpuUsPerReq))
        #expect(cpu.verdict == .undecided, "\(cpu.note)")
        #expect(cpu.note.contains("undecided: host steal") && cpu.note.contains("NEW cell 9 38 %"), "\(cpu.note)")
        #expect(c.regressions.isEmpty)
        // The same figures with the steal in the evidence window (syscalls' window) still regress on CPU,
        // and at the limit itself (10 %) too: only more than the limit sets a window aside.
        new[2]["steal_share"] = "0.10"
        new[2]["evidence_steal_share"] = "0.45"
        let evidenceOnly = try Comparison(base: Self.table(base), new: Self.table(new))
        #expect(try #require(Self.line(evidenceOnly, .cpuUsPerReq)).verdict == .regressed)
        // A stolen BASE row sets a regression aside too, and an improvement is set aside the same way.
        var stolenBase = base
        stolenBase[0]["steal_share"] = "0.2"
        let fromBase = try #require(Self.line(try Comparison(base: Self.table(stolenBase), new: Self.table(new)), .cpuUsPerReq))
        #expect(fromBase.verdict == .undecided && fromBase.note.contains("BASE cell 1 20 %"), "\(fromBase.note)")
        let higher = Self.repeats([14.0, 14.1, 13.9, 14.05, 13.95], firstCell: 7)
        let calm = try #require(Self.line(try Comparison(base: Self.table(higher), new: Self.table(base)), .cpuUsPerReq))
        #expect(calm.verdict == .improved, "\(calm.note)")
        let improved = try #require(Self.line(try Comparison(base: Self.table(higher), new: Self.table(stolenBase)), .cpuUsPerReq))
        #expect(improved.verdict == .undecided && improved.note.contains("(improved by its interval"), "\(improved.note)")
        // Unchanged stays unchanged under steal: the steal did not hide a difference the interval rules out.
        let same = try Comparison(base: Self.table(stolenBase), new: Self.table(base))
        #expect(try #require(Self.line(same, .cpuUsPerReq)).verdict == .unchanged)
    }

    @Test("a regression while the load's own CPU per request moved past its threshold the same way is undecided (host slower), and the load's line by the server's move; a smaller move or the other way does not count")
    func hostSlower() throws {
        func rows(_ cpu: [Double], client: Double, firstCell: Int = 1) -> [[String: String]] {
            Self.repeats(cpu, firstCell: firstCell).map { var r = $0; r["client_cpu_us_per_req"] = String(client); return r }
        }
        let base = rows([10.0, 10.1, 9.9, 10.05, 9.95], client: 4.0)
        // Like e2 vs e3 of one commit: server CPU 1.38-1.50x while the load's CPU per request rose 1.38-1.52x.
        let slower = try Comparison(base: Self.table(base), new: Self.table(rows([14.0, 14.1, 13.9, 14.05, 13.95], client: 6.0, firstCell: 7)))
        let cpu = try #require(Self.line(slower, .cpuUsPerReq))
        #expect(cpu.verdict == .undecided && cpu.note.contains("undecided: host slower") && cpu.note.contains("1.5x"), "\(cpu.note)")
        // The load's own line is set aside by the server's move the same way.
        let load = try #require(Self.line(slower, .clientCPUUsPerReq))
        #expect(load.verdict == .undecided && load.note.contains("the server's CPU per request moved 1.4x"), "\(load.note)")
        #expect(slower.regressions.isEmpty)
        // The load within its threshold (1.1x): the server's regression stands.
        let serverOnly = try Comparison(base: Self.table(base), new: Self.table(rows([14.0, 14.1, 13.9, 14.05, 13.95], client: 4.4, firstCell: 7)))
        #expect(try #require(Self.line(serverOnly, .cpuUsPerReq)).verdict == .regressed)
        // The load alone slower, the server steady: the load's regression stands.
        let loadOnly = try Comparison(base: Self.table(base), new: Self.table(rows([10.0, 10.1, 9.9, 10.05, 9.95], client: 6.0, firstCell: 7)))
        #expect(try #require(Self.line(loadOnly, .clientCPUUsPerReq)).verdict == .regressed)
        // The load faster while the server regressed: not the host, the regression stands.
        let opposite = try Comparison(base: Self.table(base), new: Self.table(rows([14.0, 14.1, 13.9, 14.05, 13.95], client: 2.8, firstCell: 7)))
        #expect(try #require(Self.line(opposite, .cpuUsPerReq)).verdict == .regressed)
        // An improvement on a faster host is set aside the same way.
        let faster = try Comparison(base: Self.table(rows([14.0, 14.1, 13.9, 14.05, 13.95], client: 6.0)), new: Self.table(base))
        let better = try #require(Self.line(faster, .cpuUsPerReq))
        #expect(better.verdict == .undecided && better.note.contains("host faster"), "\(better.note)")
    }

    @Test("identical runs are unchanged")
    func identical() throws {
        let rows = Self.repeats([10.0, 10.1, 9.9, 10.05, 9.95])
        let c = try Comparison(base: Self.table(rows), new: Self.table(rows))
        let cpu = try #require(Self.line(c, .cpuUsPerReq))
        #expect(cpu.verdict == .unchanged, "\(cpu.effect?.description ?? "")")
        #expect(cpu.effect?.estimate == 1)
    }

    @Test("less CPU per request and more throughput are improvements: polarity per metric")
    func improvement() throws {
        let base = (0..<4).map { Self.row(cell: $0 + 1, repeat: $0 + 1, cpu: 10 + Double($0) * 0.1, throughput: 1000 + Double($0) * 10) }
        let new = (0..<4).map { Self.row(cell: $0 + 1, repeat: $0 + 1, cpu: 7 + Double($0) * 0.1, throughput: 1500 + Double($0) * 10) }
        let c = try Comparison(base: Self.table(base), new: Self.table(new))
        #expect(Self.line(c, .cpuUsPerReq)?.verdict == .improved)
        #expect(Self.line(c, .throughputRPS)?.verdict == .improved)
        // The same throughput figures the other way round regressed: higher is better.
        let reverse = try Comparison(base: Self.table(new), new: Self.table(base))
        #expect(Self.line(reverse, .throughputRPS)?.verdict == .regressed)
        #expect(Self.line(reverse, .cpuUsPerReq)?.verdict == .regressed)
    }

    @Test("a variant only in NEW is new, one only in BASE missing; neither regresses; cell numbers never match cells")
    func newAndMissing() throws {
        let base = Self.repeats([10, 10.1, 9.9], io: "poll") + Self.repeats([10, 10.1, 9.9], io: "select", firstCell: 4)
        // The same select variant under other cell numbers, and an epoll-et variant that BASE lacks.
        let new = Self.repeats([10, 10.1, 9.9], io: "epoll-et") + Self.repeats([10, 10.1, 9.9], io: "select", firstCell: 21)
        let c = try Comparison(base: Self.table(base), new: Self.table(new))
        #expect(Self.line(c, .cpuUsPerReq, io: "epoll-et")?.verdict == .new)
        #expect(Self.line(c, .cpuUsPerReq, io: "poll")?.verdict == .missing)
        let select = try #require(Self.line(c, .cpuUsPerReq, io: "select"))
        #expect(select.verdict == .unchanged && select.baseCells == [4, 5, 6] && select.newCells == [21, 22, 23])
        #expect(c.regressions.isEmpty)
    }

    @Test("rows that are not ok are no samples: a variant that failed in NEW is undecided and says so")
    func failedRows() throws {
        let new = [Self.row(cell: 1, cpu: 99, status: .failed), Self.row(cell: 2, repeat: 2, cpu: 99, status: .failed)]
        let c = try Comparison(base: Self.table(Self.repeats([10, 10.1, 9.9])), new: Self.table(new))
        let cpu = try #require(Self.line(c, .cpuUsPerReq))
        #expect(cpu.verdict == .undecided && cpu.newSamples.isEmpty)
        #expect(cpu.note.contains("no ok rows in NEW") && cpu.note.contains("2 failed"), "\(cpu.note)")
    }

    @Test("sub-window samples (<metric>_samples) are not pooled: one row a side stays undecided, however tight its sub-windows")
    func subWindowSamples() throws {
        let base = [Self.row(cell: 1, cpu: 10, extra: ["cpu_us_per_req_samples": "10 10.1 9.9 10.05"])]
        let new = [Self.row(cell: 1, cpu: 13, extra: ["cpu_us_per_req_samples": "13 13.1 12.9 13.05"])]
        let c = try Comparison(base: Self.table(base), new: Self.table(new))
        let cpu = try #require(Self.line(c, .cpuUsPerReq))
        #expect(cpu.baseSamples == [10] && cpu.newSamples == [13])
        #expect(cpu.verdict == .undecided)
    }

    @Test("one sample a side is undecided, however large the difference, and the note asks for repeat rows")
    func oneSample() throws {
        let c = try Comparison(base: Self.table([Self.row(cell: 1, cpu: 10)]), new: Self.table([Self.row(cell: 1, cpu: 30)]))
        let cpu = try #require(Self.line(c, .cpuUsPerReq))
        #expect(cpu.verdict == .undecided && cpu.effect == nil)
        #expect(cpu.note.contains("1 vs 1 samples") && cpu.note.contains("repeat"), "\(cpu.note)")
        #expect(c.regressions.isEmpty)
    }

    @Test("--threshold overrides one metric: an 8 % rise is unchanged at the default 25 % and regressed at 5 %")
    func thresholdOverride() throws {
        let base = Self.table(Self.repeats([10.0, 10.01, 9.99, 10.0, 10.0]))
        let new = Self.table(Self.repeats([10.8, 10.81, 10.79, 10.8, 10.8]))
        #expect(Self.line(try Comparison(base: base, new: new), .cpuUsPerReq)?.verdict == .unchanged)
        var thresholds = CompareThresholds()
        try thresholds.set("cpu_us_per_req=5")
        #expect(thresholds[.cpuUsPerReq] == 5 && thresholds[.latencyP99Us] == 50)
        #expect(Self.line(try Comparison(base: base, new: new, thresholds: thresholds), .cpuUsPerReq)?.verdict == .regressed)
    }

    @Test("a bad --threshold names the value and what is allowed", arguments: [
        ("cpu=5", "unknown metric \"cpu\" (allowed: cpu_us_per_req, latency_p99_us"),
        ("cpu_us_per_req=0", "\"0\" is not a percent greater than 0 and less than 100"),
        ("cpu_us_per_req=abc", "\"abc\" is not a percent"),
        ("cpu_us_per_req", "expected METRIC=PCT"),
    ])
    func badThreshold(argument: String, message: String) {
        var thresholds = CompareThresholds()
        let error = #expect(throws: CompareError.self) { try thresholds.set(argument) }
        #expect(error?.description.contains(message) == true && error?.description.contains(argument) == true, "\(String(describing: error))")
    }

    @Test("compare.csv has one row per variant × metric with machine-readable columns")
    func csvOutput() throws {
        let c = try Comparison(base: Self.table(Self.repeats([10.0, 10.1, 9.9])), new: Self.table(Self.repeats([13.0, 13.1, 12.9])))
        let csv = try CSVTable.parse(c.csv)
        #expect(csv.header == Comparison.csvColumns)
        #expect(csv.rows.count == c.lines.count)
        let row = try #require(csv.rows.first)
        #expect(row["metric"] == "cpu_us_per_req" && row["verdict"] == "regressed" && row["base_samples"] == "3")
        #expect(row["new_cells"] == "1 2 3" && row["lower_is_better"] == "true" && row["threshold_pct"] == "25")
        #expect(Double(row["ratio"] ?? "").map { abs($0 - 1.3) < 0.01 } == true, "\(row)")
        #expect(c.markdown.contains("| idle io=epoll-et connections=100 | cpu_us_per_req | 10 | 13 |"), "\(c.markdown)")
    }
}

/// The timing window's histogram kept per cell: HdrHistogram's own text, and counts that read back exactly.
@Suite("Latency histograms kept for compare: cell-N.hgrm and cell-N.counts")
struct CompareLatencyHistogramTests {
    static func histogram(_ values: [UInt64]) -> Histogram<UInt64> {
        var h = LoadGenerator.newHistogram()
        for v in values { _ = h.record(v) }
        return h
    }

    @Test("the files of a real histogram: percentile text in µs, counts that read back to the same distribution and add exactly")
    func roundTrip() throws {
        let scratch = try ScratchDirectory()
        let a = Self.histogram((1...5000).map { UInt64($0) * 7_919 % 2_000_000 + 10_000 })
        let paths = try LatencyHistogramFiles.write(a, cell: 3, directory: scratch.path)
        #expect(paths == [scratch.path + "/histograms/cell-3.hgrm", scratch.path + "/histograms/cell-3.counts"])
        let hgrm = try scratch.read("histograms/cell-3.hgrm")
        #expect(hgrm.hasPrefix("       Value     Percentile TotalCount 1/(1-Percentile)"), "\(hgrm.prefix(200))")
        #expect(hgrm.contains("Total count") && hgrm.contains(" 5000]"), "\(hgrm.suffix(300))")
        let back = try LatencyHistogramFiles.read(counts: paths[1])
        #expect(back.totalCount == a.totalCount)
        for p in [50.0, 90, 99, 99.9, 100] { #expect(back.valueAtPercentile(p) == a.valueAtPercentile(p), "p\(p)") }
        #expect(back.max == a.max && back.min == a.min)
        // Two cells merged from their files are the histogram of both.
        let b = Self.histogram((1...300).map { UInt64($0) * 1_000_000 })
        try LatencyHistogramFiles.write(b, cell: 4, directory: scratch.path)
        var merged = back
        merged.add(try LatencyHistogramFiles.read(counts: scratch.path + "/histograms/cell-4.counts"))
        var both = a
        both.add(b)
        #expect(merged.totalCount == 5300 && merged.valueAtPercentile(99) == both.valueAtPercentile(99))
    }

    @Test("a counts file that is not one is refused, naming the file and the line")
    func badFile() throws {
        let scratch = try ScratchDirectory()
        let path = try scratch.write("x.counts", LatencyHistogramFiles.countsHeader + "\n100 2\nabc 1\n")
        let error = #expect(throws: DataFileError.self) { _ = try LatencyHistogramFiles.read(counts: path) }
        #expect(error?.description.contains("x.counts: line 3: \"abc 1\"") == true, "\(String(describing: error))")
        let other = try scratch.write("y.counts", "value,count\n")
        #expect(throws: DataFileError.self) { _ = try LatencyHistogramFiles.read(counts: other) }
    }

    @Test("wrk's distribution (value µs, count pairs from its done hook) becomes a nanosecond histogram")
    func wrkDistribution() throws {
        let json = #"{"requests":3,"duration_us":1000000,"p50":20,"p90":30,"p99":30,"p999":30,"max":30,"connect":0,"read":0,"write":0,"status":0,"timeout":0,"latency":[20,2,30,1]}"#
        let report = try JSONDecoder().decode(WrkReport.self, from: Data(json.utf8))
        let h = try #require(report.histogram)
        #expect(h.totalCount == 3 && h.valuesAreEquivalent(h.valueAtPercentile(50), 20_000) && h.valuesAreEquivalent(h.max, 30_000))
        let old = #"{"requests":3,"duration_us":1000000,"p50":20,"p90":30,"p99":30,"p999":30,"max":30,"connect":0,"read":0,"write":0,"status":0,"timeout":0}"#
        #expect(try JSONDecoder().decode(WrkReport.self, from: Data(old.utf8)).histogram == nil)
    }
}
