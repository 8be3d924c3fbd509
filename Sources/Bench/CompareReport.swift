import Foundation

/// What `muxlab compare` prints and writes: a markdown table (stdout and NEW/compare.md) and one CSV
/// row per variant × metric (NEW/compare.csv).
extension Comparison {
    public static let csvColumns = [
        "experiment", "label", "settings", "metric", "lower_is_better", "threshold_pct", "verdict", "base_samples",
        "new_samples", "base_median", "new_median", "ratio", "ratio_low", "ratio_high", "method", "base_cells",
        "new_cells", "note", "base_merged_p99_us", "new_merged_p99_us",
    ]

    /// Lines per verdict, in the verdicts' order.
    public var counts: [(verdict: CompareVerdict, count: Int)] {
        CompareVerdict.allCases.map { verdict in (verdict, lines.filter { $0.verdict == verdict }.count) }
    }

    /// "Summary: 1 regressed, 0 improved, 10 unchanged, 2 undecided, 0 new, 0 missing (13 variant × metric lines)".
    public var summary: String {
        "Summary: " + counts.map { "\($0.count) \($0.verdict.rawValue)" }.joined(separator: ", ")
            + " (\(lines.count) variant × metric lines)"
    }

    public var table: String {
        var text = "| variant | metric | base median | new median | new / base (95 % CI) | verdict | note |\n"
        text += "|---|---|---|---|---|---|---|\n"
        for line in lines {
            let cells = [
                line.label, line.metric?.rawValue ?? "", sampleMedian(line.baseSamples).map(formatDecimal) ?? "",
                sampleMedian(line.newSamples).map(formatDecimal) ?? "", line.effect?.description ?? "", line.verdict.rawValue,
                line.note + (line.mergedP99Us.map { "; p99 of the cells' histograms added: \(formatDecimal($0.base)) → \(formatDecimal($0.new)) µs" } ?? ""),
            ]
            text += "| " + cells.map(compareCell).joined(separator: " | ") + " |\n"
        }
        return text
    }

    /// Says what `--server-extra` each side's servers ran with, when the sides differ (cells match without it).
    public var extraNote: String {
        guard baseExtra != newExtra else { return "" }
        let said = { (values: [String]) in values.isEmpty ? "none" : values.map { $0.isEmpty ? "none" : "`\($0)`" }.joined(separator: ", ") }
        return "\n\nThe servers ran with different `muxlab bench --server-extra` flags (not matched on): base \(said(baseExtra)), new \(said(newExtra))."
    }

    public var markdown: String {
        let thresholds = CompareMetric.allCases.map {
            "`\($0.rawValue)` \(formatDecimal(self.thresholds[$0])) % (\($0.lowerIsBetter ? "lower" : "higher") is better)"
        }.joined(separator: ", ")
        return """
        # muxlab compare

        Base: `\(base)` (\(baseRows.all) rows, \(baseRows.ok) ok); new: `\(new)` (\(newRows.all) rows, \(newRows.ok) ok).\(extraNote)

        Cells are matched by their settings (\(CompareKey.columns.joined(separator: ", "))), never by cell number; \
        the ok rows of one variant (its `repeat` rows, one value each; sub-window samples share their run's \
        level and are not pooled) are its samples. The ratio is new over base with its 95 % interval (Welch's t on the \
        logarithms; for values that may be 0, 1 + the difference of means over the base mean). A verdict needs the \
        whole interval beyond the threshold (regressed on the bad side, improved on the good side) or within it \
        (unchanged); anything else is undecided. A regression or improvement where either side kept a row whose \
        window the host stole more than \(disturbedSteal.shown) of the cell's CPUs from (`steal_share`; \
        `evidence_steal_share` for syscalls per request) is undecided too: that window measured the host, not the code.

        Thresholds: \(thresholds).

        \(table)
        \(summary)

        """
    }

    public var csv: String {
        var text = CSVTable.line(Comparison.csvColumns)
        for line in lines {
            let number = { (x: Double?) in x.map(formatDecimal) ?? "" }
            text += CSVTable.line([
                line.key.experiment, line.label, line.key.settings, line.metric?.rawValue ?? "",
                line.metric.map { $0.lowerIsBetter ? "true" : "false" } ?? "", line.metric == nil ? "" : formatDecimal(line.thresholdPercent),
                line.verdict.rawValue, String(line.baseSamples.count), String(line.newSamples.count),
                number(sampleMedian(line.baseSamples)), number(sampleMedian(line.newSamples)),
                ratioText(line.effect?.estimate), ratioText(line.effect?.low), ratioText(line.effect?.high), line.method,
                line.baseCells.map(String.init).joined(separator: " "), line.newCells.map(String.init).joined(separator: " "),
                line.note, number(line.mergedP99Us?.base), number(line.mergedP99Us?.new),
            ])
        }
        return text
    }

    /// One stderr line per regressed cell: its settings label, its cells in NEW and the metric.
    public var regressionMessages: [String] {
        regressions.map { line in
            let cells = line.newCells.isEmpty ? "no ok cell" : (line.newCells.count == 1 ? "cell " : "cells ")
                + line.newCells.map(String.init).joined(separator: ", ")
            return "regressed: \(line.metric?.rawValue ?? "?") of \(line.label) (\(cells) in \(new); \(line.key.settings)): "
                + "\(line.effect?.description ?? "") against a threshold of \(formatDecimal(line.thresholdPercent)) %"
        }
    }

    /// Writes NEW/compare.md and NEW/compare.csv (each replaced by rename); returns their paths.
    public func write(to directory: String) throws -> [String] {
        let paths = [directory + "/compare.md", directory + "/compare.csv"]
        try PosixFile.writeAtomically(paths[0], markdown)
        try PosixFile.writeAtomically(paths[1], csv)
        return paths
    }
}

/// The median; nil for no samples.
func sampleMedian(_ values: [Double]) -> Double? {
    guard !values.isEmpty else { return nil }
    let sorted = values.sorted()
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/// A ratio to 4 decimals: 1.0523 (formatDecimal's 3 would hide a 0.05 % step).
private func ratioText(_ x: Double?) -> String {
    guard let x, x.isFinite else { return "" }
    return String(format: "%.4f", x)
}

private func compareCell(_ text: String) -> String {
    text.replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "|", with: "\\|")
}
