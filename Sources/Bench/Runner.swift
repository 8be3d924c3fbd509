#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Kernel
import Load
import Probe

/// Set by SIGINT/SIGTERM in the driver; the runner stops between reads.
nonisolated(unsafe) public var benchInterruptSignal: sig_atomic_t = 0

/// How `muxlab bench` runs a matrix.
public struct RunnerOptions: Sendable {
    public var outDirectory: String
    /// The muxlab executable that serves and loads (normally this very binary).
    public var executable: String
    public var commandLine: [String]
    public var verbose = false
    /// Attach the eBPF sampler to each server (kernel-probe columns); off leaves them empty.
    public var probes = true

    public init(outDirectory: String, executable: String, commandLine: [String]) {
        self.outDirectory = outDirectory
        self.executable = executable
        self.commandLine = commandLine
    }
}

/// What a finished (or interrupted) run amounts to.
public struct RunOutcome: Sendable {
    public var cells = 0
    public var ok = 0
    public var notApplicable = 0
    public var failed: [(cell: String, reason: String)] = []
    public var interruptedBy: Int32?
}

/// A cell that ended without a measurement: recorded with its reason, never faked.
struct CellFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs each cell: spawn the server pinned, wait for ready, verify one round trip,
/// spawn the load pinned elsewhere, snapshot the server at the measured window's
/// edges, stop everything, append the row at once.
public final class BenchRunner {
    let workload: Workload
    let options: RunnerOptions
    let results: ResultsCSV
    let syscalls: SyscallsCSV
    var manifest: Manifest
    let manifestPath: String
    let logDirectory: String
    /// False while the probe-overhead rerun measures a cell again: its syscalls are already in syscalls.csv.
    var keepSyscallRows = true
    /// Created with the first cell that asks for a timeline.
    var timeline: TimelineCSV?
    var probeWarningShown = false
    /// The running cell's network namespaces (`topology = "netns"`); nil on loopback.
    var network: CellNetwork?

    public init(workload: Workload, options: RunnerOptions) throws {
        self.workload = workload
        self.options = options
        let out = options.outDirectory
        logDirectory = out + "/logs"
        do {
            try PosixFile.makeDirectories(logDirectory)
        } catch {
            throw DataFileError("cannot create the results directory: \(error)")
        }
        results = try ResultsCSV(path: out + "/results.csv")
        syscalls = try SyscallsCSV(path: out + "/syscalls.csv")
        manifestPath = out + "/manifest.json"
        manifest = Manifest.gather(commandLine: options.commandLine, workload: workload.path)
        manifest.cellsTotal = workload.cells().count
    }

