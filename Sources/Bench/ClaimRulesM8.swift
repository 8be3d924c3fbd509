import Foundation
import Vocabulary

// Claim M8: past FD_SETSIZE, select needs a process per 1,024 connections, and the processes cost:
// select reactors in prefork holding the connections vs one epoll process holding the same load.

extension ClaimRule {
    static let m8 = ClaimRule(
        claim: "M8",
        metric: "m8-select-prefork (select reactors in prefork, past \(formatCount(fdSetSize)) connections) vs m8-epoll-reactor (one epoll process, the same connections and load): connections_established, server_refused and workers (processes), then cpu_us_per_req (ctx_switches_per_req, wakeups_per_req, mux_calls_per_req, server_threads shown)",
        threshold: "refuted: one select process held more than \(formatCount(fdSetSize)) connections (all established, none refused), or the prefork is not costlier than the epoll process on CPU per request (the 95 % interval wholly below, or within ±\(comparisonMarginThreshold.shown)); supported: the select prefork held them all with >= ceil(connections / \(formatCount(fdSetSize))) processes and its CPU per request (where the processes' switching and scans are paid) is above the epoll process's \(apartInWords); switches per request are shown, not judged (a closed-loop server switches when it finds nothing to do, so the busier variant switches less); else inconclusive",
        thresholds: comparisonThresholds,
        columns: ["model", "io", "workers", "connections", "connections_established", "server_refused", "cpu_us_per_req", "ctx_switches_per_req"],
        decide: decideM8)
}

/// The smallest relative difference M8's cost comparison counts: the interval must clear it.
let m8CostMargin = comparisonMargin

extension Metric {
    static let wakeupsPerReq = Metric("wakeups_per_req", \.wakeupsPerReq)
    static let muxCallsPerReq = Metric("mux_calls_per_req", \.muxCallsPerReq)
}

/// Server processes a row's variant ran: prefork's workers in force, else one.
private func processes(_ row: ResultRow) -> Int {
    row.variant.map { $0.model.processes(workers: $0.workers) } ?? 1
}

/// Every run established all its connections and the server refused none.
private func heldAll(_ group: RepeatGroup) -> Bool? {
    guard let established = group.measure(.connectionsEstablished), let refused = group.measure(.serverRefused) else { return nil }
    return established.allAtLeast(Double(group.connections)) && refused.max == 0
}

private func m8Listing(_ name: String, _ group: RepeatGroup) -> String {
    let n = processes(group.row)
    return "\(name) (\(n) process\(n == 1 ? "" : "es"), \(count(group, .serverThreads)) threads in all): "
        + "\(count(group, .connectionsEstablished))/\(formatCount(group.connections)) connections established, \(count(group, .serverRefused)) refused, "
        + "CPU \(figure(group, .cpuUsPerReq)) µs/request, \(figure(group, .ctxSwitchesPerReq)) switches/request, "
        + "\(figure(group, .wakeupsPerReq)) wake-ups/request, \(figure(group, .muxCallsPerReq)) mux calls/request"
}

func decideM8(_ data: ClaimRows) -> Finding {
    let select = repeatGroups(data.rows.filter { $0.ioMode == .select && ($0.connections ?? 0) > fdSetSize })
    let epoll = repeatGroups(data.rows.filter { $0.ioMode?.isEpoll == true && processes($0) == 1 })
    guard !select.isEmpty else {
        return data.lacking("no ok select row past \(formatCount(fdSetSize)) connections")
    }
    let rows = (select + epoll).flatMap(\.rows)
    // One process holding them all is the refutation: select itself would not need the processes.
    if let single = select.first(where: { processes($0.row) == 1 && heldAll($0) == true }) {
        return data.finding(.refuted, m8Listing("select, one process", single)
                            + ": one select process held more than \(formatCount(fdSetSize)) connections, none refused", rows: single.rows)
    }
    let prefork = select.filter { processes($0.row) > 1 }.max { $0.connections < $1.connections }
    guard let prefork else {
        return data.finding(.inconclusive, select.map { m8Listing("select", $0) }.joined(separator: "; ")
                            + ": no select prefork row", rows: rows)
    }
    let needed = (prefork.connections + fdSetSize - 1) / fdSetSize
    let reference = epoll.first { $0.connections == prefork.connections && $0.row.active == prefork.row.active }
    var listing = m8Listing("select prefork", prefork)
    if let reference { listing += "; " + m8Listing(reference.io, reference) }
    guard let held = heldAll(prefork) else {
        return data.finding(.inconclusive, listing + ": connections_established or server_refused empty", rows: rows)
    }
    guard held, processes(prefork.row) >= needed else {
        return data.finding(.inconclusive, listing + ": the select prefork did not hold every connection with >= \(needed) processes", rows: rows)
    }
    listing += "; the select prefork held \(formatCount(prefork.connections)) connections over \(processes(prefork.row)) processes (>= \(needed) needed)"
    guard let reference else {
        return data.finding(.inconclusive, listing + "; no ok one-process epoll row at \(formatCount(prefork.connections)) connections to compare with", rows: rows)
    }
    var cpu = m8Cost("CPU/request", prefork, reference, .cpuUsPerReq, unit: " µs")
    // Switches per request are shown, never judged. Under a closed loop a server sleeps (switches) only when it
    // finds nothing to do, so the busier variant switches less: measured here, the prefork cost +211 % and
    // +244 % CPU per request in two runs while its switches came out -17 % (wholly below) and -4.9 % (level),
    // which judged would have refuted the claim in one run and not in the other. The CPU carries the
    // processes' cost (their scans, their switching); the switches and wake-ups sit beside it.
    if let a = prefork.measure(.ctxSwitchesPerReq), let b = reference.measure(.ctxSwitchesPerReq) {
        cpu.text += "; switches/request: select prefork \(formatFigure(a.median)) vs \(reference.io) \(formatFigure(b.median)) (\(changeText(a.median, from: b.median)))"
            + (a.effect(against: b).map { ", interval \($0)" } ?? "") + " (shown, not judged: a busier closed-loop server sleeps less)"
    }
    let outcomes = [cpu]
    return finding(data, listing: listing, outcomes, rows: rows)
}

/// The prefork against the epoll process on one figure: above supports, below or level within the margin
/// refutes (the processes cost nothing measurable), an interval that straddles the margin decides nothing.
private func m8Cost(_ label: String, _ prefork: RepeatGroup, _ epoll: RepeatGroup, _ metric: Metric, unit: String) -> Outcome {
    let rows = prefork.rows + epoll.rows
    guard let a = prefork.measure(metric), let b = epoll.measure(metric) else {
        return Outcome(verdict: .inconclusive, text: "\(label): \(metric.name) empty", rows: rows)
    }
    var text = "\(label): select prefork \(formatFigure(a.median)) vs \(epoll.io) \(formatFigure(b.median))\(unit) (\(changeText(a.median, from: b.median)))"
    let verdict: Verdict
    switch standing(a, b, margin: m8CostMargin) {
    case .above:
        verdict = .supported
    case .below:
        verdict = .refuted
        text += ", the prefork is cheaper"
    case .level(let why):
        if let e = a.effect(against: b), a.samples.count >= 2, b.samples.count >= 2, e.kind == .ratio,
           e.within(1 - m8CostMargin, 1 + m8CostMargin) {
            verdict = .refuted
            text += ", not costlier: \(e) within ±\(formatPercent(m8CostMargin))"
        } else {
            verdict = .inconclusive
            text += ", " + why
        }
    }
    return Outcome(verdict: verdict, text: text, measures: [a, b], rows: rows)
}
