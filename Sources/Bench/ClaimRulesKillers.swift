import Foundation
import Vocabulary

// Claims K1-K4: the four performance killers, each a toggle measured A vs B (vs C).
// Also the comparison helpers the K, C and H rules share.

/// K3: the pool works (next to no mallocs) and per-request buffers allocate.
let k3PooledMallocs = Threshold("mallocs_per_req of --alloc pooled, every run", .below, 0.01, meaning: "needed")
/// One malloc per answer, counted by the server, over the requests the load counted: a request in flight on
/// each active connection at either edge of the window may fall on one side only, so a short window reads
/// just under 1 (0.999 over 21,681 requests with 10 active); 0.99 leaves that room and still tells 1 from 0.
let k3PerRequestMallocs = Threshold("mallocs_per_req of --alloc per-request, every run", .atLeast, 0.99, meaning: "needed")
let k3Cheap = Threshold("per-request's cpu_us_per_req over pooled's (95 % interval)", .within, 0.05, unit: .percent, meaning: "refuted")
/// K4: contention needs two workers or more.
let k4Contended = Threshold("workers", .atLeast, 2, meaning: "judged")

extension ClaimRule {
    static let k1 = ClaimRule(
        claim: "K1",
        metric: "k1-copies per --copy direct|staged|splice: cpu_us_per_req and copy_bytes_per_req (kernel<->user bytes; zerocopy_bytes_per_req shown)",
        threshold: "supported: staged's CPU/request above direct's, and splice's copy bytes/request and CPU/request below direct's, each \(apartInWords); refuted: staged's CPU below direct's, or splice's copy bytes or CPU above direct's, \(apartInWords); else inconclusive",
        thresholds: comparisonThresholds,
        columns: ["copy", "cpu_us_per_req", "copy_bytes_per_req"],
        decide: decideK1)

    static let k2 = ClaimRule(
        claim: "K2",
        metric: "k2-thread-per-connection, k2-reactor, k2-reactor-pool (100 busy connections, one core): ctx_switches_per_req and cpu_us_per_req (involuntary_switches_per_req shown)",
        threshold: "supported: the reactor is below each other model on both figures, \(apartInWords); refuted: another model is below the reactor on either, \(apartInWords); else inconclusive",
        thresholds: comparisonThresholds,
        columns: ["model", "ctx_switches_per_req", "cpu_us_per_req"],
        decide: decideK2)

    static let k3 = ClaimRule(
        claim: "K3",
        metric: "k3-alloc per --alloc pooled|per-request: mallocs_per_req (the pool works), then cpu_us_per_req from the probe-free timing window (page_faults shown)",
        threshold: "with pooled < \(k3PooledMallocs.shown) mallocs/request and per-request >= \(k3PerRequestMallocs.shown) in every run: supported when per-request's CPU per request is above pooled's \(apartInWords); refuted when it is below, or its 95 % interval lies within ±\(k3Cheap.shown) (allocation is cheap here); else inconclusive",
        thresholds: [k3PooledMallocs, k3PerRequestMallocs, k3Cheap] + comparisonThresholds,
        columns: ["alloc", "mallocs_per_req", "cpu_us_per_req"],
        decide: decideK3)

    static let k4 = ClaimRule(
        claim: "K4",
        metric: "k4-locks per workers x --queue global-lock|per-worker: futex_lock_waits_per_req and futex_lock_wait_us_per_req (waits for a lock, not for work), the 1..N worker series",
        threshold: "supported: at every worker count >= \(k4Contended.shown), global-lock above per-worker on futex lock waits or lock wait time per request, \(apartInWords); refuted: at some count >= \(k4Contended.shown) neither is above and one is below; else inconclusive",
        thresholds: [k4Contended] + comparisonThresholds,
        columns: ["workers", "queue", "futex_lock_waits_per_req", "futex_lock_wait_us_per_req"],
        decide: decideK4)
}

// MARK: - Shared by the K, C and H rules

/// The smallest relative difference a comparison counts: the interval must clear it.
let comparisonMargin = comparisonMarginThreshold.value

let apartInWords = "by more than \(comparisonMarginThreshold.shown) with the whole 95 % interval beyond it (or every run at least \(apartFactorThreshold.shown) every run of the other, or with \(rankApartThreshold.shown) or more runs a side every run beyond every run of the other by that margin)"

/// Where one figure stands against another.
enum Standing: Equatable {
    case below
    case above
    /// Not told apart; says why (the interval, or too few samples).
    case level(String)

    var opposite: Standing {
        switch self {
        case .below: return .above
        case .above: return .below
        case .level: return self
        }
    }
}

