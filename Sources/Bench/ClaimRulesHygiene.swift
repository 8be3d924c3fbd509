import Foundation
import Vocabulary

// Claims H1-H3: connection hygiene. Each variant is broken or fixed on purpose; the
// thresholds are far apart (killed or not, thousands of TIME_WAIT sockets or none).

/// H2: TIME_WAIT sockets that count as many, and how lopsided the two sides must be.
let h2Many = Threshold("time_wait_server of server-first, time_wait_client of client-first, every run", .atLeast, 100, meaning: "supported")
let h2Lopsided = Threshold("server-first's time_wait_server over client-first's", .atLeast, 10, unit: .times, meaning: "supported")
let h2Residue = Threshold("client-first's time_wait_server as a share of its time_wait_client", .atMost, 0.01, unit: .percent, meaning: "supported")
/// H3: how much of the idle connections' descriptors must go, and how little may move without a timeout.
let h3Reaped = Threshold("server_fds_start - server_fds_end with the timeout, as a share of the idle connections", .atLeast, 0.5, unit: .percent, meaning: "supported (without it: refuted)")
let h3Kept = Threshold("server_fds_start - server_fds_end without the timeout, as a share of the idle connections", .below, 0.1, unit: .percent, meaning: "supported")

extension ClaimRule {
    static let h1 = ClaimRule(
        claim: "H1",
        metric: "h1-sigpipe (clients hang up unread): server_exit of --sigpipe default vs the default SIG_IGN, hangups",
        threshold: "supported: --sigpipe default's server_exit names signal 13 (SIGPIPE) in every run and the ignoring server's is empty in every run; refuted: --sigpipe default survives every run although clients hung up (hangups counted); else inconclusive",
        thresholds: [],
        columns: ["sigpipe", "server_exit", "hangups"],
        decide: decideH1)

    static let h2 = ClaimRule(
        claim: "H2",
        metric: "h2-time-wait (short http connections) per --close client-first|server-first: time_wait_server and time_wait_client (connections_opened, closed_by_server shown)",
        threshold: "supported: server-first leaves >= \(h2Many.shown) TIME_WAIT on the server and >= \(h2Lopsided.shown) client-first's; client-first leaves >= \(h2Many.shown) on the client and <= \(h2Residue.shown) of that on the server; refuted: in either variant the side that did not close holds >= \(h2Many.shown) and more than the closer; else inconclusive",
        thresholds: [h2Many, h2Lopsided, h2Residue],
        columns: ["close", "time_wait_server", "time_wait_client"],
        decide: decideH2)

    static let h3 = ClaimRule(
        claim: "H3",
        metric: "h3-idle-timeout (connections - active idle) with and without --idle-timeout: server_fds_start - server_fds_end, closed_by_server",
        threshold: "supported: with the timeout the fd count falls by >= \(h3Reaped.shown) of the idle connections and the server closed some (closed_by_server), while without it the count moves by < \(h3Kept.shown) of them; refuted: without a timeout the count falls by >= \(h3Reaped.shown) of the idle connections; else inconclusive",
        thresholds: [h3Reaped, h3Kept],
        columns: ["connections", "active", "idle_timeout_s", "server_fds_start", "server_fds_end", "closed_by_server"],
        decide: decideH3)
}

// MARK: - H1: SIGPIPE


