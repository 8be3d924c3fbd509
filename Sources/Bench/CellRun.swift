#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Kernel
import Load
import Probe
import Vocabulary

/// One cell, measured twice back to back on the same server and connections: a timing window with
/// no probe attached (throughput, latency, CPU), then, with probes on, the probes attach and an
/// evidence window measures the per-request kernel counts and what the probes cost.
extension BenchRunner {
    /// Returns the evidence window's syscalls, for the runner to keep once it keeps the row.
    func measure(_ cell: Cell, into row: inout ResultRow, probes: Bool) throws -> SyscallsCSV.Entries {
        if cell.remote { return try measureAcrossHosts(cell, into: &row, probes: probes) }
        let tag = "cell-\(cell.index)"
        try setUpNetwork(cell, tag: tag)
        defer { tearDownNetwork() }  // declared before the children's stops, so it runs after them
        let (server, port) = try startServerSide(cell, &row, tag: tag)
        defer { server.process.stop(); server.cpu.remove() }
        let memoryAtReady = MemoryMark(server: server.process.pid)
        let target = Endpoint(host: serverHost, port: port)
        try verify(cell, target: target, &row)

        var clock = try CellClock(cell: cell, server: server.process, runner: self)
        clock.counters = server.counters
        let load = try startLoad(cell, target: target, tag: tag, clock: clock)
        defer { load.stop() }
        clock.load = load.process
        try clock.wait(cell.warmup)
        clock.phase = "measure"
        let pid = server.process.pid
        row.serverFDsStart = ProcessStats.openDescriptors(tree: pid)

        let cpus = cell.serverCPUs.cpus + cell.clientCPUs.cpus
        let timing = try MeasurementWindow(id: 1, server: server, load: load, sampler: nil, stallAfterClose: options.edgeStall, cpus: cpus)
            .measure(seconds: cell.duration, subWindows: cell.subWindows, wait: { try clock.wait($0) })
        try keepLatencyHistogram(cell, from: load, window: 1)
        var m = CellMeasurement(timing: timing, memoryAtReady: memoryAtReady, cpuSource: server.cpu.source.rawValue)
        // Per-connection threads and processes are gone once the load closes: count them now.
        m.memoryAtEnd = MemoryMark(server: pid)
        row.serverFDsEnd = ProcessStats.openDescriptors(tree: pid)
        row.serverRSSKB = ProcessStats.rssKB(tree: pid)
        row.serverThreads = ProcessStats.threads(tree: pid)

        if !probes {
            row.probeStatus = "off"
        } else if let exit = clock.serverExit {
            row.probeStatus = "not run: the server died in the timing window (\(exit))"
        } else if let sampler = attachSampler(pid, &row, allocations: false) {
            clock.recorder?.sampler = sampler
            clock.sampler = sampler
            clock.phase = "evidence"
            let evidence = try MeasurementWindow(id: 2, server: server, load: load, sampler: sampler, stallAfterClose: options.edgeStall, cpus: cpus)
                .measure(seconds: cell.evidenceSeconds, wait: { try clock.wait($0) })
            m.evidence = evidence
        }
        clock.phase = "done"
        load.stop()
        try finish(cell, &row, m, port: port, server: server, clock: &clock)
        return BenchRunner.syscallEntries(m.evidence?.kernel)
    }

    /// The evidence window's syscalls as syscalls.csv keeps them (none without probes).
    static func syscallEntries(_ kernel: KernelCounters?) -> SyscallsCSV.Entries {
        kernel?.syscallsByCount.map {
            (name: $0.name, count: $0.stat.count, totalNs: $0.stat.total_ns, errors: $0.stat.errors, eagain: $0.stat.eagain)
        } ?? []
    }