/// `a` against the reference `b`: above or below when the 95 % interval of the effect (ratio of geometric
/// means, or difference of means where a figure is 0) lies wholly beyond `margin`; or, with 2 or more
/// samples a side, when every sample of one is at least twice every sample of the other (a tiny figure's
/// spread, 0.002 vs 0.009 switches/request, cannot make 1 vs 0.005 level).
func standing(_ a: Measured, _ b: Measured, margin: Double = comparisonMargin) -> Standing {
    guard a.samples.count >= 2, b.samples.count >= 2, let effect = a.effect(against: b) else {
        return .level("\(Swift.min(a.samples.count, b.samples.count)) sample(s): no interval (needs 2 or more a side)")
    }
    if a.min >= 0 && b.min >= 0 {
        if a.min > 0 && a.min >= apartFactorThreshold.value * b.max { return .above }
        if b.min > 0 && b.min >= apartFactorThreshold.value * a.max { return .below }
    }
    // A ratio clears 1 ± margin; a difference clears ± margin of the reference's mean.
    let (up, down) = effect.kind == .ratio ? (1 + margin, 1 - margin) : (margin * abs(b.mean), -margin * abs(b.mean))
    if effect.above(up) { return .above }
    if effect.below(down) { return .below }
    // The exact rank test: with 4 or more runs a side, every run of one beyond every run of the other by the
    // margin (chance 2 in 70 both ways when they differ by no more). Welch's interval on few runs has few
    // degrees of freedom, so a steady 15 % rise whose runs never overlap can still miss it; the ordering
    // itself is the evidence then.
    if a.samples.count >= Int(rankApartThreshold.value), b.samples.count >= Int(rankApartThreshold.value) {
        let lowest = effect.kind == .ratio ? a.min / b.max : a.min - b.max
        let highest = effect.kind == .ratio ? a.max / b.min : a.max - b.min
        if lowest > up { return .above }
        if highest < down { return .below }
    }
    return .level("interval \(effect) does not clear ±\(formatPercent(margin))")
}

/// "+18 %" from b to a; "from 0" when b is 0.
func changeText(_ a: Double, from b: Double) -> String {
    b == 0 ? (a == 0 ? "+0 %" : "from 0") : formatPercent(a / b - 1, signed: true)
}

/// A median for evidence: a figure, or "empty" when the column is.
func figure(_ group: RepeatGroup?, _ metric: Metric) -> String {
    group?.measure(metric).map { formatFigure($0.median) } ?? "empty"
}

/// A median that stands for a count: "1,100", or "empty".
func count(_ group: RepeatGroup?, _ metric: Metric) -> String {
    group?.measure(metric).map { formatMedianCount($0.median) } ?? "empty"
}

/// One expected ordering as a part of a verdict: `a` should stand `expected` against `b` on `metric`.
/// The opposite, clearly, refutes; not told apart is inconclusive.
func expectation(_ label: String, _ a: (name: String, group: RepeatGroup?), _ b: (name: String, group: RepeatGroup?),
                 _ metric: Metric, unit: String = "", expected: Standing) -> Outcome {
    guard let groupA = a.group, let groupB = b.group else {
        let absent = [a, b].filter { $0.group == nil }.map(\.name).joined(separator: " and ")
        return Outcome(verdict: .inconclusive, text: "\(label): no ok \(absent) row")
    }
    let rows = groupA.rows + groupB.rows
    guard let valueA = groupA.measure(metric), let valueB = groupB.measure(metric) else {
        return Outcome(verdict: .inconclusive, text: "\(label): \(metric.name) empty", rows: rows)
    }
    var text = "\(label): \(a.name) \(formatFigure(valueA.median)) vs \(b.name) \(formatFigure(valueB.median))\(unit) (\(changeText(valueA.median, from: valueB.median)))"
    let verdict: Verdict
    switch standing(valueA, valueB) {
    case expected:
        verdict = .supported
    case .level(let why):
        verdict = .inconclusive
        text += ", " + why
    default:
        verdict = .refuted
        text += ", the opposite"
    }
    return Outcome(verdict: verdict, text: text, measures: [valueA, valueB], rows: rows)
}

/// A finding from parts, the listing of every variant's figures first.
func finding(_ data: ClaimRows, listing: String, _ outcomes: [Outcome], rows: [ResultRow], notes: [String] = []) -> Finding {
    var result = data.finding(combining: outcomes, notes: notes)
    result.evidence = listing + (result.evidence.isEmpty ? "" : "; " + result.evidence)
    result.cells = cellNumbers(rows + outcomes.flatMap(\.rows))
    return result
}

/// The claim's rows of one experiment; when none of the claim's rows carries any of `ids`,
/// the rows of `model` instead (results from a workload that named its experiments differently).
func rows(_ data: ClaimRows, experiment id: String, among ids: [String], model: String) -> [ResultRow] {
    let known = Set(data.rows.map(\.experiment))
    guard ids.contains(where: known.contains) else { return data.rows.filter { $0.model == model } }
    return data.rows.filter { $0.experiment == id }
}

