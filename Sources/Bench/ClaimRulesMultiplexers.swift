import Foundation
import Vocabulary

// Claims M1-M7: select, poll and epoll. One rule per claim: what it reads, its threshold, how it decides.


let m1Accepted = Threshold("server_accepted of a select row that refused none", .above, Double(fdSetSize), meaning: "refuted")
/// M2: bytes per call must follow connections; a flat interval refutes.
let m2Linear = Threshold("fd-set bytes per call's growth over the connections' growth (medians)", .atLeast, 0.5, meaning: "supported")
let m2Flat = Threshold("fd-set bytes per call, largest count over the baseline (95 % interval)", .beyond, 0.25, unit: .percent, meaning: "decides")
/// M3: scans follow connections for select/poll, stay near flat for epoll.
let m3Linear = Threshold("select/poll scanned_per_wakeup growth's 95 % interval, low end, over the connections' growth", .atLeast, 0.5, meaning: "supported (epoll: refuted)")
let m3Flat = Threshold("select/poll scanned_per_wakeup growth's 95 % interval, high end", .below, 1.25, unit: .times, meaning: "refuted")
/// epoll hands back the ready descriptors only: at most the active ones, whatever the total. How many are ready
/// per wake-up moves with timing (16 vs 48 events at 100 active in two runs here), so it is a bound, not a growth.
let m3EpollBound = Threshold("epoll scanned_per_wakeup at the largest count over its active connections, every run", .atMost, 1, meaning: "supported")
/// M4: epoll's cost flat in total connections.
let m4Flat = Threshold("cpu_us_per_req and syscalls_per_req, largest count over 100 connections (95 % interval)", .within, 0.10, unit: .percent, meaning: "supported")
/// M6: epoll_wait's bytes out against 12 bytes per event returned.
let m6BytesTolerance = Threshold("epoll_bytes_out_per_call against 12 x mux_events_per_call", .within, 0.05, unit: .percent, meaning: "refuted")
/// M7: what a level-triggered poll reports, what an edge-triggered loss looks like.
let m7Reports = Threshold("poll's readiness reports per request over message_bytes / read size", .atLeast, 0.9, meaning: "refuted")
let m7LostShare = Threshold("requests of the lossy variant as a share of the level-triggered rows'", .atMost, 0.1, unit: .percent, meaning: "supported / refuted")

extension ClaimRule {
    static let m1 = ClaimRule(
        claim: "M1",
        metric: "the select row past \(fdSetSize) connections: server_refused, server_accepted, connections_served / connections_established, requests; a poll row as control",
        threshold: "supported: the select server survived (status ok), refused some and still served some; refuted: refused none with > \(m1Accepted.shown) accepted, or the server died",
        thresholds: [m1Accepted],
        columns: ["connections", "reason", "requests", "server_refused", "server_accepted", "connections_served", "connections_established"],
        decide: decideM1)

    static let m2 = ClaimRule(
        claim: "M2",
        metric: "per select/poll series at fixed active: fd-set bytes per call (fdset_bytes_per_req / mux_calls_per_req) and cpu_us_per_req vs connections",
        threshold: "supported: for poll (and select where it ran) bytes per call grow >= \(m2Linear.shown) x the connections ratio (their 95 % interval above +\(m2Flat.shown)) and cpu_us_per_req rises from the smallest to the largest count on each multiplexer's series with the fewest active, where the added scan per request is largest (its interval above +\(comparisonMarginThreshold.shown)); refuted: the interval of bytes per call wholly below +\(m2Flat.shown); a rise also counts when every run is at least \(apartFactorThreshold.shown) every run at the smaller count, or with \(rankApartThreshold.shown) or more runs a side every run beyond every run at the smaller count by that margin",
        thresholds: [m2Linear, m2Flat] + comparisonThresholds,
        columns: ["connections", "active", "fdset_bytes_per_req", "mux_calls_per_req", "cpu_us_per_req"],
        decide: decideM2)