    /// The row from the measurement, what the children left behind, and the checks that fail a cell.
    func finish(_ cell: Cell, _ row: inout ResultRow, _ m: CellMeasurement, port: UInt16, server: ServerSide,
                clock: inout CellClock) throws {
        if let tw = timeWait(port: port, server: server.process.pid) {
            row.timeWaitServer = tw.local
            row.timeWaitClient = tw.remote
        }
        try clock.recorder?.sample(now: monotonicNanos(), since: clock.started)
        row.serverExit = clock.serverExit
        row.fill(m, cell: cell)
        if let why = m.timing.load.firstConnectError {
            progress("  cell \(cell.index): \(m.timing.load.errors.connect) connect error(s), the first: \(why)")
        }
        if let watchdog = clock.watchdog {
            row.stallS = watchdog.longest
            if watchdog.longest >= 1 {
                row.stallCall = watchdog.longestCall
                progress("watchdog: cell \(cell.index) server's event loop stalled \(formatDecimal(watchdog.longest)) s in \(watchdog.longestCall ?? "?")")
            }
        }
        // No request at all is a broken cell, unless nothing was asked (active = 0) or the variant is broken on purpose.
        if m.timing.load.requests == 0 && cell.active > 0 && !cell.allowErrors {
            throw CellFailure("no request completed in the measured window (errors: \(m.timing.load.errorsTotal))")
        }
        if row.status == .windowMismatch { progress("  cell \(cell.index): \(row.reason ?? "")") }
    }

    /// The cell's server, started and accounted in a cgroup of its own: `muxlab serve --control` or the peer's command.
    func startServerSide(_ cell: Cell, _ row: inout ResultRow, tag: String) throws -> (ServerSide, UInt16) {
        let allocations = try allocationCounters(cell, tag: tag)
        var environment = allocations?.childEnvironment() ?? ChildProcess.currentEnvironmentList()
        let counters: ServerCounterFile?
        if cell.serverCommand.isEmpty {
            do { counters = try ServerCounterFile(tag: tag) } catch { throw CellFailure("cannot make the server's counters file: \(error)") }
            environment.append(counters!.environmentEntry)
        } else {
            counters = nil
        }
        let (process, port) = cell.serverCommand.isEmpty ? try startServer(cell, &row, tag: tag, environment: environment)
            : try startExternalServer(cell, &row, tag: tag, environment: environment)
        let cpu = CellCPU(name: "muxlab-\(getpid())-\(tag)", pid: process.pid)
        if let why = cpu.fallbackReason, !cpuFallbackShown {
            cpuFallbackShown = true
            progress("muxlab bench: server CPU from /proc (tasks that exit inside a window are missed): \(why)")
        }
        return (ServerSide(process: process, counters: counters, cpu: cpu, allocations: allocations), port)
    }

    /// The allocation counter preloaded into the cell's server (nanoseconds per call, unlike the
    /// uprobes' microseconds): one slot per process, enough for a process per connection.
    func allocationCounters(_ cell: Cell, tag: String) throws -> AllocationCounters? {
        guard cell.mallocProbe else { return nil }
        do {
            let library = try AllocationCounters.libraryPath(besideExecutable: options.executable)
            let slots = min(AllocationCounters.slotRange.upperBound, max(AllocationCounters.defaultSlots, cell.connections + 64))
            return try AllocationCounters.create(tag: tag, slots: slots, library: library)
        } catch {
            throw CellFailure("cannot count the server's allocations: \(error) (malloc_probe = false runs without)")
        }
    }

    /// `muxlab serve --control` for the cell listening as `listen` says (nothing: loopback), and the run's
    /// `--server-extra` flags the cell does not set itself (the row records them).
    func serverArguments(_ cell: Cell, listen: [String], _ row: inout ResultRow) -> [String] {
        var serverArgs = ["serve", "--model", cell.model, "--io", cell.io, "--protocol", cell.protocol.rawValue,
                          "--port", "0", "--cpus", cell.serverCPUs.description, "--control"]
        if let node = cell.numaNode { serverArgs += ["--numa-node", String(node)] }
        if cell.reactors != 1 { serverArgs += ["--reactors", String(cell.reactors)] }
        if cell.workers != 0 { serverArgs += ["--workers", String(cell.workers)] }
        let extra = RunnerOptions.extraFlags(options.serverExtra, besides: cell.serverArgs)
        row.serverExtra = extra
        return serverArgs + listen + cell.serverArgs + extra
    }