    public func run() throws -> RunOutcome {
        let cells = workload.cells()
        var outcome = RunOutcome()
        outcome.cells = cells.count
        var firstOK: (cell: Cell, throughput: Double)?
        try manifest.write(to: manifestPath)
        removeStaleNamespaces()
        let started = monotonicNanos()
        progress("muxlab bench: \(cells.count) cells from \(workload.path) -> \(options.outDirectory)/results.csv (ETA \(formatSeconds(cells.reduce(0) { $0 + estimate($1) })))")
        for (n, cell) in cells.enumerated() {
            if benchInterruptSignal != 0 { break }
            let remaining = cells[n...].reduce(0) { $0 + estimate($1) }
            var row = ResultRow(cell: cell)
            row.kernel = manifest.kernel
            row.host = manifest.host
            row.commit = manifest.gitCommit
            row.startedAt = Date()
            if let reason = notApplicable(cell) {
                row.status = .notApplicable
                row.reason = reason
                outcome.notApplicable += 1
            } else {
                do {
                    try measure(cell, into: &row, probes: options.probes)
                    row.status = .ok
                    outcome.ok += 1
                    // The overhead reference: an epoll-ET closed-loop cell if there is one, else the first ok cell.
                    if let t = row.throughputRPS, row.probeStatus?.hasPrefix("ok") == true,
                       firstOK == nil || (firstOK!.cell.io != "epoll-et" && cell.io == "epoll-et" && cell.rate == nil) {
                        firstOK = (cell, t)
                    }
                } catch {
                    if benchInterruptSignal != 0 { break }  // an interrupted cell is not a result
                    row.status = .failed
                    row.reason = "\(error)"
                    outcome.failed.append((cell.id, "\(error)"))
                    manifest.cellsFailed += 1
                }
            }
            // A full disk or a vanished directory stops the run; every row already written stays.
            do {
                try results.append(row)
            } catch {
                throw DataFileError("could not append the row of cell \(cell.index) (\(cell.experiment) \(cell.label)) to results.csv: \(error); finished rows kept in \(results.path): \(manifest.cellsDone)")
            }
            manifest.cellsDone += 1
            do {
                try manifest.write(to: manifestPath)
            } catch {
                throw DataFileError("could not update the manifest after cell \(cell.index): \(error); finished rows kept in \(results.path): \(manifest.cellsDone), the previous manifest is intact")
            }
            progress("[\(n + 1)/\(cells.count)] \(cell.experiment) \(cell.label): \(summaryText(row)) (ETA \(formatSeconds(remaining - estimate(cell))))")
        }
        if options.probes && benchInterruptSignal == 0, let reference = firstOK {
            measureProbeOverhead(reference.cell, probesOn: reference.throughput)
        }
        if benchInterruptSignal != 0 {
            outcome.interruptedBy = Int32(benchInterruptSignal)
            manifest.status = .interrupted
        } else {
            manifest.status = outcome.failed.isEmpty ? .complete : .failed
        }
        manifest.finishedAt = Date()
        try manifest.write(to: manifestPath)
        progress("muxlab bench: \(outcome.ok) ok, \(outcome.notApplicable) not applicable, \(outcome.failed.count) failed in \(formatSeconds(Double(monotonicNanos() - started) / 1e9))")
        return outcome
    }

    /// Cells that cannot apply on this machine, with the reason (never run, never faked).
    func notApplicable(_ cell: Cell) -> String? {
        let fdSetSize = 1024
        // The server also holds stdin/out/err, the listener and a reserve descriptor.
        // A cell that allows errors runs anyway: it tests the refusal itself (claim M1).
        if cell.io == "select" && cell.connections + 8 > fdSetSize && !cell.allowErrors {
            return "select can watch descriptors 0-\(fdSetSize - 1) only (FD_SETSIZE = \(fdSetSize)): \(cell.connections) connections need more"
        }
        let hard = DescriptorLimit.current().hard
        let perProcess = hard - 32
        // muxlab load spreads connections over as many processes as they need; wrk is one process.
        if cell.load == "wrk" && cell.connections > perProcess {
            return "wrk is one process and \(cell.connections) connections exceed its descriptor limit (\(hard), hard RLIMIT_NOFILE): use load = \"muxlab\", which spreads them over processes"
        }
        // A muxlab server holds them only across processes (prefork); threads share one process's table.
        let processes = BenchRunner.serverProcesses(cell)
        if cell.serverCommand.isEmpty, cell.connections > processes * perProcess {
            return "\(cell.connections) connections exceed what \(processes) server process\(processes == 1 ? "" : "es") may open (\(hard) descriptors each, hard RLIMIT_NOFILE): use model = \"prefork\" with workers >= \((cell.connections + perProcess - 1) / perProcess) and --accept reuseport"
        }
        return nil
    }

    /// Processes a muxlab server runs: prefork's workers, else one.
    static func serverProcesses(_ cell: Cell) -> Int {
        cell.model == "prefork" ? (cell.workers > 0 ? cell.workers : 4) : 1
    }

    func estimate(_ cell: Cell) -> Double { cell.warmup + cell.duration + 1.5 }

    // MARK: one cell

