import Foundation
import Vocabulary

/// How one claim of CLAIMS.md is decided from `results.csv`: what it reads, the
/// threshold in words (both printed in findings.md), and the function that decides.
public struct ClaimRule {
    public let claim: String
    /// What the rule reads, naming the results.csv columns.
    public let metric: String
    /// When each verdict is given, in words; its numbers are interpolated from `thresholds`.
    public let threshold: String
    /// The numbers the rule decides by, as data (figure, direction, value); printed as a table.
    public let thresholds: [Threshold]
    /// results.csv columns the rule reads; a file without one of them leaves the claim inconclusive.
    public let columns: [String]
    let decide: (ClaimRows) -> Finding

    /// The rules implemented so far, in CLAIMS.md order.
    public static let all: [ClaimRule] = [.m1, .m2, .m3, .m4, .m5, .m6, .m7, .m8, .e1, .e2, .e3, .e4, .e5, .k1, .k2, .k3, .k4,
                                          .c1, .c2, .c3, .c4, .c5, .c6, .c7, .c8, .c9, .t1, .l1, .h1, .h2, .h3, .s1]

    public static func rule(for claim: String) -> ClaimRule? {
        all.first { $0.claim == claim }
    }
}

/// What a rule is given: the rows naming its claim (every status), the whole
/// file for cross-references, and syscalls.csv when it was present.
struct ClaimRows {
    let claim: String
    let rows: [ResultRow]
    let allRows: [ResultRow]
    let syscalls: [SyscallCount]?

    /// Rows of one experiment, or every row of the claim when none carries that experiment id.
    func experiment(_ id: String) -> [ResultRow] {
        let matching = rows.filter { $0.experiment == id }
        return matching.isEmpty ? rows : matching
    }

    func finding(_ verdict: Verdict, _ evidence: String, rows used: [ResultRow] = []) -> Finding {
        Finding(claim: claim, verdict: verdict, evidence: evidence, cells: cellNumbers(used))
    }

    /// Several outcomes (series, variants, parts) combined: any refuted refutes,
    /// all supported supports, anything else is inconclusive. The noise note covers every figure used.
    func finding(combining outcomes: [Outcome], notes: [String] = []) -> Finding {
        let verdicts = outcomes.map(\.verdict)
        let verdict: Verdict =
            verdicts.contains(.refuted) ? .refuted
            : (!verdicts.isEmpty && verdicts.allSatisfy { $0 == .supported }) ? .supported
            : .inconclusive
        let measures = outcomes.flatMap(\.measures)
        var parts = outcomes.map(\.text) + notes
        if !measures.isEmpty { parts[parts.count - 1] += " " + Noise.note(measures) }
        return finding(verdict, parts.joined(separator: "; "), rows: outcomes.flatMap(\.rows))
    }

    /// Inconclusive for want of data: says what was looked for and how the claim's rows ended.
    func lacking(_ what: String, among considered: [ResultRow]? = nil) -> Finding {
        let considered = considered ?? rows
        return finding(.inconclusive, what + "; " + statusSummary(considered), rows: considered)
    }
}

/// One part of a verdict: a series, a variant or a half of a claim.
struct Outcome {
    var verdict: Verdict
    var text: String
    var measures: [Measured] = []
    var rows: [ResultRow] = []
}

/// "rows: 2 ok, 1 failed (cell 5: server died ...)": how the rows ended, with the first reason of each kind.
func statusSummary(_ rows: [ResultRow]) -> String {
    guard !rows.isEmpty else { return "no such rows" }
    var parts: [String] = []
    for status in CellStatus.allCases {
        let matching = rows.filter { $0.status == status }
        guard !matching.isEmpty else { continue }
        var part = "\(matching.count) \(status.rawValue)"
        if status != .ok, let first = matching.first(where: { $0.reason != nil }) {
            part += " (\(cellName(first)): \(shortReason(first)))"
        }
        parts.append(part)
    }
    return "rows: " + parts.joined(separator: ", ")
}

func cellName(_ row: ResultRow) -> String { row.cell.map { "cell \($0)" } ?? "a row" }

/// A failure reason cut to one readable clause.
func shortReason(_ row: ResultRow, limit: Int = 120) -> String {
    let reason = row.reason ?? "no reason given"
    return reason.count <= limit ? reason : String(reason.prefix(limit)) + "..."
}

func cellNumbers(_ rows: [ResultRow]) -> [Int] {
    Array(Set(rows.compactMap(\.cell))).sorted()
}

// MARK: - Metrics and repeats

/// A figure read from a row: a column, or one derived from columns (bytes per call).
struct Metric {
    let name: String
    let value: (ResultRow) -> Double?

    init(_ column: String, _ path: KeyPath<ResultRow, Double?>) {
        name = column
        value = { $0[keyPath: path] }
    }