    /// What the server's ready message says is in force, into the row.
    func accept(ready settings: [String: String], _ cell: Cell, _ row: inout ResultRow) throws {
        row.serverCPUs = settings["cpus"] ?? cell.serverCPUs.description
        row.numaNode = settings["numa_node"].flatMap { Int($0) }
        do {
            row.variant = try ServerVariant(readyFields: settings)
        } catch {
            throw CellFailure("the server's ready message does not name its variant: \(error) (a muxlab serve of another version?)")
        }
    }

    /// `muxlab serve --control` for the cell; returns once its ready message names the port.
    func startServer(_ cell: Cell, _ row: inout ResultRow, tag: String, environment: [String]?) throws -> (ChildProcess, UInt16) {
        let server = try spawn(.server, executable: options.executable, arguments: serverArguments(cell, listen: listenArguments, &row),
                               stderrPath: "\(logDirectory)/\(tag)-server.err", environment: environment, control: true)
        do {
            let deadline = monotonicNanos() + 10_000_000_000
            while monotonicNanos() < deadline {
                if case .ready(let port, _, let settings)? = try server.channel?.receive(timeout: 0.25) {
                    try accept(ready: settings, cell, &row)
                    return (server, port)
                }
                if let status = server.poll() {
                    throw CellFailure("server exited before ready (\(status)): \(server.stderrTail(3).joined(separator: " | "))")
                }
            }
            throw CellFailure("server sent no ready message within 10 s")
        } catch {
            server.stop()
            throw error
        }
    }

    /// One round trip before measuring; a deliberately broken variant may fail it: that is part of its result.
    func verify(_ cell: Cell, target: Endpoint, _ row: inout ResultRow) throws {
        do {
            // A wrk cell with the user's script sends what the script builds: the round trip then asks only for
            // a whole HTTP response; wrk's own status errors land in the row.
            let scripted = cell.load == .wrk && cell.wrkScript != nil
            try onClientSide {
                try RoundTrip.verify(target, wire: cell.protocol, messageSize: cell.messageSize, http: cell.http, anyStatus: scripted)
            }
            row.verify = "ok"
        } catch {
            guard cell.allowErrors else { throw CellFailure("verification failed: \(error)") }
            row.verify = "failed: \(error)"
        }
    }

    /// The cell's load, connected and warming up: `muxlab load --control` or wrk.
    func startLoad(_ cell: Cell, target: Endpoint, tag: String, clock: CellClock) throws -> LoadDriver {
        if cell.load == .wrk { return try startWrk(cell, target: target, tag: tag) }
        let counters: ServerCounterFile
        do { counters = try ServerCounterFile(tag: tag, kind: "load") } catch { throw CellFailure("cannot make the load's counters file: \(error)") }
        let args = loadArguments(cell, target: target, share: nil) + ["--counters", counters.path]
        let child = try spawn(.client, executable: options.executable, arguments: args,
                              stderrPath: "\(logDirectory)/\(tag)-load.err", control: true)
        do {
            let limit = LoadGenerator.connectLimit(connections: cell.connections, connectRate: cell.connectRate) + 10
            return try MuxlabLoadDriver(child: child, counters: counters, connectLimit: limit, alive: { [clock] in try clock.checkServer() })
        } catch {
            child.stop(grace: 0.5)
            throw error
        }
    }

    /// `muxlab load --control` against `target`: the whole cell's load, or one host's `share` of it.
    /// Under control, warm-up + duration only bound the load's run: the cell's timeout.
    func loadArguments(_ cell: Cell, target: Endpoint, share: LoadShare?) -> [String] {
        var args = ["load", "--target", "\(target)", "--connections", String(share?.connections ?? cell.connections),
                    "--active", String(share?.active ?? cell.active), "--message-size", String(cell.messageSize),
                    "--protocol", cell.protocol.rawValue, "--duration", "\(cell.timeout)s", "--warmup", "0s",
                    "--connect-rate", String(share?.connectRate ?? cell.connectRate), "--cpus", cell.clientCPUs.description,
                    "--request-timeout", "\(cell.requestTimeout)s", "--control"]
        if let rate = share == nil ? cell.rate : share?.rate { args += ["--rate", String(rate)] }
        if cell.protocol == .http { args += cell.http.arguments }
        return args + cell.loadArgs
    }
}

