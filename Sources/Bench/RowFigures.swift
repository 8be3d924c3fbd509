import Kernel
import Load
import Probe

/// Everything one cell measured, before it becomes a row.
struct CellMeasurement {
    /// The timing window: no probe attached (throughput, latency, CPU).
    var timing: WindowMeasurement
    /// The evidence window, with the probes (per-request kernel counts); nil with probes off.
    var evidence: WindowMeasurement?
    var memoryAtReady: MemoryMark
    var memoryAtEnd: MemoryMark?
    var cpuSource: String
}

/// Server PSS, its epoll mappings and the machine's slab at one moment (at ready, and at the window's end).
struct MemoryMark {
    let pssKB: Int?
    let slabKB: Int?
    let eventpollMappings: Int?
    init(server: Int32) {
        pssKB = ProcessStats.pssKB(tree: server)
        slabKB = ProcessStats.slabKB()
        eventpollMappings = ProcessStats.eventpollMappings(tree: server)
    }
}

/// Below this many connections `kernel_slab_kb_per_conn` stays empty: the slab's own drift would dominate it.
let slabMinimumConnections = 1000

extension ResultRow {
    /// The row's figures from what the cell measured: a pure function of the measurement.
    mutating func fill(_ m: CellMeasurement, cell: Cell) {
        let t = m.timing
        fillLoad(t)
        serverCPUSource = m.cpuSource
        windowS = t.seconds
        serverWindowS = t.serverSeconds
        serverRequests = ResultRow.serverRequests(t, cell: cell)
        fillSubWindows(t, cell: cell)
        fillCPU((\.clientCPUSeconds, \.clientCPUUtil, \.clientCPUUsPerReq), seconds: t.load.clientCPUSeconds,
                window: t.load.durationS, requests: t.load.requests)
        if let ns = t.serverCPUNanos {
            fillCPU((\.serverCPUSeconds, \.serverCPUUtil, \.cpuUsPerReq), seconds: Double(ns) / 1e9,
                    window: t.durationS, requests: t.requests)
        }
        if let end = m.memoryAtEnd { fillMemory(from: m.memoryAtReady, to: end, connections: t.load.established) }
        fillServerStats(start: t.serverOpen, end: t.serverClose)
        if let e = m.evidence { fillEvidence(e, timing: t, cell: cell) }
        fillAllocations(m.evidence ?? t)
        if let why = windowMismatch(cell, apart: (timing: t.countsApart, evidence: m.evidence?.countsApart ?? 0)) {
            status = .windowMismatch
            reason = why
        }
    }

    /// The load's figures of the timing window. Requests, and the figures per request, over the driver's
    /// window: the load's answers read at the instants the server's CPU and counters are; its latencies
    /// and errors over its own window (`latency_samples` requests).
    mutating func fillLoad(_ w: WindowMeasurement) {
        let s = w.load
        requests = w.requests
        latencySamples = s.requests
        stealShare = w.stealShare
        errors = s.errorsTotal
        errorsConnect = s.errors.connect
        errorsRead = s.errors.read
        errorsWrite = s.errors.write
        errorsTimeout = s.errors.timeout
        errorsWrongResponse = s.errors.wrongResponse
        durationS = w.durationS
        throughputRPS = w.throughputRPS
        latencyP50Us = s.latencyUs.p50
        latencyP90Us = s.latencyUs.p90
        latencyP99Us = s.latencyUs.p99
        latencyP999Us = s.latencyUs.p999
        latencyMaxUs = s.latencyUs.max
        clientCPUs = s.cpus
        connectionsEstablished = s.established
        connectionsServed = s.served
        connectionsOpened = s.connectionsOpened
        closedByServer = s.closedByServer
        hangups = s.hangups
        unsent = s.unsent
    }

    /// The evidence window: its own throughput and CPU (what the probes cost), and the kernel's counts per request.
    mutating func fillEvidence(_ e: WindowMeasurement, timing t: WindowMeasurement, cell: Cell) {
        evidenceRequests = e.requests
        evidenceStealShare = e.stealShare
        evidenceServerRequests = ResultRow.serverRequests(e, cell: cell)
        evidenceDurationS = e.durationS
        evidenceThroughputRPS = e.throughputRPS
        if let ns = e.serverCPUNanos, e.requests > 0 { evidenceCPUUsPerReq = Double(ns) / 1e3 / Double(e.requests) }
        if t.throughputRPS > 0 && e.requests > 0 { probeOverhead = e.throughputRPS / t.throughputRPS }
        guard let k = e.kernel else { return }
        fillProbeColumns(k, requests: e.requests)
        if let accepted = e.serverDelta("accepted"), accepted > 0 {
            wakeupsPerAccept = Double(k.totals.wakeups) / Double(accepted)
            acceptCallsPerAccept = Double(k.acceptCalls) / Double(accepted)
        }
    }