    /// Probe overhead, measured every run: the first ok cell again with probes off, side by side.
    func measureProbeOverhead(_ cell: Cell, probesOn: Double) {
        // A soak-length cell would double the run; its overhead is no different from a short cell's.
        guard cell.warmup + cell.duration <= 60 else {
            manifest.notes["probe_overhead"] = "not measured: the reference cell \(cell.index) runs \(formatSeconds(cell.warmup + cell.duration)), more than the 60 s a rerun may add"
            return
        }
        // On and off again back to back: the machine's load may have drifted since the cell ran.
        var rowOn = ResultRow(cell: cell)
        var row = ResultRow(cell: cell)
        keepSyscallRows = false
        defer { keepSyscallRows = true }
        do {
            try measure(cell, into: &rowOn, probes: true)
            try measure(cell, into: &row, probes: false)
        } catch {
            manifest.notes["probe_overhead"] = "not measured: the probes-on/off rerun of cell \(cell.index) failed: \(error)"
            return
        }
        guard let off = row.throughputRPS, off > 0, let probesOn = rowOn.throughputRPS else { return }
        let ratio = probesOn / off
        manifest.notes["probe_overhead"] = String(format: "cell %d (%@ %@): %.0f req/s with probes on / %.0f off = %.3f",
                                                   cell.index, cell.experiment, cell.label, probesOn, off, ratio)
        progress("probe overhead: \(manifest.notes["probe_overhead"]!)")
    }

    /// Opens the sampler on the server; a sampler that cannot start leaves the probe columns empty and says why.
    func attachSampler(_ pid: Int32, _ row: inout ResultRow, allocations: Bool = true) -> KernelSampler? {
        do {
            let sampler = try KernelSampler(pid: pid, allocations: allocations)
            let missing = sampler.failures
            row.probeStatus = missing.isEmpty ? "ok" : "ok except " + missing.map(\.description).joined(separator: "; ")
            return sampler
        } catch {
            row.probeStatus = "failed: \(error)"
            if !probeWarningShown {
                probeWarningShown = true
                progress("muxlab bench: kernel probes unavailable, their columns stay empty: \(error)")
            }
            return nil
        }
    }

    func fillProbeColumns(_ row: inout ResultRow, _ cell: Cell, _ k: KernelCounters, requests: Int, allocations: Bool) throws {
        let t = k.totals
        if k.seconds > 0 {
            row.muxCallsPerS = Double(k.multiplexerCalls) / k.seconds
            row.acceptsPerS = Double(k.acceptCalls) / k.seconds
        }
        if k.multiplexerCalls > 0 { row.muxEventsPerCall = Double(t.mux_events_total) / Double(k.multiplexerCalls) }
        if t.epoll_wait_calls > 0 { row.epollBytesOutPerCall = Double(t.epoll_bytes_out) / Double(t.epoll_wait_calls) }
        row.mmapCalls = Int(t.mmap_calls)
        if keepSyscallRows { try syscalls.append(cell: String(cell.index), experiment: cell.experiment, entries: k.syscallsByCount.map {
            (name: $0.name, count: $0.stat.count, totalNs: $0.stat.total_ns, errors: $0.stat.errors, eagain: $0.stat.eagain)
        }) }
        guard let f = PerRequestFigures(k, requests: requests, allocationsCounted: allocations) else { return }
        row.syscallsPerReq = f.syscalls
        row.muxCallsPerReq = f.muxCalls
        row.fdsetBytesPerReq = f.fdsetBytes
        row.copyBytesPerReq = f.copyBytes
        row.ctxSwitchesPerReq = f.switches
        row.involuntarySwitchesPerReq = f.involuntarySwitches
        row.wakeupsPerReq = f.wakeups
        row.mallocsPerReq = f.mallocs
        row.pageFaults = f.pageFaults
        row.futexWaitsPerReq = f.futexWaits
        row.futexWaitUsPerReq = f.futexWaitUs
        row.lockContentionsPerReq = f.lockContentions
        row.epollWaitPerReq = f.epollWaits
        row.readsPerReq = f.reads
        row.writesPerReq = f.writes
        row.eagainReadsPerReq = f.eagainReads
        row.zerocopyBytesPerReq = f.zerocopyBytes
        row.offcpuUsPerReq = f.offcpuUs
        row.migrations = f.migrations
    }

