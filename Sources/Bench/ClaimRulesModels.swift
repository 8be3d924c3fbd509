import Foundation
import Vocabulary

// Claims C1-C9: the seed's concurrency models 1-10 side by side.

/// C2: what a thread or process per connection adds per added connection, and what the reactor may.
/// C3: what blocking accept(2) makes per connection when it wakes one waiter (reported, not judged).
let c3WakeOne = Threshold("accept_calls_per_accept of blocking accept(2), shown", .atMost, 1.2, meaning: "shown")
/// C4: server CPU utilisation that still counts as one core (sampling slack).
let c4OneCore = Threshold("server_cpu_util of the reactor (supported) / of the multi-reactor (exceeds), every run", .atMost, 1.05, meaning: "supported")
/// C9: the knee of the throughput curve, and how near C / P it must be.
let c9Knee = Threshold("throughput_rps of the knee's pool size over the P's best", .atLeast, 0.9, unit: .percent, meaning: "defines the knee")
let c9Factor = Threshold("the knee over C / P, or C / P over the knee", .atMost, 2, unit: .times, meaning: "supported")

extension ClaimRule {
    static let c1 = ClaimRule(
        claim: "C1",
        metric: "c1-iterative, 2 clients: keep-alive (load_args empty) vs --requests-per-connection 1: connections_served of connections, errors_timeout, errors, requests",
        threshold: "supported: keep-alive serves fewer connections than it holds or has timeouts in every run, and short connections have no errors; refuted: keep-alive serves every connection without timeouts; else inconclusive",
        thresholds: [],
        columns: ["load_args", "connections", "connections_served", "errors", "errors_timeout", "requests"],
        decide: decideC1)

    static let c2 = ClaimRule(
        claim: "C2",
        metric: "c2-thread-per-connection, c2-process-per-connection, c2-reactor at 10..1,000 connections (10 active): server_threads and server_rss_kb, smallest to largest count; ctx_switches_per_req at the largest count against the reactor's",
        threshold: "supported: each per-connection model adds >= \(c2Follows.shown) threads/processes per added connection and its RSS rises (\(apartInWords)), and switches more per request than the reactor (\(apartInWords)), while the reactor adds <= \(c2ReactorThreads.shown) threads and < \(c2ReactorMemory.shown) x their RSS per added connection; refuted: a per-connection model adds < \(c2Flat.shown) per connection or switches less than the reactor, or the reactor's threads grow; else inconclusive",
        thresholds: [c2Follows, c2Flat, c2ReactorThreads, c2ReactorMemory] + comparisonThresholds,
        columns: ["connections", "server_threads", "server_rss_kb", "ctx_switches_per_req"],
        decide: decideC2)

    static let c3 = ClaimRule(
        claim: "C3",
        metric: "c3-epoll-accept per --accept shared-epoll|epoll-exclusive|reuseport and c3-blocking-accept: wakeups_per_accept and accept_calls_per_accept",
        threshold: "supported: shared-epoll wakes more per accept than epoll-exclusive and than reuseport, \(apartInWords); refuted: fewer than either, \(apartInWords); else inconclusive. Blocking accept(2) is reported, not judged (wake-one since Linux 2.6: accept calls per connection <= \(c3WakeOne.shown))",
        thresholds: comparisonThresholds + [c3WakeOne],
        columns: ["accept", "wakeups_per_accept", "accept_calls_per_accept"],
        decide: decideC3)

    static let c4 = ClaimRule(
        claim: "C4",
        metric: "c4-reactor vs c4-multi-reactor on 2 allowed CPUs: server_cpu_util (1.0 = one core); throughput_rps shown",
        threshold: "supported: the reactor's util <= \(c4OneCore.shown) in every run while the multi-reactor's exceeds it in every run; refuted: the reactor's util > \(c4OneCore.shown) in every run; not testable here: neither exceeds it (the machine has no cores to spare beside the load's); else inconclusive",
        thresholds: [c4OneCore],
        columns: ["server_cpu_util", "throughput_rps"],
        decide: decideC4)