    static let m3 = ClaimRule(
        claim: "M3",
        metric: "scanned_per_wakeup vs connections per series (cpu_us_per_req shown)",
        threshold: "supported: select/poll scans grow >= \(m3Linear.shown) x the connections ratio by the whole 95 % interval of the growth (largest count over the baseline, 2 or more runs a side) or in every pairing of runs (the smallest at the largest count over the largest at the baseline), and epoll's scans at the largest count stay <= \(m3EpollBound.shown) x its active connections in every run (the ready ones, not the set); refuted: select/poll's growth interval wholly < \(m3Flat.shown), or epoll's grows like select/poll's (low end, or every pairing, >= \(m3Linear.shown) x the connections ratio)",
        thresholds: [m3Linear, m3Flat, m3EpollBound],
        columns: ["connections", "active", "scanned_per_wakeup", "cpu_us_per_req"],
        decide: decideM3)

    static let m4 = ClaimRule(
        claim: "M4",
        metric: "epoll-lt and epoll-et cpu_us_per_req and syscalls_per_req from 100 connections to the largest, per active level",
        threshold: "supported: every change's 95 % interval within ±\(m4Flat.shown); refuted: a rise whose interval lies wholly above +\(m4Flat.shown); else inconclusive",
        thresholds: [m4Flat],
        columns: ["connections", "active", "cpu_us_per_req", "syscalls_per_req"],
        decide: decideM4)

    static let m5 = ClaimRule(
        claim: "M5",
        metric: "cpu_us_per_req at the smallest connections = active <= 100: best of select/poll vs best epoll",
        threshold: "supported: best epoll slower than best select/poll \(apartInWords); refuted: faster, \(apartInWords); else inconclusive",
        thresholds: comparisonThresholds,
        columns: ["connections", "active", "cpu_us_per_req"],
        decide: decideM5)

    static let m6 = ClaimRule(
        claim: "M6",
        metric: "m6-event-copy epoll rows: eventpoll_mappings (the server's /proc/PID/maps at the window's end: an event ring shared with the kernel would be a mapping of the epoll descriptor), mux_events_per_call and epoll_bytes_out_per_call (mmap_calls and syscalls.csv's mmap shown)",
        threshold: "refuted (the myth): no [eventpoll] mapping in any run while epoll_wait returns events and bytes out = 12 x events (±\(m6BytesTolerance.shown)); supported: every run maps its epoll descriptor; else inconclusive (probe columns or mappings empty, runs that disagree)",
        thresholds: [m6BytesTolerance],
        columns: ["mux_events_per_call", "epoll_bytes_out_per_call", "eventpoll_mappings", "probe_status"],
        decide: decideM6)

    static let m7 = ClaimRule(
        claim: "M7",
        metric: "m7-level-report (--read-size R of message_bytes M): requests, errors, errors_timeout, readiness reports per request = mux_events_per_call x mux_calls_per_req, per io",
        threshold: "refuted (the myth): poll has no errors with reports/request >= \(m7Reports.shown) x M/R, and epoll-et (if run) completes <= \(m7LostShare.shown) of poll's requests with timeouts; supported: poll loses requests (errors, requests <= \(m7LostShare.shown) of the level-triggered rows')",
        thresholds: [m7Reports, m7LostShare],
        columns: ["message_bytes", "read_size", "requests", "errors", "errors_timeout", "mux_events_per_call", "mux_calls_per_req"],
        decide: decideM7)
}

// MARK: - M1

