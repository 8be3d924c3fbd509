#if canImport(Glibc)
import Glibc
#endif
import Bench
import Foundation
import Kernel
import TestSupport
import Testing

/// `muxlab plot` on hand-made CSV files (Fixtures/plot): results.csv with idle-scaling, e1, e2, m7
/// and e4 rows (two repeats, an empty value, a failed and not-applicable cells) and timeline.csv
/// with two e4-emfile cells; the K and C rows (`modelRows`) are built in code and added to it. Needs python3 with matplotlib (`make test` installs it): without it
/// these tests fail and say so; they are never skipped.
@Suite("Plots: muxlab plot draws PNGs from the CSV files alone", .serialized)
struct PlotTests {
    static let fixtures = TestSupport.packageRoot + "/Tests/EndToEndTests/Fixtures/plot"
    static let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    @Test("every plot is written from the fixtures: a PNG of more than 10 KB, one stdout line each")
    func allPlots() throws {
        let dir = try Self.copyFixtures("all")
        try Self.addRows(Self.modelRows(), to: dir)
        let run = try Self.plot([dir])
        #expect(run.status == .exited(0), "muxlab plot ended with \(String(describing: run.status)): \(run.stderr)")
        for name in Self.allPlots {
            let path = dir + "/plots/" + name
            Self.expectPNG(path)
            #expect(run.stdout.contains { $0.hasSuffix(path) }, "no line for \(name) in \(run.stdout)")
        }
        #expect(run.stdout.count == Self.allPlots.count, "\(run.stdout)")
        #expect(!run.stderr.contains("skipped") && !run.stderr.contains("failed"), "\(run.stderr)")
    }

