import Foundation
import Vocabulary

// Claims E1-E4: level- vs edge-triggered epoll and the variants that break each rule.
// Thresholds are fixed and far apart (a busy loop vs a quiet one); a variant passes one
// only when every run lies on its side.

/// E1: a busy loop and a quiet one, far apart.
let e1BusyCalls = Threshold("mux_calls_per_s of epoll-lt --epollout always, every run", .atLeast, 1000, meaning: "supported")
let e1BusyUtil = Threshold("server_cpu_util of epoll-lt --epollout always, every run", .atLeast, 0.5, meaning: "supported")
let e1QuietCalls = Threshold("mux_calls_per_s of epoll-lt on-demand and epoll-et always (supported), of epoll-lt always (refuted), every run", .below, 50, meaning: "supported / refuted")
let e1QuietUtil = Threshold("server_cpu_util of epoll-lt on-demand and epoll-et always, every run", .below, 0.1, meaning: "supported")
/// E2: ET's extra read, and what reading once per edge loses.
let e2ExtraRead = Threshold("ET - LT eagain_reads_per_req (every ET run against every LT run)", .atLeast, 0.5, meaning: "supported")
let e2NoExtraRead = Threshold("ET - LT eagain_reads_per_req (the largest difference)", .below, 0.1, meaning: "refuted")
let e2LostShare = Threshold("requests of --et-read once as a share of until-eagain's, every run", .atMost, 0.1, unit: .percent, meaning: "supported")
/// E3: a stall of a second or more, in a window that still ends on time.
let e3Stall = Threshold("stall_s of --blocking, every run", .atLeast, 1, meaning: "supported")
let e3OnTime = Threshold("duration_s of --blocking against the non-blocking row's", .within, 0.2, unit: .percent, meaning: "supported")
/// E4: a spinning accept loop and a quiet one.
let e4BusyAccepts = Threshold("accepts_per_s of epoll-lt --emfile none, every run", .atLeast, 1000, meaning: "supported")
let e4QuietAccepts = Threshold("accepts_per_s of epoll-lt reserve-fd and epoll-et none (supported), of epoll-lt none (refuted), every run", .below, 100, meaning: "supported / refuted")

extension ClaimRule {
    static let e1 = ClaimRule(
        claim: "E1",
        metric: "e1-epollout (no traffic): mux_calls_per_s and server_cpu_util per io x --epollout",
        threshold: "supported: epoll-lt always >= \(e1BusyCalls.shown) calls/s and util >= \(e1BusyUtil.shown) while epoll-lt on-demand and epoll-et always stay < \(e1QuietCalls.shown) calls/s and util < \(e1QuietUtil.shown); refuted: epoll-lt always < \(e1QuietCalls.shown) calls/s",
        thresholds: [e1BusyCalls, e1BusyUtil, e1QuietCalls, e1QuietUtil],
        columns: ["epollout", "mux_calls_per_s", "server_cpu_util"],
        decide: decideE1)

    static let e2 = ClaimRule(
        claim: "E2",
        metric: "e2-et-extra-read: eagain_reads_per_req, ET vs LT (epoll_wait_per_req shown); e2-fewer-waits (--read-size 16 of 64 B requests: LT reads once per report, ET until EAGAIN): epoll_wait_per_req, ET vs LT; e2-et-lazy-read: requests, errors, errors_timeout of --et-read once vs until-eagain",
        threshold: "supported: ET - LT EAGAIN reads/request >= \(e2ExtraRead.shown), ET's epoll_wait/request below LT's in e2-fewer-waits \(apartInWords), and --et-read once has errors with requests <= \(e2LostShare.shown) of until-eagain's while until-eagain has none; refuted: ET - LT < \(e2NoExtraRead.shown), ET's epoll_wait/request above LT's \(apartInWords), or --et-read once has no errors",
        thresholds: [e2ExtraRead, e2NoExtraRead, e2LostShare] + comparisonThresholds,
        columns: ["et_read", "eagain_reads_per_req", "epoll_wait_per_req", "requests", "errors", "errors_timeout"],
        decide: decideE2)