    func measure(_ cell: Cell, into row: inout ResultRow, probes: Bool) throws {
        let tag = "cell-\(cell.index)"
        let external = !cell.serverCommand.isEmpty
        try setUpNetwork(cell, tag: tag)
        defer { tearDownNetwork() }  // declared before the children's stops, so it runs after them
        let (server, port) = external ? try startExternalServer(cell, &row, tag: tag) : try startServer(cell, &row, tag: tag)
        defer { server.stop() }
        let memoryAtReady = MemoryMark(server: server.pid)
        let target = Endpoint(host: serverHost, port: port)
        do {
            try onClientSide { try RoundTrip.verify(target, wire: WireProtocol(rawValue: cell.protocol) ?? .echo, messageSize: cell.messageSize) }
            row.verify = "ok"
        } catch {
            // A deliberately broken variant may fail it: that is part of its result.
            guard cell.allowErrors else { throw CellFailure("verification failed: \(error)") }
            row.verify = "failed: \(error)"
        }

        let sampler = probes ? attachSampler(server.pid, &row, allocations: cell.mallocProbe) : nil
        if !probes { row.probeStatus = "off" }
        if cell.load == "wrk" {
            try measureWithWrk(cell, &row, server: server, target: target, sampler: sampler, tag: tag, memoryAtReady: memoryAtReady)
            return
        }

        var loadArgs = ["load", "--target", "\(target)", "--connections", String(cell.connections),
                        "--active", String(cell.active), "--message-size", String(cell.messageSize),
                        "--protocol", cell.protocol, "--duration", "\(cell.duration)s", "--warmup", "\(cell.warmup)s",
                        "--connect-rate", String(cell.connectRate), "--cpus", cell.clientCPUs.description,
                        "--request-timeout", "\(cell.requestTimeout)s", "--json", "--phases"]
        if let rate = cell.rate { loadArgs += ["--rate", String(rate)] }
        loadArgs += cell.loadArgs
        let load = try spawn(.client, executable: options.executable, arguments: loadArgs,
                             stderrPath: "\(logDirectory)/\(tag)-load.err")
        defer { load.stop(grace: 0.5) }

        let loadStarted = monotonicNanos()
        let deadline = loadStarted + UInt64(cell.timeout * 1e9)
        // Only a single-loop server has one thread whose every blocking call is a stall.
        var watchdog = cell.model == "reactor" ? StallWatchdog(pid: server.pid) : nil
        var recorder = try cell.timeline.map { TimelineRecorder(cell: cell, every: $0, server: server.pid,
                                                                sampler: sampler, file: try timelineFile()) }
        let tick = min(0.2, cell.timeline ?? 0.2)
        // Long cells (a soak) say how far they are every 30 s.
        let planned = cell.warmup + cell.duration
        var nextProgress = planned > 60 ? loadStarted + 30_000_000_000 : UInt64.max
        var cpuAtStart: UInt64?
        var cpuAtEnd: UInt64?
        var kernelAtStart: KernelSnapshot?
        var kernelAtEnd: KernelSnapshot?
        var statsAtStart: [String: String]?
        var statsAtEnd: [String: String]?
        var summaryLine: String?
        var memoryAtEnd: MemoryMark?
        while summaryLine == nil {
            if benchInterruptSignal != 0 { throw CellFailure("interrupted") }
            if row.serverExit == nil, let status = server.poll() {
                // A variant broken on purpose may die of it (claim H1): that is its result; the load runs out.
                guard cell.allowErrors else {
                    throw CellFailure("server died during the cell (\(status)); its last stderr: \(server.stderrTail(5).joined(separator: " | "))")
                }
                row.serverExit = "\(status)"
                progress("  cell \(cell.index): the server died (\(status)); the cell allows it and runs on")
            }
            let now = monotonicNanos()
            if now > deadline {
                throw CellFailure("cell exceeded its timeout of \(formatSeconds(cell.timeout)); load stderr: \(load.stderrTail(3).joined(separator: " | "))")
            }
            if watchdog != nil {
                let counters = try sampler?.snapshot().counters
                watchdog!.sample(now: now, muxCalls: counters?.multiplexerCalls)
            }
            try recorder?.sampleIfDue(now: now, since: loadStarted)
            if now >= nextProgress {
                nextProgress += 30_000_000_000
                let fds = ProcessStats.openDescriptors(server.pid).map { ", server fds \($0)" } ?? ""
                let rss = ProcessStats.rssKB(tree: server.pid).map { ", RSS \($0) KiB" } ?? ""
                progress("  cell \(cell.index): \(formatSeconds(Double(now - loadStarted) / 1e9)) of \(formatSeconds(planned))\(fds)\(rss)")
            }
            guard let line = load.readLine(timeout: tick) else {
                if let status = load.poll(), load.readLine(timeout: 0.2) == nil {
                    throw CellFailure("load generator ended (\(status)) without a summary: \(load.stderrTail(3).joined(separator: " | "))")
                }
                continue
            }
            switch line {
            case LoadPhase.measure.line:
                // Stats first: printing them allocates, and that must stay outside the kernel window.
                statsAtStart = external ? nil : serverStats(server)
                row.serverFDsStart = ProcessStats.openDescriptors(tree: server.pid)
                sampler?.addTree()
                kernelAtStart = try sampler?.snapshot()
                cpuAtStart = ProcessStats.cpuNanos(tree: server.pid)
                recorder?.phase = "measure"
                // Every phase gets a sample at its start, however short it is against the period.
                try recorder?.sample(now: monotonicNanos(), since: loadStarted)
            case LoadPhase.done.line:
                cpuAtEnd = ProcessStats.cpuNanos(tree: server.pid)
                kernelAtEnd = try sampler?.snapshot()
                statsAtEnd = external ? nil : serverStats(server)
                row.serverFDsEnd = ProcessStats.openDescriptors(tree: server.pid)
                // Per-connection threads and processes are gone once the load closes: count them now.
                row.serverRSSKB = ProcessStats.rssKB(tree: server.pid)
                row.serverThreads = ProcessStats.threads(tree: server.pid)
                memoryAtEnd = MemoryMark(server: server.pid)
                recorder?.phase = "done"
            case LoadPhase.connected.line:
                recorder?.phase = "warmup"
                try recorder?.sample(now: monotonicNanos(), since: loadStarted)
            default: if line.hasPrefix("{") { summaryLine = line }
            }
        }
        if let tw = timeWait(port: port, server: server.pid) {
            row.timeWaitServer = tw.local
            row.timeWaitClient = tw.remote
        }
        try recorder?.sample(now: monotonicNanos(), since: loadStarted)
        if row.serverRSSKB == nil { row.serverRSSKB = ProcessStats.rssKB(tree: server.pid) }
        if row.serverThreads == nil { row.serverThreads = ProcessStats.threads(tree: server.pid) }
        guard let text = summaryLine, let summary = try? JSONDecoder().decode(LoadSummary.self, from: Data(text.utf8)) else {
            throw CellFailure("load generator printed no readable summary")
        }
        fill(&row, from: summary)
        if let why = summary.firstConnectError {
            progress("  cell \(cell.index): \(summary.errors.connect) connect error(s), the first: \(why)")
        }
        fillClientCPU(&row, seconds: summary.clientCPUSeconds, window: summary.durationS, requests: summary.requests)
        if let end = memoryAtEnd { fillMemory(&row, from: memoryAtReady, to: end, connections: summary.established) }
        if let a = cpuAtStart, let b = cpuAtEnd {
            fillServerCPU(&row, from: a, to: b, window: summary.durationS, requests: summary.requests)
        }
        fillServerStats(&row, start: statsAtStart, end: statsAtEnd)
        if let sampler, let a = kernelAtStart, let b = kernelAtEnd {
            let k = KernelCounters(from: a, to: b)
            try fillProbeColumns(&row, cell, k, requests: summary.requests, allocations: sampler.countsAllocations)
            if let accepted = row.acceptedInWindow, accepted > 0 {
                row.wakeupsPerAccept = Double(k.totals.wakeups) / Double(accepted)
                row.acceptCallsPerAccept = Double(k.acceptCalls) / Double(accepted)
            }
        }
        if let watchdog {
            row.stallS = watchdog.longest
            if watchdog.longest >= 1 {
                row.stallCall = watchdog.longestCall
                progress("watchdog: cell \(cell.index) server's event loop stalled \(formatDecimal(watchdog.longest)) s in \(watchdog.longestCall ?? "?")")
            }
        }
        // No request at all is a broken cell, unless nothing was asked (active = 0) or the variant is broken on purpose.
        if summary.requests == 0 && cell.active > 0 && !cell.allowErrors {
            throw CellFailure("no request completed in the measured window (errors: \(summary.errorsTotal))")
        }
    }

