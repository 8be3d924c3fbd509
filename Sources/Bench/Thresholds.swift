import Foundation

/// A number a claim rule decides by, declared once as data: the rule's code tests figures against it
/// (`holds`, `value`), its threshold sentence interpolates `shown`, and findings.md and docs/claims.md
/// print the rule's thresholds as a table from these fields. A test checks that every number in a rule's
/// sentence is one of its thresholds, so no figure is written twice.
public struct Threshold: Sendable, Equatable {
    public enum Direction: String, Sendable {
        case atLeast = ">="
        case above = ">"
        case atMost = "<="
        case below = "<"
        /// An interval (or a change) lies within ± the value.
        case within = "within ±"
        /// An interval lies wholly beyond ± the value (a comparison's margin).
        case beyond = "beyond ±"
    }

    public enum Unit: Sendable {
        /// A count or a figure in the column's own unit.
        case plain
        /// A fraction shown as a percentage (0.05 -> "5 %").
        case percent
        /// A factor (2 -> "2x").
        case times
    }

    /// The figure bounded, naming its column or how it is derived, and for which variant.
    public let figure: String
    public let direction: Direction
    public let value: Double
    public let unit: Unit
    /// What meeting it means: "supported", "refuted", or "decides" for a margin both ways.
    public let meaning: String

    public init(_ figure: String, _ direction: Direction, _ value: Double, unit: Unit = .plain, meaning: String) {
        self.figure = figure
        self.direction = direction
        self.value = value
        self.unit = unit
        self.meaning = meaning
    }

    /// The value as the sentences print it: "1,000", "0.5", "5 %", "2x".
    public var shown: String {
        switch unit {
        case .plain: return formatMedianCount(value)
        case .percent: return formatPercent(value)
        case .times: return formatMedianCount(value) + "x"
        }
    }

    /// "mux_calls_per_s of epoll-lt --epollout always >= 1,000".
    public var text: String { "\(figure) \(direction.rawValue) \(shown)" }

    /// Whether every sample meets a bound (>=, >, <=, <); a margin is tested by `standing` instead.
    func holds(_ measured: Measured?) -> Bool {
        guard let measured else { return false }
        return holds(min: measured.min, max: measured.max)
    }

    /// Whether a single figure meets the bound.
    func holds(_ value: Double) -> Bool { holds(min: value, max: value) }

    /// Whether a range of figures (every run's) meets the bound.
    func holds(min: Double, max: Double) -> Bool {
        switch direction {
        case .atLeast: return min >= value
        case .above: return min > value
        case .atMost: return max <= value
        case .below: return max < value
        case .within: return Swift.max(abs(min), abs(max)) <= value
        case .beyond: return min > value || max < -value
        }
    }
}

/// The margin every interval comparison must clear unless a rule names its own.
let comparisonMarginThreshold = Threshold("the ratio of the two variants' figures (95 % Welch interval)", .beyond, 0.05,
                                          unit: .percent, meaning: "decides")

/// The factor by which every run of one variant counts as apart from every run of the other whatever the spread.
let apartFactorThreshold = Threshold("every run of one variant against every run of the other", .atLeast, 2,
                                     unit: .times, meaning: "decides")

/// The runs a side from which every run of one variant beyond every run of the other by the margin decides:
/// the exact rank (Mann–Whitney) test. When the two differ by no more than the margin, that complete ordering
/// comes by chance 1 time in C(m+n, m) each way: 2 in 70 at 4 v 4, within the 5 % two-sided risk of the 95 %
/// intervals; 3 v 3 (2 in 20) would not be.
let rankApartThreshold = Threshold("runs a side when every run of one variant lies beyond every run of the other by the margin (exact rank test)",
                                   .atLeast, 4, meaning: "decides")

/// The thresholds of a rule that compares variants by `standing` with the default margin.
let comparisonThresholds = [comparisonMarginThreshold, apartFactorThreshold, rankApartThreshold]

/// The thresholds of `rules` as one markdown table (findings.md, docs/claims.md), one line per number.
func thresholdTable(_ rules: [ClaimRule], withClaim: Bool) -> String {
    var text = withClaim ? "| id | figure | test | value | meaning |\n|---|---|---|---|---|\n" : "| figure | test | value | meaning |\n|---|---|---|---|\n"
    for rule in rules {
        for threshold in rule.thresholds {
            let cells = (withClaim ? [rule.claim] : []) + [threshold.figure, threshold.direction.rawValue, threshold.shown, threshold.meaning]
            text += "| " + cells.map(markdownCell).joined(separator: " | ") + " |\n"
        }
    }
    return text
}