    static let c5 = ClaimRule(
        claim: "C5",
        metric: "c5-compute (fixed open-loop rate, compute per request): latency_p99_us, reactor-pool vs reactor (p50, p99.9, throughput, errors shown)",
        threshold: "supported: reactor-pool's p99 below the reactor's, \(apartInWords); refuted: above, \(apartInWords); else inconclusive",
        thresholds: comparisonThresholds,
        columns: ["model", "latency_p99_us"],
        decide: decideC5)

    static let c6 = ClaimRule(
        claim: "C6",
        metric: "c6-reactors (multi-reactor, 1/2/4 loops) and c4-multi-reactor: throughput_rps vs reactors",
        threshold: "supported: 2 loops above 1, \(apartInWords); refuted: 2 loops below 1, \(apartInWords), with the load on CPUs the server does not use; else inconclusive. N > cores is shown, never judged",
        thresholds: comparisonThresholds,
        columns: ["reactors", "throughput_rps"],
        decide: decideC6)

    static let c7 = ClaimRule(
        claim: "C7",
        metric: "c7-models and c7-multi (1,000 connections, 100 active): throughput_rps and latency_p99_us per model; models with errors, or with connections_served below active, are listed, not ranked",
        threshold: "supported: model 9 (multi-reactor-pool) has the highest throughput and the lowest p99 of the ranked models, each \(apartInWords) of the runner-up; refuted: another model beats it on either, \(apartInWords); else inconclusive",
        thresholds: comparisonThresholds,
        columns: ["model", "throughput_rps", "latency_p99_us", "errors"],
        decide: decideC7)

    static let c8 = ClaimRule(
        claim: "C8",
        metric: "c8-proactor per protocol: syscalls_per_req, proactor (io_uring) vs reactor (epoll); cpu_us_per_req shown",
        threshold: "supported: the proactor's syscalls/request below the reactor's for every protocol, \(apartInWords); refuted: above for some protocol, \(apartInWords); else inconclusive",
        thresholds: comparisonThresholds,
        columns: ["model", "protocol", "syscalls_per_req", "cpu_us_per_req"],
        decide: decideC8)

    static let c9 = ClaimRule(
        claim: "C9",
        metric: "c9-pool-size: throughput_rps vs workers per compute fraction P = X / (X + Y) from --compute-us X [--block-us Y]; C = CPUs in server_cpus",
        threshold: "per P the knee is the smallest pool reaching >= \(c9Knee.shown) of that P's best throughput; supported: every knee within a factor of \(c9Factor.shown) of C/P; refuted: some knee further away; inconclusive: fewer than two pool sizes, or a pool size with one run",
        thresholds: [c9Knee, c9Factor],
        columns: ["workers", "compute_us", "block_us", "throughput_rps"],
        decide: decideC9)
}

let oneCoreLimit = c4OneCore.value

/// "model 9 multi-reactor-pool" (the seed's numbering; model 2 has two forms).
private func numbered(_ model: String) -> String {
    ServerModel(rawValue: model).map { "model \($0.number) \(model)" } ?? model
}

/// The CPUs of a list such as "0-1,3"; nil when empty or unreadable.
func cpuSet(_ list: String) -> Set<Int>? {
    var cpus = Set<Int>()
    for part in list.split(separator: ",") {
        let bounds = part.split(separator: "-").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard let low = bounds.first ?? nil, bounds.count <= 2 else { return nil }
        let high = bounds.count == 2 ? bounds[1] : low
        guard let high, high >= low else { return nil }
        cpus.formUnion(low...high)
    }
    return cpus.isEmpty ? nil : cpus
}

// MARK: - C1: iterative

