import Foundation
import Testing
import Bench
import TestSupport

// MARK: - Fixtures: rows built in code

/// A row of one variant; `set` fills in the figures. Status ok unless `set` says otherwise.
private func row(_ experiment: String, _ claims: [String], io: String, connections: Int = 100, active: Int? = nil,
                 args: String = "", repetition: Int = 1, _ set: (inout ResultRow) -> Void = { _ in }) -> ResultRow {
    var row = ResultRow(experiment: experiment, model: "reactor", io: io, protocol: "echo")
    row.claims = claims
    row.connections = connections
    row.active = active ?? connections
    row.messageBytes = 64
    row.durationS = 2
    row.serverArgs = args.split(separator: " ").map(String.init)
    row.repetition = repetition
    row.host = "testhost"
    row.kernel = "6.1.0-test"
    row.commit = "abc1234"
    row.variant = reportedVariant(model: row.model, io: row.io, protocol: row.protocol, reactors: row.reactors, workers: row.workers, serverArgs: row.serverArgs)
    set(&row)
    return row
}

/// The finding for `claim` when the rows are the whole results.csv; cells are numbered in order.
/// Each one-row variant is given a second identical run (`twoRuns`) unless `asGiven`.
private func decide(_ claim: String, _ rows: [ResultRow], syscalls: [SyscallCount]? = nil, asGiven: Bool = false) -> Finding {
    var numbered = rows
    for index in numbered.indices where numbered[index].cell == nil { numbered[index].cell = index + 1 }
    return FindingsReport(rows: asGiven ? numbered : twoRuns(numbered), syscalls: syscalls).findings.first { $0.claim == claim }!
}

/// One idle-scaling row (claims M2-M5): `connections` held, `active` of them sending.
private func idle(_ io: String, _ connections: Int, active: Int = 10, repetition: Int = 1, cpu: Double,
                  syscalls: Double = 2.1, bytesPerCall: Double? = nil, scanned: Double? = nil) -> ResultRow {
    row("idle-scaling-\(active)", ["M2", "M3", "M4", "M5"], io: io, connections: connections, active: active, repetition: repetition) {
        $0.cpuUsPerReq = cpu
        $0.syscallsPerReq = syscalls
        $0.muxCallsPerReq = 0.1
        $0.fdsetBytesPerReq = bytesPerCall.map { $0 * 0.1 }
        $0.scannedPerWakeup = scanned
        $0.requests = 300_000
        $0.errors = 0
    }
}

// MARK: - M1

private func m1Select(refused: Int, accepted: Int, served: Int) -> ResultRow {
    row("m1-fd-setsize", ["M1"], io: "select", connections: 1100, active: 20) {
        $0.serverRefused = refused
        $0.serverAccepted = accepted
        $0.connectionsServed = served
        $0.connectionsEstablished = 1100
        $0.requests = 40_000
        $0.errors = refused
    }
}

private let m1Poll = row("m1-fd-setsize", ["M1"], io: "poll", connections: 1100, active: 20) {
    $0.serverRefused = 0
    $0.serverAccepted = 1100
    $0.connectionsServed = 1100
    $0.connectionsEstablished = 1100
    $0.requests = 41_000
}

private let selectRefusedByDriver = row("idle-scaling-10", ["M2"], io: "select", connections: 10_000) {
    $0.status = .notApplicable
    $0.reason = "select can watch descriptors 0-1023 only (FD_SETSIZE = 1024): 10000 connections need more"
}

@Suite("findings: M1-M7, select / poll / epoll")
struct MultiplexerFindingsTests {
    @Test("M1 supported: select refuses past FD_SETSIZE and keeps serving; poll is the control")
    func m1Supported() {
        let finding = decide("M1", [m1Select(refused: 84, accepted: 1016, served: 1016), m1Poll, selectRefusedByDriver])
        #expect(finding.verdict == .supported)
        #expect(finding.evidence.contains("refused 84, accepted 1,016, served 1,016/1,100 connections, 40,000 requests"))
        #expect(finding.evidence.contains("control: poll at 1,100 connections refused 0, served 1,100/1,100"))
        #expect(finding.evidence.contains("the driver refuses select cells past FD_SETSIZE before running: 1 cell"))
        #expect(finding.cells == [1, 2, 3])
    }

    @Test("M1 refuted: select accepts more than 1024 and refuses none, or the server dies")
    func m1Refuted() {
        let accepted = decide("M1", [m1Select(refused: 0, accepted: 1100, served: 1100)])
        #expect(accepted.verdict == .refuted)
        #expect(accepted.evidence.contains("more than 1024 descriptors accepted and none refused"))

        var died = m1Select(refused: 0, accepted: 0, served: 0)
        died.status = .failed
        died.reason = "server died during the cell (signal 11); its last stderr: "
        let dead = decide("M1", [died])
        #expect(dead.verdict == .refuted)
        #expect(dead.evidence.contains("server died: server died during the cell (signal 11)"))
    }