func decideM1(_ data: ClaimRows) -> Finding {
    let select = data.rows.filter { $0.ioMode == .select && ($0.connections ?? 0) > fdSetSize }
    var notes: [String] = []
    let poll = data.rows.filter { $0.ioMode == .poll && $0.status == .ok }
    if let control = poll.first {
        notes.append("control: poll at \(formatCount(control.connections ?? 0)) connections refused \(countText(control.serverRefused)), served \(countText(control.connectionsServed))/\(countText(control.connectionsEstablished))")
    }
    let refusedByDriver = data.allRows.filter {
        $0.ioMode == .select && $0.status == .notApplicable && !$0.claims.contains("M1") && ($0.reason ?? "").contains("FD_SETSIZE")
    }
    if !refusedByDriver.isEmpty {
        notes.append("the driver refuses select cells past FD_SETSIZE before running: \(refusedByDriver.count) cell\(refusedByDriver.count == 1 ? "" : "s")")
    }
    guard !select.isEmpty else {
        return data.finding(.inconclusive, (["no select row past \(fdSetSize) connections"] + notes).joined(separator: "; "),
                            rows: refusedByDriver)
    }
    var outcomes = select.map(m1Outcome)
    outcomes[outcomes.count - 1].text += notes.map { "; " + $0 }.joined()
    outcomes[outcomes.count - 1].rows += Array(poll.prefix(1)) + refusedByDriver
    return data.finding(combining: outcomes)
}

private func m1Outcome(_ row: ResultRow) -> Outcome {
    let connections = formatCount(row.connections ?? 0)
    switch row.status {
    case .failed:
        let reason = shortReason(row)
        if reason.contains("died") {
            return Outcome(verdict: .refuted, text: "select at \(connections) connections: server died: \(reason)", rows: [row])
        }
        return Outcome(verdict: .inconclusive, text: "select at \(connections) connections failed: \(reason)", rows: [row])
    case .notApplicable:
        return Outcome(verdict: .inconclusive, text: "the select cell at \(connections) connections was not run: \(shortReason(row))", rows: [row])
    case .windowMismatch:
        return Outcome(verdict: .inconclusive, text: "the select cell at \(connections) connections is not data: \(shortReason(row))", rows: [row])
    case .ok:
        let figures = "select at \(connections) connections: refused \(countText(row.serverRefused)), accepted \(countText(row.serverAccepted)), "
            + "served \(countText(row.connectionsServed))/\(countText(row.connectionsEstablished)) connections, \(countText(row.requests)) requests"
        guard let refused = row.serverRefused, let served = row.connectionsServed else {
            return Outcome(verdict: .inconclusive, text: figures + " (server_refused or connections_served empty)", rows: [row])
        }
        if refused > 0 && served > 0 {
            return Outcome(verdict: .supported, text: figures + ": the server refused those past FD_SETSIZE and kept serving", rows: [row])
        }
        if refused == 0, let accepted = row.serverAccepted, m1Accepted.holds(Double(accepted)) {
            return Outcome(verdict: .refuted, text: figures + ": more than \(fdSetSize) descriptors accepted and none refused", rows: [row])
        }
        return Outcome(verdict: .inconclusive, text: figures, rows: [row])
    }
}

/// A count that may be empty: "1,100" or "empty".
func countText(_ value: Int?) -> String { value.map(formatCount) ?? "empty" }

// MARK: - M2, M3: cost that grows with the set

func decideM2(_ data: ClaimRows) -> Finding {
    let considered = data.rows.filter { isScanning($0.ioMode) }
    let series = connectionSeries(repeatGroups(considered)).filter { $0.count >= 2 }
    guard !series.isEmpty else {
        return data.lacking("no select/poll series with two or more connection counts", among: considered)
    }
    // CPU per request is judged on each multiplexer's series with the fewest active connections. The claim's
    // cost is the whole set scanned per call, shared by the requests that call returns: with 10 active the
    // 10x more idle connections add ~10x more per request than with 100 active, where the predicted rise
    // (about 5 % of a request at 1,000 connections) sits inside this host's run-to-run spread. The other
    // series still decide the bytes half and print their CPU figures and interval.
    let cpuJudges = Dictionary(grouping: series) { $0[0].io }.compactMapValues { group in
        group.min { ($0[0].row.active ?? 0) < ($1[0].row.active ?? 0) }?[0].row.active
    }
    var outcomes = series.map { m2Outcome($0, judgesCPU: $0[0].row.active == cpuJudges[$0[0].io]) }
    if !series.contains(where: { $0[0].ioMode == .poll }) {
        outcomes.append(Outcome(verdict: .inconclusive, text: "no poll series"))
    }
    return data.finding(combining: outcomes)
}