    static let e3 = ClaimRule(
        claim: "E3",
        metric: "e3-blocking: stall_s, stall_call, duration_s, errors of the --blocking row vs the non-blocking one",
        threshold: "supported: --blocking has stall_s >= \(e3Stall.shown), status ok and duration_s within \(e3OnTime.shown) of the non-blocking row's, which has stall_s empty or < \(e3Stall.shown) and no errors; refuted: --blocking shows no stall and no errors",
        thresholds: [e3Stall, e3OnTime],
        columns: ["blocking_sockets", "stall_s", "stall_call", "duration_s", "errors"],
        decide: decideE3)

    static let e4 = ClaimRule(
        claim: "E4",
        metric: "e4-emfile per io x --emfile: accepts_per_s, server_cpu_util, accept_emfile, server_refused, connections_served / connections_established, errors_timeout, errors_read",
        threshold: "supported: (a) LT none >= \(e4BusyAccepts.shown) (failing) accepts/s; (b) LT reserve-fd < \(e4QuietAccepts.shown) accepts/s, some refused; (c) ET none < \(e4QuietAccepts.shown) accepts/s, served < established, none refused; refuted: LT none < \(e4QuietAccepts.shown) accepts/s. CPU is shown, not judged: the served clients keep every variant busy",
        thresholds: [e4BusyAccepts, e4QuietAccepts],
        columns: ["emfile", "fd_limit", "accepts_per_s", "server_cpu_util", "accept_emfile", "server_refused",
                  "connections_served", "connections_established", "errors_timeout", "errors_read"],
        decide: decideE4)
}

/// "epoll-lt --epollout always": the flag's value in force, as the server reported it.
private func variantName(_ group: RepeatGroup, _ flag: String) -> String {
    "\(group.io) \(flag) \(group.variant?.value(of: flag) ?? "unknown")"
}

private func find(_ groups: [RepeatGroup], io: String, _ flag: String, _ value: String) -> RepeatGroup? {
    groups.first { $0.io == io && $0.variant?.value(of: flag) == value }
}

/// A median for evidence, "empty" when the column is.
private func median(_ group: RepeatGroup?, _ metric: Metric) -> String {
    group?.measure(metric).map { formatMedianCount($0.median) } ?? "empty"
}

// MARK: - E1: LT + EPOLLOUT busy-loops

