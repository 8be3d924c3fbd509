import Foundation

// Claim C2: a thread or process per connection costs a thread and memory per connection, and switches
// grow with them; the reactor's threads and memory stay flat.

let c2Follows = Threshold("server_threads added per added connection, per-connection models", .atLeast, 0.5, meaning: "supported")
let c2Flat = Threshold("server_threads added per added connection, per-connection models", .below, 0.1, meaning: "refuted")
let c2ReactorThreads = Threshold("server_threads the reactor adds, smallest to largest count", .atMost, 2, meaning: "supported")
let c2ReactorMemory = Threshold("the reactor's server_rss_kb per added connection over the per-connection models' smallest", .below, 0.5, meaning: "supported")

private let c2Experiments = [("c2-thread-per-connection", "thread-per-connection"), ("c2-process-per-connection", "process-per-connection"),
                             ("c2-reactor", "reactor")]

/// One model's rows in its C2 experiment, by connection count.
private typealias C2Series = (id: String, model: String, groups: [RepeatGroup])

func decideC2(_ data: ClaimRows) -> Finding {
    let ids = c2Experiments.map(\.0)
    let series: [C2Series] = c2Experiments.map { id, model in
        (id: id, model: model, groups: repeatGroups(rows(data, experiment: id, among: ids, model: model)).sorted { $0.connections < $1.connections })
    }
    let all = series.flatMap(\.groups)
    guard !all.isEmpty else { return data.lacking("no ok rows in \(ids.joined(separator: ", "))") }
    let listing = series.filter { !$0.groups.isEmpty }.map(c2Listing)
    var outcomes: [Outcome] = []
    var perConnectionRSS: [Double] = []
    for entry in series.prefix(2) {
        let (outcome, rss) = c2PerConnectionOutcome(entry)
        outcomes.append(outcome)
        if let rss { perConnectionRSS.append(rss) }
    }
    let reactor = series[2]
    // The "switches grow" half: a thread or process per connection switches once per request (it blocks in
    // read after each reply), so switching grows with the connections' traffic; the reactor's loop batches.
    if let control = reactor.groups.last {
        for entry in series.prefix(2) {
            guard let largest = entry.groups.last else { continue }
            outcomes.append(expectation("switches/request at \(formatCount(largest.connections)) vs the reactor at \(formatCount(control.connections))",
                                        (entry.model, largest), ("reactor", control), .ctxSwitchesPerReq, expected: .above))
        }
    }
    outcomes.append(c2ReactorOutcome(reactor, perConnectionRSS: perConnectionRSS))
    return finding(data, listing: listing.joined(separator: "; "), outcomes, rows: all.flatMap(\.rows))
}

/// Per added connection, from the smallest count to the largest: (threads, RSS KB), nil when either end is empty.
private func c2Growth(_ groups: [RepeatGroup]) -> (threads: Double, rss: Double)? {
    guard groups.count >= 2, let first = groups.first, let last = groups.last, last.connections > first.connections,
          let t0 = first.measure(.serverThreads), let t1 = last.measure(.serverThreads),
          let r0 = first.measure(.serverRSSKB), let r1 = last.measure(.serverRSSKB) else { return nil }
    let added = Double(last.connections - first.connections)
    return ((t1.median - t0.median) / added, (r1.median - r0.median) / added)
}

/// Per added connection, the most any trace of a connection's thread or process grew: threads started,
/// or descriptors of the tree at the window's start (a process per connection holds several).
private func c2OtherTraces(_ groups: [RepeatGroup]) -> Double? {
    guard let first = groups.first, let last = groups.last, last.connections > first.connections else { return nil }
    let added = Double(last.connections - first.connections)
    return [Metric.serverThreadsStarted, .serverFDsStart].compactMap { metric -> Double? in
        guard let before = first.measure(metric), let after = last.measure(metric) else { return nil }
        return (after.median - before.median) / added
    }.max()
}