    /// Allocations per request from the preloaded counter, over the evidence window (the timing one with
    /// probes off); empty, with the reason in probe_status, when some process was not counted.
    mutating func fillAllocations(_ w: WindowMeasurement) {
        guard let a = w.allocations else { return }
        if let why = a.incompleteReason {
            mallocsPerReq = nil
            probeStatus = (probeStatus.map { $0 == "ok" ? "ok except " : $0 + "; " } ?? "") + "allocations: " + why
        } else if w.requests > 0 {
            mallocsPerReq = Double(a.mallocs) / Double(w.requests)
        }
    }

    /// Requests the server answered in a window: HTTP responses, or echo bytes over the message size.
    static func serverRequests(_ w: WindowMeasurement, cell: Cell) -> Int? {
        serverRequests(from: w.serverOpen, to: w.serverClose, cell: cell)
    }

    static func serverRequests(from a: [String: UInt64]?, to b: [String: UInt64]?, cell: Cell) -> Int? {
        if cell.protocol == .http { return WindowMeasurement.delta("http_requests", from: a, to: b).map { Int($0) } }
        guard let bytes = WindowMeasurement.delta("bytes_out", from: a, to: b), cell.messageSize > 0 else { return nil }
        return Int(bytes) / cell.messageSize
    }

    /// The timing window's sub-windows: the server's requests per second and CPU µs per request in each
    /// (the server's own count: the load counts only at the window's edges). None when a sub-window saw no
    /// request (a stall or an idle cell: no per-request figure) or the server keeps no counter.
    mutating func fillSubWindows(_ t: WindowMeasurement, cell: Cell) {
        var rps: [Double] = [], cpu: [Double] = []
        for (a, b) in zip(t.marks, t.marks.dropFirst()) {
            guard let n = ResultRow.serverRequests(from: a.counters, to: b.counters, cell: cell), n > 0, b.at > a.at else { return }
            rps.append(Double(n) / (Double(b.at - a.at) / 1e9))
            if let c0 = a.cpu, let c1 = b.cpu, c1 >= c0 { cpu.append(Double(c1 - c0) / 1e3 / Double(n)) }
        }
        throughputSamples = rps
        cpuUsPerReqSamples = cpu.count == rps.count ? cpu : []
    }

    /// Why the server's and the load's counts say these were not one window. Read at one instant they
    /// may differ by 1 %, two requests per active connection (at each edge one may be answered and not yet
    /// received, or answered and not yet published by the server's loop) and what completes in the time
    /// between the two readings (`apart`, seconds, at both edges together: µs, unless the driver was
    /// descheduled between them). Variants broken on purpose (allow_errors: a dying server, unread
    /// answers) are not held to it.
    func windowMismatch(_ cell: Cell, apart: (timing: Double, evidence: Double) = (0, 0)) -> String? {
        guard !cell.allowErrors, (hangups ?? 0) == 0 else { return nil }
        let windows = [("timing", requests, serverRequests, apart.timing, durationS),
                       ("evidence", evidenceRequests, evidenceServerRequests, apart.evidence, evidenceDurationS)]
        for (name, load, server, gap, seconds) in windows {
            guard let load, let server else { continue }
            let rate = (seconds ?? 0) > 0 ? Double(load) / seconds! : 0
            let skew = (rate * gap).rounded(.up)
            let inFlight = 2 * cell.active
            let allowed = Double(load) * 0.01 + Double(inFlight) + skew
            if Double(abs(server - load)) > allowed {
                return "\(name) window: the server answered \(server) requests, the load counted \(load) (more apart than 1 % + \(inFlight) in flight or unpublished + \(Int(skew)) in the \(formatDecimal(gap * 1e3)) ms between the two sides' readings): not one window"
            }
        }
        return nil
    }

    /// CPU seconds into a side's three columns: the seconds, per second of the window, per completed request.
    mutating func fillCPU(_ columns: (seconds: WritableKeyPath<ResultRow, Double?>, util: WritableKeyPath<ResultRow, Double?>,
                                      perRequestUs: WritableKeyPath<ResultRow, Double?>),
                          seconds: Double, window: Double, requests: Int) {
        guard seconds >= 0 else { return }
        self[keyPath: columns.seconds] = seconds
        if window > 0 { self[keyPath: columns.util] = seconds / window }
        if requests > 0 { self[keyPath: columns.perRequestUs] = seconds * 1e6 / Double(requests) }
    }