func decideE1(_ data: ClaimRows) -> Finding {
    let groups = repeatGroups(data.experiment("e1-epollout").filter { $0.ioMode?.isEpoll == true })
    guard !groups.isEmpty else { return data.lacking("no ok epoll rows in e1-epollout") }
    func figures(_ group: RepeatGroup) -> String {
        "\(variantName(group, "--epollout")): \(median(group, .muxCallsPerS)) epoll_wait/s, CPU util \(median(group, .serverCPUUtil))"
    }
    func busy(_ group: RepeatGroup) -> Bool {
        e1BusyCalls.holds(group.measure(.muxCallsPerS)) && e1BusyUtil.holds(group.measure(.serverCPUUtil))
    }
    func quiet(_ group: RepeatGroup) -> Bool {
        e1QuietCalls.holds(group.measure(.muxCallsPerS)) && e1QuietUtil.holds(group.measure(.serverCPUUtil))
    }
    let measures = groups.flatMap { [$0.measure(.muxCallsPerS), $0.measure(.serverCPUUtil)].compactMap { $0 } }
    let evidence = groups.map(figures).joined(separator: "; ")
    let rows = groups.flatMap(\.rows)
    guard let ltAlways = find(groups, io: "epoll-lt", "--epollout", "always") else {
        return data.finding(.inconclusive, "no epoll-lt --epollout always row; " + evidence, rows: rows)
    }
    if e1QuietCalls.holds(ltAlways.measure(.muxCallsPerS)) {
        return data.finding(.refuted, evidence + ": LT with EPOLLOUT always is not busy " + Noise.note(measures), rows: rows)
    }
    var failed: [String] = []
    if !busy(ltAlways) { failed.append("epoll-lt always is not clearly busy") }
    for (io, value) in [("epoll-lt", "on-demand"), ("epoll-et", "always")] {
        guard let quietVariant = find(groups, io: io, "--epollout", value) else {
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
    let part3 = e2FewerWaits(repeatGroups(data.rows.filter { $0.experiment == "e2-fewer-waits" }))
    guard !part1.rows.isEmpty || !part2.rows.isEmpty || !part3.rows.isEmpty else {
        return data.lacking("no ok rows in e2-et-extra-read, e2-fewer-waits or e2-et-lazy-read")
    }
    return data.finding(combining: [part1, part3, part2])
}

/// Part 3: where one wake-up leaves bytes unread (reads smaller than a request), LT comes back through
/// epoll_wait for the rest while ET drains to EAGAIN on one report: fewer epoll_wait calls per request.
private func e2FewerWaits(_ groups: [RepeatGroup]) -> Outcome {
    let lt = groups.first { $0.ioMode == .epollLT }, et = groups.first { $0.ioMode == .epollET }
    return expectation("fewer epoll_wait (e2-fewer-waits) epoll_wait/request", ("ET", et), ("LT", lt), .epollWaitPerReq, expected: .below)
}

/// Part 1: ET's extra read per wake-up (EAGAIN), and whether it buys fewer epoll_wait calls.
private func e2ExtraRead(_ groups: [RepeatGroup]) -> Outcome {
    guard let lt = groups.first(where: { $0.ioMode == .epollLT }), let et = groups.first(where: { $0.ioMode == .epollET }) else {
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
        // Shown, not judged: with whole requests read per wake-up both wait alike; e2-fewer-waits judges it.
        text += "; epoll_wait/request ET \(formatFigure(etWaits.median)) vs LT \(formatFigure(ltWaits.median))"
        measures += [ltWaits, etWaits]
    }
    let verdict: Verdict
    if e2ExtraRead.holds(etEagain.min - ltEagain.max) {
        verdict = .supported
    } else if e2NoExtraRead.holds(etEagain.max - ltEagain.min) {
        verdict = .refuted
        text += ": ET shows no extra read"
    } else {
        verdict = .inconclusive
        text += ": ET's extra EAGAIN reads are not >= \(e2ExtraRead.shown) per request in every run"
    }
    return Outcome(verdict: verdict, text: text, measures: measures, rows: rows)
}

/// Part 2: ET reading once per edge strands bytes: its requests time out.
private func e2LazyRead(_ groups: [RepeatGroup]) -> Outcome {
    let once = groups.first { $0.variant?.edgeRead == .once }
    let untilEagain = groups.first { $0.variant?.edgeRead == .untilEAGAIN }
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
    } else if onceErrors.min > 0 && untilRequests.min > 0 && e2LostShare.holds(onceRequests.max / untilRequests.min) && untilErrors.max == 0 {
        verdict = .supported
    } else {
        verdict = .inconclusive
        text += untilErrors.max > 0 ? ": until-eagain had errors too" : ": reading once still completed > \(e2LostShare.shown) of the requests"
    }
    return Outcome(verdict: verdict, text: text, measures: [onceRequests, untilRequests], rows: rows)
}

// MARK: - E3: ET needs non-blocking descriptors

func decideE3(_ data: ClaimRows) -> Finding {
    let considered = data.experiment("e3-blocking")
    let blockingRows = considered.filter { $0.variant?.blockingSockets == true }
    guard let blocking = repeatGroups(blockingRows).first else {
        return data.lacking(blockingRows.isEmpty ? "no --blocking row" : "no ok --blocking row", among: blockingRows.isEmpty ? nil : blockingRows)
    }
    let nonBlocking = repeatGroups(considered.filter { $0.variant?.blockingSockets == false }).first
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
            if !e3OnTime.holds(min: ended.min / planned.median - 1, max: ended.max / planned.median - 1) { failed.append("the blocking run did not end on time") }
        } else {
            failed.append("duration_s empty")
        }
        if (nonBlocking.measure(.stallS)?.max ?? 0) >= e3Stall.value { failed.append("the non-blocking run stalled too") }
        if (nonBlocking.measure(.errors)?.max ?? 1) > 0 { failed.append("the non-blocking run had errors") }
    } else {
        failed.append("no ok non-blocking row to compare with")
    }
    let stalled = e3Stall.holds(stall)
    let verdict: Verdict
    if !stalled && (stall.map { $0.max < e3Stall.value } ?? true) && errors?.max == 0 {
        verdict = .refuted
        text += ": the blocking variant neither stalled nor failed requests"
    } else if !stalled {
        verdict = .inconclusive
        text += ": no stall of \(e3Stall.shown) s or more"
    } else {
        verdict = failed.isEmpty ? .supported : .inconclusive
        if !failed.isEmpty { text += ": " + failed.joined(separator: ", ") }
    }
    return data.finding(verdict, text + " " + Noise.note([stall].compactMap { $0 }), rows: rows)
}

