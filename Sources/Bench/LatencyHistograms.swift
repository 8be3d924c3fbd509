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

    /// Every bucket holding values, as `value_ns count` (the bucket's highest equivalent value, which
    /// records into the same bucket of a histogram of the same precision).
    public static func counts(_ histogram: Histogram<UInt64>, cell: Int) -> String {
        var text = countsHeader + "\n"
        text += "# cell \(cell), timing window; lowest_discernible_ns=\(histogram.lowestDiscernibleValue) "
            + "highest_trackable_ns=\(histogram.highestTrackableValue) "
            + "significant_digits=\(histogram.numberOfSignificantValueDigits.rawValue) total=\(histogram.totalCount)\n"
        for bucket in histogram.recordedValues() {
            text += "\(bucket.value) \(bucket.count)\n"
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
