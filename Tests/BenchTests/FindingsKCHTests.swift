import Foundation
import Testing
import Bench
import TestSupport

// MARK: - Fixtures: rows built in code

/// A row of one variant of `experiment` (claim `claim`); `set` fills in the figures. Status ok.
private func cell(_ experiment: String, _ claim: String, model: String = "reactor", io: String = "epoll-et",
                  connections: Int = 100, active: Int? = nil, workers: Int? = nil, reactors: Int? = nil,
                  protocol proto: String = "echo", args: String = "", load: String = "",
                  serverCPUs: String = "1", clientCPUs: String = "0", repetition: Int = 1,
                  _ set: (inout ResultRow) -> Void = { _ in }) -> ResultRow {
    var row = ResultRow(experiment: experiment, model: model, io: io, protocol: proto)
    row.claims = [claim]
    row.connections = connections
    row.active = active ?? connections
    row.workers = workers
    row.reactors = reactors
    row.messageBytes = 64
    row.durationS = 2
    row.serverArgs = args.split(separator: " ").map(String.init)
    row.loadArgs = load.split(separator: " ").map(String.init)
    row.serverCPUs = serverCPUs
    row.clientCPUs = clientCPUs
    row.repetition = repetition
    row.host = "testhost"
    row.kernel = "6.1.0-test"
    row.commit = "abc1234"
    row.variant = reportedVariant(model: row.model, io: row.io, protocol: row.protocol, reactors: row.reactors, workers: row.workers, serverArgs: row.serverArgs)
    set(&row)
    return row
}

/// One row per value: the repeats of a variant.
private func repeats(_ values: [Double], _ make: (Int, Double) -> ResultRow) -> [ResultRow] {
    values.enumerated().map { make($0.offset + 1, $0.element) }
}

/// The finding for `claim` when the rows are the whole results.csv; cells are numbered in order.
/// Each one-row variant is given a second identical run (`twoRuns`) unless `asGiven`.
private func verdict(_ claim: String, _ rows: [ResultRow], columns: [String] = ResultRow.columns, asGiven: Bool = false) -> Finding {
    var numbered = rows
    for index in numbered.indices where numbered[index].cell == nil { numbered[index].cell = index + 1 }
    return FindingsReport(rows: asGiven ? numbered : twoRuns(numbered), columns: columns).findings.first { $0.claim == claim }!
}

/// Asserts the verdict, printing the evidence when it is wrong.
private func expectVerdict(_ finding: Finding, _ expected: Verdict, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(finding.verdict == expected, "\(finding.claim): \(finding.evidence)", sourceLocation: sourceLocation)
}

/// A row of an unrelated claim: the file is not empty, yet `claim` has no rows.
private let unrelated = cell("idle-scaling-10", "M4", io: "poll") { $0.cpuUsPerReq = 7 }

// MARK: - K1-K4

private func copies(_ mode: String, cpu: [Double], copyBytes: Double, zerocopy: Double? = nil) -> [ResultRow] {
    repeats(cpu) { repetition, cpu in
        cell("k1-copies", "K1", connections: 10, args: "--copy \(mode)", repetition: repetition) {
            $0.cpuUsPerReq = cpu
            $0.copyBytesPerReq = copyBytes
            $0.zerocopyBytesPerReq = zerocopy
        }
    }
}

private func k2(_ experiment: String, _ model: String, switches: Double, cpu: Double, workers: Int? = nil) -> ResultRow {
    cell(experiment, "K2", model: model, io: model == "thread-per-connection" ? "blocking" : "epoll-et", workers: workers) {
        $0.ctxSwitchesPerReq = switches
        $0.involuntarySwitchesPerReq = switches / 10
        $0.cpuUsPerReq = cpu
    }
}

private func alloc(_ mode: String, mallocs: Double, cpu: Double, repetition: Int = 1) -> ResultRow {
    cell("k3-alloc", "K3", connections: 10, args: "--alloc \(mode)", repetition: repetition) {
        $0.mallocsPerReq = mallocs
        $0.cpuUsPerReq = cpu
        $0.pageFaults = 12
    }
}

private func locks(_ queue: String, waits: [Double], waitUs: [Double]? = nil) -> [ResultRow] {
    zip([1, 2, 4], waits).enumerated().map { index, pair in
        cell("k4-locks", "K4", model: "reactor-pool", connections: 50, workers: pair.0, args: "--queue \(queue)", serverCPUs: "0-1") {
            $0.futexLockWaitsPerReq = pair.1
            $0.futexLockWaitUsPerReq = waitUs?[index]
            // Waits for work (idle workers on the queue's condition) must not decide K4.
            $0.futexCondWaitsPerReq = 5
            $0.futexWaitsPerReq = pair.1 + 5
            $0.cpuUsPerReq = 9
        }
    }
}