    init(_ column: String, _ path: KeyPath<ResultRow, Int?>) {
        name = column
        value = { $0[keyPath: path].map(Double.init) }
    }

    init(name: String, value: @escaping (ResultRow) -> Double?) {
        self.name = name
        self.value = value
    }

    static let cpuUsPerReq = Metric("cpu_us_per_req", \.cpuUsPerReq)
    static let syscallsPerReq = Metric("syscalls_per_req", \.syscallsPerReq)
    static let fdsetBytesPerReq = Metric("fdset_bytes_per_req", \.fdsetBytesPerReq)
    static let scannedPerWakeup = Metric("scanned_per_wakeup", \.scannedPerWakeup)
    static let requests = Metric("requests", \.requests)
    static let errors = Metric("errors", \.errors)
    static let errorsTimeout = Metric("errors_timeout", \.errorsTimeout)
    static let errorsRead = Metric("errors_read", \.errorsRead)
    static let durationS = Metric("duration_s", \.durationS)
    static let stallS = Metric("stall_s", \.stallS)
    static let muxCallsPerS = Metric("mux_calls_per_s", \.muxCallsPerS)
    static let acceptsPerS = Metric("accepts_per_s", \.acceptsPerS)
    static let serverCPUUtil = Metric("server_cpu_util", \.serverCPUUtil)
    static let muxEventsPerCall = Metric("mux_events_per_call", \.muxEventsPerCall)
    static let epollBytesOutPerCall = Metric("epoll_bytes_out_per_call", \.epollBytesOutPerCall)
    static let mmapCalls = Metric("mmap_calls", \.mmapCalls)
    static let eagainReadsPerReq = Metric("eagain_reads_per_req", \.eagainReadsPerReq)
    static let epollWaitPerReq = Metric("epoll_wait_per_req", \.epollWaitPerReq)
    static let serverRefused = Metric("server_refused", \.serverRefused)
    static let acceptEMFILE = Metric("accept_emfile", \.acceptEMFILE)
    static let connectionsServed = Metric("connections_served", \.connectionsServed)
    static let connectionsEstablished = Metric("connections_established", \.connectionsEstablished)
    static let copyBytesPerReq = Metric("copy_bytes_per_req", \.copyBytesPerReq)
    static let zerocopyBytesPerReq = Metric("zerocopy_bytes_per_req", \.zerocopyBytesPerReq)
    static let ctxSwitchesPerReq = Metric("ctx_switches_per_req", \.ctxSwitchesPerReq)
    static let involuntarySwitchesPerReq = Metric("involuntary_switches_per_req", \.involuntarySwitchesPerReq)
    static let mallocsPerReq = Metric("mallocs_per_req", \.mallocsPerReq)
    static let pageFaults = Metric("page_faults", \.pageFaults)
    static let futexWaitsPerReq = Metric("futex_waits_per_req", \.futexWaitsPerReq)
    static let futexWaitUsPerReq = Metric("futex_wait_us_per_req", \.futexWaitUsPerReq)
    static let futexLockWaitsPerReq = Metric("futex_lock_waits_per_req", \.futexLockWaitsPerReq)
    static let futexLockWaitUsPerReq = Metric("futex_lock_wait_us_per_req", \.futexLockWaitUsPerReq)
    static let throughputRPS = Metric("throughput_rps", \.throughputRPS)
    static let latencyP50Us = Metric("latency_p50_us", \.latencyP50Us)
    static let latencyP99Us = Metric("latency_p99_us", \.latencyP99Us)
    static let latencyP999Us = Metric("latency_p999_us", \.latencyP999Us)
    static let serverThreads = Metric("server_threads", \.serverThreads)
    static let serverRSSKB = Metric("server_rss_kb", \.serverRSSKB)
    static let serverPSSKBPerConn = Metric("server_pss_kb_per_conn", \.serverPSSKBPerConn)
    static let eventpollMappings = Metric("eventpoll_mappings", \.eventpollMappings)
    static let kernelSlabKBPerConn = Metric("kernel_slab_kb_per_conn", \.kernelSlabKBPerConn)
    static let serverThreadsStarted = Metric("server_threads_started", \.serverThreadsStarted)
    static let wakeupsPerAccept = Metric("wakeups_per_accept", \.wakeupsPerAccept)
    static let acceptCallsPerAccept = Metric("accept_calls_per_accept", \.acceptCallsPerAccept)
    static let timeWaitServer = Metric("time_wait_server", \.timeWaitServer)
    static let timeWaitClient = Metric("time_wait_client", \.timeWaitClient)
    static let serverFDsStart = Metric("server_fds_start", \.serverFDsStart)
    static let serverFDsEnd = Metric("server_fds_end", \.serverFDsEnd)
    static let closedByServer = Metric("closed_by_server", \.closedByServer)
    static let hangups = Metric("hangups", \.hangups)
    static let connectionsOpened = Metric("connections_opened", \.connectionsOpened)