    /// `muxlab serve` for the cell; returns once its ready line names the port.
    func startServer(_ cell: Cell, _ row: inout ResultRow, tag: String) throws -> (ChildProcess, UInt16) {
        var serverArgs = ["serve", "--model", cell.model, "--io", cell.io, "--protocol", cell.protocol,
                          "--port", "0", "--cpus", cell.serverCPUs.description]
        if let node = cell.numaNode { serverArgs += ["--numa-node", String(node)] }
        if cell.reactors != 1 { serverArgs += ["--reactors", String(cell.reactors)] }
        if cell.workers != 0 { serverArgs += ["--workers", String(cell.workers)] }
        serverArgs += listenArguments + cell.serverArgs
        let server = try spawn(.server, executable: options.executable, arguments: serverArgs,
                               stderrPath: "\(logDirectory)/\(tag)-server.err")
        do {
            let ready = try waitForReady(server)
            row.serverCPUs = ready["cpus"] ?? cell.serverCPUs.description
            row.numaNode = ready["numa_node"].flatMap { Int($0) }
            guard let portText = ready["port"], let port = UInt16(portText) else {
                throw CellFailure("server's ready line has no port: \(ready)")
            }
            return (server, port)
        } catch {
            server.stop()
            throw error
        }
    }

    /// Server CPU over the window: seconds, per second of the window, per completed request.
    func fillServerCPU(_ row: inout ResultRow, from start: UInt64, to end: UInt64, window: Double, requests: Int) {
        guard end >= start else { return }
        fillCPU(&row, (\.serverCPUSeconds, \.serverCPUUtil, \.cpuUsPerReq), seconds: Double(end - start) / 1e9,
                window: window, requests: requests)
    }