    @Test("M1 inconclusive: the select cell was never run, or figures are empty")
    func m1Inconclusive() {
        var skipped = m1Select(refused: 0, accepted: 0, served: 0)
        skipped.status = .notApplicable
        skipped.reason = "select can watch descriptors 0-1023 only (FD_SETSIZE = 1024): 1100 connections need more"
        let notRun = decide("M1", [skipped, m1Poll])
        #expect(notRun.verdict == .inconclusive)
        #expect(notRun.evidence.contains("was not run: select can watch"))

        var empty = m1Select(refused: 0, accepted: 0, served: 0)
        empty.serverRefused = nil
        #expect(decide("M1", [empty]).verdict == .inconclusive)
        #expect(decide("M1", [m1Poll]).evidence.contains("no select row past 1024 connections"))
    }

    // MARK: M2

    /// poll over 10..10,000 and select over 10..1,000: bytes per call linear in the set.
    private func linearCopies(pollCPUAt10k: Double = 107, flat: Bool = false) -> [ResultRow] {
        let poll = [10, 100, 1000, 10_000].map { (n: Int) -> ResultRow in
            let cpu: Double = n == 10_000 ? pollCPUAt10k : 6 + Double(n) / 100
            let bytesPerCall: Double = flat ? 800 : 16 * Double(n + 5)
            return idle("poll", n, cpu: cpu, bytesPerCall: bytesPerCall)
        }
        // select copies whole 64-bit words of each fd_set.
        let select = [10, 100, 1000].map { (n: Int) -> ResultRow in
            let words: Double = (Double(n + 10) / 64).rounded(.up)
            return idle("select", n, cpu: 8 + Double(n) / 140, bytesPerCall: flat ? 64 : 32 * words)
        }
        return poll + select
    }

    @Test("M2 supported: fd-set bytes per call grow with connections and so does CPU per request")
    func m2Supported() {
        let finding = decide("M2", linearCopies())
        #expect(finding.verdict == .supported, "\(finding.evidence)")
        #expect(finding.evidence.contains("poll, 10 active: fd-set bytes/call 1,680 → 160,000 (95x for 100x the connections, 100 → 10,000)"))
        #expect(finding.evidence.contains("CPU/request 6.1 → 107 µs (18x, 10 → 10,000 connections)"))
        #expect(finding.evidence.contains("select, 10 active"))
        #expect(finding.evidence.hasSuffix("(2 runs a variant)"), "\(finding.evidence)")
        #expect(finding.cells == Array(1...7))
    }

    @Test("M2 refuted: bytes per call stay flat as connections grow")
    func m2Refuted() {
        let finding = decide("M2", linearCopies(flat: true))
        #expect(finding.verdict == .refuted)
        #expect(finding.evidence.contains("bytes per call stay flat"))
    }

    @Test("M2 inconclusive: a CPU rise whose interval does not clear the margin (runs far apart)")
    func m2Noisy() {
        let rows = linearCopies(pollCPUAt10k: 6.0) + [idle("poll", 10_000, repetition: 2, cpu: 9.0, bytesPerCall: 16 * 10_005)]
        let finding = decide("M2", rows)
        #expect(finding.verdict == .inconclusive)
        #expect(finding.evidence.contains(", CPU interval 1.2"), "\(finding.evidence)")
        #expect(finding.evidence.contains("does not clear ±5 %"))
    }

    /// linearCopies plus poll and select series at 100 active whose CPU per request is flat (their added scan per
    /// request a tenth of the 10-active series'): the CPU half is judged where the claim predicts the larger rise.
    private func withBusierSeries(cpuAt10Active flat: Bool = false) -> [ResultRow] {
        let busier = [100, 1000].flatMap { (n: Int) -> [ResultRow] in
            [idle("poll", n, active: 100, cpu: 10.7, bytesPerCall: 16 * Double(n + 5)),
             idle("select", n, active: 100, cpu: 10.7, bytesPerCall: 32 * (Double(n + 10) / 64).rounded(.up))]
        }
        let base = linearCopies(pollCPUAt10k: flat ? 6.1 : 107)
        return base.map { row in
            var row = row
            if flat, row.io == "select" { row.cpuUsPerReq = 8 }
            return row
        } + busier
    }

    @Test("M2 supported: a 100-active series with CPU flat within noise is shown, the 10-active series judge CPU")
    func m2BusierSeriesShown() {
        let finding = decide("M2", withBusierSeries())
        #expect(finding.verdict == .supported, "\(finding.evidence)")
        #expect(finding.evidence.contains("poll, 100 active"), "\(finding.evidence)")
        #expect(finding.evidence.contains("(CPU shown, judged on poll's series with the fewest active)"), "\(finding.evidence)")
    }

    @Test("M2 inconclusive: CPU flat on the fewest-active series is not rescued by another series")
    func m2FewestActiveFlat() {
        let finding = decide("M2", withBusierSeries(cpuAt10Active: true))
        #expect(finding.verdict == .inconclusive, "\(finding.evidence)")
        #expect(finding.evidence.contains("poll, 10 active"))
        #expect(finding.evidence.contains("CPU per request does not rise"), "\(finding.evidence)")
    }

    // MARK: M3

    private func scans(pollFlat: Bool = false, epoll: Bool = true) -> [ResultRow] {
        let poll = [10, 100, 1000, 10_000].map { (n: Int) -> ResultRow in
            idle("poll", n, cpu: 6 + Double(n) / 100, scanned: pollFlat ? 12 : Double(n + 3))
        }
        let epollLT = [10, 100, 1000, 10_000].map { (n: Int) -> ResultRow in idle("epoll-lt", n, cpu: 6.5, scanned: 1.3) }
        return poll + (epoll ? epollLT : [])
    }