func decideC1(_ data: ClaimRows) -> Finding {
    let groups = repeatGroups(data.experiment("c1-iterative"))
    guard !groups.isEmpty else { return data.lacking("no ok rows in c1-iterative") }
    let isShort = { (group: RepeatGroup) in group.row.loadArgs.contains("--requests-per-connection") }
    let keepAlive = groups.first { !isShort($0) }, short = groups.first(where: isShort)
    var parts: [String] = []
    if let keepAlive {
        parts.append("keep-alive: served \(count(keepAlive, .connectionsServed)) of \(keepAlive.row.connections.map(formatCount) ?? "empty") connections, "
            + "\(count(keepAlive, .requests)) requests, \(count(keepAlive, .errors)) errors (\(count(keepAlive, .errorsTimeout)) timeouts)")
    }
    if let short {
        parts.append("one request per connection: \(count(short, .requests)) requests, \(count(short, .errors)) errors, connections opened \(count(short, .connectionsOpened))")
    }
    let listing = parts.joined(separator: "; ")
    let rows = groups.flatMap(\.rows)
    guard let keepAlive, let short else {
        return data.finding(.inconclusive, listing + "; needs ok keep-alive and --requests-per-connection 1 rows", rows: rows)
    }
    // Connections that send: idle ones are never served by any model.
    guard let served = keepAlive.measure(.connectionsServed), let timeouts = keepAlive.measure(.errorsTimeout),
          let connections = keepAlive.row.active ?? keepAlive.row.connections, let shortErrors = short.measure(.errors) else {
        return data.finding(.inconclusive, listing + "; connections_served, errors_timeout or errors empty", rows: rows)
    }
    let starves = served.max < Double(connections) || timeouts.min > 0
    let shortWorks = shortErrors.max == 0 && (short.measure(.requests)?.min ?? 0) > 0
    let verdict: Verdict
    var text = listing
    if starves && shortWorks {
        verdict = .supported
        text += ": a second long-lived client waits for the first; short connections take turns"
    } else if served.min >= Double(connections) && timeouts.max == 0 {
        verdict = .refuted
        text += ": every long-lived client was served"
    } else {
        verdict = .inconclusive
        text += starves ? ": short connections had errors or no requests" : ": runs disagree on whether a client starved"
    }
    return data.finding(verdict, text + " " + Noise.note([served, timeouts, shortErrors]), rows: rows)
}

// MARK: - C3: the thundering herd

func decideC3(_ data: ClaimRows) -> Finding {
    let ids = ["c3-blocking-accept", "c3-epoll-accept"]
    let named = data.rows.contains { ids.contains($0.experiment) }
    // Without the experiment ids, the accept mode tells the two apart.
    func isBlocking(_ row: ResultRow) -> Bool {
        named ? row.experiment == ids[0] : row.variant?.accept == .blocking
    }
    let epoll = repeatGroups(data.rows.filter { !isBlocking($0) && (!named || $0.experiment == ids[1]) })
    let blocking = repeatGroups(data.rows.filter(isBlocking)).first
    let all = (blocking.map { [$0] } ?? []) + epoll
    guard !all.isEmpty else { return data.lacking("no ok rows in c3-blocking-accept or c3-epoll-accept") }
    func mode(_ group: RepeatGroup) -> String { group.variant?.accept?.rawValue ?? "unknown" }
    let processes = all[0].row.workers.map { "\($0) processes" } ?? "processes"
    let listing = "\(processes), per accepted connection: " + all.map { group in
        "\(mode(group)): \(figure(group, .wakeupsPerAccept)) wake-ups, \(figure(group, .acceptCallsPerAccept)) accept calls"
    }.joined(separator: "; ")
    func variant(_ accept: AcceptMode) -> (name: String, group: RepeatGroup?) { (accept.rawValue, epoll.first { $0.variant?.accept == accept }) }
    var outcomes = [
        expectation("wake-ups/accept", variant(.sharedEpoll), variant(.epollExclusive), .wakeupsPerAccept, expected: .above),
        expectation("wake-ups/accept", variant(.sharedEpoll), variant(.reuseport), .wakeupsPerAccept, expected: .above),
    ]
    if let blocking, let calls = blocking.measure(.acceptCallsPerAccept) {
        let text = c3WakeOne.holds(calls.median)
            ? "blocking accept(2) made ~1 accept call per connection (\(formatFigure(calls.median))): accept(2) wakes one waiter since Linux 2.6, so the herd is an epoll-era problem"
            : "blocking accept(2) made \(formatFigure(calls.median)) accept calls per connection: a herd there too"
        outcomes[outcomes.count - 1].text += "; " + text
    }
    return finding(data, listing: listing, outcomes, rows: all.flatMap(\.rows))
}