private func m2Outcome(_ series: [RepeatGroup], judgesCPU: Bool) -> Outcome {
    let base = linearBaseline(series), first = series[0], last = series[series.count - 1]
    let rows = series.flatMap(\.rows)
    guard let bytes0 = base.measure(.fdsetBytesPerCall), let bytes1 = last.measure(.fdsetBytesPerCall),
          let cpu0 = first.measure(.cpuUsPerReq), let cpu1 = last.measure(.cpuUsPerReq)
    else {
        return Outcome(verdict: .inconclusive, text: "\(seriesName(series)): fdset_bytes_per_req, mux_calls_per_req or cpu_us_per_req empty", rows: rows)
    }
    let connectionsRatio = Double(last.connections) / Double(base.connections)
    let bytesRatio = bytes1.median / bytes0.median
    let cpuRatio = cpu1.median / cpu0.median
    var text = "\(seriesName(series)): fd-set bytes/call \(formatFigure(bytes0.median)) → \(formatFigure(bytes1.median)) "
        + "(\(formatRatio(bytesRatio)) for \(formatRatio(connectionsRatio)) the connections, \(formatCount(base.connections)) → \(formatCount(last.connections)))"
    if let perReq0 = base.measure(.fdsetBytesPerReq), let perReq1 = last.measure(.fdsetBytesPerReq) {
        text += ", bytes/request \(formatFigure(perReq0.median)) → \(formatFigure(perReq1.median))"
    }
    text += ", CPU/request \(formatFigure(cpu0.median)) → \(formatFigure(cpu1.median)) µs (\(formatRatio(cpuRatio)), \(formatCount(first.connections)) → \(formatCount(last.connections)) connections)"
    let measures = [bytes0, bytes1, cpu0, cpu1]
    // Bytes per call: flat (the interval wholly under +25 %) refutes; a rise must clear it.
    switch standing(bytes1, bytes0, margin: m2Flat.value) {
    case .above: break
    case .level(let why):
        if let e = bytes1.effect(against: bytes0), e.below(1 + m2Flat.value) {
            return Outcome(verdict: .refuted, text: text + ": bytes per call stay flat (\(e))", measures: measures, rows: rows)
        }
        return Outcome(verdict: .inconclusive, text: text + ": bytes per call, " + why, measures: measures, rows: rows)
    case .below:
        return Outcome(verdict: .refuted, text: text + ": bytes per call fall", measures: measures, rows: rows)
    }
    let linear = m2Linear.holds(bytesRatio / connectionsRatio)
    let cpuStanding = standing(cpu1, cpu0)
    if case .level(let why) = cpuStanding { text += ", CPU " + why }
    guard judgesCPU else {
        let shown = text + " (CPU shown, judged on \(series[0].io)'s series with the fewest active)"
        return Outcome(verdict: linear ? .supported : .inconclusive,
                       text: linear ? shown : shown + ": bytes per call grow less than half as fast as connections",
                       measures: [bytes0, bytes1], rows: rows)
    }
    let cpuRises = cpuStanding == .above
    let verdict: Verdict = linear && cpuRises ? .supported : .inconclusive
    var judged = text
    if !linear { judged += ": bytes per call grow less than half as fast as connections" }
    if !cpuRises { judged += (linear ? ": " : ", and ") + "CPU per request does not rise" }
    return Outcome(verdict: verdict, text: judged, measures: measures, rows: rows)
}