@Suite("findings: K1-K4, the four performance killers")
struct KillerFindingsTests {
    @Test("K1 supported: staged copies cost CPU, splice moves no kernel<->user bytes")
    func k1Supported() {
        let rows = copies("direct", cpu: [10.0, 10.2], copyBytes: 32_768) + copies("staged", cpu: [12.0, 12.3], copyBytes: 32_768)
            + copies("splice", cpu: [8.0, 8.05], copyBytes: 0, zerocopy: 32_768)
        let finding = verdict("K1", rows)
        expectVerdict(finding, .supported)
        #expect(finding.evidence.hasPrefix("direct: CPU 10.1 µs/request, kernel<->user copies 32,800 B/request; staged: CPU 12.2 µs/request"))
        #expect(finding.evidence.contains("splice: CPU 8.03 µs/request, kernel<->user copies 0 B/request, zero-copy 32,800 B/request"))
        #expect(finding.evidence.contains("staged vs direct CPU/request: staged 12.2 vs direct 10.1 µs (+20 %)"))
        #expect(finding.evidence.contains("splice vs direct copy bytes/request: splice 0 vs direct 32,800 B (-100 %)"))
        #expect(finding.evidence.contains("splice vs direct CPU/request: splice 8.03 vs direct 10.1 µs (-21 %)"))
        #expect(finding.evidence.hasSuffix("(2 runs a variant)"))
        #expect(finding.cells == Array(1...6))
    }

    @Test("K1 refuted when staged is cheaper; inconclusive within the runs' ranges; not run without rows")
    func k1Other() {
        let direct = copies("direct", cpu: [10.0, 10.2], copyBytes: 32_768), splice = copies("splice", cpu: [9.0, 9.1], copyBytes: 0)
        let refuted = verdict("K1", direct + copies("staged", cpu: [8.0, 8.1], copyBytes: 32_768) + splice)
        expectVerdict(refuted, .refuted)
        #expect(refuted.evidence.contains("staged 8.05 vs direct 10.1 µs (-20 %), the opposite"))
        let overlapping = verdict("K1", direct + copies("staged", cpu: [10.1, 10.4], copyBytes: 32_768) + splice)
        expectVerdict(overlapping, .inconclusive)
        #expect(overlapping.evidence.contains("does not clear ±5 %"))
        // splice through a pipe costs two syscalls where read + write cost two: avoiding the copy may not pay.
        let dearSplice = verdict("K1", direct + copies("staged", cpu: [12.0, 12.3], copyBytes: 32_768)
            + copies("splice", cpu: [12.5, 12.9], copyBytes: 0, zerocopy: 32_768))
        expectVerdict(dearSplice, .refuted)
        #expect(dearSplice.evidence.contains("splice vs direct CPU/request: splice 12.7 vs direct 10.1 µs (+26 %), the opposite"), "\(dearSplice.evidence)")
        let noSplice = verdict("K1", direct + copies("staged", cpu: [12.0, 12.3], copyBytes: 32_768))
        expectVerdict(noSplice, .inconclusive)
        #expect(noSplice.evidence.contains("splice vs direct copy bytes/request: no ok splice row"))
        expectVerdict(verdict("K1", [unrelated]), .notRun)
    }

    @Test("K2 supported: on one core the reactor switches least and costs least per request")
    func k2Supported() {
        let rows = [k2("k2-thread-per-connection", "thread-per-connection", switches: 2.0, cpu: 15),
                    k2("k2-reactor", "reactor", switches: 0.02, cpu: 8),
                    k2("k2-reactor-pool", "reactor-pool", switches: 1.1, cpu: 11, workers: 8)]
        let finding = verdict("K2", rows)
        expectVerdict(finding, .supported)
        #expect(finding.evidence.hasPrefix("thread-per-connection: 2 switches/request (0.2 involuntary), CPU 15 µs/request; reactor: 0.02 switches/request"))
        #expect(finding.evidence.contains("reactor-pool (8 workers): 1.1 switches/request"))
        #expect(finding.evidence.contains("switches/request: reactor 0.02 vs thread-per-connection 2 (-99 %)"))
        #expect(finding.evidence.contains("all on one core: the many-core half of the claim is not tested here"))
    }

    @Test("K2 refuted when threads cost less CPU; inconclusive without a reactor; not run")
    func k2Other() {
        let refuted = verdict("K2", [k2("k2-thread-per-connection", "thread-per-connection", switches: 2.0, cpu: 7),
                                     k2("k2-reactor", "reactor", switches: 0.02, cpu: 8)])
        expectVerdict(refuted, .refuted)
        #expect(refuted.evidence.contains("CPU/request: reactor 8 vs thread-per-connection 7 µs (+14 %), the opposite"))
        #expect(refuted.evidence.contains("no ok rows in k2-reactor-pool"))
        var failed = k2("k2-reactor", "reactor", switches: 0, cpu: 0)
        failed.status = .failed
        failed.reason = "server died during the cell"
        let noReactor = verdict("K2", [k2("k2-thread-per-connection", "thread-per-connection", switches: 2.0, cpu: 7), failed])
        expectVerdict(noReactor, .inconclusive)
        #expect(noReactor.evidence.contains("no ok rows in k2-reactor"))
        #expect(noReactor.evidence.hasSuffix("not counted: 1 failed (cell 2: server died during the cell)"))
        expectVerdict(verdict("K2", [unrelated]), .notRun)
    }

    @Test("K3 supported: the pool allocates nothing per request, per-request buffers do, and they cost CPU beyond the interval")
    func k3Supported() {
        let finding = verdict("K3", [alloc("pooled", mallocs: 0, cpu: 9.8), alloc("per-request", mallocs: 2, cpu: 10.9)])
        expectVerdict(finding, .supported)
        #expect(finding.evidence.contains("pooled: 0 mallocs/request, CPU 9.8 µs/request, page faults 12; per-request: 2 mallocs/request"))
        #expect(finding.evidence.contains("per-request allocation costs +11 % CPU/request (its 95 % interval above +5 %)"), "\(finding.evidence)")
    }

