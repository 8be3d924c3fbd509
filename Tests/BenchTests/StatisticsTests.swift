import Foundation
import Testing
@testable import Bench

/// The intervals every comparison stands on, against values worked by hand.
@Suite("Statistics: Welch intervals")
struct StatisticsTests {
    @Test("the t quantile matches the table at its entries and lies between them elsewhere")
    func quantiles() {
        #expect(abs(Statistics.tQuantile(df: 1) - 12.706) < 1e-9)
        #expect(abs(Statistics.tQuantile(df: 4) - 2.776) < 1e-9)
        #expect(abs(Statistics.tQuantile(df: 1e9) - 1.960) < 1e-3)
        let between = Statistics.tQuantile(df: 11)
        #expect(between < 2.228 && between > 2.179)
    }

    @Test("difference of means: Welch's interval on two samples of 3, worked by hand")
    func difference() throws {
        // a: mean 11, variance 1; b: mean 10, variance 1; se = sqrt(1/3 + 1/3) = 0.8165, df = 4, t = 2.776.
        let e = try #require(Statistics.difference([10, 11, 12], minus: [9, 10, 11]))
        #expect(abs(e.estimate - 1) < 1e-12)
        #expect(abs(e.low - (1 - 2.776 * 0.816497)) < 1e-4 && abs(e.high - (1 + 2.776 * 0.816497)) < 1e-4)
        #expect(!e.above(0) && !e.below(0))
    }

    @Test("a ratio of geometric means: identical runs give a point, a clear shift clears its margin, noise does not")
    func ratios() throws {
        let point = try #require(Statistics.ratio([2, 2], over: [1, 1]))
        #expect(point.estimate == 2 && point.low == 2 && point.high == 2)
        let clear = try #require(Statistics.ratio([11.0, 11.1, 10.9, 11.05], over: [10.0, 10.1, 9.9, 10.05]))
        #expect(clear.above(1.05), "\(clear)")
        let noisy = try #require(Statistics.ratio([10, 13], over: [10, 11]))
        #expect(!noisy.above(1.05) && !noisy.below(0.95), "\(noisy)")
        #expect(noisy.description.hasSuffix("(95 % CI, 2 vs 2 samples)"))
    }

    @Test("too few samples or a zero give no ratio; the difference still works with zeros")
    func refusals() {
        #expect(Statistics.ratio([1], over: [1, 2]) == nil)
        #expect(Statistics.ratio([0, 1], over: [1, 2]) == nil)
        #expect(Statistics.difference([0, 0], minus: [1, 1]) != nil)
        #expect(Statistics.mean([3]) == nil)
    }
}

/// docs/claims.md is generated from the rules; the committed file must be what they say now.
@Suite("docs/claims.md")
struct ClaimsDocumentTests {
    static var root: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    @Test("the committed docs/claims.md equals what the rules and workloads generate (run `make docs` after changing them)")
    func upToDate() throws {
        let dir = Self.root + "/workloads"
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".toml") }.map { dir + "/" + $0 }
        let generated = try ClaimsDocument.markdown(workloads: files)
        let committed = try String(contentsOfFile: Self.root + "/docs/claims.md", encoding: .utf8)
        #expect(committed == generated, "docs/claims.md is stale: run `make docs`")
        for claim in Claims.all { #expect(generated.contains("## \(claim.id): "), "\(claim.id) missing") }
        #expect(Claims.all.count == 32)
    }
}

/// `standing`, the comparison every rule calls: the interval, and the two orderings that decide without it.
@Suite("Statistics: standing of one variant against another")
struct StandingTests {
    func measured(_ samples: [Double]) -> Measured { Measured(metric: "cpu_us_per_req", samples: samples)! }

    @Test("4 v 4 whose runs never overlap and clear the margin: decided by the rank test where Welch's interval misses")
    func rankDecides() throws {
        // Select's CPU per request at 1,000 vs 100 connections, 100 active, over make bench runs.
        let at1000 = measured([5.763, 5.904, 7.247, 9.5]), at100 = measured([4.864, 4.815, 5.008, 4.614])
        let welch = try #require(at1000.effect(against: at100))
        #expect(!welch.above(1.05), "Welch alone would decide: \(welch)")
        #expect(standing(at1000, at100) == .above)
        #expect(standing(at100, at1000) == .below)
    }

    @Test("the rank test needs 4 a side (3 v 3 is 2 chances in 20), and every pair beyond the margin, not only apart")
    func rankNeedsBoth() {
        #expect(standing(measured([5.763, 5.904, 7.247]), measured([4.864, 4.815, 5.008])) != .above)
        // One pair within the margin (5.2 / 5.1 = 1.02): level.
        #expect(standing(measured([5.2, 6.0, 7.5, 7.6]), measured([4.6, 4.9, 5.1, 4.7])) != .above)
        // Overlapping runs: level.
        #expect(standing(measured([5.0, 5.9, 7.2, 7.4]), measured([4.8, 5.1, 5.3, 4.9])) != .above)
    }

    @Test("figures that can be 0 use the difference: every run beyond by the margin of the reference's mean")
    func rankOnDifferences() {
        let none = measured([0.1, 0, 0, 0.1])
        // 0.15 - 0.1 is beyond the margin (5 % of the reference's mean, 0.0025): every pair clears it.
        #expect(standing(measured([0.15, 0.3, 0.9, 0.2]), none) == .above)
        // A run at the reference's largest: not every pair.
        #expect(standing(measured([0.1, 0.3, 0.9, 0.2]), none) != .above)
    }
}
