import Foundation
import Histogram
import Load

/// The whole latency distribution of each cell's timing window, kept beside results.csv:
/// `DIR/histograms/cell-N.hgrm`, HdrHistogram's own percentile distribution (µs), to read or plot, and
/// `DIR/histograms/cell-N.counts`, every recorded bucket as `value_ns count`, to re-read and add exactly.
public enum LatencyHistogramFiles {
    /// The `.counts` layout, named in its first line.
    static let countsHeader = "# muxlab latency histogram v1: one line per recorded bucket, `value_ns count`"

    /// `DIR/histograms/cell-N.hgrm` and `.counts`.
    public static func paths(directory: String, cell: Int) -> (hgrm: String, counts: String) {
        let base = "\(directory)/histograms/cell-\(cell)"
        return (base + ".hgrm", base + ".counts")
    }

    /// HdrHistogram's percentile distribution of a nanosecond histogram, values in µs.
    public static func percentileDistribution(_ histogram: Histogram<UInt64>) -> String {
        var text = ""
        histogram.outputPercentileDistribution(to: &text, outputValueUnitScalingRatio: 1000)
        return text
    }

    /// Every bucket holding values, as `value_ns count`: the bucket's highest equivalent value, which
    /// records into the same bucket of a histogram of the same precision; in the last bucket the largest
    /// value recorded, so that the maximum (and p100) reads back exactly.
    public static func counts(_ histogram: Histogram<UInt64>, cell: Int) -> String {
        var text = countsHeader + "\n"
        text += "# cell \(cell), timing window; lowest_discernible_ns=\(histogram.lowestDiscernibleValue) "
            + "highest_trackable_ns=\(histogram.highestTrackableValue) "
            + "significant_digits=\(histogram.numberOfSignificantValueDigits.rawValue) total=\(histogram.totalCount)\n"
        let max = histogram.maxRecorded
        for bucket in histogram.recordedValues() {
            text += "\(histogram.valuesAreEquivalent(bucket.value, max) ? max : bucket.value) \(bucket.count)\n"
        }
        return text
    }

    /// Reads a `.counts` file back into a histogram of muxlab load's precision; errors name the file and line.
    public static func read(counts path: String) throws -> Histogram<UInt64> {
        let text = try PosixFile.readText(path)
        guard text.hasPrefix(countsHeader) else {
            throw DataFileError("\(path): not a muxlab latency histogram (its first line should be \"\(countsHeader)\")")
        }
        var histogram = LoadGenerator.newHistogram()
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(separator: " ")
            guard fields.count == 2, let value = UInt64(fields[0]), let count = UInt64(fields[1]) else {
                throw DataFileError("\(path): line \(number + 1): \"\(line.prefix(80))\": expected `value_ns count`, two whole numbers")
            }
            guard histogram.record(value, count: count) else {
                throw DataFileError("\(path): line \(number + 1): \(value) ns is beyond the \(histogram.highestTrackableValue) ns the histogram tracks")
            }
        }
        return histogram
    }

    /// Writes both files of one cell (each replaced by rename); returns their paths.
    @discardableResult
    public static func write(_ histogram: Histogram<UInt64>, cell: Int, directory: String) throws -> [String] {
        let (hgrm, counts) = paths(directory: directory, cell: cell)
        try PosixFile.makeDirectories(directory + "/histograms")
        try PosixFile.writeAtomically(hgrm, percentileDistribution(histogram))
        try PosixFile.writeAtomically(counts, Self.counts(histogram, cell: cell))
        return [hgrm, counts]
    }
}

extension BenchRunner {
    /// Keeps the load's histogram of window `id` in the run directory (nothing when the load sent none).
    func keepLatencyHistogram(_ cell: Cell, from load: LoadDriver, window id: Int) throws {
        guard let histogram = load.latencyHistogram(window: id), histogram.totalCount > 0 else { return }
        do {
            try LatencyHistogramFiles.write(histogram, cell: cell.index, directory: options.outDirectory)
        } catch {
            throw CellFailure("cannot keep the latency histogram: \(error)")
        }
    }
}

extension Comparison {
    /// Adds to each latency_p99_us line the p99 of each side's histograms added together (the tail of all
    /// the variant's requests), where every ok cell on both sides kept one.
    mutating func addMergedP99(baseDirectory: String, newDirectory: String) {
        for i in lines.indices where lines[i].metric == .latencyP99Us {
            guard let base = Self.mergedP99(baseDirectory, cells: lines[i].baseCells),
                  let new = Self.mergedP99(newDirectory, cells: lines[i].newCells) else { continue }
            lines[i].mergedP99Us = (base, new)
        }
    }

    /// The p99 (µs) of these cells' histograms added together; nil when a cell has none.
    static func mergedP99(_ directory: String, cells: [Int]) -> Double? {
        guard !cells.isEmpty else { return nil }
        var merged = LoadGenerator.newHistogram()
        for cell in cells {
            let path = LatencyHistogramFiles.paths(directory: directory, cell: cell).counts
            guard let histogram = try? LatencyHistogramFiles.read(counts: path) else { return nil }
            merged.add(histogram)
        }
        return merged.totalCount > 0 ? Double(merged.valueAtPercentile(99)) / 1000 : nil
    }
}