    @Test("K3 refuted: per-request allocation within ±5 % of the pool's CPU, as a cheap allocator gives (the reference run's +4 %)")
    func k3Refuted() {
        let pooled = repeats([5.20, 5.22, 5.21]) { r, cpu in alloc("pooled", mallocs: 0, cpu: cpu, repetition: r) }
        let perRequest = repeats([5.40, 5.42, 5.41]) { r, cpu in alloc("per-request", mallocs: 2, cpu: cpu, repetition: r) }
        let finding = verdict("K3", pooled + perRequest)
        expectVerdict(finding, .refuted)
        #expect(finding.evidence.contains("allocation is cheap here, 1.04x ["), "\(finding.evidence)")
    }

    @Test("K3 inconclusive: the pool still allocates; an interval that straddles the margin; one run each; not run")
    func k3Other() {
        let finding = verdict("K3", [alloc("pooled", mallocs: 1, cpu: 9.8), alloc("per-request", mallocs: 2, cpu: 9.9)])
        expectVerdict(finding, .inconclusive)
        #expect(finding.evidence.contains("pooled is not below 0.01 mallocs/request in every run"))
        let pooled = repeats([5.0, 6.0]) { r, cpu in alloc("pooled", mallocs: 0, cpu: cpu, repetition: r) }
        let perRequest = repeats([5.3, 6.6]) { r, cpu in alloc("per-request", mallocs: 2, cpu: cpu, repetition: r) }
        let noisy = verdict("K3", pooled + perRequest)
        expectVerdict(noisy, .inconclusive)
        #expect(noisy.evidence.contains("does not clear ±5 %"), "\(noisy.evidence)")
        let once = verdict("K3", [alloc("pooled", mallocs: 0, cpu: 5), alloc("per-request", mallocs: 2, cpu: 50)], asGiven: true)
        expectVerdict(once, .inconclusive)
        #expect(once.evidence.contains("no interval (needs 2 or more a side)"), "\(once.evidence)")
        let unprobed = verdict("K3", [alloc("pooled", mallocs: 0, cpu: 9.8)])
        #expect(unprobed.evidence.contains("no ok --alloc per-request row"))
        expectVerdict(verdict("K3", [unrelated]), .notRun)
    }

    @Test("K4 supported: one locked queue makes workers wait on futexes, queues per worker do not; the 1..N series is shown")
    func k4Supported() {
        let rows = locks("global-lock", waits: [0.01, 0.4, 0.9], waitUs: [0.1, 3, 9]) + locks("per-worker", waits: [0.01, 0.01, 0.02], waitUs: [0.1, 0.1, 0.2])
        let finding = verdict("K4", rows)
        expectVerdict(finding, .supported)
        #expect(finding.evidence.hasPrefix("at 1, 2, 4 workers: futex lock waits/request global-lock 0.01, 0.4, 0.9 vs per-worker 0.01, 0.01, 0.02; futex lock wait µs/request global-lock 0.1, 3, 9 vs per-worker 0.1, 0.1, 0.2"))
        #expect(finding.evidence.contains("2 workers, futex lock waits/request: global-lock 0.4 vs per-worker 0.01 (+3900 %)"))
        #expect(finding.evidence.contains("4 workers"))
        #expect(!finding.evidence.contains("1 workers,"))
    }

    @Test("K4 refuted when the global lock waits less; inconclusive within noise; not run")
    func k4Other() {
        let refuted = verdict("K4", locks("global-lock", waits: [0.01, 0.01, 0.9]) + locks("per-worker", waits: [0.01, 0.3, 0.02]))
        expectVerdict(refuted, .refuted)
        #expect(refuted.evidence.contains("global-lock 0.01 vs per-worker 0.3 (-97 %), the opposite"))
        let level = verdict("K4", locks("global-lock", waits: [0.01, 0.3, 0.9]) + locks("per-worker", waits: [0.01, 0.3, 0.02]))
        expectVerdict(level, .inconclusive)
        expectVerdict(verdict("K4", [unrelated]), .notRun)
    }

    @Test("K family: a results.csv without copy_bytes_per_req leaves K1 inconclusive, naming the column")
    func missingColumn() {
        let rows = copies("direct", cpu: [10.0], copyBytes: 32_768) + copies("staged", cpu: [12.0], copyBytes: 32_768)
        let finding = verdict("K1", rows, columns: ResultRow.columns.filter { $0 != "copy_bytes_per_req" })
        expectVerdict(finding, .inconclusive)
        #expect(finding.evidence == "results.csv lacks column copy_bytes_per_req that this rule reads")
        #expect(finding.cells == [1, 2])
    }
}

// MARK: - C1-C9

private func iterative(short: Bool, served: Int, timeouts: Int, errors: Int) -> ResultRow {
    cell("c1-iterative", "C1", model: "iterative", io: "blocking", connections: 2, load: short ? "--requests-per-connection 1" : "") {
        $0.connectionsServed = served
        $0.errorsTimeout = timeouts
        $0.errors = errors
        $0.requests = short ? 20_000 : 40_000
        $0.connectionsOpened = short ? 20_000 : 2
    }
}

private func perConnection(_ experiment: String, _ model: String, threads: [Int], rss: [Int], switches: Double) -> [ResultRow] {
    zip([10, 100, 1000], zip(threads, rss)).map { connections, figures in
        cell(experiment, "C2", model: model, io: model == "reactor" ? "epoll-et" : "blocking", connections: connections, active: 10) {
            $0.serverThreads = figures.0
            $0.serverRSSKB = figures.1
            $0.ctxSwitchesPerReq = switches
        }
    }
}