    @Test("M3 supported: poll's scan grows with the set, epoll's stays at the events returned")
    func m3Supported() {
        let finding = decide("M3", scans())
        #expect(finding.verdict == .supported, "\(finding.evidence)")
        #expect(finding.evidence.contains("poll, 10 active: scanned/wake-up 103 → 10,000 (97x for 100x the connections, 100 → 10,000)"))
        #expect(finding.evidence.contains("epoll-lt, 10 active: scanned/wake-up 1.3 → 1.3 (1x"))
    }

    @Test("M3 refuted: poll's scan does not grow")
    func m3Refuted() {
        #expect(decide("M3", scans(pollFlat: true)).verdict == .refuted)
    }

    @Test("M3 inconclusive: no epoll series to contrast; one run a side decides nothing, however steep")
    func m3NoEpoll() {
        let finding = decide("M3", scans(epoll: false))
        #expect(finding.verdict == .inconclusive)
        #expect(finding.evidence.contains("no epoll series"))
        let once = decide("M3", scans(), asGiven: true)
        #expect(once.verdict == .inconclusive)
        #expect(once.evidence.contains("1 run a side: no interval"), "\(once.evidence)")
    }

    /// poll and epoll-lt at 100 and 10,000 connections, two runs each: poll's scans as given per run.
    private func twoRunScans(poll100: [Double], poll10k: [Double]) -> [ResultRow] {
        var rows: [ResultRow] = []
        for run in 0..<2 {
            rows.append(idle("poll", 100, repetition: run + 1, cpu: 7, scanned: poll100[run]))
            rows.append(idle("poll", 10_000, repetition: run + 1, cpu: 60, scanned: poll10k[run]))
            rows.append(idle("epoll-lt", 100, repetition: run + 1, cpu: 6.5, scanned: 1.3 + Double(run) * 0.2))
            rows.append(idle("epoll-lt", 10_000, repetition: run + 1, cpu: 6.6, scanned: 1.4 + Double(run) * 0.2))
        }
        return rows
    }

    @Test("M3 supported when every pairing of runs grows linearly though two runs' interval is wide")
    func m3EveryPairing() {
        // This machine's poll runs at 10 active: 73 and 85 scanned per wake-up at 100, ~9,000 at 10,000: Welch's
        // interval on 2 v 2 runs was [38x, 347x], below 0.5 x 100 at its low end.
        let finding = decide("M3", twoRunScans(poll100: [73, 85], poll10k: [8_980, 9_020]), asGiven: true)
        #expect(finding.verdict == .supported, "\(finding.evidence)")
        #expect(finding.evidence.contains("every run 106x or more over every baseline run"), "\(finding.evidence)")
        // Runs that disagree by 3x at the baseline: the least pairing (3,000 / 150 = 20x) is short of 50x.
        let spread = decide("M3", twoRunScans(poll100: [50, 150], poll10k: [3_000, 9_000]), asGiven: true)
        #expect(spread.verdict == .inconclusive, "\(spread.evidence)")
        #expect(spread.evidence.contains("the interval is neither linear nor flat"), "\(spread.evidence)")
    }

    @Test("M3 refuted when epoll's scan grows like the set (a poller that rescans its interest list)")
    func m3EpollRescans() {
        let rows = [10, 100, 1000, 10_000].map { (n: Int) -> ResultRow in idle("poll", n, cpu: 6, scanned: Double(n + 3)) }
            + [10, 100, 1000, 10_000].map { (n: Int) -> ResultRow in idle("epoll-lt", n, cpu: 6, scanned: Double(n) * 0.9) }
        let finding = decide("M3", rows)
        #expect(finding.verdict == .refuted, "\(finding.evidence)")
    }

    // MARK: M4

    /// epoll-lt and epoll-et at 10 and 100 active, two repeats each; `cpuAt10k` overrides epoll-et's largest.
    private func epollScaling(cpuAt10k: [Double] = [7.1, 7.2]) -> [ResultRow] {
        var rows: [ResultRow] = []
        for active in [10, 100] {
            for io in ["epoll-lt", "epoll-et"] {
                for n in [10, 100, 1000, 10_000] where n >= active {
                    for repetition in 1...2 {
                        var cpu = 7.0 + Double(repetition) * 0.1
                        if io == "epoll-et" && n == 10_000 { cpu = cpuAt10k[repetition - 1] }
                        rows.append(idle(io, n, active: active, repetition: repetition, cpu: cpu, syscalls: 2.1))
                    }
                }
            }
        }
        return rows
    }

    @Test("M4 supported: epoll's CPU and syscalls per request flat from 100 to 10,000 connections at each active level")
    func m4Supported() {
        let finding = decide("M4", epollScaling())
        #expect(finding.verdict == .supported, "\(finding.evidence)")
        #expect(finding.evidence.contains("epoll-lt, 10 active: CPU/request 7.15 → 7.15 µs (+0 %), syscalls/request 2.1 → 2.1 (+0 %) from 100 to 10,000 connections"))
        #expect(finding.evidence.contains("epoll-et, 100 active"))
        #expect(finding.evidence.hasSuffix("(2 runs a variant)"))
    }

