import Foundation

/// A figure `muxlab compare` judges: its results.csv column, which way is better, and the change it
/// tolerates unless `--threshold` says otherwise.
public enum CompareMetric: String, CaseIterable, Sendable {
    /// Server CPU per request in the timing window.
    case cpuUsPerReq = "cpu_us_per_req"
    /// The load's 99th latency percentile.
    case latencyP99Us = "latency_p99_us"
    /// The load's median latency.
    case latencyP50Us = "latency_p50_us"
    /// Requests per second the load completed.
    case throughputRPS = "throughput_rps"
    /// Server syscalls per request (evidence window, probes on).
    case syscallsPerReq = "syscalls_per_req"
    /// The load generator's own CPU per request.
    case clientCPUUsPerReq = "client_cpu_us_per_req"

    public var lowerIsBetter: Bool { self != .throughputRPS }

    /// The results.csv column of the host's steal in the window this metric is measured in.
    public var stealColumn: String { self == .syscallsPerReq ? "evidence_steal_share" : "steal_share" }

    /// Above what two back-to-back `make bench` runs of the same code moved here (2-vCPU shared VM, 2 repeats):
    /// up to 1.21x [1.13x, 1.29x] in CPU per request and 1.32x [1.24x, 1.40x] in p50; a quiet machine can pass
    /// tighter ones with --threshold.
    public var defaultThresholdPercent: Double {
        switch self {
        case .cpuUsPerReq, .throughputRPS, .clientCPUUsPerReq: return 25
        case .latencyP50Us: return 30
        case .latencyP99Us: return 50
        case .syscallsPerReq: return 20
        }
    }
}

/// The fewest requests a run (median over a variant's runs) for its p99 to be compared: 100 beyond the percentile.
let p99MinimumRequests = 10_000.0

/// An error of `muxlab compare`'s input: names the value and what is allowed.
public struct CompareError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The threshold per metric, in percent.
public struct CompareThresholds: Equatable, Sendable {
    public private(set) var percent: [CompareMetric: Double]
    public static let allowed = "a percent greater than 0 and less than 100"

    public init() {
        percent = Dictionary(uniqueKeysWithValues: CompareMetric.allCases.map { ($0, $0.defaultThresholdPercent) })
    }

    public subscript(metric: CompareMetric) -> Double { percent[metric] ?? metric.defaultThresholdPercent }

    /// Applies one `METRIC=PCT` (a trailing % is allowed); errors name the value and what is allowed.
    public mutating func set(_ argument: String) throws {
        let metrics = CompareMetric.allCases.map(\.rawValue).joined(separator: ", ")
        let parts = argument.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else {
            throw CompareError("--threshold \"\(argument)\": expected METRIC=PCT, e.g. cpu_us_per_req=5 (metrics: \(metrics))")
        }
        guard let metric = CompareMetric(rawValue: String(parts[0])) else {
            throw CompareError("--threshold \"\(argument)\": unknown metric \"\(parts[0])\" (allowed: \(metrics))")
        }
        var text = String(parts[1])
        if text.hasSuffix("%") { text.removeLast() }
        guard let value = Double(text), value.isFinite, value > 0, value < 100 else {
            throw CompareError("--threshold \"\(argument)\": \"\(parts[1])\" is not \(CompareThresholds.allowed)")
        }
        percent[metric] = value
    }
}

public enum CompareVerdict: String, CaseIterable, Sendable {
    /// The whole interval lies beyond the threshold on the bad side.
    case regressed
    /// The whole interval lies beyond the threshold on the good side.
    case improved
    /// The whole interval lies within ± the threshold.
    case unchanged
    /// No interval, or one that reaches across a bound.
    case undecided
    /// The variant ran only in NEW.
    case new
    /// The variant ran only in BASE.
    case missing
}