private func c2Rows(tpcThreads: [Int] = [12, 102, 1011], reactorThreads: [Int] = [1, 1, 1], tpcSwitches: Double = 2) -> [ResultRow] {
    perConnection("c2-thread-per-connection", "thread-per-connection", threads: tpcThreads, rss: [20_000, 24_000, 60_000], switches: tpcSwitches)
        + perConnection("c2-process-per-connection", "process-per-connection", threads: [11, 101, 1010], rss: [30_000, 170_000, 1_500_000], switches: 2)
        + perConnection("c2-reactor", "reactor", threads: reactorThreads, rss: [5000, 5400, 9000], switches: 0.1)
}

private func herd(_ mode: String, wakeups: [Double], calls: Double) -> [ResultRow] {
    let experiment = mode == "blocking" ? "c3-blocking-accept" : "c3-epoll-accept"
    return repeats(wakeups) { repetition, value in
        cell(experiment, "C3", model: "prefork", io: mode == "blocking" ? "blocking" : "epoll-et", connections: 10, workers: 4,
             args: "--accept \(mode)", repetition: repetition) {
            $0.wakeupsPerAccept = value
            $0.acceptCallsPerAccept = calls
        }
    }
}

private func reactorUtil(_ experiment: String, _ model: String, util: [Double], rps: Double) -> [ResultRow] {
    repeats(util) { repetition, value in
        cell(experiment, "C4", model: model, reactors: model == "multi-reactor" ? 2 : nil, serverCPUs: "0-1", clientCPUs: "0-1", repetition: repetition) {
            $0.serverCPUUtil = value
            $0.throughputRPS = rps
        }
    }
}

private func compute(_ model: String, p99: [Double]) -> [ResultRow] {
    repeats(p99) { repetition, value in
        cell("c5-compute", "C5", model: model, connections: 20, workers: model == "reactor-pool" ? 2 : nil, args: "--compute-us 200",
             serverCPUs: "0-1", repetition: repetition) {
            $0.targetRPS = 2500
            $0.latencyP50Us = value / 4
            $0.latencyP99Us = value
            $0.latencyP999Us = value * 2
            $0.throughputRPS = 2499
            $0.errors = 0
        }
    }
}

private func loops(_ reactors: Int, rps: [Double], experiment: String = "c6-reactors", clientCPUs: String = "0") -> [ResultRow] {
    repeats(rps) { repetition, value in
        cell(experiment, "C6", model: "multi-reactor", reactors: reactors, serverCPUs: "0-1", clientCPUs: clientCPUs, repetition: repetition) {
            $0.throughputRPS = value
        }
    }
}

private func model(_ name: String, rps: [Double], p99: [Double], errors: Int = 0, served: Int = 100, experiment: String = "c7-models") -> [ResultRow] {
    zip(rps, p99).enumerated().map { index, figures in
        cell(experiment, "C7", model: name, connections: 1000, active: 100, reactors: name.hasPrefix("multi") ? 2 : nil, repetition: index + 1) {
            $0.throughputRPS = figures.0
            $0.latencyP99Us = figures.1
            $0.errors = errors
            $0.connectionsServed = served
        }
    }
}

private func proactor(_ model: String, _ proto: String, syscalls: [Double], cpu: Double) -> [ResultRow] {
    repeats(syscalls) { repetition, value in
        cell("c8-proactor", "C8", model: model, io: model == "proactor" ? "io_uring" : "epoll-et", protocol: proto, repetition: repetition) {
            $0.syscallsPerReq = value
            $0.cpuUsPerReq = cpu
        }
    }
}

/// c9 rows: throughput at 1, 2, 4, 8, 16 workers for one compute fraction.
private func pool(_ args: String, _ rps: [Double]) -> [ResultRow] {
    zip([1, 2, 4, 8, 16], rps).map { workers, value in
        cell("c9-pool-size", "C9", model: "reactor-pool", connections: 64, workers: workers, args: args) { $0.throughputRPS = value }
    }
}

@Suite("findings: C1-C9, the concurrency models")
struct ModelFindingsTests {
    @Test("C1 supported: the second keep-alive client starves, short connections take turns; refuted when both are served")
    func c1() {
        let supported = verdict("C1", [iterative(short: false, served: 1, timeouts: 3, errors: 3), iterative(short: true, served: 20_000, timeouts: 0, errors: 0)])
        expectVerdict(supported, .supported)
        #expect(supported.evidence.hasPrefix("keep-alive: served 1 of 2 connections, 40,000 requests, 3 errors (3 timeouts); one request per connection: 20,000 requests, 0 errors, connections opened 20,000"))
        let refuted = verdict("C1", [iterative(short: false, served: 2, timeouts: 0, errors: 0), iterative(short: true, served: 20_000, timeouts: 0, errors: 0)])
        expectVerdict(refuted, .refuted)
        #expect(refuted.evidence.contains("every long-lived client was served"))
        let onlyKeepAlive = verdict("C1", [iterative(short: false, served: 1, timeouts: 3, errors: 3)])
        expectVerdict(onlyKeepAlive, .inconclusive)
        expectVerdict(verdict("C1", [unrelated]), .notRun)
    }