func decideM3(_ data: ClaimRows) -> Finding {
    let series = connectionSeries(repeatGroups(data.rows)).filter { $0.count >= 2 }
    guard !series.isEmpty else {
        return data.lacking("no series with two or more connection counts")
    }
    var outcomes = series.map(m3Outcome)
    let scanning = series.filter { isScanning($0[0].ioMode) }, epoll = series.filter { $0[0].ioMode?.isEpoll == true }
    if scanning.isEmpty { outcomes.append(Outcome(verdict: .inconclusive, text: "no select/poll series")) }
    if epoll.isEmpty { outcomes.append(Outcome(verdict: .inconclusive, text: "no epoll series")) }
    return data.finding(combining: outcomes)
}

private func isScanning(_ io: IOMode?) -> Bool { io?.scansInterestSet == true }

private func m3Outcome(_ series: [RepeatGroup]) -> Outcome {
    let base = linearBaseline(series), first = series[0], last = series[series.count - 1]
    let rows = series.flatMap(\.rows)
    guard let scan0 = base.measure(.scannedPerWakeup), let scan1 = last.measure(.scannedPerWakeup) else {
        return Outcome(verdict: .inconclusive, text: "\(seriesName(series)): scanned_per_wakeup empty", rows: rows)
    }
    let connectionsRatio = Double(last.connections) / Double(base.connections)
    let scanRatio = scan1.median / scan0.median
    var text = "\(seriesName(series)): scanned/wake-up \(formatFigure(scan0.median)) → \(formatFigure(scan1.median)) "
        + "(\(formatRatio(scanRatio)) for \(formatRatio(connectionsRatio)) the connections, \(formatCount(base.connections)) → \(formatCount(last.connections)))"
    if let cpu0 = first.measure(.cpuUsPerReq), let cpu1 = last.measure(.cpuUsPerReq) {
        text += ", CPU/request \(formatFigure(cpu0.median)) → \(formatFigure(cpu1.median)) µs (\(formatCount(first.connections)) → \(formatCount(last.connections)) connections)"
    }
    let measures = [scan0, scan1]
    // The growth's whole interval decides: its low end must reach linear growth, its high end stay under flat.
    guard scan0.samples.count >= 2, scan1.samples.count >= 2, let growth = scan1.effect(against: scan0), growth.kind == .ratio else {
        let why = scan0.samples.count < 2 || scan1.samples.count < 2 ? "1 run a side: no interval" : "a scan count of 0: no ratio"
        return Outcome(verdict: .inconclusive, text: text + ": " + why, measures: measures, rows: rows)
    }
    text += ", growth \(growth)"
    // Every run at the largest count over every run at the baseline: the growth no pairing of runs falls
    // below. Scan counts are near-deterministic (a poll set's size), so two runs a side give Welch's interval
    // one degree of freedom (t = 12.7) and a 7 % baseline difference spreads it to [38x, 347x] around 115x.
    let leastGrowth = scan0.max > 0 ? scan1.min / scan0.max : 0
    let linearByInterval = m3Linear.holds(growth.low / connectionsRatio)
    let linearEveryRun = m3Linear.holds(leastGrowth / connectionsRatio)
    let linear = linearByInterval || linearEveryRun
    if linearEveryRun && !linearByInterval {
        text += ", every run \(formatRatio(leastGrowth)) or more over every baseline run"
    }
    let verdict: Verdict
    if isScanning(series[0].ioMode) {
        verdict = linear ? .supported : m3Flat.holds(growth.high) ? .refuted : .inconclusive
        if verdict == .inconclusive { text += ": the interval is neither linear nor flat" }
    } else if linear {
        verdict = .refuted
        text += ": epoll's scans grow like the set"
    } else if let active = last.row.active, active > 0, m3EpollBound.holds(Measured(metric: "scanned per active", samples: scan1.samples.map { $0 / Double(active) })) {
        verdict = .supported
        text += ": at most the \(formatCount(active)) active in every run"
    } else {
        verdict = .inconclusive
        text += ": more than the active connections per wake-up"
    }
    return Outcome(verdict: verdict, text: text, measures: measures, rows: rows)
}