    /// CPU seconds into a side's three columns: the seconds, per second of the window, per completed request.
    func fillCPU(_ row: inout ResultRow,
                 _ columns: (seconds: WritableKeyPath<ResultRow, Double?>, util: WritableKeyPath<ResultRow, Double?>,
                             perRequestUs: WritableKeyPath<ResultRow, Double?>),
                 seconds: Double, window: Double, requests: Int) {
        row[keyPath: columns.seconds] = seconds
        if window > 0 { row[keyPath: columns.util] = seconds / window }
        if requests > 0 { row[keyPath: columns.perRequestUs] = seconds * 1e6 / Double(requests) }
    }

    /// Below this many connections `kernel_slab_kb_per_conn` stays empty: the slab's own drift would dominate it.
    static let slabMinimumConnections = 1000

    /// Server PSS and the machine's slab at one moment (at ready, and at the window's end).
    struct MemoryMark {
        let pssKB: Int?
        let slabKB: Int?
        init(server: Int32) {
            pssKB = ProcessStats.pssKB(tree: server)
            slabKB = ProcessStats.slabKB()
        }
    }

    /// Memory per connection held: the server's PSS at the window's end, and what the machine's slab grew by
    /// since the server was ready, each over the connections established.
    func fillMemory(_ row: inout ResultRow, from ready: MemoryMark, to end: MemoryMark, connections: Int?) {
        row.serverPSSKB = end.pssKB
        guard let n = connections, n > 0 else { return }
        // The server's whole PSS: its tables are sized at start, so its growth alone would read ~0.
        if let b = end.pssKB { row.serverPSSKBPerConn = Double(b) / Double(n) }
        // The machine's slab moves by some hundred KiB on its own: only over many connections is the growth theirs.
        if n >= BenchRunner.slabMinimumConnections, let a = ready.slabKB, let b = end.slabKB {
            row.kernelSlabKBPerConn = Double(b - a) / Double(n)
        }
    }

    /// The load generator's CPU over the window: seconds, per second of the window, per completed request.
    func fillClientCPU(_ row: inout ResultRow, seconds: Double, window: Double, requests: Int) {
        guard seconds >= 0 else { return }
        fillCPU(&row, (\.clientCPUSeconds, \.clientCPUUtil, \.clientCPUUsPerReq), seconds: seconds, window: window, requests: requests)
    }

    /// Asks the server for its own counters (SIGUSR1 -> one `stats ...` line); nil if none comes (e.g. a stalled loop).
    func serverStats(_ server: ChildProcess) -> [String: String]? {
        server.signal(SIGUSR1)
        let deadline = monotonicNanos() + 300_000_000
        while monotonicNanos() < deadline {
            guard let line = server.readLine(timeout: 0.1) else { continue }
            if line.hasPrefix("stats ") { return BenchRunner.keyValues(line) }
        }
        return nil
    }

