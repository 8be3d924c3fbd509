import Foundation

// Claims E1-E4: level- vs edge-triggered epoll and the variants that break each rule.
// Thresholds are fixed and far apart (a busy loop vs a quiet one); a variant passes one
// only when every run lies on its side.

extension ClaimRule {
    static let e1 = ClaimRule(
        claim: "E1",
        metric: "e1-epollout (no traffic): mux_calls_per_s and server_cpu_util per io x --epollout",
        threshold: "supported: epoll-lt always >= 1,000 calls/s and util >= 0.5 while epoll-lt on-demand and epoll-et always stay < 50 calls/s and util < 0.1; refuted: epoll-lt always < 50 calls/s",
        columns: ["server_args", "mux_calls_per_s", "server_cpu_util"],
        decide: decideE1)

    static let e2 = ClaimRule(
        claim: "E2",
        metric: "e2-et-extra-read: eagain_reads_per_req and epoll_wait_per_req, ET vs LT; e2-et-lazy-read: requests, errors, errors_timeout of --et-read once vs until-eagain",
        threshold: "supported: ET - LT EAGAIN reads/request >= 0.5, and --et-read once has errors > 0 with requests <= 10 % of until-eagain's while until-eagain has 0 errors (fewer epoll_wait reported, not required); refuted: ET - LT < 0.1, or --et-read once has 0 errors",
        columns: ["server_args", "eagain_reads_per_req", "epoll_wait_per_req", "requests", "errors", "errors_timeout"],
        decide: decideE2)

    static let e3 = ClaimRule(
        claim: "E3",
        metric: "e3-blocking: stall_s, stall_call, duration_s, errors of the --blocking row vs the non-blocking one",
        threshold: "supported: --blocking has stall_s >= 1, status ok and duration_s within 20 % of the non-blocking row's, which has stall_s empty or < 1 and 0 errors; refuted: --blocking shows no stall and 0 errors",
        columns: ["server_args", "stall_s", "stall_call", "duration_s", "errors"],
        decide: decideE3)

    static let e4 = ClaimRule(
        claim: "E4",
        metric: "e4-emfile per io x --emfile: accepts_per_s, server_cpu_util, accept_emfile, server_refused, connections_served / connections_established, errors_timeout, errors_read",
        threshold: "supported: (a) LT none >= 1,000 (failing) accepts/s; (b) LT reserve-fd < 100 accepts/s, refused > 0; (c) ET none < 100 accepts/s, served < established, refused 0; refuted: LT none < 100 accepts/s. CPU is shown, not judged: the served clients keep every variant busy",
        columns: ["server_args", "accepts_per_s", "server_cpu_util", "accept_emfile", "server_refused",
                  "connections_served", "connections_established", "errors_timeout", "errors_read"],
        decide: decideE4)
}

/// "epoll-lt --epollout always".
private func variantName(_ group: RepeatGroup, _ flag: String, default fallback: String) -> String {
    "\(group.io) \(flag) \(group.flag(flag, default: fallback))"
}

private func find(_ groups: [RepeatGroup], io: String, _ flag: String, _ value: String, default fallback: String) -> RepeatGroup? {
    groups.first { $0.io == io && $0.flag(flag, default: fallback) == value }
}

/// A median for evidence, "empty" when the column is.
private func median(_ group: RepeatGroup?, _ metric: Metric) -> String {
    group?.measure(metric).map { formatMedianCount($0.median) } ?? "empty"
}

// MARK: - E1: LT + EPOLLOUT busy-loops

/// The server's default when `--epollout` is absent.
private let epolloutDefault = "on-demand"