// MARK: - M4: epoll flat in total connections

/// The largest change M4 allows between 100 connections and the largest count.
private let flatLimit = m4Flat.value

func decideM4(_ data: ClaimRows) -> Finding {
    let considered = data.rows.filter { $0.ioMode?.isEpoll == true }
    let series = connectionSeries(repeatGroups(considered)).compactMap { series -> [RepeatGroup]? in
        let fromBaseline = series.filter { $0.connections >= linearBaselineConnections }
        return fromBaseline.count >= 2 ? fromBaseline : nil
    }
    guard !series.isEmpty else {
        return data.lacking("no epoll series with two or more connection counts of at least \(linearBaselineConnections)", among: considered)
    }
    var outcomes = series.map(m4Outcome)
    for io in ["epoll-lt", "epoll-et"] where !series.contains(where: { $0[0].io == io }) {
        outcomes.append(Outcome(verdict: .inconclusive, text: "no \(io) series"))
    }
    return data.finding(combining: outcomes)
}

private func m4Outcome(_ series: [RepeatGroup]) -> Outcome {
    let first = series[0], last = series[series.count - 1]
    var parts: [String] = []
    var verdicts: [Verdict] = []
    var measures: [Measured] = []
    for (metric, label, unit) in [(Metric.cpuUsPerReq, "CPU/request", " µs"), (Metric.syscallsPerReq, "syscalls/request", "")] {
        guard let before = first.measure(metric), let after = last.measure(metric) else {
            parts.append("\(metric.name) empty")
            verdicts.append(.inconclusive)
            continue
        }
        measures += [before, after]
        let change = after.median / before.median - 1
        var part = "\(label) \(formatFigure(before.median)) → \(formatFigure(after.median))\(unit) (\(formatPercent(change, signed: true)))"
        // Flat: the whole interval within ±flatLimit; a rise whose interval clears +flatLimit refutes.
        if let e = after.effect(against: before), after.samples.count >= 2, before.samples.count >= 2 {
            let (low, high) = e.kind == .ratio ? (1 - flatLimit, 1 + flatLimit) : (-flatLimit * abs(before.mean), flatLimit * abs(before.mean))
            if e.within(low, high) {
                verdicts.append(.supported)
            } else if e.above(high) {
                verdicts.append(.refuted)
            } else {
                part += e.below(low) ? ", a fall" : ", interval \(e) not within ±\(formatPercent(flatLimit))"
                verdicts.append(.inconclusive)
            }
        } else {
            part += ", 1 run: no interval"
            verdicts.append(.inconclusive)
        }
        parts.append(part)
    }
    var text = "\(seriesName(series)): " + parts.joined(separator: ", ")
        + " from \(formatCount(first.connections)) to \(formatCount(last.connections)) connections"
    if last.connections < 10_000 { text += " (largest only \(formatCount(last.connections)))" }
    let verdict: Verdict = verdicts.contains(.refuted) ? .refuted : verdicts.allSatisfy { $0 == .supported } ? .supported : .inconclusive
    return Outcome(verdict: verdict, text: text, measures: measures, rows: series.flatMap(\.rows))
}

// MARK: - M5: few connections, all active