    @Test("M4 refuted: epoll-et's CPU per request rises beyond 10 % and beyond the noise")
    func m4Refuted() {
        let finding = decide("M4", epollScaling(cpuAt10k: [10.4, 10.8]))
        #expect(finding.verdict == .refuted)
        #expect(finding.evidence.contains("CPU/request 7.15 → 10.6 µs (+48 %)"))
    }

    @Test("M4 inconclusive: a rise within the runs' ranges, or runs too far apart")
    func m4Noise() {
        var withinNoise = epollScaling(cpuAt10k: [8.1, 8.7])
        for index in withinNoise.indices where withinNoise[index].io == "epoll-et" && withinNoise[index].connections == 100 {
            withinNoise[index].cpuUsPerReq = withinNoise[index].repetition == 1 ? 6.9 : 8.0
        }
        let finding = decide("M4", withinNoise)
        #expect(finding.verdict == .inconclusive)
        #expect(finding.evidence.contains("not within ±10 %"), "\(finding.evidence)")

        let noisy = decide("M4", epollScaling(cpuAt10k: [6.0, 9.0]))
        #expect(noisy.verdict == .inconclusive)
        #expect(noisy.evidence.contains("interval 1.03x [0.0787x, 13.4x]"), "\(noisy.evidence)")
    }

    // MARK: M5

    private func allActive(_ cpu: [String: [Double]]) -> [ResultRow] {
        cpu.sorted { $0.key < $1.key }.flatMap { io, values in
            values.enumerated().map { idle(io, 10, active: 10, repetition: $0.offset + 1, cpu: $0.element) }
        }
    }

    @Test("M5 supported: at 10 connections all active, the best epoll costs more than the best of select/poll")
    func m5Supported() {
        var failed = idle("epoll-et", 10, cpu: 1.0)
        failed.status = .failed
        failed.reason = "verification failed"
        let finding = decide("M5", allActive(["select": [8], "poll": [6], "epoll-lt": [7.5], "epoll-et": [8.5]]) + [failed])
        #expect(finding.verdict == .supported)
        #expect(finding.evidence.contains("10 connections, all active: CPU/request epoll-et 8.5, epoll-lt 7.5, poll 6, select 8 µs"))
        #expect(finding.evidence.contains("best epoll (epoll-lt) vs best select/poll (poll): +25 %"))
        #expect(!finding.cells.contains(5), "a failed row is not data")
        #expect(finding.evidence.hasSuffix("; not counted: 1 failed (cell 5: verification failed)"))
    }

    @Test("M5 refuted: epoll is faster; inconclusive: within noise")
    func m5Refuted() {
        #expect(decide("M5", allActive(["select": [8], "poll": [6], "epoll-lt": [5]])).verdict == .refuted)
        let overlapping = decide("M5", allActive(["poll": [6.0, 6.6], "epoll-lt": [6.3, 6.9]]))
        #expect(overlapping.verdict == .inconclusive)
        #expect(overlapping.evidence.contains("does not clear ±5 %"))
        let close = decide("M5", allActive(["poll": [6.0], "epoll-lt": [6.1]]))
        #expect(close.verdict == .inconclusive)
        #expect(close.evidence.contains("interval 1.02x [1.02x, 1.02x]"), "\(close.evidence)")
        let once = decide("M5", allActive(["poll": [6.0], "epoll-lt": [9.1]]), asGiven: true)
        #expect(once.verdict == .inconclusive, "one run each decides nothing, however far apart")
        #expect(once.evidence.contains("no interval (needs 2 or more a side)"), "\(once.evidence)")
    }

    // MARK: M6

    private func eventCopy(_ io: String, events: Double?, bytes: Double?, mmap: Int?, mappings: Int? = 0) -> ResultRow {
        row("m6-event-copy", ["M6"], io: io) {
            $0.muxEventsPerCall = events
            $0.epollBytesOutPerCall = bytes
            $0.mmapCalls = mmap
            $0.eventpollMappings = mappings
            $0.probeStatus = events == nil ? "off" : "on"
        }
    }

    @Test("M6 refuted: epoll_wait returns 12 bytes per event and no epoll descriptor is mapped, whatever else is mmapped")
    func m6Refuted() {
        let rows = [eventCopy("epoll-lt", events: 3.2, bytes: 38.4, mmap: 0), eventCopy("epoll-et", events: 2, bytes: 24, mmap: 3)]
        let syscalls = [SyscallCount(cell: 1, syscall: "epoll_wait", count: 1000), SyscallCount(cell: 2, syscall: "mmap", count: 3)]
        let finding = decide("M6", rows, syscalls: syscalls)
        #expect(finding.verdict == .refuted, "\(finding.evidence)")
        #expect(finding.evidence.contains("epoll-lt: 3.2 events and 38.4 bytes out per epoll_wait (12 x 3.2 = 38.4), mmap_calls 0, [eventpoll] mappings 0"))
        #expect(finding.evidence.contains("syscalls.csv: mmap 3 in cells 1 2"))
        #expect(finding.evidence.contains("the copy itself is not traced: kprobes are off here"))
    }