// MARK: - C4: one reactor, one core

func decideC4(_ data: ClaimRows) -> Finding {
    let ids = ["c4-reactor", "c4-multi-reactor"]
    let single = repeatGroups(rows(data, experiment: ids[0], among: ids, model: "reactor")).first
    let multi = repeatGroups(rows(data, experiment: ids[1], among: ids, model: "multi-reactor")).first
    let present = [single, multi].compactMap { $0 }
    guard !present.isEmpty else { return data.lacking("no ok rows in c4-reactor or c4-multi-reactor") }
    let listing = present.map { group in
        "\(group.row.model)\(group.row.reactors.map { group.row.model.hasPrefix("multi") ? " (\($0) loops)" : "" } ?? "") on CPUs \(group.row.serverCPUs.isEmpty ? "?" : group.row.serverCPUs): "
            + "CPU util \(figure(group, .serverCPUUtil)) (1.0 = one core), \(figure(group, .throughputRPS)) requests/s"
    }.joined(separator: "; ")
    let rows = present.flatMap(\.rows)
    guard let single, let multi else {
        return data.finding(.inconclusive, listing + "; needs ok rows in both c4-reactor and c4-multi-reactor", rows: rows)
    }
    guard let singleUtil = single.measure(.serverCPUUtil), let multiUtil = multi.measure(.serverCPUUtil) else {
        return data.finding(.inconclusive, listing + "; server_cpu_util empty", rows: rows)
    }
    let verdict: Verdict
    var text = listing
    if singleUtil.max <= oneCoreLimit && multiUtil.min > oneCoreLimit {
        verdict = .supported
    } else if singleUtil.min > oneCoreLimit {
        verdict = .refuted
        text += ": the single reactor used more than one core"
    } else if multiUtil.max <= oneCoreLimit {
        // Neither used more than a core: the machine (its cores beside the load's) cannot show the contrast.
        verdict = .notTestable
        text += ": the multi-reactor did not use more than one core either, so this machine cannot show the contrast: it needs cores for two loops beyond what the load uses (server_cpus \(multi.row.serverCPUs.isEmpty ? "?" : multi.row.serverCPUs), client_cpus \(multi.row.clientCPUs.isEmpty ? "?" : multi.row.clientCPUs))"
    } else {
        verdict = .inconclusive
        text += ": runs straddle \(formatFigure(oneCoreLimit))"
    }
    return data.finding(verdict, text + " " + Noise.note([singleUtil, multiUtil]), rows: rows)
}

// MARK: - C5: CPU-heavy requests in a pool

func decideC5(_ data: ClaimRows) -> Finding {
    let groups = repeatGroups(data.experiment("c5-compute"))
    guard !groups.isEmpty else { return data.lacking("no ok rows in c5-compute") }
    let first = groups[0].row
    var setting = ""
    if let compute = groups[0].variant?.computeMicros, compute > 0 { setting += "\(compute) µs compute per request" }
    if let rate = first.targetRPS { setting += (setting.isEmpty ? "" : " ") + "at \(formatCount(rate)) requests/s" }
    let listing = (setting.isEmpty ? "" : setting + ": ") + groups.map { group in
        "\(modelName(group)): p50 \(figure(group, .latencyP50Us)), p99 \(figure(group, .latencyP99Us)), p99.9 \(figure(group, .latencyP999Us)) µs, "
            + "\(figure(group, .throughputRPS)) requests/s, \(count(group, .errors)) errors"
    }.joined(separator: "; ")
    func model(_ name: String) -> (name: String, group: RepeatGroup?) { (name, groups.first { $0.row.model == name }) }
    let outcome = expectation("p99", model("reactor-pool"), model("reactor"), .latencyP99Us, unit: " µs", expected: .below)
    return finding(data, listing: listing, [outcome], rows: groups.flatMap(\.rows),
                   notes: ["that the I/O thread does the sending is how reactor-pool is built, not measured"])
}