/// What matches cells across two runs: their settings, never the cell number, and not `repeat`
/// (rows differing only in it are samples of one variant).
public struct CompareKey: Hashable, Sendable {
    public static let columns = [
        "experiment", "model", "io", "reactors", "workers", "protocol", "connections", "active", "message_bytes",
        "target_rps", "server_args", "load_args", "load", "topology", "server_cpus", "client_cpus", "http_request", "hosts",
    ]
    public let values: [String]

    public init(_ row: [String: String]) {
        values = CompareKey.columns.map { column in
            var value = (row[column] ?? (column == "message_bytes" ? row["message_size"] : nil) ?? "")
                .trimmingCharacters(in: .whitespaces)
            // Runs from before these columns said nothing where they now say the default.
            if value.isEmpty && column == "load" { value = "muxlab" }
            if value.isEmpty && column == "topology" { value = "loopback" }
            return value
        }
    }

    public var experiment: String { values[0] }

    /// "model=reactor io=epoll-et ... client_cpus=0": every setting but the experiment, empty ones left out.
    public var settings: String {
        zip(CompareKey.columns, values).dropFirst().filter { !$0.1.isEmpty }.map { column, value in
            value.contains(" ") ? "\(column)=[\(value)]" : "\(column)=\(value)"
        }.joined(separator: " ")
    }
}

/// One variant's rows in one run (every status; only `ok` rows give samples).
struct CompareVariant {
    let key: CompareKey
    var rows: [[String: String]]
    var okRows: [[String: String]] { rows.filter { $0["status"] == CellStatus.ok.rawValue } }
    var cells: [Int] { okRows.compactMap { $0["cell"].flatMap { Int($0) } }.sorted() }

    /// The median of the ok rows' `requests` (the timing window's), nil when none says.
    var medianRequests: Double? {
        Measured(metric: "requests", samples: okRows.compactMap { $0["requests"].flatMap { Double($0) } })?.median
    }

    /// "idle-scaling-10 io=poll connections=100": the experiment and the row's own label.
    var label: String {
        let own = rows.first?["label"]?.trimmingCharacters(in: .whitespaces) ?? ""
        return own.isEmpty ? key.experiment + " " + key.settings : key.experiment + " " + own
    }

    /// The metric's samples: one value per ok row (repeat). A row's sub-window samples (`<metric>_samples`)
    /// are not pooled in: they share their run's level, and two back-to-back runs of the same code on these
    /// VMs differ by 20-30 % in some cells, so pooled sub-windows flag regressions that are only the machine.
    func samples(_ metric: CompareMetric, source: String) throws -> [Double] {
        var out: [Double] = []
        for row in okRows {
            let cell = row["cell"].map { "cell \($0)" } ?? "a row"
            if let text = row[metric.rawValue], !text.isEmpty {
                guard let value = Double(text), value.isFinite else {
                    throw CompareError("\(source): \(cell): \(metric.rawValue) = \"\(text)\": expected a number")
                }
                out.append(value)
            }
        }
        return out
    }

    /// The ok rows whose window for `metric` lost more than `disturbedSteal` to the host: (cell, share).
    /// The runner measures such a cell again, but keeps the last attempt (or, past the re-measure budget, the
    /// first) whatever its steal, so a run can still hold them.
    func disturbed(_ metric: CompareMetric) -> [(cell: Int, steal: Double)] {
        okRows.compactMap { row in
            guard let steal = row[metric.stealColumn].flatMap(Double.init), steal > disturbedSteal.value else { return nil }
            return (row["cell"].flatMap { Int($0) } ?? 0, steal)
        }
    }

    /// "2 failed (cell 5: server died ...)": how the rows ended when none was ok.
    var statusText: String {
        var counts: [String: Int] = [:]
        for row in rows { counts[row["status"] ?? "?", default: 0] += 1 }
        let parts = counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }
        let reason = rows.first { !($0["reason"] ?? "").isEmpty }.map { " (\($0["cell"].map { "cell \($0)" } ?? "a row"): \($0["reason"]!.prefix(100)))" } ?? ""
        return parts.joined(separator: ", ") + reason
    }
}