func decideE1(_ data: ClaimRows) -> Finding {
    let groups = repeatGroups(data.experiment("e1-epollout").filter { $0.io.hasPrefix("epoll") })
    guard !groups.isEmpty else { return data.lacking("no ok epoll rows in e1-epollout") }
    func figures(_ group: RepeatGroup) -> String {
        "\(variantName(group, "--epollout", default: epolloutDefault)): \(median(group, .muxCallsPerS)) epoll_wait/s, CPU util \(median(group, .serverCPUUtil))"
    }
    func busy(_ group: RepeatGroup) -> Bool {
        (group.measure(.muxCallsPerS)?.allAtLeast(1000) ?? false) && (group.measure(.serverCPUUtil)?.allAtLeast(0.5) ?? false)
    }
    func quiet(_ group: RepeatGroup) -> Bool {
        (group.measure(.muxCallsPerS)?.allBelow(50) ?? false) && (group.measure(.serverCPUUtil)?.allBelow(0.1) ?? false)
    }
    let measures = groups.flatMap { [$0.measure(.muxCallsPerS), $0.measure(.serverCPUUtil)].compactMap { $0 } }
    let evidence = groups.map(figures).joined(separator: "; ")
    let rows = groups.flatMap(\.rows)
    guard let ltAlways = find(groups, io: "epoll-lt", "--epollout", "always", default: epolloutDefault) else {
        return data.finding(.inconclusive, "no epoll-lt --epollout always row; " + evidence, rows: rows)
    }
    if ltAlways.measure(.muxCallsPerS)?.allBelow(50) ?? false {
        return data.finding(.refuted, evidence + ": LT with EPOLLOUT always is not busy " + Noise.note(measures), rows: rows)
    }
    var failed: [String] = []
    if !busy(ltAlways) { failed.append("epoll-lt always is not clearly busy") }
    for (io, value) in [("epoll-lt", "on-demand"), ("epoll-et", "always")] {
        guard let quietVariant = find(groups, io: io, "--epollout", value, default: epolloutDefault) else {
            failed.append("no \(io) --epollout \(value) row")
            continue
        }
        if !quiet(quietVariant) { failed.append("\(io) \(value) is not quiet") }
    }
    let verdict: Verdict = failed.isEmpty ? .supported : .inconclusive
    return data.finding(verdict, evidence + (failed.isEmpty ? "" : ": " + failed.joined(separator: ", ")) + " " + Noise.note(measures), rows: rows)
}

// MARK: - E2: ET reads until EAGAIN

func decideE2(_ data: ClaimRows) -> Finding {
    let part1 = e2ExtraRead(repeatGroups(data.rows.filter { $0.experiment == "e2-et-extra-read" }))
    let part2 = e2LazyRead(repeatGroups(data.rows.filter { $0.experiment == "e2-et-lazy-read" }))
    guard !part1.rows.isEmpty || !part2.rows.isEmpty else {
        return data.lacking("no ok rows in e2-et-extra-read or e2-et-lazy-read")
    }
    return data.finding(combining: [part1, part2])
}

/// Part 1: ET's extra read per wake-up (EAGAIN), and whether it buys fewer epoll_wait calls.
private func e2ExtraRead(_ groups: [RepeatGroup]) -> Outcome {
    guard let lt = groups.first(where: { $0.io == "epoll-lt" }), let et = groups.first(where: { $0.io == "epoll-et" }) else {
        return Outcome(verdict: .inconclusive, text: "extra read: needs ok epoll-lt and epoll-et rows in e2-et-extra-read", rows: groups.flatMap(\.rows))
    }
    let rows = lt.rows + et.rows
    guard let ltEagain = lt.measure(.eagainReadsPerReq), let etEagain = et.measure(.eagainReadsPerReq) else {
        return Outcome(verdict: .inconclusive, text: "extra read: eagain_reads_per_req empty", rows: rows)
    }
    let extra = etEagain.median - ltEagain.median
    var text = "extra read: EAGAIN reads/request ET \(formatFigure(etEagain.median)) vs LT \(formatFigure(ltEagain.median)) (+\(formatFigure(extra)))"
    var measures = [ltEagain, etEagain]
    if let ltWaits = lt.measure(.epollWaitPerReq), let etWaits = et.measure(.epollWaitPerReq) {
        let fewer = standing(etWaits, ltWaits) == .below
        text += "; epoll_wait/request ET \(formatFigure(etWaits.median)) vs LT \(formatFigure(ltWaits.median)): "
            + "\"fewer epoll_wait calls\" \(fewer ? "holds" : "does not hold here")"
        measures += [ltWaits, etWaits]
    }
    let verdict: Verdict
    if etEagain.min - ltEagain.max >= 0.5 {
        verdict = .supported
    } else if etEagain.max - ltEagain.min < 0.1 {
        verdict = .refuted
        text += ": ET shows no extra read"
    } else {
        verdict = .inconclusive
        text += ": ET's extra EAGAIN reads are not >= 0.5 per request in every run"
    }
    return Outcome(verdict: verdict, text: text, measures: measures, rows: rows)
}