    @Test("M6 supported: a server that maps its epoll descriptor (a shared event ring, as the userspace-polling epoll patches proposed)")
    func m6Supported() {
        let rows = [eventCopy("epoll-lt", events: 3, bytes: 36, mmap: 1, mappings: 1), eventCopy("epoll-et", events: 2, bytes: 24, mmap: 1, mappings: 1)]
        let finding = decide("M6", rows)
        #expect(finding.verdict == .supported, "\(finding.evidence)")
        #expect(finding.evidence.contains("maps its epoll descriptor in every run"))
    }

    @Test("M6 inconclusive: runs that disagree on the mapping, mappings or probe columns empty")
    func m6Inconclusive() {
        let disagree = decide("M6", [eventCopy("epoll-lt", events: 3, bytes: 36, mmap: 2, mappings: 1),
                                     eventCopy("epoll-lt", events: 3, bytes: 36, mmap: 0, mappings: 0)], asGiven: true)
        #expect(disagree.verdict == .inconclusive)
        #expect(disagree.evidence.contains("some runs map the epoll descriptor"), "\(disagree.evidence)")
        let unread = decide("M6", [eventCopy("epoll-lt", events: 3, bytes: 36, mmap: 0, mappings: nil)])
        #expect(unread.verdict == .inconclusive)
        #expect(unread.evidence.contains("eventpoll_mappings empty"))
        let unprobed = decide("M6", [eventCopy("epoll-lt", events: nil, bytes: nil, mmap: nil)])
        #expect(unprobed.verdict == .inconclusive)
        #expect(unprobed.evidence.contains("probe columns empty: probe_status = off"))
    }

    // MARK: M7

    private func levelReport(_ io: String, requests: Int, errors: Int, reportsPerRequest: Double) -> ResultRow {
        row("m7-level-report", ["M7"], io: io, connections: 20, args: "--read-size 16 --et-read once") {
            $0.requests = requests
            $0.errors = errors
            $0.errorsTimeout = errors
            $0.muxEventsPerCall = reportsPerRequest
            $0.muxCallsPerReq = 1
        }
    }

    @Test("M7 refuted: poll reports the fd again for bytes left unread, epoll-et loses them")
    func m7Refuted() {
        let rows = [levelReport("select", requests: 9000, errors: 0, reportsPerRequest: 4),
                    levelReport("poll", requests: 10_000, errors: 0, reportsPerRequest: 4),
                    levelReport("epoll-lt", requests: 11_000, errors: 0, reportsPerRequest: 4),
                    levelReport("epoll-et", requests: 20, errors: 20, reportsPerRequest: 1)]
        let finding = decide("M7", rows)
        #expect(finding.verdict == .refuted, "\(finding.evidence)")
        #expect(finding.evidence.contains("64 B requests read 16 B per report (>= 3.6 reports/request expected if level-triggered)"))
        #expect(finding.evidence.contains("poll: 10,000 requests, 0 errors (0 timeouts), 4 reports/request"))
        #expect(finding.evidence.contains("epoll-et: 20 requests, 20 errors (20 timeouts)"))
        #expect(finding.cells == [1, 2, 3, 4])
    }

    @Test("M7 supported when poll loses requests like ET; inconclusive when ET loses nothing either")
    func m7Other() {
        let lossy = [levelReport("poll", requests: 20, errors: 20, reportsPerRequest: 1),
                     levelReport("epoll-lt", requests: 11_000, errors: 0, reportsPerRequest: 4)]
        #expect(decide("M7", lossy).verdict == .supported)
        let noContrast = [levelReport("poll", requests: 10_000, errors: 0, reportsPerRequest: 4),
                          levelReport("epoll-et", requests: 10_000, errors: 0, reportsPerRequest: 4)]
        let finding = decide("M7", noContrast)
        #expect(finding.verdict == .inconclusive)
        #expect(finding.evidence.contains("epoll-et lost nothing here"))
    }
}

// MARK: - E1-E4

private func quietOrBusy(_ io: String, _ epollout: String, callsPerS: Double, util: Double) -> ResultRow {
    row("e1-epollout", ["E1"], io: io, args: "--epollout \(epollout)") {
        $0.active = 0
        $0.requests = 0
        $0.muxCallsPerS = callsPerS
        $0.serverCPUUtil = util
    }
}

private func extraRead(_ io: String, eagain: Double, waits: Double) -> ResultRow {
    row("e2-et-extra-read", ["E2"], io: io) {
        $0.eagainReadsPerReq = eagain
        $0.epollWaitPerReq = waits
        $0.requests = 200_000
        $0.errors = 0
    }
}

private func fewerWaits(_ io: String, waits: Double) -> ResultRow {
    row("e2-fewer-waits", ["E2"], io: io, connections: 20, args: "--read-size 16") {
        $0.epollWaitPerReq = waits
        $0.requests = 100_000
        $0.errors = 0
    }
}

private func lazyRead(_ mode: String, requests: Int, errors: Int) -> ResultRow {
    row("e2-et-lazy-read", ["E2"], io: "epoll-et", connections: 20, args: "--read-size 16 --et-read \(mode)") {
        $0.requests = requests
        $0.errors = errors
        $0.errorsTimeout = errors
    }
}

