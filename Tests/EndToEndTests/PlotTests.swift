#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Kernel
import TestSupport
import Testing

/// `muxlab plot` on hand-made CSV files (Fixtures/plot): results.csv with idle-scaling, e1, e2, m7
/// and e4 rows (two repeats, an empty value, a failed and not-applicable cells) and timeline.csv
/// with two e4-emfile cells. Needs python3 with matplotlib (`make test` installs it): without it
/// these tests fail and say so; they are never skipped.
@Suite("Plots: muxlab plot draws PNGs from the CSV files alone", .serialized)
struct PlotTests {
    static let fixtures = TestSupport.packageRoot + "/Tests/EndToEndTests/Fixtures/plot"
    static let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    @Test("every plot is written from the fixtures: a PNG of more than 10 KB, one stdout line each")
    func allPlots() throws {
        let dir = try Self.copyFixtures("all")
        let run = try Self.plot([dir])
        #expect(run.status == .exited(0), "muxlab plot ended with \(String(describing: run.status)): \(run.stderr)")
        for name in ["idle-scaling.png", "fdset-bytes.png", "lt-vs-et.png", "emfile.png"] {
            let path = dir + "/plots/" + name
            Self.expectPNG(path)
            #expect(run.stdout.contains { $0.hasSuffix(path) }, "no line for \(name) in \(run.stdout)")
        }
        #expect(run.stdout.count == 4, "\(run.stdout)")
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
        #expect(!FileManager.default.fileExists(atPath: dir + "/plots"))
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

    struct Run {
        var status: Kernel.ExitStatus?
        var stdout: [String]
        var stderr: String
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
    static func plot(_ arguments: [String]) throws -> Run {
        let errPath = "/tmp/muxlab-plot-\(getpid())-\(monotonicNanos()).err"
        let child = try ChildProcess(executable: try muxlab(), arguments: ["plot"] + arguments, stderrPath: errPath)
        let stdout = child.readRemaining(timeout: 240)
        let status = child.wait(timeout: 10) ?? child.stop()
        let stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(atPath: errPath)
        return Run(status: status, stdout: stdout, stderr: stderr)
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
