import Foundation
import Testing
import Bench
import TestSupport

// MARK: - Fixtures: rows built in code

/// A row of one variant of `experiment` (claim `claim`); `set` fills in the figures. Status ok.
private func cell(_ experiment: String, _ claim: String, model: String, io: String, connections: Int, active: Int? = nil,
                  reactors: Int? = nil, args: String = "", load: String = "", serverCPUs: String = "1", clientCPUs: String = "0",
                  repetition: Int = 1, _ set: (inout ResultRow) -> Void = { _ in }) -> ResultRow {
    var row = ResultRow(experiment: experiment, model: model, io: io, protocol: "echo")
    row.claims = [claim]
    row.connections = connections
    row.active = active ?? connections
    row.reactors = reactors
    row.messageBytes = 64
    row.durationS = 1
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

/// The finding for `claim` when the rows are the whole results.csv, as given (no runs added); cells numbered in order.
private func verdict(_ claim: String, _ rows: [ResultRow]) -> Finding {
    var numbered = rows
    for index in numbered.indices where numbered[index].cell == nil { numbered[index].cell = index + 1 }
    return FindingsReport(rows: numbered, columns: ResultRow.columns).findings.first { $0.claim == claim }!
}

private func expectVerdict(_ finding: Finding, _ expected: Verdict, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(finding.verdict == expected, "\(finding.claim): \(finding.evidence)", sourceLocation: sourceLocation)
}

// MARK: - T1

/// A thread-per-connection run at `connections` with glibc's default stack that held them all: a thread each,
/// plus the acceptor and the main thread; ~40 KiB resident per thread (what 64-bit Linux shows: touched pages only).
private func held(_ connections: Int, stack: String = "default", repetition: Int = 1) -> ResultRow {
    cell("t1-threads", "T1", model: "thread-per-connection", io: "blocking", connections: connections, active: 10,
         args: "--thread-stack \(stack)", repetition: repetition) {
        $0.connectionsEstablished = connections
        $0.connectionsServed = 10
        $0.errors = 0
        $0.serverRefused = 0
        $0.serverThreads = connections + 2
        $0.serverRSSKB = 6_000 + 40 * connections
        $0.serverPSSKB = 5_000 + 38 * connections
        $0.serverPSSKBPerConn = Double(5_000 + 38 * connections) / Double(connections)
        $0.requests = 20_000
    }
}

/// A run whose server refused the connections past its first `limit` threads (pthread_create failing).
private func refusedPast(_ connections: Int, limit: Int) -> ResultRow {
    var row = held(connections)
    row.connectionsEstablished = connections
    row.serverRefused = connections - limit
    row.serverThreads = limit + 2
    row.errors = connections - limit
    return row
}

@Suite("Findings: T1 and L1 decided from rows built in code")
struct FindingsT1L1Tests {
    @Test("T1 refuted: with glibc's default stack one process holds 3,000 connections, a thread each, and the stack is not resident")
    func t1Refuted() {
        let finding = verdict("T1", [held(300), held(1000), held(3000)])
        expectVerdict(finding, .refuted)
        #expect(finding.evidence.contains("3,000 connections: held"), "\(finding.evidence)")
        #expect(finding.evidence.contains("RSS 40 KiB"), "\(finding.evidence)")
        #expect(finding.evidence.contains("address space"), "\(finding.evidence)")
    }

    @Test("T1: a window-mismatch row is not data: left out of the verdict and named, never counted as a count not held")
    func t1Mismatch() {
        var mismatch = held(1000)
        mismatch.status = .windowMismatch
        mismatch.reason = "evidence window: the server answered 119379 requests, the load counted 117234"
        let finding = verdict("T1", [held(300), mismatch, held(3000)])
        expectVerdict(finding, .refuted)
        #expect(finding.evidence.contains("1,000 connections: not data (1 window-mismatch row)"), "\(finding.evidence)")
        #expect(!finding.cells.contains(2), "the mismatch row is not among the cells used: \(finding.cells)")
    }

    @Test("T1 supported: nothing above 600 held while 1,000 was refused; a failed server at 3,000 counts as not held")
    func t1Supported() {
        var died = held(3000)
        died.status = .failed
        died.reason = "server died: pthread_create: EAGAIN"
        let finding = verdict("T1", [held(300), refusedPast(1000, limit: 350), died])
        expectVerdict(finding, .supported)
        #expect(finding.evidence.contains("650 refused"), "\(finding.evidence)")
    }

    @Test("T1 inconclusive: 1,000 held and nothing larger tried; or only the 256 KiB stack; no rows is not run")
    func t1Inconclusive() {
        expectVerdict(verdict("T1", [held(300), held(1000)]), .inconclusive)
        // 1,000 held, 3,000 refused past 1,500: between the two thresholds.
        expectVerdict(verdict("T1", [held(300), held(1000), refusedPast(3000, limit: 1500)]), .inconclusive)
        let small = verdict("T1", [held(3000, stack: "256K")])
        expectVerdict(small, .inconclusive)
        #expect(small.evidence.contains("--thread-stack default"), "\(small.evidence)")
        let other = cell("c2-reactor", "C2", model: "reactor", io: "epoll-et", connections: 10)
        expectVerdict(verdict("T1", [other]), .notRun)
    }

    @Test("T1: a count is held only if every run held it, one thread per connection")
    func t1EveryRun() {
        var fewThreads = held(3000, repetition: 2)
        fewThreads.serverThreads = 1_200
        let finding = verdict("T1", [held(300), held(1000), held(3000), fewThreads])
        expectVerdict(finding, .inconclusive)
        #expect(finding.evidence.contains("1,200 threads for 3,000 connections"), "\(finding.evidence)")
    }

    // MARK: L1

    /// Runs of one accept mode: p99 and throughput per repeat. Two loops on CPUs 1-2, the load on 0.
    private func l1(_ accept: String, p99: [Double], rps: [Double], serverCPUs: String = "1-2", clientCPUs: String = "0") -> [ResultRow] {
        zip(p99, rps).enumerated().map { index, figures in
            cell("l1-pull-vs-push", "L1", model: "multi-reactor", io: "epoll-lt", connections: 20, reactors: 2,
                 args: "--accept \(accept) --heavy-share 0.1 --heavy-us 2000", load: "--requests-per-connection 20",
                 serverCPUs: serverCPUs, clientCPUs: clientCPUs, repetition: index + 1) {
                $0.latencyP99Us = figures.0
                $0.latencyP50Us = figures.0 / 10
                $0.throughputRPS = figures.1
                $0.requests = Int(figures.1)
                $0.errors = 0
            }
        }
    }

    @Test("L1 supported: the pulling loops' p99 is well below the acceptor's, throughput level")
    func l1Supported() {
        let finding = verdict("L1", l1("acceptor", p99: [9_800, 10_400, 11_000], rps: [30_000, 31_000, 29_500])
            + l1("shared-epoll", p99: [4_100, 4_500, 4_300], rps: [30_500, 30_800, 30_100]))
        expectVerdict(finding, .supported)
        #expect(finding.evidence.contains("shared-epoll (2 loops): p99 4,300"), "\(finding.evidence)")
    }

    @Test("L1 refuted: pull's p99 above push's (the herd of a shared listener, say), throughput no higher")
    func l1Refuted() {
        let finding = verdict("L1", l1("acceptor", p99: [4_000, 4_200, 4_100], rps: [31_000, 30_500, 30_800])
            + l1("epoll-exclusive", p99: [6_900, 7_300, 7_100], rps: [30_000, 30_900, 30_400]))
        expectVerdict(finding, .refuted)
    }

    @Test("L1 inconclusive: intervals overlap; or pull's tail is shorter but it serves much less")
    func l1Inconclusive() {
        let overlap = verdict("L1", l1("acceptor", p99: [5_000, 7_000, 6_000], rps: [30_000, 30_500, 30_200])
            + l1("shared-epoll", p99: [5_200, 6_400, 5_600], rps: [30_100, 30_400, 30_300]))
        expectVerdict(overlap, .inconclusive)
        #expect(overlap.evidence.contains("does not clear ±10 %"), "\(overlap.evidence)")
        let tradeoff = verdict("L1", l1("acceptor", p99: [9_800, 10_400, 11_000], rps: [30_000, 31_000, 29_500])
            + l1("shared-epoll", p99: [4_100, 4_500, 4_300], rps: [20_000, 19_500, 20_500]))
        expectVerdict(tradeoff, .inconclusive)
    }

    @Test("L1: one run a side decides nothing, however far apart")
    func l1OneRunEach() {
        let finding = verdict("L1", l1("acceptor", p99: [11_000], rps: [30_000]) + l1("shared-epoll", p99: [4_000], rps: [30_000]))
        expectVerdict(finding, .inconclusive)
        #expect(finding.evidence.contains("1 run: no interval"), "\(finding.evidence)")
    }

    @Test("L1 not testable here: cells preflight did not run for want of CPUs, or loops sharing the load's cores")
    func l1NotTestable() {
        let skipped = l1("acceptor", p99: [0], rps: [0]).map { row -> ResultRow in
            var row = row
            row.status = .notApplicable
            row.reason = "not testable here: needs 3 CPUs (2 loops on server_cpus 1-2, beside the load's client_cpus 0); this machine has 2 CPUs in all (0-1)"
            row.latencyP99Us = nil
            row.throughputRPS = nil
            return row
        }
        let preflight = verdict("L1", skipped)
        expectVerdict(preflight, .notTestable)
        #expect(preflight.evidence.contains("this machine has 2 CPUs in all"), "\(preflight.evidence)")
        // Run anyway on shared CPUs (0-1 for both): however the figures fall, they cannot show the claim.
        let shared = verdict("L1", l1("acceptor", p99: [9_800, 10_400], rps: [30_000, 31_000], serverCPUs: "0-1", clientCPUs: "0-1")
            + l1("shared-epoll", p99: [4_100, 4_500], rps: [30_500, 30_800], serverCPUs: "0-1", clientCPUs: "0-1"))
        expectVerdict(shared, .notTestable)
        #expect(shared.evidence.contains("needs 2 loops on 2 cores beside the load's"), "\(shared.evidence)")
    }
}