    func fillServerStats(_ row: inout ResultRow, start: [String: String]?, end: [String: String]?) {
        guard let end else { return }
        func value(_ s: [String: String]?, _ key: String) -> Int? { s?[key].flatMap { Int($0) } }
        row.serverAccepted = value(end, "accepted")
        row.serverRefused = value(end, "refused")
        row.acceptEMFILE = value(end, "accept_emfile")
        row.serverThreadsStarted = value(end, "threads_started")
        if let a0 = value(start, "accepted"), let a1 = value(end, "accepted"), a1 >= a0 { row.acceptedInWindow = a1 - a0 }
        if let w0 = value(start, "waits"), let w1 = value(end, "waits"), w1 > w0,
           let s0 = value(start, "scanned"), let s1 = value(end, "scanned") {
            row.scannedPerWakeup = Double(s1 - s0) / Double(w1 - w0)
        }
    }

    func timelineFile() throws -> TimelineCSV {
        if let timeline { return timeline }
        let file = try TimelineCSV(path: options.outDirectory + "/timeline.csv")
        timeline = file
        return file
    }

    /// Waits for `ready port=... pid=...`; returns its key=value pairs.
    func waitForReady(_ server: ChildProcess) throws -> [String: String] {
        let deadline = monotonicNanos() + 10_000_000_000
        while monotonicNanos() < deadline {
            if let line = server.readLine(timeout: 0.25) {
                if line.hasPrefix("ready ") { return BenchRunner.keyValues(line) }
                continue
            }
            if let status = server.poll() {
                throw CellFailure("server exited before ready (\(status)): \(server.stderrTail(3).joined(separator: " | "))")
            }
        }
        throw CellFailure("server printed no ready line within 10 s")
    }

    static func keyValues(_ line: String) -> [String: String] {
        var out: [String: String] = [:]
        for part in line.split(separator: " ") {
            let kv = part.split(separator: "=", maxSplits: 1)
            if kv.count == 2 { out[String(kv[0])] = String(kv[1]) }
        }
        return out
    }

    func fill(_ row: inout ResultRow, from s: LoadSummary) {
        row.requests = s.requests
        row.errors = s.errorsTotal
        row.errorsConnect = s.errors.connect
        row.errorsRead = s.errors.read
        row.errorsWrite = s.errors.write
        row.errorsTimeout = s.errors.timeout
        row.errorsWrongResponse = s.errors.wrongResponse
        row.durationS = s.durationS
        row.throughputRPS = s.throughputRPS
        row.latencyP50Us = s.latencyUs.p50
        row.latencyP90Us = s.latencyUs.p90
        row.latencyP99Us = s.latencyUs.p99
        row.latencyP999Us = s.latencyUs.p999
        row.latencyMaxUs = s.latencyUs.max
        row.clientCPUs = s.cpus
        row.connectionsEstablished = s.established
        row.connectionsServed = s.served
        row.connectionsOpened = s.connectionsOpened
        row.closedByServer = s.closedByServer
        row.hangups = s.hangups
        row.unsent = s.unsent
    }

    func summaryText(_ row: ResultRow) -> String {
        switch row.status {
        case .ok:
            let rps = row.throughputRPS.map { String(format: "%.0f req/s", $0) } ?? "-"
            let p99 = row.latencyP99Us.map { String(format: "p99 %.0f us", $0) } ?? "p99 -"
            let cpu = row.cpuUsPerReq.map { String(format: "%.2f us cpu/req", $0) } ?? "cpu -"
            return "\(rps), \(p99), \(cpu), errors \(row.errors ?? 0)"
        case .notApplicable: return "not applicable: \(row.reason ?? "")"
        case .failed: return "FAILED: \(row.reason ?? "")"
        }
    }

    func progress(_ line: String) {
        writeLine(line, fd: 2)
    }
}

func formatSeconds(_ s: Double) -> String {
    let t = Int(s.rounded())
    return t >= 60 ? "\(t / 60)m\(String(format: "%02d", t % 60))s" : "\(t)s"
}