private func blocking(_ blocking: Bool, stall: Double?, errors: Int, duration: Double = 2.0) -> ResultRow {
    row("e3-blocking", ["E3"], io: "epoll-et", connections: 20, args: blocking ? "--blocking" : "") {
        $0.stallS = stall
        $0.stallCall = (stall ?? 0) >= 1 ? "read fd=7" : nil
        $0.errors = errors
        $0.requests = blocking ? 40 : 90_000
        $0.durationS = duration
    }
}

private func emfile(_ io: String, _ policy: String, acceptsPerS: Double, util: Double, refused: Int, served: Int) -> ResultRow {
    row("e4-emfile", ["E4"], io: io, args: "--fd-limit 64 --emfile \(policy)") {
        $0.acceptsPerS = acceptsPerS
        $0.serverCPUUtil = util
        $0.acceptEMFILE = acceptsPerS > 1000 ? 500_000 : 1
        $0.serverRefused = refused
        $0.connectionsServed = served
        $0.connectionsEstablished = 100
        $0.errorsTimeout = 100 - served - refused
        $0.errorsRead = refused
    }
}

@Suite("findings: E1-E4, level- vs edge-triggered")
struct TriggeringFindingsTests {
    @Test("E1: LT with EPOLLOUT always spins, on-demand and ET stay quiet")
    func e1() {
        let busy = quietOrBusy("epoll-lt", "always", callsPerS: 310_000, util: 0.99)
        let quiet = [quietOrBusy("epoll-lt", "on-demand", callsPerS: 0.5, util: 0.001),
                     quietOrBusy("epoll-et", "always", callsPerS: 0.5, util: 0.002)]
        let supported = decide("E1", [busy] + quiet)
        #expect(supported.verdict == .supported)
        #expect(supported.evidence.contains("epoll-lt --epollout always: 310,000 epoll_wait/s, CPU util 0.99; epoll-lt --epollout on-demand: 0.5 epoll_wait/s"))

        let refuted = decide("E1", [quietOrBusy("epoll-lt", "always", callsPerS: 3, util: 0.01)] + quiet)
        #expect(refuted.verdict == .refuted)
        #expect(refuted.evidence.contains("LT with EPOLLOUT always is not busy"))

        let noET = decide("E1", [busy, quiet[0]])
        #expect(noET.verdict == .inconclusive)
        #expect(noET.evidence.contains("no epoll-et --epollout always row"))
    }

    @Test("E2: ET pays an extra EAGAIN read, and reading once per edge loses requests")
    func e2() {
        let part1 = [extraRead("epoll-lt", eagain: 0.01, waits: 0.14), extraRead("epoll-et", eagain: 1.0, waits: 0.2)]
        let part2 = [lazyRead("until-eagain", requests: 90_000, errors: 0), lazyRead("once", requests: 20, errors: 20)]
        let part3 = [fewerWaits("epoll-lt", waits: 2.1), fewerWaits("epoll-et", waits: 0.55)]
        let supported = decide("E2", part1 + part2 + part3)
        #expect(supported.verdict == .supported, "\(supported.evidence)")
        #expect(supported.evidence.contains("EAGAIN reads/request ET 1 vs LT 0.01 (+0.99); epoll_wait/request ET 0.2 vs LT 0.14"))
        #expect(supported.evidence.contains("fewer epoll_wait (e2-fewer-waits) epoll_wait/request: ET 0.55 vs LT 2.1 (-74 %)"), "\(supported.evidence)")
        let withoutPart3 = decide("E2", part1 + part2)
        #expect(withoutPart3.verdict == .inconclusive, "the fewer-epoll_wait half is judged, not skipped")
        #expect(withoutPart3.evidence.contains("fewer epoll_wait (e2-fewer-waits) epoll_wait/request: no ok ET and LT row"), "\(withoutPart3.evidence)")
        // An ET loop that waits more per request than LT (a server that re-arms with EPOLLONESHOT, say) refutes.
        let moreWaits = decide("E2", part1 + part2 + [fewerWaits("epoll-lt", waits: 0.5), fewerWaits("epoll-et", waits: 1.6)])
        #expect(moreWaits.verdict == .refuted, "\(moreWaits.evidence)")
        #expect(moreWaits.evidence.contains("ET 1.6 vs LT 0.5 (+220 %), the opposite"), "\(moreWaits.evidence)")
        #expect(supported.evidence.contains("--et-read once 20 requests, 20 errors (20 timeouts) vs until-eagain 90,000 requests, 0 errors"))

        let lostNothing = decide("E2", part1 + part3 + [lazyRead("until-eagain", requests: 90_000, errors: 0), lazyRead("once", requests: 88_000, errors: 0)])
        #expect(lostNothing.verdict == .refuted)
        #expect(lostNothing.evidence.contains("reading once lost nothing"))

        let unclear = decide("E2", [extraRead("epoll-lt", eagain: 0.01, waits: 0.14), extraRead("epoll-et", eagain: 0.3, waits: 0.1)] + part2 + part3)
        #expect(unclear.verdict == .inconclusive)
        #expect(unclear.evidence.contains("not >= 0.5 per request in every run"))
    }