    @Test("C2 supported: threads/processes and RSS follow connections, the reactor stays flat; refuted when threads do not grow")
    func c2() {
        let supported = verdict("C2", c2Rows())
        expectVerdict(supported, .supported)
        #expect(supported.evidence.hasPrefix("thread-per-connection: threads 12 → 1,011, RSS 20,000 → 60,000 KB, switches/request 2 → 2 at 10 → 1,000 connections"))
        #expect(supported.evidence.contains("process-per-connection adds 1.01 threads/processes and 1,480 KB per connection"))
        #expect(supported.evidence.contains("reactor adds 0 threads and 4.04 KB per connection"))
        #expect(supported.evidence.contains("switches/request at 1,000 vs the reactor at 1,000: thread-per-connection 2 vs reactor 0.1 (+1900 %)"), "\(supported.evidence)")
        // Threads that serve several requests per wake-up (pipelined clients) switch less than a reactor's loop.
        let fewSwitches = verdict("C2", c2Rows(tpcSwitches: 0.02))
        expectVerdict(fewSwitches, .refuted)
        #expect(fewSwitches.evidence.contains("thread-per-connection 0.02 vs reactor 0.1 (-80 %), the opposite"), "\(fewSwitches.evidence)")
        let refuted = verdict("C2", c2Rows(tpcThreads: [5, 5, 5]))
        expectVerdict(refuted, .refuted)
        #expect(refuted.evidence.contains("thread-per-connection adds 0 threads/processes and 40.4 KB per connection: its threads do not follow connections"))
        var counted = c2Rows(tpcThreads: [2, 2, 3])
        for index in counted.indices where counted[index].model == "thread-per-connection" {
            counted[index].serverThreadsStarted = counted[index].connections! + 1
        }
        let afterClose = verdict("C2", counted)
        expectVerdict(afterClose, .inconclusive)
        #expect(afterClose.evidence.contains("threads 2 → 3, RSS 20,000 → 60,000 KB, switches/request 2 → 2, threads started 11 → 1,001 at 10 → 1,000 connections"))
        #expect(afterClose.evidence.contains("server_threads does not grow but threads started or descriptors do (1 per connection): the threads were counted after the connections closed"))
        let reactorGrows = verdict("C2", c2Rows(reactorThreads: [1, 10, 100]))
        expectVerdict(reactorGrows, .refuted)
        #expect(reactorGrows.evidence.contains("reactor adds 99 threads"))
        expectVerdict(verdict("C2", [unrelated]), .notRun)
    }

    @Test("C3 supported: shared epoll wakes every acceptor; blocking accept(2) is wake-one")
    func c3Supported() {
        let rows = herd("blocking", wakeups: [2.0, 2.1], calls: 1.0) + herd("shared-epoll", wakeups: [5.1, 5.3], calls: 4.2)
            + herd("epoll-exclusive", wakeups: [1.9, 2.0], calls: 1.3) + herd("reuseport", wakeups: [2.0, 2.2], calls: 1.1)
        let finding = verdict("C3", rows)
        expectVerdict(finding, .supported)
        #expect(finding.evidence.hasPrefix("4 processes, per accepted connection: blocking: 2.05 wake-ups, 1 accept calls; shared-epoll: 5.2 wake-ups, 4.2 accept calls"))
        #expect(finding.evidence.contains("wake-ups/accept: shared-epoll 5.2 vs epoll-exclusive 1.95 (+167 %)"))
        #expect(finding.evidence.contains("accept(2) wakes one waiter since Linux 2.6, so the herd is an epoll-era problem"))
        #expect(finding.cells == Array(1...8))
    }

    @Test("C3 refuted when shared epoll wakes fewer; inconclusive within ranges; not run")
    func c3Other() {
        let refuted = verdict("C3", herd("shared-epoll", wakeups: [1.5, 1.5], calls: 1) + herd("epoll-exclusive", wakeups: [2.5, 2.6], calls: 1)
            + herd("reuseport", wakeups: [2.0, 2.2], calls: 1))
        expectVerdict(refuted, .refuted)
        let level = verdict("C3", herd("shared-epoll", wakeups: [2.0, 3.0], calls: 1) + herd("epoll-exclusive", wakeups: [2.5, 2.6], calls: 1)
            + herd("reuseport", wakeups: [2.0, 2.2], calls: 1))
        expectVerdict(level, .inconclusive)
        expectVerdict(verdict("C3", [unrelated]), .notRun)
    }

    @Test("C4 supported: the single reactor stays at one core, two loops use more; refuted above one core; inconclusive without contrast")
    func c4() {
        let supported = verdict("C4", reactorUtil("c4-reactor", "reactor", util: [0.99, 1.0], rps: 120_000) + reactorUtil("c4-multi-reactor", "multi-reactor", util: [1.6, 1.7], rps: 180_000))
        expectVerdict(supported, .supported)
        #expect(supported.evidence.hasPrefix("reactor on CPUs 0-1: CPU util 0.995 (1.0 = one core), 120,000 requests/s; multi-reactor (2 loops) on CPUs 0-1: CPU util 1.65"))
        let refuted = verdict("C4", reactorUtil("c4-reactor", "reactor", util: [1.4, 1.5], rps: 120_000) + reactorUtil("c4-multi-reactor", "multi-reactor", util: [1.6, 1.7], rps: 180_000))
        expectVerdict(refuted, .refuted)
        let flat = verdict("C4", reactorUtil("c4-reactor", "reactor", util: [0.99], rps: 120_000) + reactorUtil("c4-multi-reactor", "multi-reactor", util: [1.0], rps: 121_000))
        expectVerdict(flat, .notTestable)
        #expect(flat.evidence.contains("the multi-reactor did not use more than one core either"))
        #expect(flat.evidence.contains("it needs cores for two loops beyond what the load uses"), "\(flat.evidence)")
        expectVerdict(verdict("C4", [unrelated]), .notRun)
    }