// MARK: - K1: copies


func decideK1(_ data: ClaimRows) -> Finding {
    let groups = repeatGroups(data.experiment("k1-copies"))
    guard !groups.isEmpty else { return data.lacking("no ok rows in k1-copies") }
    func mode(_ group: RepeatGroup) -> String { group.variant?.copy.rawValue ?? "unknown" }
    let listing = groups.map { group in
        var text = "\(mode(group)): CPU \(figure(group, .cpuUsPerReq)) µs/request, kernel<->user copies \(figure(group, .copyBytesPerReq)) B/request"
        if let zerocopy = group.measure(.zerocopyBytesPerReq) { text += ", zero-copy \(formatFigure(zerocopy.median)) B/request" }
        return text
    }.joined(separator: "; ")
    func variant(_ copy: CopyMode) -> (name: String, group: RepeatGroup?) { (copy.rawValue, groups.first { $0.variant?.copy == copy }) }
    let outcomes = [
        expectation("staged vs direct CPU/request", variant(.staged), variant(.direct), .cpuUsPerReq, unit: " µs", expected: .above),
        expectation("splice vs direct copy bytes/request", variant(.splice), variant(.direct), .copyBytesPerReq, unit: " B", expected: .below),
        // The copy it avoids must show in CPU too: fewer bytes copied by construction would prove nothing.
        expectation("splice vs direct CPU/request", variant(.splice), variant(.direct), .cpuUsPerReq, unit: " µs", expected: .below),
    ]
    return finding(data, listing: listing, outcomes, rows: groups.flatMap(\.rows))
}

// MARK: - K2: context switches

private let k2Experiments = [("k2-thread-per-connection", "thread-per-connection"), ("k2-reactor", "reactor"), ("k2-reactor-pool", "reactor-pool")]

func decideK2(_ data: ClaimRows) -> Finding {
    let ids = k2Experiments.map(\.0)
    let found = k2Experiments.map { id, model in
        (id: id, group: repeatGroups(rows(data, experiment: id, among: ids, model: model)).first)
    }
    let present = found.compactMap(\.group)
    guard !present.isEmpty else { return data.lacking("no ok rows in \(ids.joined(separator: ", "))") }
    let listing = present.map { group in
        "\(modelName(group)): \(figure(group, .ctxSwitchesPerReq)) switches/request (\(figure(group, .involuntarySwitchesPerReq)) involuntary), CPU \(figure(group, .cpuUsPerReq)) µs/request"
    }.joined(separator: "; ")
    guard let reactor = found[1].group else {
        return finding(data, listing: listing, [Outcome(verdict: .inconclusive, text: "no ok rows in k2-reactor")], rows: present.flatMap(\.rows))
    }
    var outcomes: [Outcome] = []
    for other in [found[0], found[2]] {
        guard let group = other.group else {
            outcomes.append(Outcome(verdict: .inconclusive, text: "no ok rows in \(other.id)"))
            continue
        }
        let name = group.row.model
        outcomes.append(expectation("switches/request", ("reactor", reactor), (name, group), .ctxSwitchesPerReq, expected: .below))
        outcomes.append(expectation("CPU/request", ("reactor", reactor), (name, group), .cpuUsPerReq, unit: " µs", expected: .below))
    }
    var notes: [String] = []
    if present.allSatisfy({ cpuSet($0.row.serverCPUs)?.count == 1 }) {
        notes.append("all on one core: the many-core half of the claim is not tested here")
    }
    return finding(data, listing: listing, outcomes, rows: present.flatMap(\.rows), notes: notes)
}

// MARK: - K3: allocation