    @Test("E3: a blocking descriptor stalls the ET loop; the watchdog reports it and the cell ends on time")
    func e3() {
        let supported = decide("E3", [blocking(false, stall: 0.002, errors: 0), blocking(true, stall: 1.6, errors: 20, duration: 2.05)])
        #expect(supported.verdict == .supported, "\(supported.evidence)")
        #expect(supported.evidence.contains("--blocking: stall 1.6 s in read fd=7, 20 errors, 40 requests, window 2.05 s"))

        let refuted = decide("E3", [blocking(false, stall: 0.002, errors: 0), blocking(true, stall: 0.01, errors: 0)])
        #expect(refuted.verdict == .refuted)

        let late = decide("E3", [blocking(false, stall: nil, errors: 0), blocking(true, stall: 1.6, errors: 20, duration: 3.5)])
        #expect(late.verdict == .inconclusive)
        #expect(late.evidence.contains("did not end on time"))

        var hung = blocking(true, stall: nil, errors: 0)
        hung.status = .failed
        hung.reason = "cell timed out"
        let failed = decide("E3", [blocking(false, stall: nil, errors: 0), hung])
        #expect(failed.verdict == .inconclusive)
        #expect(failed.evidence.contains("no ok --blocking row; rows: 1 failed (cell 2: cell timed out)"))
    }

    @Test("E4: EMFILE spins LT, the reserve descriptor sheds clients, ET stops accepting")
    func e4() {
        let ltNone = emfile("epoll-lt", "none", acceptsPerS: 250_000, util: 0.98, refused: 0, served: 59)
        let ltReserve = emfile("epoll-lt", "reserve-fd", acceptsPerS: 14, util: 0.02, refused: 41, served: 59)
        let etNone = emfile("epoll-et", "none", acceptsPerS: 0.7, util: 0.01, refused: 0, served: 59)
        let supported = decide("E4", [ltNone, ltReserve, etNone])
        #expect(supported.verdict == .supported, "\(supported.evidence)")
        #expect(supported.evidence.hasPrefix("fd limit 64: epoll-lt --emfile none: 250,000 accepts/s, CPU util 0.98, 500,000 EMFILE, refused 0, served 59/100, 41 timeouts, 0 read errors"))

        let refuted = decide("E4", [emfile("epoll-lt", "none", acceptsPerS: 3, util: 0.01, refused: 0, served: 59), ltReserve, etNone])
        #expect(refuted.verdict == .refuted)

        let etRefuses = decide("E4", [ltNone, ltReserve, emfile("epoll-et", "none", acceptsPerS: 0.7, util: 0.01, refused: 41, served: 59)])
        #expect(etRefuses.verdict == .inconclusive)
        #expect(etRefuses.evidence.contains("(c) ET none stops accepting does not hold"))
    }
}

// MARK: - The report

@Suite("findings report: every claim, files, bad input")
struct FindingsReportTests {
    @Test("every claim of CLAIMS.md has a line and a rule; unreferenced ones are not run")
    func everyClaim() {
        let k1 = row("copies", ["K1"], io: "epoll-lt") { $0.cell = 9 }
        let report = FindingsReport(rows: [k1])
        let ids = ["M1", "M2", "M3", "M4", "M5", "M6", "M7", "M8", "E1", "E2", "E3", "E4", "E5", "K1", "K2", "K3", "K4",
                   "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9", "T1", "L1", "H1", "H2", "H3", "S1"]
        #expect(report.findings.map(\.claim) == ids)
        // Every claim has a rule now; one without would be listed, never given a verdict it cannot earn.
        let unruled: [String] = []
        #expect(report.findings.allSatisfy { Claims.text(of: $0.claim) != nil })
        let m5 = report.findings.first { $0.claim == "M5" }!
        #expect(m5 == Finding(claim: "M5", verdict: .notRun, evidence: "no rows for M5 in results.csv"))
        #expect(Claims.all.filter { ClaimRule.rule(for: $0.id) == nil }.map(\.id) == unruled)
        #expect(report.findings.filter { unruled.contains($0.claim) }.allSatisfy { $0.verdict == .notRun })
        let k1Finding = report.findings.first { $0.claim == "K1" }!
        #expect(k1Finding.verdict == .inconclusive)
        #expect(k1Finding.evidence.contains("staged vs direct CPU/request: no ok staged row"), "\(k1Finding.evidence)")
        #expect(k1Finding.cells == [9])
    }

    @Test("a claim whose rule reads a column results.csv lacks is inconclusive, naming the column")
    func missingRuleColumn() throws {
        let scratch = try ScratchDirectory()
        let dropped = "scanned_per_wakeup"
        let columns = ResultRow.columns.filter { $0 != dropped }
        let rows = [idle("poll", 100, cpu: 7, bytesPerCall: 1680), idle("poll", 1000, cpu: 15, bytesPerCall: 16_080)]
        let text = CSVTable.line(columns) + rows.map { row in
            CSVTable.line(columns.map { row[column: $0]! })
        }.joined()
        try scratch.write("results.csv", text)
        let report = try FindingsReport.load(directory: scratch.path)
        let m3 = report.findings.first { $0.claim == "M3" }!
        #expect(m3.verdict == .inconclusive)
        #expect(m3.evidence == "results.csv lacks column scanned_per_wakeup that this rule reads")
        #expect(report.findings.first { $0.claim == "M2" }!.verdict != .notRun)
    }