/// The variants of one results.csv, in the order they first appear.
func compareVariants(_ table: CSVTable) -> [CompareVariant] {
    var order: [CompareKey] = []
    var members: [CompareKey: CompareVariant] = [:]
    for row in table.rows {
        let key = CompareKey(row)
        if members[key] == nil {
            order.append(key)
            members[key] = CompareVariant(key: key, rows: [])
        }
        members[key]!.rows.append(row)
    }
    return order.map { members[$0]! }
}

/// One variant × metric of a comparison.
public struct CompareLine: Sendable {
    public let label: String
    public let key: CompareKey
    /// nil for a new or missing variant without any measured metric.
    public let metric: CompareMetric?
    public let thresholdPercent: Double
    public let verdict: CompareVerdict
    public let baseSamples: [Double]
    public let newSamples: [Double]
    /// NEW over BASE with its 95 % interval (a ratio; for values that may be 0, 1 + the difference of
    /// means over the base mean).
    public let effect: Effect?
    /// "ratio" (of geometric means, Welch t on logs) or "difference" (of means, over the base mean).
    public let method: String
    public let baseCells: [Int]
    public let newCells: [Int]
    public let note: String
    /// latency_p99_us only: the p99 (µs) of each side's cells' histograms added together, where every
    /// cell kept one (histograms/); shown beside the verdict, which stays the rows' interval.
    public var mergedP99Us: (base: Double, new: Double)? = nil
}

extension CompareLine {
    /// The verdict of one metric from its samples; nil when neither side measured it.
    static func judge(_ metric: CompareMetric, percent: Double, base: [Double], new: [Double])
        -> (verdict: CompareVerdict, effect: Effect?, method: String, note: String)? {
        if base.isEmpty && new.isEmpty { return nil }
        guard base.count >= 2, new.count >= 2 else {
            return (.undecided, nil, "", "\(base.count) vs \(new.count) samples (base vs new): an interval needs 2 or more a side; "
                + "add `repeat` rows (repeat = 3 in the workload) to both runs")
        }
        let t = percent / 100
        let effect: Effect
        let method: String
        if let ratio = Statistics.ratio(new, over: base) {
            (effect, method) = (ratio, "ratio")
        } else if let d = Statistics.difference(new, minus: base) {
            let mean = base.reduce(0, +) / Double(base.count)
            guard mean > 0 else {
                if d.low == 0 && d.high == 0 { return (.unchanged, nil, "difference", "0 on both sides") }
                let bad = metric.lowerIsBetter ? d.above(0) : false
                return (bad ? .regressed : .undecided, d, "difference",
                        "the base mean is 0: no relative change; the difference is \(d)")
            }
            effect = Effect(kind: .ratio, estimate: 1 + d.estimate / mean, low: 1 + d.low / mean, high: 1 + d.high / mean,
                            samples: d.samples)
            method = "difference"
        } else {
            return (.undecided, nil, "", "no interval from these samples")
        }
        let (bad, good) = metric.lowerIsBetter ? (effect.above(1 + t), effect.below(1 - t)) : (effect.below(1 - t), effect.above(1 + t))
        let band = "±\(formatDecimal(percent)) %"
        if bad { return (.regressed, effect, method, "worse by more than \(formatDecimal(percent)) %") }
        if good { return (.improved, effect, method, "better by more than \(formatDecimal(percent)) %") }
        if effect.within(1 - t, 1 + t) { return (.unchanged, effect, method, "within \(band)") }
        return (.undecided, effect, method, "the interval reaches across a bound of \(band): more repeats narrow it")
    }
}