/// "thread-per-connection: threads 12 → 1,010, RSS ... at 10 → 1,000 connections".
private func c2Listing(_ entry: C2Series) -> String {
    let g = entry.groups, first = g[0], last = g[g.count - 1]
    var text = "\(entry.model): threads \(count(first, .serverThreads)) → \(count(last, .serverThreads)), "
        + "RSS \(count(first, .serverRSSKB)) → \(count(last, .serverRSSKB)) KB, switches/request \(figure(first, .ctxSwitchesPerReq)) → \(figure(last, .ctxSwitchesPerReq))"
    for (metric, label) in [(Metric.serverThreadsStarted, "threads started"), (.serverFDsStart, "fds at window start")]
    where first.measure(metric) != nil && last.measure(metric) != nil {
        text += ", \(label) \(count(first, metric)) → \(count(last, metric))"
    }
    return text + " at \(formatCount(first.connections)) → \(formatCount(last.connections)) connections"
}

/// A per-connection model: its threads and memory must follow the connections. Also its RSS per added connection.
private func c2PerConnectionOutcome(_ entry: C2Series) -> (Outcome, rss: Double?) {
    guard let change = c2Growth(entry.groups) else {
        return (Outcome(verdict: .inconclusive, text: "\(entry.model): needs two connection counts with server_threads and server_rss_kb", rows: entry.groups.flatMap(\.rows)), nil)
    }
    let first = entry.groups[0], last = entry.groups[entry.groups.count - 1]
    let rss = standing(last.measure(.serverRSSKB)!, first.measure(.serverRSSKB)!)
    var text = "\(entry.model) adds \(formatFigure(change.threads)) threads/processes and \(formatFigure(change.rss)) KB per connection"
    let verdict: Verdict
    if c2Flat.holds(change.threads), let traces = c2OtherTraces(entry.groups), c2Follows.holds(traces) {
        // server_threads is sampled when the row is written: after the load closed its connections.
        verdict = .inconclusive
        text += ": server_threads does not grow but threads started or descriptors do (\(formatFigure(traces)) per connection): "
            + "the threads were counted after the connections closed"
    } else if c2Flat.holds(change.threads) {
        verdict = .refuted
        text += ": its threads do not follow connections"
    } else if c2Follows.holds(change.threads) && rss == .above {
        verdict = .supported
    } else {
        verdict = .inconclusive
        if case .level(let why) = rss { text += ": RSS change \(why)" } else if rss == .below { text += ": RSS falls" }
        if !c2Follows.holds(change.threads) { text += ": fewer than \(c2Follows.shown) threads per added connection" }
    }
    return (Outcome(verdict: verdict, text: text, rows: entry.groups.flatMap(\.rows)), change.rss)
}

/// The reactor: its threads stay put and its memory per connection is well under the per-connection models'.
private func c2ReactorOutcome(_ reactor: C2Series, perConnectionRSS: [Double]) -> Outcome {
    guard let change = c2Growth(reactor.groups) else {
        return Outcome(verdict: .inconclusive, text: "reactor: needs two connection counts with server_threads and server_rss_kb", rows: reactor.groups.flatMap(\.rows))
    }
    let first = reactor.groups[0], last = reactor.groups[reactor.groups.count - 1]
    let addedThreads = last.measure(.serverThreads)!.median - first.measure(.serverThreads)!.median
    var text = "reactor adds \(formatMedianCount(addedThreads)) threads and \(formatFigure(change.rss)) KB per connection"
    let verdict: Verdict
    if !c2ReactorThreads.holds(addedThreads) {
        verdict = .refuted
        text += ": its threads grow"
    } else if let smallest = perConnectionRSS.min(), smallest > 0, c2ReactorMemory.holds(change.rss / smallest) {
        verdict = .supported
    } else {
        verdict = .inconclusive
        text += perConnectionRSS.isEmpty ? ": no per-connection model to compare its memory with" : ": its memory grows like theirs"
    }
    return Outcome(verdict: verdict, text: text, rows: reactor.groups.flatMap(\.rows))
}
