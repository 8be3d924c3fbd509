import Foundation

/// How two sets of samples are compared, for the verdicts and for `muxlab compare`: an effect with a 95 %
/// confidence interval, and a decision only when the interval clears the margin.
///
/// Method: Welch's t interval. For positive figures (CPU per request, throughput, latency) on the logarithms,
/// giving the ratio of geometric means; for figures that may be 0 (counts per request), on the values, giving
/// the difference of means. Why not a bootstrap: a comparison here has 2 to 15 samples a side (interleaved
/// repeats, each with its sub-window samples), and a percentile bootstrap of so few cannot reach beyond the
/// samples it has, so its interval is too narrow exactly when the runs are few; Welch's t widens with few
/// samples as it should, needs no equal variances, and is deterministic (the same rows, the same interval).
public enum Statistics {
    public static let confidence = 0.95

    /// The ratio `a / b` of geometric means with its interval; nil unless both sides have 2 or more samples,
    /// all positive.
    public static func ratio(_ a: [Double], over b: [Double]) -> Effect? {
        guard a.count >= 2, b.count >= 2, (a + b).allSatisfy({ $0 > 0 && $0.isFinite }) else { return nil }
        guard let d = welch(a.map(log), b.map(log)) else { return nil }
        return Effect(kind: .ratio, estimate: exp(d.estimate), low: exp(d.low), high: exp(d.high), samples: (a.count, b.count))
    }

    /// The difference `a - b` of means with its interval; nil unless both sides have 2 or more samples.
    public static func difference(_ a: [Double], minus b: [Double]) -> Effect? {
        guard let d = welch(a, b) else { return nil }
        return Effect(kind: .difference, estimate: d.estimate, low: d.low, high: d.high, samples: (a.count, b.count))
    }

    /// The mean of `a` with its t interval (one sample set against a fixed value); nil under 2 samples.
    public static func mean(_ a: [Double]) -> Effect? {
        guard a.count >= 2, a.allSatisfy(\.isFinite) else { return nil }
        let m = a.reduce(0, +) / Double(a.count)
        let half = tQuantile(df: Double(a.count - 1)) * (variance(a, mean: m) / Double(a.count)).squareRoot()
        return Effect(kind: .difference, estimate: m, low: m - half, high: m + half, samples: (a.count, 0))
    }

    static func welch(_ a: [Double], _ b: [Double]) -> (estimate: Double, low: Double, high: Double)? {
        guard a.count >= 2, b.count >= 2, (a + b).allSatisfy(\.isFinite) else { return nil }
        let ma = a.reduce(0, +) / Double(a.count), mb = b.reduce(0, +) / Double(b.count)
        let va = variance(a, mean: ma) / Double(a.count), vb = variance(b, mean: mb) / Double(b.count)
        let se = (va + vb).squareRoot()
        let d = ma - mb
        guard se > 0 else { return (d, d, d) }
        // Welch–Satterthwaite degrees of freedom.
        let df = (va + vb) * (va + vb) / (va * va / Double(a.count - 1) + vb * vb / Double(b.count - 1))
        let half = tQuantile(df: df) * se
        return (d, d - half, d + half)
    }

    static func variance(_ x: [Double], mean: Double) -> Double {
        x.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(x.count - 1)
    }

    /// Student's t two-sided 95 % quantile, from the standard table, linear in 1/df between its entries
    /// (within 0.3 % of the exact value for df ≥ 1).
    static func tQuantile(df: Double) -> Double {
        let table: [(df: Double, t: Double)] = [
            (1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (5, 2.571), (6, 2.447), (7, 2.365), (8, 2.306), (9, 2.262),
            (10, 2.228), (12, 2.179), (15, 2.131), (20, 2.086), (25, 2.060), (30, 2.042), (40, 2.021), (60, 2.000),
            (120, 1.980), (.infinity, 1.960),
        ]
        let d = Swift.max(1, df)
        for k in 1..<table.count where d <= table[k].df {
            let (d0, t0) = table[k - 1], (d1, t1) = table[k]
            let x = 1 / d, x0 = 1 / d0, x1 = d1.isInfinite ? 0 : 1 / d1
            return t0 + (t1 - t0) * (x0 - x) / (x0 - x1)
        }
        return 1.960
    }
}

/// An effect and its interval: a ratio (1 = no change) or a difference (0 = no change).
public struct Effect: Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable { case ratio, difference }
    public let kind: Kind
    public let estimate: Double
    public let low: Double
    public let high: Double
    /// Samples on each side (the second is 0 for a one-sample mean).
    public let samples: (Int, Int)

    public static func == (a: Effect, b: Effect) -> Bool {
        a.kind == b.kind && a.estimate == b.estimate && a.low == b.low && a.high == b.high && a.samples == b.samples
    }

    /// The interval lies wholly above `bound`.
    public func above(_ bound: Double) -> Bool { low > bound }
    /// The interval lies wholly below `bound`.
    public func below(_ bound: Double) -> Bool { high < bound }
    /// The interval lies wholly inside `lower...upper`.
    public func within(_ lower: Double, _ upper: Double) -> Bool { low >= lower && high <= upper }

    /// "1.32x [1.18, 1.47]" or "+0.52 [+0.31, +0.74]", with the sample counts: "(95 % CI, 6 vs 6 samples)".
    public var description: String {
        func f(_ x: Double) -> String {
            let text = abs(x) >= 100 ? String(format: "%.0f", x) : abs(x) >= 10 ? String(format: "%.1f", x)
                : abs(x) >= 1 ? String(format: "%.2f", x) : String(format: "%.3g", x)
            return kind == .difference && x >= 0 ? "+" + text : text
        }
        let counts = samples.1 > 0 ? "\(samples.0) vs \(samples.1) samples" : "\(samples.0) samples"
        return (kind == .ratio ? f(estimate) + "x [" + f(low) + "x, " + f(high) + "x]" : f(estimate) + " [" + f(low) + ", " + f(high) + "]")
            + " (95 % CI, \(counts))"
    }
}