/// Two runs compared cell by cell: variants matched by their settings, each metric judged by the
/// 95 % interval of NEW over BASE against its threshold (never from one run's difference).
public struct Comparison: Sendable {
    public let base: String
    public let new: String
    public let thresholds: CompareThresholds
    public internal(set) var lines: [CompareLine]
    /// Rows read and ok rows among them, per side.
    public let baseRows: (all: Int, ok: Int)
    public let newRows: (all: Int, ok: Int)
    /// The distinct `server_extra` flags of each side's rows (`muxlab bench --server-extra`), "" for none.
    public let baseExtra: [String]
    public let newExtra: [String]

    public var regressions: [CompareLine] { lines.filter { $0.verdict == .regressed } }

    /// Compares two results tables; `base` and `new` name them in messages.
    public init(base: CSVTable, new: CSVTable, thresholds: CompareThresholds = CompareThresholds(),
                baseName: String = "BASE", newName: String = "NEW") throws {
        self.base = baseName
        self.new = newName
        self.thresholds = thresholds
        let ok = { (t: CSVTable) in t.rows.filter { $0["status"] == CellStatus.ok.rawValue }.count }
        baseRows = (base.rows.count, ok(base))
        newRows = (new.rows.count, ok(new))
        let extra = { (t: CSVTable) in orderedDistinct(t.rows.map { ($0["server_extra"] ?? "").trimmingCharacters(in: .whitespaces) }) }
        baseExtra = extra(base)
        newExtra = extra(new)
        let baseVariants = compareVariants(base), newVariants = compareVariants(new)
        let baseByKey = Dictionary(uniqueKeysWithValues: baseVariants.map { ($0.key, $0) })
        let newKeys = Set(newVariants.map(\.key))
        var lines: [CompareLine] = []
        for variant in newVariants {
            lines += try Comparison.lines(base: baseByKey[variant.key], new: variant, thresholds: thresholds,
                                          names: (baseName, newName))
        }
        for variant in baseVariants where !newKeys.contains(variant.key) {
            lines += try Comparison.lines(base: variant, new: nil, thresholds: thresholds, names: (baseName, newName))
        }
        self.lines = lines
    }