/// "reactor-pool (2 workers)", or the model alone.
func modelName(_ group: RepeatGroup) -> String {
    let row = group.row
    guard row.model.contains("pool"), let workers = row.workers, workers > 0 else { return row.model }
    return "\(row.model) (\(workers) workers)"
}

// MARK: - C6: loops per core

func decideC6(_ data: ClaimRows) -> Finding {
    let sweep = repeatGroups(rows(data, experiment: "c6-reactors", among: ["c6-reactors", "c4-multi-reactor"], model: "multi-reactor"))
        .sorted { ($0.row.reactors ?? 0) < ($1.row.reactors ?? 0) }
    let pinned = repeatGroups(data.rows.filter { $0.experiment == "c4-multi-reactor" }).first
    guard !sweep.isEmpty || pinned != nil else { return data.lacking("no ok rows in c6-reactors or c4-multi-reactor") }
    var parts: [String] = []
    if let row = sweep.first?.row {
        parts.append("c6-reactors (server CPUs \(row.serverCPUs), load CPUs \(row.clientCPUs)): "
            + sweep.map { "\($0.row.reactors.map(String.init) ?? "?") loop\($0.row.reactors == 1 ? "" : "s") \(figure($0, .throughputRPS))" }.joined(separator: ", ")
            + " requests/s")
    }
    if let pinned {
        parts.append("c4-multi-reactor (\(pinned.row.reactors.map(String.init) ?? "?") loops, server CPUs \(pinned.row.serverCPUs), load CPUs \(pinned.row.clientCPUs)): \(figure(pinned, .throughputRPS)) requests/s")
    }
    func loops(_ n: Int) -> (name: String, group: RepeatGroup?) { ("\(n) loop\(n == 1 ? "" : "s")", sweep.first { $0.row.reactors == n }) }
    var outcome = expectation("throughput", loops(2), loops(1), .throughputRPS, unit: " requests/s", expected: .above)
    var notes: [String] = []
    let reference = sweep.first?.row ?? pinned!.row
    if let server = cpuSet(reference.serverCPUs) {
        let shared = cpuSet(reference.clientCPUs).map { !$0.isDisjoint(with: server) } ?? false
        if shared && outcome.verdict == .refuted {
            // The second loop shares its core with the load generator: a loss there is not a failure to scale.
            outcome.verdict = .inconclusive
            outcome.text += ", but the second loop shares a CPU with the load generator"
        }
        let cores = server.count
        notes.append(shared
            ? "the load generator shares the server's \(cores) CPU\(cores == 1 ? "" : "s") (load on \(reference.clientCPUs)), so N > \(cores) loops cannot be tested for scaling on this machine"
            : "N > \(cores) loops exceed the server's \(cores) CPU\(cores == 1 ? "" : "s"): shown, not a scaling test")
    }
    return finding(data, listing: parts.joined(separator: "; "), [outcome], rows: sweep.flatMap(\.rows) + (pinned?.rows ?? []), notes: notes)
}

// MARK: - C7: is model 9 the best?

