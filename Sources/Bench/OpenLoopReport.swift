import Foundation

/// What the open loop costs the load generator (issue 13), read from results.csv alone. In every experiment
/// holding both open-loop rows (`target_rps` set) and closed-loop rows of `muxlab load`, each open row's client
/// CPU per request is set against the closed loop's at the same throughput: interpolated linearly, on
/// throughput, between the two closed rows of the same repeat whose throughputs bracket the open row's
/// (a closed loop cannot be asked for a throughput; its concurrency gives one). One ratio per repeat; the
/// report gives the median and the range. An open row no closed pair brackets is listed, with no ratio.
public struct OpenLoopReport {
    public struct Comparison: Equatable {
        public var experiment: String
        public var repetition: Int
        public var cell: Int
        /// The open row: its asked rate, its `load_args` (e.g. `--batch 1ms`), what it got and its CPU per request.
        public var rate: Int
        public var loadArgs: String
        public var throughput: Double
        public var openCPU: Double
        public var unsent: Int?
        /// The bracketing closed rows' connections (lower throughput first) and the interpolated CPU per
        /// request; nil when none bracket.
        public var closedConnections: [Int]?
        public var closedCPU: Double?
        public var ratio: Double? { closedCPU.map { openCPU / $0 } }
    }

    /// Issue 13's target: the open loop at most this many times the closed loop's CPU per request.
    public static let target = 1.5

    public let comparisons: [Comparison]

    public init(rows: [ResultRow]) {
        let usable = rows.filter {
            $0.status == .ok && $0.loadGenerator == .muxlab && $0.throughputRPS != nil && $0.clientCPUUsPerReq != nil
        }
        var out: [Comparison] = []
        for experiment in orderedDistinct(usable.map(\.experiment)) {
            let mine = usable.filter { $0.experiment == experiment }
            for open in mine {
                guard let rate = open.targetRPS else { continue }
                let repetition = open.repetition ?? 1
                let closed = mine.filter { $0.targetRPS == nil && ($0.repetition ?? 1) == repetition }
                let throughput = open.throughputRPS!
                var comparison = Comparison(
                    experiment: experiment, repetition: repetition, cell: open.cell ?? 0,
                    rate: rate, loadArgs: open.loadArgs.joined(separator: " "),
                    throughput: throughput, openCPU: open.clientCPUUsPerReq!, unsent: open.unsent)
                let points = closed.map { (x: $0.throughputRPS!, y: $0.clientCPUUsPerReq!, connections: $0.connections ?? 0) }
                if let (low, high) = Self.bracket(throughput, points) {
                    let t = high.x == low.x ? 0 : (throughput - low.x) / (high.x - low.x)
                    comparison.closedCPU = low.y + t * (high.y - low.y)
                    comparison.closedConnections = [low.connections, high.connections]
                }
                out.append(comparison)
            }
        }
        comparisons = out
    }

    /// The closest closed point at or below `x` and the closest at or above it; nil when `x` lies outside them.
    static func bracket(_ x: Double, _ points: [(x: Double, y: Double, connections: Int)])
        -> ((x: Double, y: Double, connections: Int), (x: Double, y: Double, connections: Int))? {
        guard let low = points.filter({ $0.x <= x }).max(by: { $0.x < $1.x }),
              let high = points.filter({ $0.x >= x }).min(by: { $0.x < $1.x }) else { return nil }
        return (low, high)
    }

    /// nil when results.csv has no open-loop row with closed-loop rows beside it.
    public static func load(directory: String) throws -> OpenLoopReport? {
        guard let rows = try ResultRow.readIfPresent(directory: directory) else { return nil }
        let report = OpenLoopReport(rows: rows)
        return report.comparisons.contains(where: { $0.closedCPU != nil }) ? report : nil
    }

    /// Median and range of the ratios of each open variant (experiment, rate, load_args) over its repeats.
    public var summaries: [(variant: String, ratios: [Double])] {
        var keys: [String] = []
        var ratios: [String: [Double]] = [:]
        for c in comparisons {
            let key = "\(c.experiment) at \(c.rate) req/s" + (c.loadArgs.isEmpty ? "" : " (\(c.loadArgs))")
            if ratios[key] == nil { keys.append(key); ratios[key] = [] }
            if let r = c.ratio { ratios[key]!.append(r) }
        }
        return keys.map { ($0, ratios[$0]!.sorted()) }
    }

    public var markdown: String {
        func f(_ x: Double?, _ digits: Int = 2) -> String { x.map { String(format: "%.\(digits)f", $0) } ?? "" }
        var text = "| cell | experiment | repeat | rate | load_args | req/s | unsent | open CPU µs/req | closed CPU µs/req (connections) | open ÷ closed |\n"
        text += "|---|---|---|---|---|---|---|---|---|---|\n"
        for c in comparisons {
            let closed = c.closedCPU.map { f($0) + " (" + c.closedConnections!.map(String.init).joined(separator: "–") + ")" } ?? "not bracketed"
            text += "| \(c.cell) | \(c.experiment) | \(c.repetition) | \(c.rate) | \(c.loadArgs) | \(f(c.throughput, 0)) | \(c.unsent.map(String.init) ?? "") | \(f(c.openCPU)) | \(closed) | \(f(c.ratio)) |\n"
        }
        text += "\n"
        for (variant, ratios) in summaries {
            guard !ratios.isEmpty else {
                text += "- \(variant): no closed-loop pair brackets its throughput; add closed variants around it\n"
                continue
            }
            let median = Measured(metric: "open ÷ closed", samples: ratios)!.median
            let verdict = ratios.last! <= Self.target ? "within" : median <= Self.target ? "median within, not every repeat" : "above"
            text += "- \(variant): open ÷ closed CPU per request median \(f(median)), range \(f(ratios.first))–\(f(ratios.last)) over \(ratios.count) repeats: \(verdict) the \(Self.target)x target\n"
        }
        return text
    }

    /// Writes `openloop.md` into the results directory; returns its path.
    public func write(to directory: String) throws -> String {
        let path = directory + "/openloop.md"
        try PosixFile.writeAtomically(path, "# Open loop: the load's CPU per request against the closed loop at the same throughput\n\n" + markdown)
        return path
    }
}