func decideM5(_ data: ClaimRows) -> Finding {
    let allActive = data.rows.filter { $0.connections != nil && $0.connections == $0.active && $0.connections! <= 100 }
    let groups = repeatGroups(allActive)
    guard let count = groups.map(\.connections).min() else {
        return data.lacking("no rows with connections = active <= 100", among: allActive.isEmpty ? nil : allActive)
    }
    let atCount = groups.filter { $0.connections == count }
    let measured = atCount.compactMap { group in group.measure(.cpuUsPerReq).map { (group, $0) } }
    let scanning = measured.filter { isScanning($0.0.ioMode) }, epoll = measured.filter { $0.0.ioMode?.isEpoll == true }
    let rows = atCount.flatMap(\.rows)
    let listing = "\(formatCount(count)) connections, all active: CPU/request "
        + measured.map { "\($0.0.io) \(formatFigure($0.1.median))" }.joined(separator: ", ") + " µs"
    guard let bestScanning = scanning.min(by: { $0.1.median < $1.1.median }),
          let bestEpoll = epoll.min(by: { $0.1.median < $1.1.median })
    else {
        return data.finding(.inconclusive, listing + "; needs both a select/poll and an epoll row with cpu_us_per_req", rows: rows)
    }
    let difference = bestEpoll.1.median / bestScanning.1.median - 1
    let measures = measured.map(\.1)
    var text = listing + "; best epoll (\(bestEpoll.0.io)) vs best select/poll (\(bestScanning.0.io)): \(formatPercent(difference, signed: true))"
    let verdict: Verdict
    switch standing(bestEpoll.1, bestScanning.1) {
    case .above: verdict = .supported
    case .below: verdict = .refuted
    case .level(let why):
        text += ": " + why
        verdict = .inconclusive
    }
    return data.finding(verdict, text + " " + Noise.note(measures), rows: rows)
}

// MARK: - M6: the epoll event copy

/// sizeof(struct epoll_event) on x86-64 (packed).
let epollEventBytes = 12.0

func decideM6(_ data: ClaimRows) -> Finding {
    let considered = data.experiment("m6-event-copy").filter { $0.ioMode?.isEpoll == true }
    let groups = repeatGroups(considered)
    guard !groups.isEmpty else { return data.lacking("no ok epoll rows", among: considered) }
    let outcomes = groups.map(m6Outcome)
    var notes: [String] = []
    if let syscalls = data.syscalls {
        let cells = cellNumbers(groups.flatMap(\.rows))
        let traced = cells.filter { cell in syscalls.contains { $0.cell == cell } }
        if traced.isEmpty {
            notes.append("syscalls.csv has no lines for cells \(cells.map(String.init).joined(separator: " "))")
        } else {
            let mmap = syscalls.filter { traced.contains($0.cell) && $0.syscall == "mmap" }.reduce(0) { $0 + $1.count }
            notes.append("syscalls.csv: mmap \(formatCount(mmap)) in cells \(traced.map(String.init).joined(separator: " "))")
        }
    }
    notes.append("bytes = 12 x events returned (from return values; the copy itself is not traced: kprobes are off here), so the mappings decide")
    return data.finding(combining: outcomes, notes: notes)
}

/// One epoll variant: refuted (the myth) when the server maps no epoll descriptor in any run while
/// epoll_wait hands back 12 bytes per event; supported when every run maps one (a ring shared with the
/// kernel); else inconclusive. mmap calls are shown, not judged: allocators map memory too.
private func m6Outcome(_ group: RepeatGroup) -> Outcome {
    guard let events = group.measure(.muxEventsPerCall), let bytes = group.measure(.epollBytesOutPerCall) else {
        return Outcome(verdict: .inconclusive, text: "\(group.io): probe columns empty: probe_status = \(group.row.probeStatus ?? "empty")", rows: group.rows)
    }
    let expected = epollEventBytes * events.median
    var text = "\(group.io): \(formatFigure(events.median)) events and \(formatFigure(bytes.median)) bytes out per epoll_wait "
        + "(12 x \(formatFigure(events.median)) = \(formatFigure(expected))), mmap_calls \(count(group, .mmapCalls))"
    guard let mappings = group.measure(.eventpollMappings) else {
        return Outcome(verdict: .inconclusive, text: text + ": eventpoll_mappings empty", measures: [events, bytes], rows: group.rows)
    }
    text += ", [eventpoll] mappings \(formatMedianCount(mappings.max))"
    if mappings.min > 0 {
        return Outcome(verdict: .supported, text: text + ": the server maps its epoll descriptor in every run (events can come through shared memory)",
                       measures: [events, bytes, mappings], rows: group.rows)
    }
    guard mappings.max == 0 else {
        return Outcome(verdict: .inconclusive, text: text + ": some runs map the epoll descriptor, some do not", measures: [events, bytes, mappings], rows: group.rows)
    }
    guard events.median > 0, m6BytesTolerance.holds(bytes.median / expected - 1) else {
        return Outcome(verdict: .inconclusive, text: text + ": bytes are not 12 x events", measures: [events, bytes, mappings], rows: group.rows)
    }
    return Outcome(verdict: .refuted, text: text, measures: [events, bytes, mappings], rows: group.rows)
}