func decideC7(_ data: ClaimRows) -> Finding {
    let considered = data.rows.filter { $0.experiment == "c7-models" || $0.experiment == "c7-multi" }
    let groups = repeatGroups(considered.isEmpty ? data.rows : considered)
    guard !groups.isEmpty else { return data.lacking("no ok rows in c7-models or c7-multi", among: considered.isEmpty ? nil : considered) }
    /// Served every active connection without errors: its figures compare like with like.
    func ranked(_ group: RepeatGroup) -> Bool {
        guard let errors = group.measure(.errors), errors.max == 0 else { return false }
        guard let served = group.measure(.connectionsServed), let active = group.row.active ?? group.row.connections else { return true }
        return served.min >= Double(active)
    }
    let listing = groups.map { group in
        var text = "\(numbered(group.row.model)): \(figure(group, .throughputRPS)) requests/s, p99 \(figure(group, .latencyP99Us)) µs"
        if !ranked(group) {
            let active = (group.row.active ?? group.row.connections).map(formatCount) ?? "?"
            text += " (\(count(group, .errors)) errors, served \(count(group, .connectionsServed)) of \(active) active connections: not ranked)"
        }
        return text
    }.joined(separator: "; ")
    let rows = groups.flatMap(\.rows)
    let candidates = groups.filter(ranked).compactMap { group -> (group: RepeatGroup, rps: Measured, p99: Measured)? in
        guard let rps = group.measure(.throughputRPS), let p99 = group.measure(.latencyP99Us) else { return nil }
        return (group, rps, p99)
    }
    guard let fastest = candidates.max(by: { $0.rps.median < $1.rps.median }),
          let quickest = candidates.min(by: { $0.p99.median < $1.p99.median }) else {
        return data.finding(.inconclusive, listing + "; no model served every connection without errors with throughput and p99", rows: rows)
    }
    var text = listing + "; best throughput: \(numbered(fastest.group.row.model)), best p99: \(numbered(quickest.group.row.model))"
    let measures = candidates.flatMap { [$0.rps, $0.p99] }
    var notes: [String] = []
    if let cpus = groups.first(where: { $0.row.serverModel == .multiReactorPool })?.row.serverCPUs ?? groups.first?.row.serverCPUs,
       let server = cpuSet(cpus), server.count <= 2 {
        notes.append("the server had \(server.count) CPU\(server.count == 1 ? "" : "s") (server_cpus \(cpus)): model 9's loops and pool share \(server.count == 1 ? "it" : "them"), so its parallelism cannot pay off here")
    }
    guard let nine = candidates.first(where: { $0.group.row.serverModel == .multiReactorPool }) else {
        text += "; model 9 (multi-reactor-pool) has no ranked row"
        return data.finding(.inconclusive, ([text] + notes).joined(separator: "; ") + " " + Noise.note(measures), rows: rows)
    }
    let rpsRank = candidates.filter { $0.rps.median > nine.rps.median }.count + 1
    let p99Rank = candidates.filter { $0.p99.median < nine.p99.median }.count + 1
    text += "; model 9 ranks #\(rpsRank) of \(candidates.count) on throughput and #\(p99Rank) on p99"
    let others = candidates.filter { $0.group.row.serverModel != .multiReactorPool }
    let beaten = others.filter { standing($0.rps, nine.rps) == .above || standing($0.p99, nine.p99) == .below }
    let verdict: Verdict
    if !beaten.isEmpty {
        verdict = .refuted
        text += ": beaten (95 % interval beyond ±\(comparisonMarginThreshold.shown)) by " + beaten.map { numbered($0.group.row.model) }.joined(separator: ", ")
    } else if others.allSatisfy({ standing(nine.rps, $0.rps) == .above && standing(nine.p99, $0.p99) == .below }) {
        verdict = .supported
    } else {
        verdict = .inconclusive
        text += ": not apart from the best of the rest"
    }
    return data.finding(verdict, ([text] + notes).joined(separator: "; ") + " " + Noise.note(measures), rows: rows)
}

// MARK: - C8: proactor vs reactor

func decideC8(_ data: ClaimRows) -> Finding {
    let groups = repeatGroups(data.experiment("c8-proactor"))
    guard !groups.isEmpty else { return data.lacking("no ok rows in c8-proactor") }
    let protocols = orderedUnique(groups.map(\.row.protocol))
    func at(_ model: String, _ proto: String) -> RepeatGroup? { groups.first { $0.row.model == model && $0.row.protocol == proto } }
    let listing = protocols.map { proto in
        "\(proto): " + ["reactor", "proactor"].map { model in
            "\(model) \(figure(at(model, proto), .syscallsPerReq)) syscalls, \(figure(at(model, proto), .cpuUsPerReq)) µs CPU per request"
        }.joined(separator: ", ")
    }.joined(separator: "; ")
    let outcomes = protocols.map { proto -> Outcome in
        let proactor = ("proactor", at("proactor", proto)), reactor = ("reactor", at("reactor", proto))
        var outcome = expectation("\(proto) syscalls/request", proactor, reactor, .syscallsPerReq, expected: .below)
        if let cpuProactor = proactor.1?.measure(.cpuUsPerReq), let cpuReactor = reactor.1?.measure(.cpuUsPerReq) {
            let apart: String
            switch standing(cpuProactor, cpuReactor) {
            case .level(let why): apart = why
            case .below: apart = "less, by its 95 % interval"
            case .above: apart = "more, by its 95 % interval"
            }
            outcome.text += "; CPU/request \(changeText(cpuProactor.median, from: cpuReactor.median)) (\(apart))"
            outcome.measures += [cpuProactor, cpuReactor]
        }
        return outcome
    }
    return finding(data, listing: listing, outcomes, rows: groups.flatMap(\.rows))
}