/// Time passing in a cell: while the driver waits it watches the server (dead, stalled), the load,
/// the cell's deadline, the timeline and a progress line every 30 s on long cells.
struct CellClock {
    let cell: Cell
    let server: ChildProcess
    unowned let runner: BenchRunner
    var load: ChildProcess?
    let started = monotonicNanos()
    let deadline: UInt64
    var watchdog: StallWatchdog?
    var recorder: TimelineRecorder?
    /// The loop's own count of its waits (published every turn): the watchdog's exact progress marker
    /// in both windows; the sampler's multiplexer calls where the server keeps no such file.
    var counters: ServerCounterFile?
    var sampler: KernelSampler?
    var nextProgress: UInt64
    /// Set when a server that may die (allow_errors) did.
    var serverExit: String?
    var phase: String {
        get { recorder?.phase ?? "" }
        set { recorder?.phase = newValue; try? recorder?.sample(now: monotonicNanos(), since: started) }
    }

    init(cell: Cell, server: ChildProcess, runner: BenchRunner) throws {
        self.cell = cell
        self.server = server
        self.runner = runner
        deadline = started + UInt64(cell.timeout * 1e9)
        // Only a single-loop server has one thread whose every blocking call is a stall.
        watchdog = cell.serverModel == .reactor ? StallWatchdog(pid: server.pid) : nil
        recorder = try cell.timeline.map { TimelineRecorder(cell: cell, every: $0, server: server.pid, sampler: nil, file: try runner.timelineFile()) }
        nextProgress = cell.warmup + cell.duration > 60 ? started + 30_000_000_000 : UInt64.max
        recorder?.phase = "warmup"
    }

    /// A dead server fails the cell, unless the variant is broken on purpose (claim H1): then it is its result.
    func checkServer() throws {
        if benchInterruptSignal != 0 { throw CellFailure("interrupted") }
        guard serverExit == nil, let status = server.poll() else { return }
        guard cell.allowErrors else {
            throw CellFailure("server died during the cell (\(status)); its last stderr: \(server.stderrTail(5).joined(separator: " | "))")
        }
    }

    /// Passes `seconds`, looking at everything every 0.2 s (or the timeline's period, if shorter).
    mutating func wait(_ seconds: Double) throws {
        let tick = min(0.2, cell.timeline ?? 0.2)
        let end = monotonicNanos() + UInt64(max(0, seconds) * 1e9)
        while true {
            try look()
            let now = monotonicNanos()
            if now >= end { return }
            usleep(UInt32(min(Double(end - now) / 1e3, tick * 1e6)))
        }
    }

    mutating func look() throws {
        try checkServer()
        if serverExit == nil, let status = server.poll() {
            serverExit = "\(status)"
            runner.progress("  cell \(cell.index): the server died (\(status)); the cell allows it and runs on")
        }
        let now = monotonicNanos()
        if now > deadline {
            throw CellFailure("cell exceeded its timeout of \(formatSeconds(cell.timeout)); load stderr: \(load?.stderrTail(3).joined(separator: " | ") ?? "")")
        }
        if let status = load?.poll() {
            throw CellFailure("load generator ended (\(status)) before the cell's windows closed: \(load?.stderrTail(3).joined(separator: " | ") ?? "")")
        }
        if watchdog != nil {
            let waits = try counters?.read()["waits"] ?? sampler?.snapshot().counters.multiplexerCalls
            watchdog?.sample(now: now, muxCalls: waits)
        }
        try recorder?.sampleIfDue(now: now, since: started)
        if now >= nextProgress {
            nextProgress += 30_000_000_000
            let fds = ProcessStats.openDescriptors(server.pid).map { ", server fds \($0)" } ?? ""
            let rss = ProcessStats.rssKB(tree: server.pid).map { ", RSS \($0) KiB" } ?? ""
            runner.progress("  cell \(cell.index): \(formatSeconds(Double(now - started) / 1e9)) of \(formatSeconds(cell.warmup + cell.duration))\(fds)\(rss)")
        }
    }
}