    /// Memory per connection held: the server's PSS at the window's end, and what the machine's slab grew by
    /// since the server was ready, each over the connections established.
    mutating func fillMemory(from ready: MemoryMark, to end: MemoryMark, connections: Int?) {
        serverPSSKB = end.pssKB
        eventpollMappings = end.eventpollMappings
        guard let n = connections, n > 0 else { return }
        // The server's whole PSS: its tables are sized at start, so its growth alone would read ~0.
        if let b = end.pssKB { serverPSSKBPerConn = Double(b) / Double(n) }
        // The machine's slab moves by some hundred KiB on its own: only over many connections is the growth theirs.
        if n >= slabMinimumConnections, let a = ready.slabKB, let b = end.slabKB {
            kernelSlabKBPerConn = Double(b - a) / Double(n)
        }
    }

    /// The server's own counters: totals at the end, accepts and scans over the window.
    mutating func fillServerStats(start: [String: UInt64]?, end: [String: UInt64]?) {
        guard let end else { return }
        func value(_ s: [String: UInt64]?, _ key: String) -> Int? { s?[key].map { Int($0) } }
        serverAccepted = value(end, "accepted")
        serverRefused = value(end, "refused")
        acceptEMFILE = value(end, "accept_emfile")
        serverThreadsStarted = value(end, "threads_started")
        if let a0 = value(start, "accepted"), let a1 = value(end, "accepted"), a1 >= a0 { acceptedInWindow = a1 - a0 }
        if let w0 = value(start, "waits"), let w1 = value(end, "waits"), w1 > w0,
           let s0 = value(start, "scanned"), let s1 = value(end, "scanned") {
            scannedPerWakeup = Double(s1 - s0) / Double(w1 - w0)
        }
    }

    /// The kernel's counts of the evidence window, per second and per request.
    /// Allocations are not the sampler's here (bench attaches no uprobe): `fillAllocations` has them.
    mutating func fillProbeColumns(_ k: KernelCounters, requests: Int) {
        let t = k.totals
        if !k.undercounts.isEmpty, let status = probeStatus {
            probeStatus = (status == "ok" ? "ok except " : status + "; ") + k.undercounts.joined(separator: "; ")
        }
        if k.seconds > 0 {
            muxCallsPerS = Double(k.multiplexerCalls) / k.seconds
            acceptsPerS = Double(k.acceptCalls) / k.seconds
        }
        if k.multiplexerCalls > 0 { muxEventsPerCall = Double(t.mux_events_total) / Double(k.multiplexerCalls) }
        if t.epoll_wait_calls > 0 { epollBytesOutPerCall = Double(t.epoll_bytes_out) / Double(t.epoll_wait_calls) }
        mmapCalls = Int(t.mmap_calls)
        guard let f = PerRequestFigures(k, requests: requests, allocationsCounted: false) else { return }
        syscallsPerReq = f.syscalls
        muxCallsPerReq = f.muxCalls
        fdsetBytesPerReq = f.fdsetBytes
        fdsetBytesInPerReq = f.fdsetBytesIn
        fdsetBytesOutPerReq = f.fdsetBytesOut
        epollEventBytesPerReq = f.epollEventBytes
        futexLockWaitsPerReq = f.futexLockWaits
        futexLockWaitUsPerReq = f.futexLockWaitUs
        futexCondWaitsPerReq = f.futexCondWaits
        copyBytesPerReq = f.copyBytes
        ctxSwitchesPerReq = f.switches
        involuntarySwitchesPerReq = f.involuntarySwitches
        wakeupsPerReq = f.wakeups
        pageFaults = f.pageFaults
        futexWaitsPerReq = f.futexWaits
        futexWaitUsPerReq = f.futexWaitUs
        lockContentionsPerReq = f.lockContentions
        epollWaitPerReq = f.epollWaits
        readsPerReq = f.reads
        writesPerReq = f.writes
        eagainReadsPerReq = f.eagainReads
        zerocopyBytesPerReq = f.zerocopyBytes
        offcpuUsPerReq = f.offcpuUs
        migrations = f.migrations
        epollCtlPerReq = f.epollCtls
        epollCtlNsPerCall = f.epollCtlNsPerCall
    }
}