func decideK3(_ data: ClaimRows) -> Finding {
    let groups = repeatGroups(data.experiment("k3-alloc"))
    guard !groups.isEmpty else { return data.lacking("no ok rows in k3-alloc") }
    func mode(_ group: RepeatGroup) -> String { group.variant?.alloc.rawValue ?? "unknown" }
    let listing = groups.map { group in
        "\(mode(group)): \(figure(group, .mallocsPerReq)) mallocs/request, CPU \(figure(group, .cpuUsPerReq)) µs/request, page faults \(count(group, .pageFaults))"
    }.joined(separator: "; ")
    let rows = groups.flatMap(\.rows)
    guard let pooled = groups.first(where: { $0.variant?.alloc == .pooled }), let perRequest = groups.first(where: { $0.variant?.alloc == .perRequest }) else {
        let absent = AllocMode.allCases.filter { alloc in !groups.contains { $0.variant?.alloc == alloc } }.map(\.rawValue)
        return data.finding(.inconclusive, listing + "; no ok --alloc \(absent.joined(separator: " or ")) row", rows: rows)
    }
    guard let pooledMallocs = pooled.measure(.mallocsPerReq), let perRequestMallocs = perRequest.measure(.mallocsPerReq) else {
        return data.finding(.inconclusive, listing + "; mallocs_per_req empty (malloc probe off?)", rows: rows)
    }
    var failed: [String] = []
    if !k3PooledMallocs.holds(pooledMallocs) { failed.append("pooled is not below \(k3PooledMallocs.shown) mallocs/request in every run") }
    if !k3PerRequestMallocs.holds(perRequestMallocs) { failed.append("per-request is not at \(k3PerRequestMallocs.shown) malloc/request or more in every run") }
    var text = listing
    guard failed.isEmpty else {
        return data.finding(.inconclusive, text + ": " + failed.joined(separator: ", "), rows: rows)
    }
    // The pool works; what allocation costs is judged on the probe-free CPU per request.
    guard let cpuPooled = pooled.measure(.cpuUsPerReq), let cpuPerRequest = perRequest.measure(.cpuUsPerReq) else {
        return data.finding(.inconclusive, text + "; cpu_us_per_req empty", rows: rows)
    }
    let measures = [pooledMallocs, perRequestMallocs, cpuPooled, cpuPerRequest]
    text += "; per-request allocation costs \(changeText(cpuPerRequest.median, from: cpuPooled.median)) CPU/request"
    let verdict: Verdict
    switch standing(cpuPerRequest, cpuPooled) {
    case .above:
        verdict = .supported
        text += " (its 95 % interval above +\(formatPercent(comparisonMargin)))"
    case .below:
        verdict = .refuted
        text += ": allocating per request is cheaper here"
    case .level(let why):
        if let e = cpuPerRequest.effect(against: cpuPooled), e.kind == .ratio, e.within(1 - k3Cheap.value, 1 + k3Cheap.value) {
            verdict = .refuted
            text += ": allocation is cheap here, \(e) within ±\(k3Cheap.shown)"
        } else {
            verdict = .inconclusive
            text += ", " + why
        }
    }
    return data.finding(verdict, text + " " + Noise.note(measures), rows: rows)
}

// MARK: - K4: locks


func decideK4(_ data: ClaimRows) -> Finding {
    let groups = repeatGroups(data.experiment("k4-locks"))
    guard !groups.isEmpty else { return data.lacking("no ok rows in k4-locks") }
    let workerCounts = Array(Set(groups.compactMap(\.row.workers))).sorted()
    func at(_ workers: Int, _ mode: QueueMode) -> RepeatGroup? { groups.first { $0.row.workers == workers && $0.variant?.queue == mode } }
    let countsText = workerCounts.map(String.init).joined(separator: ", ")
    var listing = "at \(countsText) workers: "
    // Lock waits only: an idle worker waiting on the queue's condition variable is waiting for work, not for the lock.
    listing += [(Metric.futexLockWaitsPerReq, "futex lock waits/request"), (Metric.futexLockWaitUsPerReq, "futex lock wait µs/request")].map { metric, label in
        "\(label) " + QueueMode.allCases.map { mode in
            "\(mode.rawValue) " + workerCounts.map { figure(at($0, mode), metric) }.joined(separator: ", ")
        }.joined(separator: " vs ")
    }.joined(separator: "; ")
    let contended = workerCounts.filter { k4Contended.holds(Double($0)) }
    guard !contended.isEmpty else {
        return finding(data, listing: listing, [Outcome(verdict: .inconclusive, text: "no worker count of \(k4Contended.shown) or more")], rows: groups.flatMap(\.rows))
    }
    let outcomes = contended.map { workers -> Outcome in
        let global = (QueueMode.globalLock.rawValue, at(workers, .globalLock)), perWorker = (QueueMode.perWorker.rawValue, at(workers, .perWorker))
        let waits = expectation("\(workers) workers, futex lock waits/request", global, perWorker, .futexLockWaitsPerReq, expected: .above)
        guard global.1?.measure(.futexLockWaitUsPerReq) != nil, perWorker.1?.measure(.futexLockWaitUsPerReq) != nil else { return waits }
        let time = expectation("lock wait time", global, perWorker, .futexLockWaitUsPerReq, unit: " µs", expected: .above)
        let parts = [waits, time]
        let verdict: Verdict = parts.contains { $0.verdict == .supported } ? .supported
            : parts.contains { $0.verdict == .refuted } ? .refuted : .inconclusive
        return Outcome(verdict: verdict, text: waits.text + ", " + time.text, measures: waits.measures + time.measures, rows: waits.rows)
    }
    return finding(data, listing: listing, outcomes, rows: groups.flatMap(\.rows))
}