/// Part 2: ET reading once per edge strands bytes: its requests time out.
private func e2LazyRead(_ groups: [RepeatGroup]) -> Outcome {
    let once = groups.first { $0.flag("--et-read") == "once" }
    let untilEagain = groups.first { $0.flag("--et-read", default: "until-eagain") == "until-eagain" }
    guard let once, let untilEagain else {
        return Outcome(verdict: .inconclusive, text: "lost events: needs ok --et-read once and until-eagain rows in e2-et-lazy-read", rows: groups.flatMap(\.rows))
    }
    let rows = once.rows + untilEagain.rows
    guard let onceRequests = once.measure(.requests), let onceErrors = once.measure(.errors),
          let untilRequests = untilEagain.measure(.requests), let untilErrors = untilEagain.measure(.errors)
    else {
        return Outcome(verdict: .inconclusive, text: "lost events: requests or errors empty", rows: rows)
    }
    var text = "lost events: --et-read once \(formatMedianCount(onceRequests.median)) requests, \(formatMedianCount(onceErrors.median)) errors "
        + "(\(median(once, .errorsTimeout)) timeouts) vs until-eagain \(formatMedianCount(untilRequests.median)) requests, \(formatMedianCount(untilErrors.median)) errors"
    let verdict: Verdict
    if onceErrors.max == 0 {
        verdict = .refuted
        text += ": reading once lost nothing"
    } else if onceErrors.min > 0 && onceRequests.max <= 0.1 * untilRequests.min && untilErrors.max == 0 {
        verdict = .supported
    } else {
        verdict = .inconclusive
        text += untilErrors.max > 0 ? ": until-eagain had errors too" : ": reading once still completed > 10 % of the requests"
    }
    return Outcome(verdict: verdict, text: text, measures: [onceRequests, untilRequests], rows: rows)
}

// MARK: - E3: ET needs non-blocking descriptors

func decideE3(_ data: ClaimRows) -> Finding {
    let considered = data.experiment("e3-blocking")
    let blockingRows = considered.filter { $0.serverFlags["--blocking"] != nil }
    guard let blocking = repeatGroups(blockingRows).first else {
        return data.lacking(blockingRows.isEmpty ? "no --blocking row" : "no ok --blocking row", among: blockingRows.isEmpty ? nil : blockingRows)
    }
    let nonBlocking = repeatGroups(considered.filter { $0.serverFlags["--blocking"] == nil }).first
    let rows = blocking.rows + (nonBlocking?.rows ?? [])
    let stall = blocking.measure(.stallS), errors = blocking.measure(.errors)
    var text = "--blocking: stall \(stall.map { formatFigure($0.median) + " s" } ?? "empty (not watched)")"
    if let call = blocking.row.stallCall, !call.isEmpty { text += " in \(call)" }
    text += ", \(median(blocking, .errors)) errors, \(median(blocking, .requests)) requests, window \(median(blocking, .durationS)) s"
    var failed: [String] = []
    if let nonBlocking {
        text += "; non-blocking: stall \(nonBlocking.measure(.stallS).map { formatFigure($0.median) + " s" } ?? "empty"), "
            + "\(median(nonBlocking, .errors)) errors, \(median(nonBlocking, .requests)) requests, window \(median(nonBlocking, .durationS)) s"
        if let ended = blocking.measure(.durationS), let planned = nonBlocking.measure(.durationS) {
            if abs(ended.max / planned.median - 1) > 0.2 || abs(ended.min / planned.median - 1) > 0.2 { failed.append("the blocking run did not end on time") }
        } else {
            failed.append("duration_s empty")
        }
        if (nonBlocking.measure(.stallS)?.max ?? 0) >= 1 { failed.append("the non-blocking run stalled too") }
        if (nonBlocking.measure(.errors)?.max ?? 1) > 0 { failed.append("the non-blocking run had errors") }
    } else {
        failed.append("no ok non-blocking row to compare with")
    }
    let stalled = stall?.allAtLeast(1) ?? false
    let verdict: Verdict
    if !stalled && (stall?.allBelow(1) ?? true) && errors?.max == 0 {
        verdict = .refuted
        text += ": the blocking variant neither stalled nor failed requests"
    } else if !stalled {
        verdict = .inconclusive
        text += ": no stall of 1 s or more"
    } else {
        verdict = failed.isEmpty ? .supported : .inconclusive
        if !failed.isEmpty { text += ": " + failed.joined(separator: ", ") }
    }
    return data.finding(verdict, text + " " + Noise.note([stall].compactMap { $0 }), rows: rows)
}