    /// The lines of one variant: one per metric measured on either side.
    static func lines(base: CompareVariant?, new: CompareVariant?, thresholds: CompareThresholds,
                      names: (String, String)) throws -> [CompareLine] {
        let variant = new ?? base!
        var lines: [CompareLine] = []
        for metric in CompareMetric.allCases {
            let b = try base?.samples(metric, source: names.0) ?? []
            let n = try new?.samples(metric, source: names.1) ?? []
            func line(_ verdict: CompareVerdict, _ effect: Effect?, _ method: String, _ note: String) -> CompareLine {
                CompareLine(label: variant.label, key: variant.key, metric: metric, thresholdPercent: thresholds[metric],
                            verdict: verdict, baseSamples: b, newSamples: n, effect: effect, method: method,
                            baseCells: base?.cells ?? [], newCells: new?.cells ?? [], note: note)
            }
            if base == nil || new == nil {
                if !(b + n).isEmpty { lines.append(line(base == nil ? .new : .missing, nil, "", base == nil ? "only in NEW" : "only in BASE")) }
                continue
            }
            guard var judged = CompareLine.judge(metric, percent: thresholds[metric], base: b, new: n) else { continue }
            if b.isEmpty || n.isEmpty {
                let empty = b.isEmpty ? base! : new!
                let side = b.isEmpty ? "BASE" : "NEW"
                judged.note = empty.okRows.isEmpty ? "no ok rows in \(side): \(empty.statusText)" : "not measured in \(side)"
            }
            if metric == .latencyP99Us, let fewest = [base!, new!].compactMap(\.medianRequests).min(), fewest < p99MinimumRequests {
                // A p99 over N requests rests on N / 100 of them: below 100 the percentile is a handful of stragglers,
                // and two runs of the same code gave 0.44 ms and 13 ms (c3-epoll-accept, 2,000 requests a run).
                judged.verdict = .undecided
                judged.note = "p99 of a median \(Int(fewest)) requests a run: fewer than \(Int(p99MinimumRequests) / 100) beyond it, too few to compare"
            }
            if judged.verdict == .regressed || judged.verdict == .improved {
                // Same code compared with itself under 18-45 % steal "regressed" 3.3x in p99 and 1.4x in syscalls
                // per request: a window the host took CPU from measures the host, so it decides nothing either way.
                let stolen = [("BASE", base!), ("NEW", new!)].compactMap { side, variant -> String? in
                    let cells = variant.disturbed(metric)
                    guard !cells.isEmpty else { return nil }
                    return "\(side) " + cells.map { "cell \($0.cell) \(formatPercent($0.steal))" }.joined(separator: ", ")
                }
                if !stolen.isEmpty {
                    judged.note = "undecided: host steal (\(judged.verdict.rawValue) by its interval, but the host stole more than "
                        + "\(disturbedSteal.shown) of the CPUs in \(stolen.joined(separator: "; ")))"
                    judged.verdict = .undecided
                } else if let (control, host) = hostDrift(metric, base: base!, new: new!, thresholds: thresholds),
                          (host > 1) == (judged.verdict == .regressed) {
                    // Same code compared with itself "regressed" 1.4-1.5x in server CPU and p50 with no steal while the
                    // load's own CPU per request rose 1.38-1.52x in those cells: the host ran slower for both processes.
                    let who = control == .clientCPUUsPerReq ? "the load's own CPU per request" : "the server's CPU per request"
                    judged.note = "undecided: host \(host > 1 ? "slower" : "faster") (\(judged.verdict.rawValue) by its interval, but "
                        + "\(who) moved \(formatRatio(host)) the same way in these cells: the host's speed changed, "
                        + "or the change touched both the server and the load)"
                    judged.verdict = .undecided
                }
            }
            lines.append(line(judged.verdict, judged.effect, judged.method, judged.note))
        }
        if lines.isEmpty && (base == nil || new == nil) {
            let verdict: CompareVerdict = base == nil ? .new : .missing
            lines.append(CompareLine(label: variant.label, key: variant.key, metric: nil, thresholdPercent: 0, verdict: verdict,
                                     baseSamples: [], newSamples: [], effect: nil, method: "", baseCells: base?.cells ?? [],
                                     newCells: new?.cells ?? [], note: "only in \(base == nil ? "NEW" : "BASE"): \(variant.statusText)"))
        }
        return lines
    }

    /// The other process's CPU per request, median NEW over median BASE, when it moved past its own threshold:
    /// the load's for the server's figures, the server's for the load's. Server and load are separate programs
    /// on separate CPUs, so both moving the same way that far says the host ran at another speed. nil otherwise.
    static func hostDrift(_ metric: CompareMetric, base: CompareVariant, new: CompareVariant,
                          thresholds: CompareThresholds) -> (control: CompareMetric, ratio: Double)? {
        let control: CompareMetric = metric == .clientCPUUsPerReq ? .cpuUsPerReq : .clientCPUUsPerReq
        guard let b = Measured(metric: control.rawValue, samples: (try? base.samples(control, source: "BASE")) ?? [])?.median,
              let n = Measured(metric: control.rawValue, samples: (try? new.samples(control, source: "NEW")) ?? [])?.median,
              b > 0, n > 0 else { return nil }
        let limit = 1 + thresholds[control] / 100
        let ratio = n / b
        return ratio >= limit || ratio <= 1 / limit ? (control, ratio) : nil
    }

    /// Reads `DIR/results.csv` of both run directories; errors name the directory or file and what is wrong.
    public static func load(base: String, new: String, thresholds: CompareThresholds = CompareThresholds()) throws -> Comparison {
        var comparison = try Comparison(base: readResults(base), new: readResults(new), thresholds: thresholds,
                                        baseName: base, newName: new)
        comparison.addMergedP99(baseDirectory: base, newDirectory: new)
        return comparison
    }

    static func readResults(_ directory: String) throws -> CSVTable {
        try readRunResults(directory, requiring: ["experiment", "status"]).table
    }
}