    /// fd-set bytes per multiplexer call: the copy of one call, which the claim says grows with the set.
    static let fdsetBytesPerCall = Metric(name: "fdset_bytes_per_req / mux_calls_per_req") { row in
        guard let bytes = row.fdsetBytesPerReq, let calls = row.muxCallsPerReq, calls > 0 else { return nil }
        return bytes / calls
    }

    /// Readiness reports per request: events per multiplexer call x calls per request.
    static let reportsPerReq = Metric(name: "mux_events_per_call x mux_calls_per_req") { row in
        guard let events = row.muxEventsPerCall, let calls = row.muxCallsPerReq else { return nil }
        return events * calls
    }
}

/// One figure of a variant: its samples (one per repeat), their median, and the interval against another variant's.
struct Measured {
    let metric: String
    /// Sorted.
    let samples: [Double]

    init?(metric: String, samples: [Double]) {
        guard !samples.isEmpty else { return nil }
        self.metric = metric
        self.samples = samples.sorted()
    }

    var median: Double {
        let n = samples.count
        return n % 2 == 1 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2
    }
    var min: Double { samples[0] }
    var max: Double { samples[samples.count - 1] }
    var mean: Double { samples.reduce(0, +) / Double(samples.count) }

    /// Every sample is at or above the threshold.
    func allAtLeast(_ threshold: Double) -> Bool { min >= threshold }
    /// Every sample is below the threshold.
    func allBelow(_ threshold: Double) -> Bool { max < threshold }

    /// This figure against the reference `b`: the ratio of geometric means when every sample is positive,
    /// else the difference of means; with its 95 % interval (`Statistics`). nil under 2 samples a side.
    func effect(against b: Measured) -> Effect? {
        Statistics.ratio(samples, over: b.samples) ?? Statistics.difference(samples, minus: b.samples)
    }
}

/// How a comparison is decided (the report's "how verdicts are decided" section prints these words).
enum Noise {
    static let method = "each comparison takes the samples of both variants (one per repeat: the repeats run interleaved, and a run's sub-windows share its level, so they are not independent samples) and computes the ratio of geometric means with a 95 % Welch t interval on the logarithms (a difference of means where a figure can be 0); a variant is above or below the other only when the whole interval clears the margin, otherwise the comparison is inconclusive and its interval is printed; fewer than 2 samples a side give no interval and decide nothing; every repeat of one at least \(apartFactorThreshold.shown) every repeat of the other (2 or more a side) counts as apart whatever the spread, and so does, with \(rankApartThreshold.shown) or more repeats a side, every repeat of one beyond every repeat of the other by the margin (the exact rank test: when the two differ by no more than the margin, that complete ordering comes by chance 1 time in C(m+n, m) each way, 2 in 70 at 4 v 4, within the intervals' 5 % two-sided risk; Welch's interval on few repeats has few degrees of freedom and can miss a steady 15 % rise whose repeats never overlap); a cell whose window the host stole more than \(disturbedSteal.shown) of its CPUs from is measured again after the other cells (`steal_share`, `attempts`; the set-aside attempt in disturbed.csv), so a minute of another guest's load does not become a sample"

    /// "(2 runs a variant)" or "(1 run: no interval)", over the figures used (one sample per run).
    static func note(_ values: [Measured]) -> String {
        let runs = values.map(\.samples.count).min() ?? 1
        return runs > 1 ? "(\(runs) runs a variant)" : "(1 run: no interval)"
    }
}

/// The parameters that tell variants apart: everything but `repeat`.
struct VariantKey: Hashable {
    var experiment: String
    var model: String
    var io: String
    var reactors: Int?
    var workers: Int?
    var `protocol`: String
    var connections: Int?
    var active: Int?
    var messageBytes: Int?
    var targetRPS: Int?
    var serverArgs: [String]
    var loadArgs: [String]

    init(_ row: ResultRow) {
        experiment = row.experiment
        model = row.model
        io = row.io
        reactors = row.reactors
        workers = row.workers
        self.protocol = row.protocol
        connections = row.connections
        active = row.active
        messageBytes = row.messageBytes
        targetRPS = row.targetRPS
        serverArgs = row.serverArgs
        loadArgs = row.loadArgs
    }
}

/// The ok rows of one variant: one per repeat.
struct RepeatGroup {
    let rows: [ResultRow]
    var row: ResultRow { rows[0] }
    var io: String { row.io }
    var ioMode: IOMode? { row.ioMode }
    var connections: Int { row.connections ?? 0 }