// MARK: - E4: accept under EMFILE

func decideE4(_ data: ClaimRows) -> Finding {
    let groups = repeatGroups(data.experiment("e4-emfile").filter { $0.ioMode?.isEpoll == true })
    guard !groups.isEmpty else { return data.lacking("no ok epoll rows in e4-emfile") }
    let rows = groups.flatMap(\.rows)
    var evidence = groups.map(e4Figures).joined(separator: "; ")
    if let limit = groups.first?.variant?.fdLimit { evidence = "fd limit \(limit): " + evidence }
    let measures = groups.flatMap { [$0.measure(.acceptsPerS), $0.measure(.serverCPUUtil)].compactMap { $0 } }
    let ltNone = find(groups, io: "epoll-lt", "--emfile", "none")
    if let ltNone, e4QuietAccepts.holds(ltNone.measure(.acceptsPerS)) {
        return data.finding(.refuted, evidence + ": (a) fails: LT without a remedy is not busy " + Noise.note(measures), rows: rows)
    }
    let parts: [(name: String, holds: (RepeatGroup) -> Bool, group: RepeatGroup?, label: String)] = [
        ("(a) LT none busy-loops", e4BusyLoops, ltNone, "epoll-lt --emfile none"),
        ("(b) LT reserve-fd sheds clients", e4Sheds, find(groups, io: "epoll-lt", "--emfile", "reserve-fd"), "epoll-lt --emfile reserve-fd"),
        ("(c) ET none stops accepting", e4StopsAccepting, find(groups, io: "epoll-et", "--emfile", "none"), "epoll-et --emfile none"),
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
    e4BusyAccepts.holds(group.measure(.acceptsPerS))
}

/// (b) the reserve descriptor accepts and closes: quiet, and clients are refused promptly.
private func e4Sheds(_ group: RepeatGroup) -> Bool {
    e4QuietAccepts.holds(group.measure(.acceptsPerS)) && (group.measure(.serverRefused)?.min ?? 0) > 0
}

/// (c) the edge was consumed by the failed accept: quiet, nobody refused, the rest never served.
private func e4StopsAccepting(_ group: RepeatGroup) -> Bool {
    guard let served = group.measure(.connectionsServed), let established = group.measure(.connectionsEstablished),
          let refused = group.measure(.serverRefused) else { return false }
    return e4QuietAccepts.holds(group.measure(.acceptsPerS)) && served.median < established.median && refused.max == 0
}

private func e4Figures(_ group: RepeatGroup) -> String {
    "\(variantName(group, "--emfile")): \(median(group, .acceptsPerS)) accepts/s, CPU util \(median(group, .serverCPUUtil)), "
        + "\(median(group, .acceptEMFILE)) EMFILE, refused \(median(group, .serverRefused)), "
        + "served \(median(group, .connectionsServed))/\(median(group, .connectionsEstablished)), "
        + "\(median(group, .errorsTimeout)) timeouts, \(median(group, .errorsRead)) read errors"
}