    @Test("C5 supported: the pool keeps p99 low under compute; refuted when its p99 is higher")
    func c5() {
        let supported = verdict("C5", compute("reactor", p99: [4000, 4200]) + compute("reactor-pool", p99: [900, 950]))
        expectVerdict(supported, .supported)
        #expect(supported.evidence.hasPrefix("200 µs compute per request at 2,500 requests/s: reactor: p50 1,030, p99 4,100, p99.9 8,200 µs, 2,500 requests/s, 0 errors; reactor-pool (2 workers)"))
        #expect(supported.evidence.contains("p99: reactor-pool 925 vs reactor 4,100 µs (-77 %)"))
        // Two runs a side cannot tell 4,100 from 5,050 apart (Welch's t on 2 + 2 samples is wide); three can.
        let unsure = verdict("C5", compute("reactor", p99: [4000, 4200]) + compute("reactor-pool", p99: [5000, 5100]))
        expectVerdict(unsure, .inconclusive)
        let refuted = verdict("C5", compute("reactor", p99: [4000, 4200, 4100]) + compute("reactor-pool", p99: [5000, 5100, 5050]))
        expectVerdict(refuted, .refuted)
        expectVerdict(verdict("C5", compute("reactor", p99: [4000, 4200])), .inconclusive)
        expectVerdict(verdict("C5", [unrelated]), .notRun)
    }

    @Test("C6 supported when 2 loops beat 1; the evidence says the load shares the cores; refuted when 2 loops lose on CPUs of their own")
    func c6() {
        let c4Pinned = loops(2, rps: [180_000], experiment: "c4-multi-reactor", clientCPUs: "0-1")
        let supported = verdict("C6", loops(1, rps: [100_000, 101_000]) + loops(2, rps: [150_000, 152_000]) + loops(4, rps: [140_000, 141_000]) + c4Pinned)
        expectVerdict(supported, .supported)
        #expect(supported.evidence.hasPrefix("c6-reactors (server CPUs 0-1, load CPUs 0): 1 loop 101,000, 2 loops 151,000, 4 loops 141,000 requests/s; c4-multi-reactor (2 loops, server CPUs 0-1, load CPUs 0-1): 180,000 requests/s"))
        #expect(supported.evidence.contains("the load generator shares the server's 2 CPUs (load on 0), so N > 2 loops cannot be tested for scaling on this machine"))
        #expect(supported.cells == Array(1...7))
        let sharedLoss = verdict("C6", loops(1, rps: [100_000, 101_000]) + loops(2, rps: [80_000, 82_000]))
        expectVerdict(sharedLoss, .inconclusive)
        #expect(sharedLoss.evidence.contains("throughput: 2 loops 81,000 vs 1 loop 101,000 requests/s (-19 %), the opposite, but the second loop shares a CPU with the load generator"))
        let refuted = verdict("C6", loops(1, rps: [100_000, 101_000], clientCPUs: "2") + loops(2, rps: [80_000, 82_000], clientCPUs: "2"))
        expectVerdict(refuted, .refuted)
        #expect(refuted.evidence.contains("N > 2 loops exceed the server's 2 CPUs: shown, not a scaling test"))
        let level = verdict("C6", loops(1, rps: [100_000, 110_000]) + loops(2, rps: [105_000, 112_000]))
        expectVerdict(level, .inconclusive)
        expectVerdict(verdict("C6", [unrelated]), .notRun)
    }

    @Test("C7 supported when model 9 leads both throughput and p99; models with errors are listed, not ranked")
    func c7Supported() {
        let rows = model("iterative", rps: [30_000, 30_000], p99: [50, 50], errors: 900, served: 2)
            + model("reactor", rps: [100_000, 101_000], p99: [2000, 2100])
            + model("multi-reactor-pool", rps: [150_000, 151_000], p99: [1200, 1250], experiment: "c7-multi")
        let finding = verdict("C7", rows)
        expectVerdict(finding, .supported)
        #expect(finding.evidence.hasPrefix("model 1 iterative: 30,000 requests/s, p99 50 µs (900 errors, served 2 of 100 active connections: not ranked); model 4 reactor: 101,000 requests/s, p99 2,050 µs"))
        #expect(finding.evidence.contains("best throughput: model 9 multi-reactor-pool, best p99: model 9 multi-reactor-pool; model 9 ranks #1 of 2 on throughput and #1 on p99"))
        #expect(finding.evidence.contains("the server had 1 CPU (server_cpus 1): model 9's loops and pool share it"))
    }

    @Test("C7 refuted when another model beats model 9 beyond the ranges; inconclusive without model 9; not run")
    func c7Other() {
        let refuted = verdict("C7", model("reactor", rps: [160_000, 161_000], p99: [900, 950])
            + model("multi-reactor-pool", rps: [150_000, 151_000], p99: [1200, 1250], experiment: "c7-multi"))
        expectVerdict(refuted, .refuted)
        #expect(refuted.evidence.contains("model 9 ranks #2 of 2 on throughput and #2 on p99: beaten (95 % interval beyond ±5 %) by model 4 reactor"))
        let noNine = verdict("C7", model("reactor", rps: [160_000, 161_000], p99: [900, 950]))
        expectVerdict(noNine, .inconclusive)
        #expect(noNine.evidence.contains("model 9 (multi-reactor-pool) has no ranked row"))
        expectVerdict(verdict("C7", [unrelated]), .notRun)
    }