    /// The metric's samples: one value per repeat. The repeat is the unit of replication: a run's sub-windows
    /// (`cpu_us_per_req_samples`) share that run's level, which moves 5-25 % between runs on a shared VM, so
    /// pooling them would give intervals narrower than the run-to-run truth (verdicts that flip between runs).
    func measure(_ metric: Metric) -> Measured? {
        Measured(metric: metric.name, samples: rows.compactMap(metric.value))
    }

    /// The server variant in force, as its ready message reported it (nil: not recorded).
    var variant: ServerVariant? { row.variant }
}

/// The ok rows grouped by variant, repeats together, in the order variants first appear.
func repeatGroups(_ rows: [ResultRow]) -> [RepeatGroup] {
    var order: [VariantKey] = []
    var members: [VariantKey: [ResultRow]] = [:]
    for row in rows where row.status == .ok {
        let key = VariantKey(row)
        if members[key] == nil { order.append(key) }
        members[key, default: []].append(row)
    }
    return order.map { RepeatGroup(rows: members[$0]!) }
}

/// Groups that differ only in `connections`, each series sorted by connections.
func connectionSeries(_ groups: [RepeatGroup]) -> [[RepeatGroup]] {
    var order: [VariantKey] = []
    var members: [VariantKey: [RepeatGroup]] = [:]
    for group in groups {
        var key = VariantKey(group.row)
        key.connections = nil
        if members[key] == nil { order.append(key) }
        members[key, default: []].append(group)
    }
    return order.map { members[$0]!.sorted { $0.connections < $1.connections } }
}

/// "poll, 10 active".
func seriesName(_ series: [RepeatGroup]) -> String {
    let row = series[0].row
    return row.active.map { "\(row.io), \(formatCount($0)) active" } ?? row.io
}

/// Where linear growth is measured from: the smallest count of at least 100 below
/// the largest, else the smallest. Below ~100 descriptors the fixed ones (stdio,
/// listener) and select's 64-bit fd_set words dominate, hiding the slope.
func linearBaseline(_ series: [RepeatGroup]) -> RepeatGroup {
    let largest = series[series.count - 1].connections
    return series.first { $0.connections >= linearBaselineConnections && $0.connections < largest } ?? series[0]
}

let linearBaselineConnections = 100

// MARK: - Numbers in evidence

/// Three significant digits, thousands grouped: 9.1, 147, 16,100, 0.0031.
func formatFigure(_ value: Double) -> String {
    guard value.isFinite else { return "?" }
    guard value != 0 else { return "0" }
    let magnitude = Int(floor(log10(abs(value))))
    let decimals = Swift.max(0, 2 - magnitude)
    let scale = pow(10, Double(magnitude - 2))
    let rounded = decimals > 0 ? value : (value / scale).rounded() * scale
    var text = String(format: "%.\(decimals)f", rounded)
    if text.contains(".") {
        while text.hasSuffix("0") { text.removeLast() }
        if text.hasSuffix(".") { text.removeLast() }
    }
    return groupThousands(text)
}

/// 10,000.
func formatCount(_ value: Int) -> String { groupThousands(String(value)) }

/// A median that stands for a count: 1100 -> "1,100", 2.5 -> "2.5".
func formatMedianCount(_ value: Double) -> String {
    value == value.rounded() && abs(value) < 1e15 ? formatCount(Int(value)) : formatFigure(value)
}

/// 0.14 -> "14 %", 0.031 -> "3.1 %"; with `signed`, "+14 %" / "-3.1 %".
func formatPercent(_ fraction: Double, signed: Bool = false) -> String {
    let percent = fraction * 100
    var text = abs(percent) >= 10 ? String(Int(abs(percent).rounded())) : formatFigure(abs(percent).rounded(toPlaces: 1))
    if signed { text = (percent < 0 && text != "0" ? "-" : "+") + text } else if percent < 0 { text = "-" + text }
    return text + " %"
}

/// 16.2 -> "16x", 1.53 -> "1.5x".
func formatRatio(_ value: Double) -> String {
    guard value.isFinite else { return "?x" }
    return (value >= 10 ? formatFigure(value.rounded()) : formatFigure(value.rounded(toPlaces: value >= 1 ? 1 : 2))) + "x"
}

private func groupThousands(_ text: String) -> String {
    let negative = text.hasPrefix("-")
    let body = negative ? String(text.dropFirst()) : text
    let parts = body.split(separator: ".", maxSplits: 1)
    var whole = String(parts[0])
    guard whole.count > 3 else { return text }
    var grouped = ""
    while whole.count > 3 {
        grouped = "," + whole.suffix(3) + grouped
        whole.removeLast(3)
    }
    grouped = whole + grouped
    return (negative ? "-" : "") + grouped + (parts.count > 1 ? "." + parts[1] : "")
}

private extension Double {
    func rounded(toPlaces places: Int) -> Double {
        let scale = Foundation.pow(10, Double(places))
        return (self * scale).rounded() / scale
    }
}
