import Foundation

/// Whether a long run stayed flat: the server's descriptors and RSS over the measured
/// window of each cell that kept a timeline (`timeline.csv`), read from the CSV alone.
public struct StabilityReport {
    /// Largest drift from the window's first sample that still counts as flat.
    public static let flatLimit = 0.05

    public struct Series: Equatable {
        public var cell: Int
        public var label: String
        public var samples: Int
        public var seconds: Double
        public var fds: (first: Int, last: Int, worst: Double)?
        public var rssKB: (first: Int, last: Int, worst: Double)?
        public var flat: Bool {
            (fds.map { $0.worst <= StabilityReport.flatLimit } ?? false) && (rssKB.map { $0.worst <= StabilityReport.flatLimit } ?? false)
        }

        public static func == (a: Series, b: Series) -> Bool {
            a.cell == b.cell && a.samples == b.samples && a.fds?.first == b.fds?.first && a.fds?.last == b.fds?.last
                && a.rssKB?.first == b.rssKB?.first && a.rssKB?.last == b.rssKB?.last
        }
    }

    public let series: [Series]

    /// nil when the directory has no timeline.csv.
    public static func load(directory: String) throws -> StabilityReport? {
        let path = directory + "/timeline.csv"
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let table = try CSVTable.read(path: path)
        let missing = table.missingColumns(TimelineSample.identifying + ["server_fds", "server_rss_kb"])
        guard missing.isEmpty else {
            throw DataFileError("\(path): missing column(s) \(missing.joined(separator: ", "))")
        }
        var samples: [TimelineSample] = []
        for (index, record) in table.rows.enumerated() {
            do {
                samples.append(try TimelineSample(record: record))
            } catch {
                throw DataFileError("\(path): row \(index + 1): \(error)")
            }
        }
        return StabilityReport(samples: samples)
    }

    /// Samples inside each cell's measured window (after warm-up), in file order.
    public init(samples: [TimelineSample]) {
        var order: [Int] = []
        var byCell: [Int: [TimelineSample]] = [:]
        for sample in samples where sample.phase == "measure" {
            if byCell[sample.cell] == nil { order.append(sample.cell) }
            byCell[sample.cell, default: []].append(sample)
        }
        series = order.map { cell in
            let samples = byCell[cell]!
            func drift(_ column: KeyPath<TimelineSample, Int?>) -> (first: Int, last: Int, worst: Double)? {
                let values = samples.compactMap { $0[keyPath: column] }
                guard let first = values.first, let last = values.last, first > 0 else { return nil }
                let worst = values.map { abs(Double($0 - first)) / Double(first) }.max() ?? 0
                return (first, last, worst)
            }
            return Series(cell: cell, label: samples[0].label, samples: samples.count,
                          seconds: samples[samples.count - 1].seconds - samples[0].seconds,
                          fds: drift(\.fds), rssKB: drift(\.rssKB))
        }
    }

    /// Writes `DIR/stability.md` atomically; returns its path.
    public func write(to directory: String) throws -> String {
        let path = directory + "/stability.md"
        try PosixFile.writeAtomically(path, "# Stability over the measured window\n\n" + markdown + "\n")
        return path
    }

    /// A markdown table: one line per cell.
    public var markdown: String {
        var lines = ["| cell | variant | samples | window s | server fds first → last (worst drift) | server RSS KiB first → last (worst drift) | flat (≤ \(Int(StabilityReport.flatLimit * 100)) %) |",
                     "|---|---|---|---|---|---|---|"]
        func text(_ d: (first: Int, last: Int, worst: Double)?) -> String {
            d.map { "\($0.first) → \($0.last) (\(formatDecimal($0.worst * 100)) %)" } ?? "not sampled"
        }
        for s in series {
            lines.append("| \(s.cell) | \(s.label) | \(s.samples) | \(formatDecimal(s.seconds)) | \(text(s.fds)) | \(text(s.rssKB)) | \(s.flat ? "yes" : "no") |")
        }
        return lines.joined(separator: "\n")
    }
}