    @Test("C8 supported: io_uring needs fewer syscalls per request for echo and http; refuted when it needs more for one")
    func c8() {
        let reactor = proactor("reactor", "echo", syscalls: [3.0, 3.1], cpu: 8) + proactor("reactor", "http", syscalls: [3.0, 3.0], cpu: 9)
        let supported = verdict("C8", reactor + proactor("proactor", "echo", syscalls: [0.5, 0.55], cpu: 7) + proactor("proactor", "http", syscalls: [0.6, 0.6], cpu: 8))
        expectVerdict(supported, .supported)
        #expect(supported.evidence.hasPrefix("echo: reactor 3.05 syscalls, 8 µs CPU per request, proactor 0.525 syscalls, 7 µs CPU per request; http:"))
        #expect(supported.evidence.contains("echo syscalls/request: proactor 0.525 vs reactor 3.05 (-83 %); CPU/request -13 % (less, by its 95 % interval)"))
        let refuted = verdict("C8", reactor + proactor("proactor", "echo", syscalls: [0.5, 0.55], cpu: 7) + proactor("proactor", "http", syscalls: [4, 4.1], cpu: 8))
        expectVerdict(refuted, .refuted)
        expectVerdict(verdict("C8", [unrelated]), .notRun)
    }

    @Test("C9 supported: each compute fraction's knee sits at C/P; refuted when a knee is 4x away")
    func c9() {
        let p1 = pool("--compute-us 100", [9000, 9100, 9050, 9000, 8900])
        let p05 = pool("--compute-us 50 --block-us 50", [5000, 9000, 9100, 9050, 9000])
        let supported = verdict("C9", p1 + p05 + pool("--compute-us 25 --block-us 75", [2500, 5000, 9000, 9100, 9000]))
        expectVerdict(supported, .supported)
        #expect(supported.evidence.hasPrefix("C = 1 (server_cpus 1); P = 1 (--compute-us 100): throughput 9,000, 9,100, 9,050, 9,000, 8,900 requests/s at 1, 2, 4, 8, 16 workers, knee 1 vs C/P = 1"))
        #expect(supported.evidence.contains("P = 0.25 (--compute-us 25 --block-us 75): throughput 2,500, 5,000, 9,000, 9,100, 9,000 requests/s at 1, 2, 4, 8, 16 workers, knee 4 vs C/P = 4"))
        let refuted = verdict("C9", p1 + p05 + pool("--compute-us 25 --block-us 75", [2500, 3000, 3500, 5000, 9000]))
        expectVerdict(refuted, .refuted)
        #expect(refuted.evidence.contains("knee 16 vs C/P = 4 (4x above)"))
        let short = verdict("C9", pool("--compute-us 100", [9000]))
        expectVerdict(short, .inconclusive)
        #expect(short.evidence.contains("needs two or more pool sizes"))
        expectVerdict(verdict("C9", [unrelated]), .notRun)
    }

    @Test("C family: a results.csv without server_cpu_util leaves C4 inconclusive, naming the column")
    func missingColumn() {
        let rows = reactorUtil("c4-reactor", "reactor", util: [0.99], rps: 120_000) + reactorUtil("c4-multi-reactor", "multi-reactor", util: [1.6], rps: 180_000)
        let finding = verdict("C4", rows, columns: ResultRow.columns.filter { $0 != "server_cpu_util" })
        expectVerdict(finding, .inconclusive)
        #expect(finding.evidence == "results.csv lacks column server_cpu_util that this rule reads")
    }
}

// MARK: - H1-H3

private func sigpipe(_ mode: String?, exit: String?, hangups: Int = 5000) -> ResultRow {
    cell("h1-sigpipe", "H1", connections: 10, args: "--read-size 16" + (mode.map { " --sigpipe \($0)" } ?? ""), load: "--hang-up") {
        $0.serverExit = exit
        $0.hangups = hangups
    }
}

private func timeWait(_ mode: String, server: Int, client: Int) -> ResultRow {
    cell("h2-time-wait", "H2", connections: 10, protocol: "http", args: "--close \(mode)", load: "--requests-per-connection 1") {
        $0.timeWaitServer = server
        $0.timeWaitClient = client
        $0.connectionsOpened = 5000
        $0.closedByServer = mode == "server-first" ? 5000 : 0
    }
}

private func idleTimeout(_ timeout: String?, start: Int, end: Int, closed: Int) -> ResultRow {
    cell("h3-idle-timeout", "H3", connections: 200, active: 10, args: timeout.map { "--idle-timeout \($0)" } ?? "") {
        $0.serverFDsStart = start
        $0.serverFDsEnd = end
        $0.closedByServer = closed
    }
}

