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
    var probeWarningShown = false

    public init(workload: Workload, options: RunnerOptions) throws {
        self.workload = workload
        self.options = options
        let out = options.outDirectory
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        logDirectory = out + "/logs"
        try FileManager.default.createDirectory(atPath: logDirectory, withIntermediateDirectories: true)
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
            try results.append(row)
            manifest.cellsDone += 1
            try manifest.write(to: manifestPath)
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
        if cell.io == "select" && cell.connections + 8 > fdSetSize {
            return "select can watch descriptors 0-\(fdSetSize - 1) only (FD_SETSIZE = \(fdSetSize)): \(cell.connections) connections need more"
        }
        let hard = DescriptorLimit.current().hard
        if cell.connections + 32 > hard {
            return "\(cell.connections) connections exceed one process's descriptor limit (\(hard), hard RLIMIT_NOFILE)"
        }
        return nil
    }

    func estimate(_ cell: Cell) -> Double { cell.warmup + cell.duration + 1.5 }

    // MARK: one cell

    /// Probe overhead, measured every run: the first ok cell again with probes off, side by side.
    func measureProbeOverhead(_ cell: Cell, probesOn: Double) {
        var row = ResultRow(cell: cell)
        do {
            try measure(cell, into: &row, probes: false)
        } catch {
            manifest.notes["probe_overhead"] = "not measured: the probes-off rerun of cell \(cell.index) failed: \(error)"
            return
        }
        guard let off = row.throughputRPS, off > 0 else { return }
        let ratio = probesOn / off
        manifest.notes["probe_overhead"] = String(format: "cell %d (%@ %@): %.0f req/s with probes on / %.0f off = %.3f",
                                                   cell.index, cell.experiment, cell.label, probesOn, off, ratio)
        progress("probe overhead: \(manifest.notes["probe_overhead"]!)")
    }

    /// Opens the sampler on the server; a sampler that cannot start leaves the probe columns empty and says why.
    func attachSampler(_ pid: Int32, _ row: inout ResultRow) -> KernelSampler? {
        do {
            let sampler = try KernelSampler(pid: pid, allocations: true)
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
        try syscalls.append(cell: String(cell.index), experiment: cell.experiment, entries: k.syscallsByCount.map {
            (name: $0.name, count: $0.stat.count, totalNs: $0.stat.total_ns, errors: $0.stat.errors, eagain: $0.stat.eagain)
        })
    }

    func measure(_ cell: Cell, into row: inout ResultRow, probes: Bool) throws {
        let tag = "cell-\(cell.index)"
        var serverArgs = ["serve", "--model", cell.model, "--io", cell.io, "--protocol", cell.protocol,
                          "--port", "0", "--cpus", cell.serverCPUs.description]
        if let node = cell.numaNode { serverArgs += ["--numa-node", String(node)] }
        serverArgs += cell.serverArgs
        let server = try ChildProcess(executable: options.executable, arguments: serverArgs,
                                      stderrPath: "\(logDirectory)/\(tag)-server.err")
        defer { server.stop() }
        let ready = try waitForReady(server)
        row.serverCPUs = ready["cpus"] ?? cell.serverCPUs.description
        row.numaNode = ready["numa_node"].flatMap { Int($0) }
        guard let portText = ready["port"], let port = UInt16(portText) else {
            throw CellFailure("server's ready line has no port: \(ready)")
        }
        let target = Endpoint(host: "127.0.0.1", port: port)
        do {
            try RoundTrip.verify(target, wire: WireProtocol(rawValue: cell.protocol) ?? .echo, messageSize: cell.messageSize)
        } catch {
            throw CellFailure("verification failed: \(error)")
        }

        let sampler = probes ? attachSampler(server.pid, &row) : nil
        if !probes { row.probeStatus = "off" }

        var loadArgs = ["load", "--target", "\(target)", "--connections", String(cell.connections),
                        "--active", String(cell.active), "--message-size", String(cell.messageSize),
                        "--protocol", cell.protocol, "--duration", "\(cell.duration)s", "--warmup", "\(cell.warmup)s",
                        "--connect-rate", String(cell.connectRate), "--cpus", cell.clientCPUs.description,
                        "--json", "--phases"]
        if let rate = cell.rate { loadArgs += ["--rate", String(rate)] }
        let load = try ChildProcess(executable: options.executable, arguments: loadArgs,
                                    stderrPath: "\(logDirectory)/\(tag)-load.err")
        defer { load.stop(grace: 0.5) }

        let deadline = monotonicNanos() + UInt64(cell.timeout * 1e9)
        var cpuAtStart: UInt64?
        var cpuAtEnd: UInt64?
        var kernelAtStart: KernelSnapshot?
        var kernelAtEnd: KernelSnapshot?
        var summaryLine: String?
        while summaryLine == nil {
            if benchInterruptSignal != 0 { throw CellFailure("interrupted") }
            if let status = server.poll() {
                throw CellFailure("server died during the cell (\(status)); its last stderr: \(server.stderrTail(5).joined(separator: " | "))")
            }
            if monotonicNanos() > deadline {
                throw CellFailure("cell exceeded its timeout of \(formatSeconds(cell.timeout)); load stderr: \(load.stderrTail(3).joined(separator: " | "))")
            }
            guard let line = load.readLine(timeout: 0.25) else {
                if let status = load.poll(), load.readLine(timeout: 0.2) == nil {
                    throw CellFailure("load generator ended (\(status)) without a summary: \(load.stderrTail(3).joined(separator: " | "))")
                }
                continue
            }
            switch line {
            case LoadPhase.measure.line:
                sampler?.addTree()
                kernelAtStart = try sampler?.snapshot()
                cpuAtStart = ProcessStats.cpuNanos(tree: server.pid)
            case LoadPhase.done.line:
                cpuAtEnd = ProcessStats.cpuNanos(tree: server.pid)
                kernelAtEnd = try sampler?.snapshot()
            case LoadPhase.connected.line: continue
            default: if line.hasPrefix("{") { summaryLine = line }
            }
        }
        row.serverRSSKB = ProcessStats.rssKB(tree: server.pid)
        row.serverThreads = ProcessStats.threads(tree: server.pid)
        guard let text = summaryLine, let summary = try? JSONDecoder().decode(LoadSummary.self, from: Data(text.utf8)) else {
            throw CellFailure("load generator printed no readable summary")
        }
        fill(&row, from: summary)
        if let a = cpuAtStart, let b = cpuAtEnd, b >= a {
            let seconds = Double(b - a) / 1e9
            row.serverCPUSeconds = seconds
            if summary.requests > 0 { row.cpuUsPerReq = seconds * 1e6 / Double(summary.requests) }
        }
        if let sampler, let a = kernelAtStart, let b = kernelAtEnd {
            try fillProbeColumns(&row, cell, KernelCounters(from: a, to: b), requests: summary.requests,
                                 allocations: sampler.countsAllocations)
        }
        if summary.requests == 0 {
            throw CellFailure("no request completed in the measured window (errors: \(summary.errorsTotal))")
        }
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
