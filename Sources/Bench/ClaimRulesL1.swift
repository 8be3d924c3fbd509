import Foundation
import Vocabulary

// Claim L1: loops that pull work from one shared listener balance better than an acceptor that pushes
// connections to them round-robin, with connections of unequal cost.

extension ClaimRule {
    static let l1 = ClaimRule(
        claim: "L1",
        metric: "l1-pull-vs-push (multi-reactor, a share of connections heavy by --heavy-share/--heavy-us, short connections by --requests-per-connection): latency_p99_us and throughput_rps, --accept shared-epoll|epoll-exclusive (the loops pull) vs --accept acceptor (round-robin push)",
        threshold: "not testable here: the cells were not run for want of CPUs (needs_cpus), or the loops had fewer CPUs of their own beside the load's than loops; supported: pull's p99 below push's and its throughput not below, each by more than \(l1MarginThreshold.shown) with the whole 95 % interval beyond it (or every run at least \(apartFactorThreshold.shown) every run of the other, or with \(rankApartThreshold.shown) or more runs a side every run beyond every run of the other by that margin); refuted: pull's p99 above push's and its throughput not above, by the same test; else inconclusive",
        thresholds: [l1MarginThreshold, apartFactorThreshold, rankApartThreshold],
        columns: ["accept", "reactors", "server_cpus", "client_cpus", "latency_p99_us", "throughput_rps"],
        decide: decideL1)
}

/// The smallest relative difference L1 counts: tail latency moves more between runs than CPU per request.
let l1MarginThreshold = Threshold("pull's latency_p99_us and throughput_rps over push's (95 % interval)", .beyond, 0.10, unit: .percent, meaning: "decides")
let l1Margin = l1MarginThreshold.value

/// Push: the acceptor thread deals connections round-robin (multi-reactor's default).
private let l1Push = AcceptMode.acceptor
/// The accept modes in which every loop watches the one listener.
private let l1Pull: [AcceptMode] = [.sharedEpoll, .epollExclusive]

/// Why a group's placement cannot show the claim: fewer CPUs for the server alone than loops.
private func l1Placement(_ group: RepeatGroup) -> String? {
    let row = group.row
    let loops = row.reactors ?? 1
    guard let server = cpuSet(row.serverCPUs) else { return "server_cpus empty: each loop's core cannot be checked" }
    let own = server.subtracting(cpuSet(row.clientCPUs) ?? [])
    guard own.count < loops else { return nil }
    return "needs \(loops) loops on \(loops) cores beside the load's: server_cpus \(row.serverCPUs) and client_cpus \(row.clientCPUs.isEmpty ? "?" : row.clientCPUs) leave the loops \(own.count)"
}

func decideL1(_ data: ClaimRows) -> Finding {
    let rows = data.experiment("l1-pull-vs-push")
    // Cells preflight kept from running on a machine without the CPUs: the claim cannot be shown here.
    if let skipped = rows.first(where: { $0.status == .notApplicable && ($0.reason ?? "").hasPrefix("not testable here") }),
       !rows.contains(where: { $0.status == .ok }) {
        return data.finding(.notTestable, "the loops vs acceptor cells were not run: " + (skipped.reason ?? ""), rows: rows)
    }
    let groups = repeatGroups(rows)
    guard !groups.isEmpty else { return data.lacking("no ok rows in l1-pull-vs-push", among: rows) }
    func mode(_ group: RepeatGroup) -> String { group.variant?.accept?.rawValue ?? "unknown" }
    let variant = groups[0].variant
    let setting = [variant.flatMap { $0.heavyMicros > 0 ? "\($0.heavyShare) of connections heavy, \($0.heavyMicros) µs more per request" : nil },
                   loadFlag(groups[0].row, "--requests-per-connection").map { $0 + " requests per connection" }]
        .compactMap { $0 }.joined(separator: ", ")
    let listing = (setting.isEmpty ? "" : setting + ": ") + groups.map { group in
        "\(mode(group)) (\(group.row.reactors.map(String.init) ?? "?") loops): p99 \(figure(group, .latencyP99Us)) µs, p50 \(figure(group, .latencyP50Us)) µs, \(figure(group, .throughputRPS)) requests/s"
    }.joined(separator: "; ")
    let push = groups.first { $0.variant?.accept == l1Push }, pull = groups.first { $0.variant?.accept.map(l1Pull.contains) == true }
    guard let push, let pull else {
        return data.finding(.inconclusive, listing + "; needs ok rows with --accept \(l1Push.rawValue) and --accept \(l1Pull.map(\.rawValue).joined(separator: "|"))", rows: groups.flatMap(\.rows))
    }
    if let why = l1Placement(pull) ?? l1Placement(push) {
        return data.finding(.notTestable, listing + "; " + why + ": a busy loop and an idle one are not told apart when they share cores with the load", rows: push.rows + pull.rows)
    }
    guard let p99Pull = pull.measure(.latencyP99Us), let p99Push = push.measure(.latencyP99Us),
          let rpsPull = pull.measure(.throughputRPS), let rpsPush = push.measure(.throughputRPS) else {
        return data.finding(.inconclusive, listing + "; latency_p99_us or throughput_rps empty", rows: push.rows + pull.rows)
    }
    let latency = standing(p99Pull, p99Push, margin: l1Margin)
    let throughput = standing(rpsPull, rpsPush, margin: l1Margin)
    var text = listing + "; pull vs push: p99 \(changeText(p99Pull.median, from: p99Push.median)), throughput \(changeText(rpsPull.median, from: rpsPush.median))"
    let verdict: Verdict
    if latency == .below && throughput != .below {
        verdict = .supported
        text += ": the pulling loops keep the tail shorter"
    } else if latency == .above && throughput != .above {
        verdict = .refuted
        text += ": the round-robin acceptor keeps the tail shorter"
    } else {
        verdict = .inconclusive
        for (name, s) in [("p99", latency), ("throughput", throughput)] {
            if case .level(let why) = s { text += ", \(name): \(why)" }
        }
        if latency == .below && throughput == .below { text += ": pull's tail is shorter but it serves less" }
        if latency == .above && throughput == .above { text += ": pull's tail is longer but it serves more" }
    }
    return data.finding(verdict, text + " " + Noise.note([p99Pull, p99Push, rpsPull, rpsPush]), rows: push.rows + pull.rows)
}

/// The value of load flag `name` in a row's load_args, or nil.
private func loadFlag(_ row: ResultRow, _ name: String) -> String? {
    guard let i = row.loadArgs.firstIndex(of: name), i + 1 < row.loadArgs.count else { return nil }
    return row.loadArgs[i + 1]
}