// MARK: - E4: accept under EMFILE

/// The server's default when `--emfile` is absent.
private let emfileDefault = "reserve-fd"

func decideE4(_ data: ClaimRows) -> Finding {
    let groups = repeatGroups(data.experiment("e4-emfile").filter { $0.io.hasPrefix("epoll") })
    guard !groups.isEmpty else { return data.lacking("no ok epoll rows in e4-emfile") }
    let rows = groups.flatMap(\.rows)
    var evidence = groups.map(e4Figures).joined(separator: "; ")
    if let limit = groups.first?.flag("--fd-limit"), !limit.isEmpty { evidence = "fd limit \(limit): " + evidence }
    let measures = groups.flatMap { [$0.measure(.acceptsPerS), $0.measure(.serverCPUUtil)].compactMap { $0 } }
    let ltNone = find(groups, io: "epoll-lt", "--emfile", "none", default: emfileDefault)
    if let ltNone, ltNone.measure(.acceptsPerS)?.allBelow(100) ?? false {
        return data.finding(.refuted, evidence + ": (a) fails: LT without a remedy is not busy " + Noise.note(measures), rows: rows)
    }
    let parts: [(name: String, holds: (RepeatGroup) -> Bool, group: RepeatGroup?, label: String)] = [
        ("(a) LT none busy-loops", e4BusyLoops, ltNone, "epoll-lt --emfile none"),
        ("(b) LT reserve-fd sheds clients", e4Sheds, find(groups, io: "epoll-lt", "--emfile", "reserve-fd", default: emfileDefault), "epoll-lt --emfile reserve-fd"),
        ("(c) ET none stops accepting", e4StopsAccepting, find(groups, io: "epoll-et", "--emfile", "none", default: emfileDefault), "epoll-et --emfile none"),
    ]
    let failed = parts.compactMap { part -> String? in
        guard let group = part.group else { return "\(part.name): no \(part.label) row" }
        return part.holds(group) ? nil : "\(part.name) does not hold"
    }
    let verdict: Verdict = failed.isEmpty ? .supported : .inconclusive
    return data.finding(verdict, evidence + (failed.isEmpty ? "" : ": " + failed.joined(separator: ", ")) + " " + Noise.note(measures), rows: rows)
}

/// (a) accept fails with EMFILE, the listener stays readable, the loop spins.
private func e4BusyLoops(_ group: RepeatGroup) -> Bool {
    group.measure(.acceptsPerS)?.allAtLeast(1000) ?? false
}

/// (b) the reserve descriptor accepts and closes: quiet, and clients are refused promptly.
private func e4Sheds(_ group: RepeatGroup) -> Bool {
    (group.measure(.acceptsPerS)?.allBelow(100) ?? false) && (group.measure(.serverRefused)?.min ?? 0) > 0
}

/// (c) the edge was consumed by the failed accept: quiet, nobody refused, the rest never served.
private func e4StopsAccepting(_ group: RepeatGroup) -> Bool {
    guard let served = group.measure(.connectionsServed), let established = group.measure(.connectionsEstablished),
          let refused = group.measure(.serverRefused) else { return false }
    return (group.measure(.acceptsPerS)?.allBelow(100) ?? false) && served.median < established.median && refused.max == 0
}

private func e4Figures(_ group: RepeatGroup) -> String {
    "\(variantName(group, "--emfile", default: emfileDefault)): \(median(group, .acceptsPerS)) accepts/s, CPU util \(median(group, .serverCPUUtil)), "
        + "\(median(group, .acceptEMFILE)) EMFILE, refused \(median(group, .serverRefused)), "
        + "served \(median(group, .connectionsServed))/\(median(group, .connectionsEstablished)), "
        + "\(median(group, .errorsTimeout)) timeouts, \(median(group, .errorsRead)) read errors"
}