    @Test("plots without rows are skipped with a note naming them; the others are written to --out")
    func skipsAbsentData() throws {
        let dir = try Self.copyFixtures("partial")
        let lines = try String(contentsOfFile: dir + "/results.csv", encoding: .utf8).split(separator: "\n")
        let idleOnly = [lines[0]] + lines.dropFirst().filter { $0.hasPrefix("idle-scaling") }
        try (idleOnly.joined(separator: "\n") + "\n").write(toFile: dir + "/results.csv", atomically: true, encoding: .utf8)
        try FileManager.default.removeItem(atPath: dir + "/timeline.csv")
        let out = dir + "/elsewhere"
        let run = try Self.plot([dir, "--out", out])
        #expect(run.status == .exited(0), "muxlab plot ended with \(String(describing: run.status)): \(run.stderr)")
        Self.expectPNG(out + "/idle-scaling.png")
        Self.expectPNG(out + "/fdset-bytes.png")
        #expect(!FileManager.default.fileExists(atPath: out + "/lt-vs-et.png"))
        #expect(!FileManager.default.fileExists(atPath: out + "/emfile.png"))
        #expect(run.stderr.contains("skipped lt-vs-et.png"), "\(run.stderr)")
        #expect(run.stderr.contains("skipped emfile.png: no timeline.csv"), "\(run.stderr)")
        for name in ["killers.png", "models.png", "reactors.png", "herd.png"] {
            #expect(run.stderr.contains("skipped \(name): no rows with status ok"), "\(run.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out + "/" + name))
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/plots"))
    }

    @Test("killers, models, reactors and herd are each written from their own experiments' rows alone", arguments: [
        ("killers.png", ["k1-copies", "k2-thread-per-connection", "k2-reactor", "k2-reactor-pool", "k3-alloc", "k4-locks"]),
        ("models.png", ["c7-models", "c7-multi"]),
        ("reactors.png", ["c6-reactors", "c4-multi-reactor", "c9-pool-size"]),
        ("herd.png", ["c3-blocking-accept", "c3-epoll-accept"]),
    ])
    func eachModelPlot(name: String, experiments: [String]) throws {
        let dir = "/tmp/muxlab-plot-\(getpid())-\(name.dropLast(4))"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Self.addRows(Self.modelRows().filter { experiments.contains($0.experiment) }, to: dir)
        let run = try Self.plot([dir])
        #expect(run.status == .exited(0), "muxlab plot ended with \(String(describing: run.status)): \(run.stderr)")
        Self.expectPNG(dir + "/plots/" + name)
        #expect(run.stdout == ["wrote \(dir)/plots/\(name)"], "\(run.stdout)")
        for other in Self.allPlots where other != name {
            #expect(run.stderr.contains("skipped \(other)"), "no skip note for \(other): \(run.stderr)")
        }
        #expect(!run.stderr.contains("failed"), "\(run.stderr)")
    }

    @Test("reactors.png without c9 rows draws the loops panel alone and says the pool panel was left out")
    func reactorsWithoutPool() throws {
        let dir = "/tmp/muxlab-plot-\(getpid())-reactors-c6"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Self.addRows(Self.modelRows().filter { $0.experiment == "c6-reactors" }, to: dir)
        let run = try Self.plot([dir])
        #expect(run.status == .exited(0), "\(run.stderr)")
        Self.expectPNG(dir + "/plots/reactors.png")
        #expect(run.stderr.contains("reactors.png: panel without data left out: no ok rows with values for c9-pool-size"), "\(run.stderr)")
    }

    @Test("a results.csv without the io column is refused: non-zero exit, the message names the column")
    func missingIdentifyingColumn() throws {
        let dir = try Self.copyFixtures("no-io")
        let text = try String(contentsOfFile: dir + "/results.csv", encoding: .utf8)
        let header = text.split(separator: "\n")[0].split(separator: ",", omittingEmptySubsequences: false)
        let io = try #require(header.firstIndex(of: "io"))
        let dropped = text.split(separator: "\n").map { line -> String in
            var fields = line.split(separator: ",", omittingEmptySubsequences: false)
            fields.remove(at: io)  // the fixture quotes no field before io
            return fields.joined(separator: ",")
        }
        try (dropped.joined(separator: "\n") + "\n").write(toFile: dir + "/results.csv", atomically: true, encoding: .utf8)
        let run = try Self.plot([dir])
        #expect(run.status != .exited(0))
        #expect(run.stderr.contains("missing column(s) io"), "\(run.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/plots/idle-scaling.png"))
    }

    @Test("a directory without results.csv is refused with a message naming the file")
    func missingResults() throws {
        let dir = "/tmp/muxlab-plot-\(getpid())-empty"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let run = try Self.plot([dir])
        #expect(run.status != .exited(0))
        #expect(run.stderr.contains(dir + "/results.csv: not found"), "\(run.stderr)")
    }

    // MARK: - Helpers

    static let allPlots = ["idle-scaling.png", "fdset-bytes.png", "lt-vs-et.png", "emfile.png",
                           "killers.png", "models.png", "reactors.png", "herd.png"]

    /// Rewrites DIR/results.csv (when present) with this muxlab's columns and appends `rows`.
    static func addRows(_ rows: [ResultRow], to dir: String) throws {
        let path = dir + "/results.csv"
        var existing: [ResultRow] = []
        if FileManager.default.fileExists(atPath: path) {
            existing = try CSVTable.read(path: path).rows.map { try ResultRow(record: $0) }
            try FileManager.default.removeItem(atPath: path)
        }
        let csv = try ResultsCSV(path: path)
        for row in existing + rows { try csv.append(row) }
    }

    /// K1-K4, C3, C6, C7 and C9 rows: two repeats where a claim compares, an empty value, a failed cell.
    static func modelRows() -> [ResultRow] {
        var rows: [ResultRow] = []
        func add(_ experiment: String, _ claim: String, model: String = "reactor", io: String = "epoll-et", connections: Int = 100,
                 workers: Int? = nil, reactors: Int? = nil, args: String = "", serverCPUs: String = "1", clientCPUs: String = "0",
                 repeats: Int = 2, _ set: (inout ResultRow, Int) -> Void) {
            for repetition in 1...repeats {
                var row = ResultRow(experiment: experiment, model: model, io: io, protocol: "echo")
                row.claims = [claim]
                row.connections = connections
                row.active = connections
                row.workers = workers
                row.reactors = reactors
                row.serverArgs = args.split(separator: " ").map(String.init)
                row.serverCPUs = serverCPUs
                row.clientCPUs = clientCPUs
                row.repetition = repetition
                row.cell = rows.count + 1
                row.host = "vm"
                row.kernel = "6.18.44-test"
                row.commit = "abc1234"
                row.variant = reportedVariant(model: model, io: io, reactors: reactors, workers: workers, serverArgs: row.serverArgs)
                set(&row, repetition)
                rows.append(row)
            }
        }
        let jitter = { (repetition: Int) in repetition == 1 ? 0.98 : 1.02 }
        for (mode, copy, cpu) in [("direct", 32_768.0, 10.0), ("staged", 32_768.0, 12.5), ("splice", 0.0, 9.0)] {
            add("k1-copies", "K1", connections: 10, args: "--copy \(mode)") { row, r in
                row.copyBytesPerReq = copy
                row.zerocopyBytesPerReq = mode == "splice" ? 32_768 : 0
                row.cpuUsPerReq = cpu * jitter(r)
            }
        }
        for (experiment, model, switches, cpu) in [("k2-thread-per-connection", "thread-per-connection", 2.1, 15.0),
                                                   ("k2-reactor", "reactor", 0.02, 8.0), ("k2-reactor-pool", "reactor-pool", 1.1, 11.0)] {
            add(experiment, "K2", model: model, io: model == "reactor" || model == "reactor-pool" ? "epoll-et" : "blocking",
                workers: model == "reactor-pool" ? 8 : nil) { row, r in
                row.ctxSwitchesPerReq = switches * jitter(r)
                row.cpuUsPerReq = cpu * jitter(r)
            }
        }
        for (mode, mallocs, cpu) in [("pooled", 0.0, 9.8), ("per-request", 2.0, 10.4)] {
            add("k3-alloc", "K3", connections: 10, args: "--alloc \(mode)") { row, r in
                row.mallocsPerReq = mallocs
                row.cpuUsPerReq = cpu * jitter(r)
            }
        }
        for workers in [1, 2, 4] {
            for (queue, waits) in [("global-lock", [0.01, 0.4, 0.9]), ("per-worker", [0.01, 0.01, 0.02])] {
                add("k4-locks", "K4", model: "reactor-pool", connections: 50, workers: workers, args: "--queue \(queue)", serverCPUs: "0-1") { row, r in
                    row.futexLockWaitsPerReq = waits[[1, 2, 4].firstIndex(of: workers)!] * jitter(r)
                    row.cpuUsPerReq = 9 + Double(workers) * (queue == "global-lock" ? 1.5 : 0.5)
                }
            }
        }
        for (mode, wakeups, calls) in [("blocking", 2.05, 1.0), ("shared-epoll", 5.2, 4.1), ("epoll-exclusive", 1.95, 1.3), ("reuseport", 2.1, 1.1)] {
            add(mode == "blocking" ? "c3-blocking-accept" : "c3-epoll-accept", "C3", model: "prefork", io: mode == "blocking" ? "blocking" : "epoll-et",
                connections: 10, workers: 4, args: "--accept \(mode)") { row, r in
                row.wakeupsPerAccept = wakeups * jitter(r)
                row.acceptCallsPerAccept = calls
            }
        }
        for (reactors, rps) in [(1, 100_000.0), (2, 150_000.0), (4, 140_000.0)] {
            add("c6-reactors", "C6", model: "multi-reactor", reactors: reactors, serverCPUs: "0-1") { row, r in row.throughputRPS = rps * jitter(r) }
        }
        add("c4-multi-reactor", "C6", model: "multi-reactor", reactors: 2, serverCPUs: "0-1", clientCPUs: "0-1") { row, r in row.throughputRPS = 180_000 * jitter(r) }
        let models: [(String, Double, Double?, Int)] = [
            ("iterative", 30_000, 50, 900), ("process-per-connection", 60_000, 9000, 12), ("thread-per-connection", 80_000, 3000, 0),
            ("prefork", 70_000, 2500, 0), ("reactor", 100_000, 2000, 0), ("reactor-thread-per-request", 40_000, 6000, 0),
            ("reactor-worker", 85_000, 2400, 0), ("reactor-pool", 90_000, nil, 0), ("proactor", 105_000, 1900, 0),
            ("multi-reactor", 110_000, 1700, 0), ("multi-reactor-pool", 108_000, 1800, 0),
        ]
        for (model, rps, p99, errors) in models {
            add(model.hasPrefix("multi") ? "c7-multi" : "c7-models", "C7", model: model, io: ["iterative", "process-per-connection", "thread-per-connection"].contains(model) ? "blocking" : "epoll-et",
                connections: 1000, reactors: model.hasPrefix("multi") ? 2 : nil, repeats: 1) { row, _ in
                row.active = 100
                row.throughputRPS = rps
                row.latencyP99Us = p99  // reactor-pool's is empty: a missing value, not 0
                row.errors = errors
            }
        }
        var failed = ResultRow(experiment: "c7-models", model: "proactor", io: "io_uring", protocol: "echo")
        failed.claims = ["C7"]
        failed.status = .failed
        failed.reason = "verification failed"
        failed.cell = rows.count + 1
        rows.append(failed)
        for (args, rps) in [("--compute-us 100", [9000.0, 9100, 9050, 9000, 8900]), ("--compute-us 50 --block-us 50", [5000.0, 9000, 9100, 9050, 9000]),
                            ("--compute-us 25 --block-us 75", [2500.0, 5000, 9000, 9100, 9000])] {
            for (index, workers) in [1, 2, 4, 8, 16].enumerated() {
                add("c9-pool-size", "C9", model: "reactor-pool", connections: 64, workers: workers, args: args, repeats: 1) { row, _ in row.throughputRPS = rps[index] }
            }
        }
        return rows
    }

    /// The muxlab built with these tests: beside the test bundle (any --scratch-path), else TestSupport's.
    static func muxlab() throws -> String {
        let tests = currentExecutablePath()
        if let slash = tests.lastIndex(of: "/") {
            let sibling = String(tests[..<slash]) + "/muxlab"
            if access(sibling, X_OK) == 0 { return sibling }
        }
        return try TestSupport.muxlab
    }

    /// Runs `muxlab plot arguments`; first use of matplotlib may build its font cache: a generous limit.
    static func plot(_ arguments: [String]) throws -> TestSupport.Finished {
        try TestSupport.runToEnd(try muxlab(), ["plot"] + arguments, timeout: 240)
    }

    /// A fresh copy of the fixtures in /tmp, so plots/ never lands in the source tree.
    static func copyFixtures(_ name: String) throws -> String {
        let dir = "/tmp/muxlab-plot-\(getpid())-\(name)"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for file in ["results.csv", "timeline.csv"] {
            try FileManager.default.copyItem(atPath: fixtures + "/" + file, toPath: dir + "/" + file)
        }
        return dir
    }

    static func expectPNG(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) {
        guard let data = FileManager.default.contents(atPath: path) else {
            Issue.record("\(path) was not written", sourceLocation: sourceLocation)
            return
        }
        #expect(Array(data.prefix(8)) == pngSignature, "\(path) is not a PNG", sourceLocation: sourceLocation)
        #expect(data.count > 10_000, "\(path) is \(data.count) bytes: too small to hold a plot",
                sourceLocation: sourceLocation)
    }
}
