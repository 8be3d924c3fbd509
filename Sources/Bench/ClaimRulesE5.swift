import Foundation

// Claim E5: epoll keeps its descriptors in a red-black tree, so epoll_ctl costs O(log N) in the
// descriptors registered. Decided from the probe-timed epoll_ctl calls of short connections churning
// while N idle connections stay registered.

extension ClaimRule {
    static let e5 = ClaimRule(
        claim: "E5",
        metric: "e5-ctl-churn epoll rows (short connections churning while N idle ones stay registered): epoll_ctl_ns_per_call (sys_enter -> sys_exit, probe-timed) from the smallest N to the largest, per series (epoll_ctl_per_req shown)",
        threshold: "the growth is the ratio of geometric means, largest N over smallest, with its 95 % interval; refuted: the interval's lower end >= \(e5Linear.shown) x the N ratio (a list's growth); supported: its upper end <= \(e5Log.shown) x the log2 N ratio (log N growth; flat counts: a tree with warm caches may look flat); inconclusive between them, with one run a side, or when the series is too short for \(e5Linear.shown) x the N ratio to exceed \(e5Log.shown) x the log ratio (log and linear not told apart)",
        thresholds: [e5Linear, e5Log],
        columns: ["connections", "active", "epoll_ctl_ns_per_call", "epoll_ctl_per_req"],
        decide: decideE5)
}

/// Growth at least this fraction of the N ratio is a list's (linear) growth: it refutes the tree.
let e5Linear = Threshold("epoll_ctl_ns_per_call growth's interval, lower end, over the N ratio", .atLeast, 0.1, meaning: "refuted")
/// Growth up to this many times log2(N_max) / log2(N_min) is a tree's.
let e5Log = Threshold("epoll_ctl_ns_per_call growth's interval, upper end, over the log2 N ratio", .atMost, 2, meaning: "supported")
let e5LinearFraction = e5Linear.value
let e5LogAllowance = e5Log.value

extension Metric {
    static let epollCtlNsPerCall = Metric("epoll_ctl_ns_per_call", \.epollCtlNsPerCall)
    static let epollCtlPerReq = Metric("epoll_ctl_per_req", \.epollCtlPerReq)
}

func decideE5(_ data: ClaimRows) -> Finding {
    let considered = data.rows.filter { $0.ioMode?.isEpoll == true }
    let series = connectionSeries(repeatGroups(considered)).filter { $0.count >= 2 }
    guard !series.isEmpty else {
        return data.lacking("no epoll series with two or more connection counts", among: considered)
    }
    return data.finding(combining: series.map(e5Outcome))
}

private func e5Outcome(_ series: [RepeatGroup]) -> Outcome {
    let first = series[0], last = series[series.count - 1]
    let rows = series.flatMap(\.rows)
    let listing = "\(seriesName(series)): epoll_ctl " + series.map { group in
        "\(figure(group, .epollCtlNsPerCall)) ns/call (\(figure(group, .epollCtlPerReq)) calls/request) at \(formatCount(group.connections))"
    }.joined(separator: ", ")
    guard let ns0 = first.measure(.epollCtlNsPerCall), let ns1 = last.measure(.epollCtlNsPerCall) else {
        return Outcome(verdict: .inconclusive, text: listing + ": epoll_ctl_ns_per_call empty (probes off, or no epoll_ctl call)", rows: rows)
    }
    let measures = [ns0, ns1]
    let nRatio = Double(last.connections) / Double(first.connections)
    let logRatio = log2(Double(last.connections)) / log2(Double(first.connections))
    let linearBound = e5LinearFraction * nRatio, logBound = e5LogAllowance * logRatio
    var text = listing + "; growth \(formatRatio(ns1.median / ns0.median)) for \(formatRatio(nRatio)) the descriptors "
        + "(log2 ratio \(formatRatio(logRatio)); a tree <= \(formatRatio(logBound)), a list >= \(formatRatio(linearBound)))"
    guard first.connections > 1, linearBound > logBound else {
        return Outcome(verdict: .inconclusive, text: text + ": the series is too short to tell log from linear growth", measures: measures, rows: rows)
    }
    guard let growth = ns1.effect(against: ns0), growth.kind == .ratio else {
        return Outcome(verdict: .inconclusive, text: text + ": 1 run a side, no interval", measures: measures, rows: rows)
    }
    text += ", \(growth)"
    if growth.low >= linearBound {
        return Outcome(verdict: .refuted, text: text + ": grows like the descriptor count (a list, not a tree)", measures: measures, rows: rows)
    }
    if growth.high <= logBound {
        return Outcome(verdict: .supported, text: text + ": within log N growth", measures: measures, rows: rows)
    }
    return Outcome(verdict: .inconclusive, text: text + ": between log and linear growth", measures: measures, rows: rows)
}