@Suite("findings: H1-H3, connection hygiene")
struct HygieneFindingsTests {
    @Test("H1 supported: the server without SIG_IGN is killed by signal 13, the ignoring one survives")
    func h1() {
        let killed = "killed by signal 13 (Broken pipe)"
        let supported = verdict("H1", [sigpipe(nil, exit: nil), sigpipe("default", exit: killed, hangups: 120)])
        expectVerdict(supported, .supported)
        #expect(supported.evidence == "--sigpipe ignore (the server's default, SIG_IGN): survived, hang-ups 5,000; --sigpipe default: killed by signal 13 (Broken pipe), hang-ups 120")
        let refuted = verdict("H1", [sigpipe(nil, exit: nil), sigpipe("default", exit: nil)])
        expectVerdict(refuted, .refuted)
        #expect(refuted.evidence.contains("the server without SIG_IGN survived writes to peers that had gone"))
        let bothDie = verdict("H1", [sigpipe(nil, exit: killed), sigpipe("default", exit: killed)])
        expectVerdict(bothDie, .inconclusive)
        #expect(bothDie.evidence.contains("the ignoring server died too"))
        expectVerdict(verdict("H1", [unrelated]), .notRun)
    }

    @Test("H2 supported: the side that closes first holds TIME_WAIT; refuted when the other side does")
    func h2() {
        let supported = verdict("H2", [timeWait("client-first", server: 0, client: 5000), timeWait("server-first", server: 5000, client: 0)])
        expectVerdict(supported, .supported)
        #expect(supported.evidence.hasPrefix("client-first: TIME_WAIT on the server 0, on the client 5,000 (connections opened 5,000, closed by the server 0); server-first: TIME_WAIT on the server 5,000"))
        let refuted = verdict("H2", [timeWait("client-first", server: 5000, client: 0), timeWait("server-first", server: 5000, client: 0)])
        expectVerdict(refuted, .refuted)
        let few = verdict("H2", [timeWait("client-first", server: 0, client: 40), timeWait("server-first", server: 40, client: 0)])
        expectVerdict(few, .inconclusive)
        expectVerdict(verdict("H2", [unrelated]), .notRun)
    }

    @Test("H3 supported: an idle timeout closes the idle connections and the fd count falls; refuted when it falls without one")
    func h3() {
        let supported = verdict("H3", [idleTimeout(nil, start: 205, end: 205, closed: 0), idleTimeout("1s", start: 205, end: 15, closed: 190)])
        expectVerdict(supported, .supported)
        #expect(supported.evidence.hasPrefix("190 idle connections: no idle timeout: server fds 205 → 205, closed by the server 0; --idle-timeout 1s: server fds 205 → 15, closed by the server 190"))
        let refuted = verdict("H3", [idleTimeout(nil, start: 205, end: 15, closed: 0), idleTimeout("1s", start: 205, end: 15, closed: 190)])
        expectVerdict(refuted, .refuted)
        let noReaping = verdict("H3", [idleTimeout(nil, start: 205, end: 205, closed: 0), idleTimeout("1s", start: 205, end: 200, closed: 0)])
        expectVerdict(noReaping, .inconclusive)
        #expect(noReaping.evidence.contains("with the timeout the fd count did not fall by 50 % of the idle connections"))
        #expect(noReaping.evidence.contains("the server closed nothing"))
        var unmeasured = idleTimeout("1s", start: 205, end: 15, closed: 0)
        unmeasured.closedByServer = nil
        let unconfirmed = verdict("H3", [idleTimeout(nil, start: 205, end: 205, closed: 0), unmeasured])
        expectVerdict(unconfirmed, .inconclusive)
        #expect(unconfirmed.evidence.hasSuffix("closed_by_server is empty (not measured), so no close is confirmed (2 runs a variant)"), "\(unconfirmed.evidence)")
        expectVerdict(verdict("H3", [unrelated]), .notRun)
    }

    @Test("H family: a results.csv without server_exit leaves H1 inconclusive, naming the column")
    func missingColumn() {
        let finding = verdict("H1", [sigpipe(nil, exit: nil), sigpipe("default", exit: "killed by signal 13 (Broken pipe)")],
                              columns: ResultRow.columns.filter { $0 != "server_exit" })
        expectVerdict(finding, .inconclusive)
        #expect(finding.evidence == "results.csv lacks column server_exit that this rule reads")
    }
}

// MARK: - S1

private func scale(_ connections: Int, pss: [Double], slab: Double) -> [ResultRow] {
    repeats(pss) { repetition, value in
        cell("c100k", "S1", connections: connections, active: connections / 100, repetition: repetition) {
            $0.serverPSSKBPerConn = value
            $0.kernelSlabKBPerConn = slab
        }
    }
}

@Suite("findings: S1, connections per GiB")
struct ScaleFindingsTests {
    @Test("S1 supported: 0.23 + 9.23 KiB per connection is ~110,800 per GiB; refuted at 20 KiB; inconclusive in between; not run")
    func s1() {
        let supported = verdict("S1", scale(10_000, pss: [2.8], slab: 9.9) + scale(100_000, pss: [0.23, 0.24], slab: 9.23))
        expectVerdict(supported, .supported)
        #expect(supported.evidence.contains("100,000 connections: server PSS 0.235 + slab 9.23 KiB/connection = 111,000 per GiB"), "\(supported.evidence)")
        #expect(supported.evidence.contains("at least the claimed 100,000"))
        let refuted = verdict("S1", scale(100_000, pss: [10, 11], slab: 10))
        expectVerdict(refuted, .refuted)
        #expect(refuted.evidence.contains("well short of 100,000"), "\(refuted.evidence)")
        let between = verdict("S1", scale(100_000, pss: [1, 4], slab: 9))
        expectVerdict(between, .inconclusive)
        // Below 10,000 connections a process's fixed memory dominates: no verdict from such cells.
        expectVerdict(verdict("S1", scale(1_000, pss: [50], slab: 10)), .inconclusive)
        expectVerdict(verdict("S1", [unrelated]), .notRun)
    }
}