/// The values in the order they first appear, each once.
func orderedUnique(_ values: [String]) -> [String] {
    var seen = Set<String>()
    return values.filter { seen.insert($0).inserted }
}

// MARK: - C9: pool size T = C / P

func decideC9(_ data: ClaimRows) -> Finding {
    let groups = repeatGroups(data.experiment("c9-pool-size"))
    guard !groups.isEmpty else { return data.lacking("no ok rows in c9-pool-size") }
    /// P from the variant in force: compute / (compute + block); nil without compute.
    func fraction(_ group: RepeatGroup) -> Double? {
        guard let variant = group.variant, variant.computeMicros > 0 else { return nil }
        return Double(variant.computeMicros) / Double(variant.computeMicros + variant.blockMicros)
    }
    let cores = cpuSet(groups[0].row.serverCPUs)?.count ?? 1
    let fractions = Array(Set(groups.compactMap(fraction))).sorted(by: >)
    let header = "C = \(cores) (server_cpus \(groups[0].row.serverCPUs.isEmpty ? "not recorded: 1 assumed" : groups[0].row.serverCPUs))"
    guard !fractions.isEmpty else {
        return data.finding(.inconclusive, header + "; no row with compute_us above 0", rows: groups.flatMap(\.rows))
    }
    let outcomes = fractions.map { p -> Outcome in
        let series = groups.filter { fraction($0) == p && $0.row.workers != nil }.sorted { $0.row.workers! < $1.row.workers! }
        let throughput = series.compactMap { group in group.measure(.throughputRPS).map { (workers: group.row.workers!, rps: $0) } }
        let rows = series.flatMap(\.rows)
        let ideal = Double(cores) / p
        let flags = series.first.map { $0.row.serverArgs.joined(separator: " ") } ?? ""
        var text = "P = \(formatFigure(p)) (\(flags)): throughput " + throughput.map { formatFigure($0.rps.median) }.joined(separator: ", ")
            + " requests/s at " + throughput.map { String($0.workers) }.joined(separator: ", ") + " workers"
        guard throughput.count >= 2, let best = throughput.map(\.rps.median).max() else {
            return Outcome(verdict: .inconclusive, text: text + ": needs two or more pool sizes with throughput_rps", rows: rows)
        }
        let knee = throughput.first { c9Knee.holds($0.rps.median / best) }!.workers
        let ratio = Double(knee) / ideal
        text += ", knee \(knee) vs C/P = \(formatFigure(ideal))"
        let measures = throughput.map(\.rps)
        // The knee is read from medians; with one run a pool size there is no telling its noise.
        if measures.contains(where: { $0.samples.count < 2 }) {
            return Outcome(verdict: .inconclusive, text: text + ": a pool size has 1 run (no interval)", measures: measures, rows: rows)
        }
        let within = c9Factor.holds(Swift.max(ratio, 1 / ratio))
        if !within { text += " (\(formatRatio(ratio > 1 ? ratio : 1 / ratio)) \(ratio > 1 ? "above" : "below"))" }
        return Outcome(verdict: within ? .supported : .refuted, text: text, measures: measures, rows: rows)
    }
    var result = data.finding(combining: outcomes)
    result.evidence = header + "; " + result.evidence
    return result
}