func decideH1(_ data: ClaimRows) -> Finding {
    let groups = repeatGroups(data.experiment("h1-sigpipe"))
    guard !groups.isEmpty else { return data.lacking("no ok rows in h1-sigpipe") }
    func mode(_ group: RepeatGroup) -> String { group.variant?.sigpipe.rawValue ?? "unknown" }
    /// How every run ended: "survived", or the distinct exits.
    func ending(_ group: RepeatGroup) -> String {
        let exits = Array(Set(group.rows.compactMap { $0.serverExit }.filter { !$0.isEmpty })).sorted()
        let survived = group.rows.filter { ($0.serverExit ?? "").isEmpty }.count
        var parts = exits
        if survived > 0 { parts.insert(survived == group.rows.count ? "survived" : "survived \(survived) of \(group.rows.count) runs", at: 0) }
        return parts.joined(separator: ", ")
    }
    let listing = groups.map { group in
        "--sigpipe \(mode(group))\(group.variant?.sigpipe == ServerVariant.standard.sigpipe ? " (the server's default, SIG_IGN)" : ""): \(ending(group)), hang-ups \(count(group, .hangups))"
    }.joined(separator: "; ")
    let rows = groups.flatMap(\.rows)
    guard let killable = groups.first(where: { $0.variant?.sigpipe == .default }), let ignoring = groups.first(where: { $0.variant?.sigpipe == .ignore }) else {
        return data.finding(.inconclusive, listing + "; needs ok rows for --sigpipe default and the ignoring server", rows: rows)
    }
    let killedBySIGPIPE = killable.rows.allSatisfy { isSIGPIPE($0.serverExit) }
    let ignoringSurvived = ignoring.rows.allSatisfy { ($0.serverExit ?? "").isEmpty }
    let hungUp = (killable.measure(.hangups)?.min ?? 0) > 0
    let verdict: Verdict
    var text = listing
    if killedBySIGPIPE && ignoringSurvived {
        verdict = .supported
    } else if killable.rows.allSatisfy({ ($0.serverExit ?? "").isEmpty }) && hungUp {
        verdict = .refuted
        text += ": the server without SIG_IGN survived writes to peers that had gone"
    } else {
        verdict = .inconclusive
        var why: [String] = []
        if !killedBySIGPIPE { why.append(hungUp ? "--sigpipe default did not die of SIGPIPE in every run" : "no client hang-ups recorded for --sigpipe default") }
        if !ignoringSurvived { why.append("the ignoring server died too") }
        text += ": " + why.joined(separator: ", ")
    }
    return data.finding(verdict, text, rows: rows)
}

/// "killed by signal 13 (Broken pipe)".
private func isSIGPIPE(_ exit: String?) -> Bool {
    guard let exit else { return false }
    return exit.contains("signal 13") || exit.contains("SIGPIPE")
}

// MARK: - H2: TIME_WAIT

/// TIME_WAIT sockets that count as "many" after a short-connection run.
let manyTimeWait = Int(h2Many.value)


func decideH2(_ data: ClaimRows) -> Finding {
    let groups = repeatGroups(data.experiment("h2-time-wait"))
    guard !groups.isEmpty else { return data.lacking("no ok rows in h2-time-wait") }
    func mode(_ group: RepeatGroup) -> String { group.variant?.close.rawValue ?? "unknown" }
    let listing = groups.map { group in
        "\(mode(group)): TIME_WAIT on the server \(count(group, .timeWaitServer)), on the client \(count(group, .timeWaitClient)) "
            + "(connections opened \(count(group, .connectionsOpened)), closed by the server \(count(group, .closedByServer)))"
    }.joined(separator: "; ")
    let rows = groups.flatMap(\.rows)
    guard let clientFirst = groups.first(where: { $0.variant?.close == .clientFirst }), let serverFirst = groups.first(where: { $0.variant?.close == .serverFirst }) else {
        return data.finding(.inconclusive, listing + "; needs ok --close client-first and server-first rows", rows: rows)
    }
    guard let cfServer = clientFirst.measure(.timeWaitServer), let cfClient = clientFirst.measure(.timeWaitClient),
          let sfServer = serverFirst.measure(.timeWaitServer), let sfClient = serverFirst.measure(.timeWaitClient) else {
        return data.finding(.inconclusive, listing + "; time_wait_server or time_wait_client empty", rows: rows)
    }
    let many = Double(manyTimeWait)
    let serverHolds = sfServer.min >= many && sfServer.min >= h2Lopsided.value * cfServer.max
    let clientHolds = cfClient.min >= many && cfServer.max <= h2Residue.value * cfClient.min
    let wrongSide = (cfServer.min >= many && cfServer.min > cfClient.max) || (sfClient.min >= many && sfClient.min > sfServer.max)
    let verdict: Verdict
    var text = listing
    if serverHolds && clientHolds {
        verdict = .supported
    } else if wrongSide {
        verdict = .refuted
        text += ": the side that did not close first holds the TIME_WAIT sockets"
    } else {
        verdict = .inconclusive
        var why: [String] = []
        if !serverHolds { why.append("server-first does not leave many on the server") }
        if !clientHolds { why.append("client-first does not leave them on the client alone") }
        text += ": " + why.joined(separator: ", ")
    }
    return data.finding(verdict, text + " " + Noise.note([cfServer, cfClient, sfServer, sfClient]), rows: rows)
}

// MARK: - H3: idle timeout

/// Descriptors the server released over the window (negative: it gained some).
private let fdsReleased = Metric(name: "server_fds_start - server_fds_end") { row in
    guard let start = row.serverFDsStart, let end = row.serverFDsEnd else { return nil }
    return Double(start - end)
}

func decideH3(_ data: ClaimRows) -> Finding {
    let groups = repeatGroups(data.experiment("h3-idle-timeout"))
    guard !groups.isEmpty else { return data.lacking("no ok rows in h3-idle-timeout") }
    func timeout(_ group: RepeatGroup) -> String? { group.variant?.idleTimeout.map { formatFigure($0) + "s" } }
    let listing = groups.map { group in
        "\(timeout(group).map { "--idle-timeout \($0)" } ?? "no idle timeout"): server fds \(count(group, .serverFDsStart)) → \(count(group, .serverFDsEnd)), "
            + "closed by the server \(count(group, .closedByServer))"
    }.joined(separator: "; ")
    let rows = groups.flatMap(\.rows)
    guard let reaped = groups.first(where: { timeout($0) != nil }), let kept = groups.first(where: { timeout($0) == nil }) else {
        return data.finding(.inconclusive, listing + "; needs ok rows with and without --idle-timeout", rows: rows)
    }
    guard let connections = reaped.row.connections, let active = reaped.row.active,
          let reapedDrop = reaped.measure(fdsReleased), let keptDrop = kept.measure(fdsReleased) else {
        return data.finding(.inconclusive, listing + "; connections, active, server_fds_start or server_fds_end empty", rows: rows)
    }
    let idle = Double(connections - active)
    var text = "\(formatFigure(idle)) idle connections: " + listing
    let closed = reaped.measure(.closedByServer)
    let falls = reapedDrop.min >= h3Reaped.value * idle && (closed?.min ?? 0) > 0
    let flat = abs(keptDrop.min) < h3Kept.value * idle && abs(keptDrop.max) < h3Kept.value * idle
    let verdict: Verdict
    if falls && flat {
        verdict = .supported
    } else if keptDrop.min >= h3Reaped.value * idle {
        verdict = .refuted
        text += ": without a timeout the idle connections were released anyway"
    } else {
        verdict = .inconclusive
        var why: [String] = []
        if reapedDrop.min < h3Reaped.value * idle { why.append("with the timeout the fd count did not fall by \(h3Reaped.shown) of the idle connections") }
        if let closed {
            if closed.min <= 0 { why.append("the server closed nothing") }
        } else {
            why.append("closed_by_server is empty (not measured), so no close is confirmed")
        }
        if !flat { why.append("without it the fd count moved by \(h3Kept.shown) of them or more") }
        text += ": " + why.joined(separator: ", ")
    }
    return data.finding(verdict, text + " " + Noise.note([reapedDrop, keptDrop]), rows: rows)
}