// MARK: - M7: poll is level-triggered

func decideM7(_ data: ClaimRows) -> Finding {
    let considered = data.experiment("m7-level-report")
    let groups = repeatGroups(considered)
    guard let poll = groups.first(where: { $0.ioMode == .poll }) else {
        let pollRows = considered.filter { $0.ioMode == .poll }
        return data.lacking(pollRows.isEmpty ? "no poll row" : "no ok poll row", among: pollRows.isEmpty ? considered : pollRows)
    }
    guard let readSize = poll.variant?.readSize, readSize > 0, let messageBytes = poll.row.messageBytes else {
        return data.finding(.inconclusive, "poll row lacks read_size or message_bytes", rows: poll.rows)
    }
    let reportsNeeded = Double(messageBytes) / Double(readSize)
    let others = ["select", "epoll-lt", "epoll-et"].compactMap { io in groups.first { $0.io == io } }
    let figures = ([poll] + others).map(m7Figures)
    let rows = ([poll] + others).flatMap(\.rows)
    var text = "\(messageBytes) B requests read \(readSize) B per report (>= \(formatFigure(m7Reports.value * reportsNeeded)) reports/request expected if level-triggered); "
        + figures.joined(separator: "; ")
    guard let requests = poll.measure(.requests), let errors = poll.measure(.errors) else {
        return data.finding(.inconclusive, text + ": poll requests or errors empty", rows: rows)
    }
    let reports = poll.measure(.reportsPerReq)
    let levelTriggered = errors.max == 0 && requests.min > 0 && m7Reports.holds((reports?.median ?? 0) / reportsNeeded)
    let levelRequests = others.filter { $0.ioMode != .epollET }.compactMap { $0.measure(.requests)?.median }.max()
    let lostLikeET = errors.min > 0 && (requests.median == 0 || levelRequests.map { $0 > 0 && m7LostShare.holds(requests.median / $0) } ?? false)
    let verdict: Verdict
    if levelTriggered {
        if let et = others.first(where: { $0.ioMode == .epollET }) {
            let etRequests = et.measure(.requests)?.median ?? 0, etTimeouts = et.measure(.errorsTimeout)?.median ?? 0
            let contrast = m7LostShare.holds(etRequests / requests.median) && etTimeouts > 0
            if !contrast { text += ": epoll-et lost nothing here, so the workload did not show the edge-triggered loss" }
            verdict = contrast ? .refuted : .inconclusive
        } else {
            verdict = .refuted
        }
    } else {
        verdict = lostLikeET ? .supported : .inconclusive
    }
    let measures = [requests, errors] + (reports.map { [$0] } ?? [])
    return data.finding(verdict, text + " " + Noise.note(measures), rows: rows)
}

private func m7Figures(_ group: RepeatGroup) -> String {
    let requests = group.measure(.requests).map { formatMedianCount($0.median) } ?? "empty"
    let errors = group.measure(.errors).map { formatMedianCount($0.median) } ?? "empty"
    let timeouts = group.measure(.errorsTimeout).map { formatMedianCount($0.median) } ?? "empty"
    let reports = group.measure(.reportsPerReq).map { formatFigure($0.median) } ?? "empty"
    return "\(group.io): \(requests) requests, \(errors) errors (\(timeouts) timeouts), \(reports) reports/request"
}