    @Test("missing identifying columns, directory or results.csv: an error naming them")
    func badInput() throws {
        let scratch = try ScratchDirectory()
        try scratch.write("results.csv", "experiment,label,cpu_us_per_req\nidle,x,7\n")
        #expect(throws: DataFileError("\(scratch.path)/results.csv: missing columns claims, io, status (every results.csv needs experiment, claims, io, status)")) {
            try FindingsReport.load(directory: scratch.path)
        }
        #expect(throws: DataFileError("\(scratch.path)/nowhere: no such directory")) {
            try FindingsReport.load(directory: scratch.path + "/nowhere")
        }
        try FileManager.default.createDirectory(atPath: scratch.path + "/empty", withIntermediateDirectories: false)
        #expect(throws: DataFileError("\(scratch.path)/empty/results.csv: no such file (run `muxlab bench` with --out \(scratch.path)/empty first)")) {
            try FindingsReport.load(directory: scratch.path + "/empty")
        }
        try scratch.write("bad/results.csv", "experiment,claims,io,status,cpu_us_per_req\nidle,M4,poll,ok,fast\n")
        #expect(throws: DataFileError("\(scratch.path)/bad/results.csv: row 1: results column cpu_us_per_req = \"fast\": expected a number")) {
            try FindingsReport.load(directory: scratch.path + "/bad")
        }
    }

    @Test("findings.md and findings.csv are written by rename, and findings.csv reads back")
    func writeAndReadBack() throws {
        let scratch = try ScratchDirectory()
        let csv = try ResultsCSV(path: scratch.path + "/results.csv")
        var rows = [m1Select(refused: 84, accepted: 1016, served: 1016), m1Poll, selectRefusedByDriver]
        for index in rows.indices { rows[index].cell = index + 1 }
        for row in rows { try csv.append(row) }
        try SyscallsCSV(path: scratch.path + "/syscalls.csv").append(
            cell: "1", experiment: "m1-fd-setsize", entries: [(name: "pselect6", count: 10, totalNs: 100, errors: 0, eagain: 0)])

        let report = try FindingsReport.load(directory: scratch.path)
        let paths = try report.write(to: scratch.path)
        #expect(paths == [scratch.path + "/findings.md", scratch.path + "/findings.csv"])
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: scratch.path).filter { $0.contains(".tmp") }
        #expect(leftovers.isEmpty)

        let table = try CSVTable.read(path: scratch.path + "/findings.csv")
        #expect(table.header == ["claim", "verdict", "claim_text", "evidence", "rows"])
        #expect(table.rows.count == Claims.all.count)
        #expect(table.column("claim") == report.findings.map(\.claim))
        #expect(table.column("evidence") == report.findings.map(\.evidence))
        let m1 = table.rows[0]
        #expect(m1["verdict"] == "supported")
        #expect(m1["rows"] == "1 2 3")
        #expect(m1["claim_text"] == "select watches at most FD_SETSIZE = 1024 descriptors per process.")
        #expect(table.rows.first { $0["claim"] == "H3" }?["verdict"] == "not run")

        let markdown = try scratch.read("findings.md")
        #expect(markdown.hasPrefix("# muxlab findings\n\nSource: `\(scratch.path)/results.csv` (3 rows; 2 ok, 1 not-applicable"))
        #expect(markdown.contains("- Host: testhost\n- Kernel: 6.1.0-test\n- Commit: abc1234\n"))
        #expect(markdown.contains("| M1 | select watches at most FD_SETSIZE = 1024 descriptors per process. | **supported** |"))
        #expect(markdown.contains("## How each verdict is decided"))
        for rule in ClaimRule.all {
            #expect(markdown.contains("| \(rule.claim) | \(rule.metric.replacingOccurrences(of: "|", with: "\\|")) |"))
        }
        #expect(!markdown.contains("No rule yet"), "every claim has a rule")

        // Writing again replaces the files whole.
        try FindingsReport(rows: []).write(to: scratch.path)
        #expect(try CSVTable.read(path: scratch.path + "/findings.csv").column("verdict").allSatisfy { $0 == "not run" })
    }

    @Test("repeats of a variant count once: the median, with the spread in the evidence")
    func repeatsAreOneVariant() {
        let rows = [idle("poll", 10, repetition: 1, cpu: 6.0), idle("poll", 10, repetition: 2, cpu: 6.2), idle("poll", 10, repetition: 3, cpu: 6.1),
                    idle("epoll-lt", 10, repetition: 1, cpu: 7.5), idle("epoll-lt", 10, repetition: 2, cpu: 7.7), idle("epoll-lt", 10, repetition: 3, cpu: 7.6)]
        let finding = decide("M5", rows)
        #expect(finding.verdict == .supported)
        #expect(finding.evidence.contains("CPU/request poll 6.1, epoll-lt 7.6 µs"))
        #expect(finding.evidence.hasSuffix("(3 runs a variant)"), "\(finding.evidence)")
        #expect(finding.cells == [1, 2, 3, 4, 5, 6])
    }
}
