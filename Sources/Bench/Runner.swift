#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Kernel
import Vocabulary
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
    /// `--server-extra`: flags appended to every muxlab server's command line, recorded in `server_extra`.
    public var serverExtra: [String] = []
    /// The driver's `muxlab --version` line: each host's agent must say the same in its hello.
    public var muxlabVersion = ""
    /// A test's fault: the driver sleeps this long after reading each window's closing edge, before it
    /// tells the load, as a driver descheduled there would (hidden `--edge-stall-ms`).
    public var edgeStall = 0.0
    /// How many times a cell is measured at most: one whose window the host stole more than
    /// `disturbedSteal` of is set aside and measured again after the other cells (`--attempts`; 1: never).
    public var attempts = 2
    /// Measuring again may add at most this share of the run's estimated time, or a minute where that is more
    /// (`--remeasure-budget-pct`; 0: never); past it a disturbed cell is kept as measured, its steal in `steal_share`. A host that steals all day (a
    /// median 18 % on 2026-12-02, 163 of 200 cells over the limit and most second attempts too) would
    /// otherwise double the run and buy nothing; one with bursts spends little of it.
    public var remeasureBudget = 0.25
    /// A test's fault: steal added to what /proc/stat shows in each cell's first attempt (hidden `--assume-steal`).
    public var assumeSteal = 0.0

    /// The `--server-extra` flags (each with its values) that a cell's own server_args do not set: a cell's
    /// setting wins (c5-compute's `--compute-us 200` stays 200 under `--server-extra="--compute-us 2"`).
    public static func extraFlags(_ extra: [String], besides own: [String]) -> [String] {
        let named = Set(own.filter { $0.hasPrefix("--") }.map { String($0.split(separator: "=", maxSplits: 1)[0]) })
        var kept: [String] = []
        var keeping = false
        for word in extra {
            if word.hasPrefix("--") { keeping = !named.contains(String(word.split(separator: "=", maxSplits: 1)[0])) }
            if keeping { kept.append(word) }
        }
        return kept
    }

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
    /// Cells measured whose server and load counts disagree (status window-mismatch): kept, not data.
    public var mismatched: [(cell: String, reason: String)] = []
    /// Cells measured again because the host stole time in a window: (cell, the set-aside attempt's steal).
    public var remeasured: [(cell: String, steal: Double)] = []
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
    /// Created with the first cell that asks for a timeline.
    var timeline: TimelineCSV?
    var probeWarningShown = false
    /// Each kept cell's probe overhead (evidence over timing throughput), for the run's note.
    var overheads: [(cell: Cell, ratio: Double)] = []
    var cpuFallbackShown = false
    /// The running cell's network namespaces (`topology = "netns"`); nil on loopback.
    var network: CellNetwork?
    /// The sessions with other hosts (`muxlab agent` over ssh), by host name: made on a cell's first use,
    /// made again after one broke, closed at the run's end.
    var agents: [String: AgentSession] = [:]
    /// The last number given to a child on another host (unique over the run, as the agents require).
    var agentChildren = 0
    /// Seconds (estimated) that measuring cells again may still add (`RunnerOptions.remeasureBudget`).
    var remeasureLeft = 0.0
    /// Disturbed cells kept as measured because the budget was spent.
    var keptDisturbed: [(cell: String, steal: Double)] = []

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
        try manifest.write(to: manifestPath)
        defer { closeAgents() }
        removeStaleNamespaces()
        for stale in AllocationCounters.removeStaleRegions() + ServerCounterFile.removeStale() + removeStaleDirectories(prefix: "muxlab-ssh-") { progress("muxlab bench: removed \(stale), left by a driver that is gone") }
        let started = monotonicNanos()
        // At least a minute (a budget above 0): a short run's few cells are always worth their second attempt.
        let planned = cells.reduce(0) { $0 + estimate($1) }
        remeasureLeft = options.remeasureBudget > 0 ? max(options.remeasureBudget * planned, 60) : 0
        progress("muxlab bench: \(cells.count) cells from \(workload.path) -> \(options.outDirectory)/results.csv (ETA \(formatSeconds(planned)))")
        // Each cell in order; one whose windows the host disturbed goes to the back of the queue, so its
        // next attempt comes minutes later (steal here came in bursts of one to two minutes).
        var queue = cells.map { (cell: $0, attempt: 1) }
        var done = 0
        while !queue.isEmpty, benchInterruptSignal == 0 {
            let remaining = queue.reduce(0) { $0 + estimate($1.cell) }
            let (cell, attempt) = queue.removeFirst()
            guard let row = try measure(cell, attempt: attempt, &outcome) else {
                if benchInterruptSignal != 0 { break }  // an interrupted cell is not a result
                queue.append((cell, attempt + 1))
                continue
            }
            try keep(row, of: cell)
            done += 1
            progress("[\(done)/\(cells.count)] \(cell.name): \(summaryText(row))\(attempt > 1 ? " (attempt \(attempt))" : "") (ETA \(formatSeconds(remaining - estimate(cell))))")
        }
        try finish(&outcome, seconds: Double(monotonicNanos() - started) / 1e9)
        return outcome
    }

    /// One attempt at a cell: its row to keep, or nil when the attempt was set aside (the host stole
    /// its windows) or interrupted.
    func measure(_ cell: Cell, attempt: Int, _ outcome: inout RunOutcome) throws -> ResultRow? {
        var row = ResultRow(cell: cell)
        row.kernel = manifest.kernel
        row.host = manifest.host
        row.commit = manifest.measuredCommit
        row.startedAt = Date()
        if let reason = notApplicable(cell) {
            row.status = .notApplicable
            row.reason = reason
            outcome.notApplicable += 1
            return row
        }
        do {
            let calls = try measure(cell, into: &row, probes: options.probes)
            row.attempts = attempt
            if attempt == 1 && options.assumeSteal > 0 {
                row.stealShare = min(1, (row.stealShare ?? 0) + options.assumeSteal)
            }
            if let steal = disturbance(row), attempt < options.attempts {
                if remeasureLeft >= estimate(cell) {
                    remeasureLeft -= estimate(cell)
                    try setAside(row, steal: steal)
                    outcome.remeasured.append((cell.id, steal))
                    progress("[cell \(cell.index)] \(cell.name): the host stole \(formatPercent(steal)) of CPUs "
                             + "\(CPUList(cell.serverCPUs.cpus + cell.clientCPUs.cpus)) in a window (limit \(disturbedSteal.shown)): "
                             + "set aside in disturbed.csv, measured again after the other cells (attempt \(attempt + 1) of \(options.attempts))")
                    return nil
                }
                keptDisturbed.append((cell.id, steal))
                if keptDisturbed.count == 1 {
                    progress("muxlab bench: measuring again has used its budget (\(formatPercent(options.remeasureBudget)) of the run's estimated time, --remeasure-budget-pct): "
                             + "cells the host disturbs from here on are kept as measured, their steal in steal_share (cell \(cell.index) first, \(formatPercent(steal)) stolen)")
                }
            }
            try syscalls.append(cell: String(cell.index), experiment: cell.experiment, entries: calls)
            if row.status == .windowMismatch {
                outcome.mismatched.append((cell.id, row.reason ?? ""))
            } else {
                outcome.ok += 1
            }
            if let overhead = row.probeOverhead { overheads.append((cell, overhead)) }
        } catch {
            if benchInterruptSignal != 0 { return nil }
            row.status = .failed
            row.reason = "\(error)"
            outcome.failed.append((cell.id, "\(error)"))
            manifest.cellsFailed += 1
        }
        return row
    }

    /// Appends a finished row and updates the manifest. A full disk or a vanished directory stops the
    /// run; every row already written stays.
    func keep(_ row: ResultRow, of cell: Cell) throws {
        do {
            try results.append(row)
        } catch {
            throw DataFileError("could not append the row of cell \(cell.index) (\(cell.name)) to results.csv: \(error); finished rows kept in \(results.path): \(manifest.cellsDone)")
        }
        manifest.cellsDone += 1
        do {
            try manifest.write(to: manifestPath)
        } catch {
            throw DataFileError("could not update the manifest after cell \(cell.index): \(error); finished rows kept in \(results.path): \(manifest.cellsDone), the previous manifest is intact")
        }
    }

    /// The run's end: the probes' cost over the cells, how it ended, what was measured again; the summary line.
    func finish(_ outcome: inout RunOutcome, seconds: Double) throws {
        if let note = BenchRunner.overheadNote(overheads) {
            manifest.notes["probe_overhead"] = note
            progress("probe overhead (evidence / timing throughput, per cell): \(note)")
        }
        if benchInterruptSignal != 0 {
            outcome.interruptedBy = Int32(benchInterruptSignal)
            manifest.status = .interrupted
        } else {
            manifest.status = outcome.failed.isEmpty ? .complete : .failed
        }
        if !outcome.remeasured.isEmpty {
            manifest.notes["remeasured"] = outcome.remeasured.map { "cell \($0.cell): \(formatPercent($0.steal)) stolen" }.joined(separator: "; ")
        }
        if !keptDisturbed.isEmpty {
            manifest.notes["kept_disturbed"] = "measuring again had used its budget (\(formatPercent(options.remeasureBudget)) of the estimated time): "
                + keptDisturbed.map { "cell \($0.cell): \(formatPercent($0.steal)) stolen" }.joined(separator: "; ")
        }
        manifest.finishedAt = Date()
        try manifest.write(to: manifestPath)
        let kept = keptDisturbed.isEmpty ? "" : ", \(keptDisturbed.count) kept disturbed (budget spent)"
        progress("muxlab bench: \(outcome.ok) ok, \(outcome.notApplicable) not applicable, \(outcome.mismatched.count) window mismatch, \(outcome.failed.count) failed, \(outcome.remeasured.count) measured again (host steal)\(kept) in \(formatSeconds(seconds))")
    }

    /// The larger of a measured row's two windows' steal when it is over `disturbedSteal`: not the code's speed.
    func disturbance(_ row: ResultRow) -> Double? {
        let steal = max(row.stealShare ?? 0, row.evidenceStealShare ?? 0)
        return steal > disturbedSteal.value ? steal : nil
    }

    /// A disturbed attempt's row, kept in `disturbed.csv` (same columns as results.csv): nothing measured is lost.
    func setAside(_ row: ResultRow, steal: Double) throws {
        var kept = row
        kept.reason = "set aside: the host stole \(formatPercent(steal)) of the cell's CPUs in a window (limit \(disturbedSteal.shown))"
        do {
            try ResultsCSV(path: options.outDirectory + "/disturbed.csv").append(kept)
        } catch {
            throw DataFileError("could not append the set-aside row of cell \(row.cell.map(String.init) ?? "?") to disturbed.csv: \(error)")
        }
    }

    /// Cells that cannot apply on this machine, with the reason (never run, never faked).
    func notApplicable(_ cell: Cell) -> String? {
        if let reason = Preflight.notTestable(cell) { return reason }
        // The server also holds stdin/out/err, the listener and a reserve descriptor, in each process:
        // prefork's select children share the connections (claim M8).
        // A cell that allows errors runs anyway: it tests the refusal itself (claim M1).
        let selectProcesses = BenchRunner.serverProcesses(cell)
        if cell.ioMode == .select && cell.connections + 8 * selectProcesses > fdSetSize * selectProcesses && !cell.allowErrors {
            let each = selectProcesses == 1 ? "" : " in each of \(selectProcesses) processes"
            return "select can watch descriptors 0-\(fdSetSize - 1) only (FD_SETSIZE = \(fdSetSize))\(each): \(cell.connections) connections need more"
        }
        let hard = DescriptorLimit.current().hard
        let perProcess = hard - 32
        // muxlab load spreads connections over as many processes as they need; wrk is one process.
        if cell.load == .wrk && cell.connections > perProcess {
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
        ServerModel(rawValue: cell.model)?.processes(workers: cell.workers) ?? 1
    }

    func estimate(_ cell: Cell) -> Double { cell.plannedSeconds(probes: options.probes) }

    // MARK: one cell

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

    func timelineFile() throws -> TimelineCSV {
        if let timeline { return timeline }
        let file = try TimelineCSV(path: options.outDirectory + "/timeline.csv")
        timeline = file
        return file
    }

    func summaryText(_ row: ResultRow) -> String {
        switch row.status {
        case .ok:
            let rps = row.throughputRPS.map { String(format: "%.0f req/s", $0) } ?? "-"
            let p99 = row.latencyP99Us.map { String(format: "p99 %.0f us", $0) } ?? "p99 -"
            let cpu = row.cpuUsPerReq.map { String(format: "%.2f us cpu/req", $0) } ?? "cpu -"
            let stolen = disturbance(row).map { ", the host stole \(formatPercent($0)) (kept: last attempt)" } ?? ""
            return "\(rps), \(p99), \(cpu), errors \(row.errors ?? 0)\(stolen)"
        case .notApplicable: return "not applicable: \(row.reason ?? "")"
        case .failed: return "FAILED: \(row.reason ?? "")"
        case .windowMismatch: return "WINDOW MISMATCH: \(row.reason ?? "")"
        }
    }

    /// probe_overhead over the run's cells: minimum, median, maximum and the cells at the extremes.
    static func overheadNote(_ overheads: [(cell: Cell, ratio: Double)]) -> String? {
        guard !overheads.isEmpty else { return nil }
        let sorted = overheads.sorted { $0.ratio < $1.ratio }
        let median = sorted[sorted.count / 2].ratio
        func name(_ o: (cell: Cell, ratio: Double)) -> String { String(format: "%.3f (cell %d, %@)", o.ratio, o.cell.index, o.cell.name) }
        return "min \(name(sorted.first!)), median \(String(format: "%.3f", median)), max \(name(sorted.last!)) over \(sorted.count) cells"
    }

    func progress(_ line: String) {
        writeLine(line, fd: 2)
    }
}

/// A window whose CPUs the host stole more of than this is measured again (once by default): on this
/// shared host CPU per request and wake-ups per accept moved 4-5x through a minute of 35-55 % steal, while
/// 95 % of seconds saw under 10 %.
public let disturbedSteal = Threshold("share of the cell's CPUs' time the host stole in a timing or evidence window", .atMost, 0.10,
                                      unit: .percent, meaning: "measured again above it")

func formatSeconds(_ s: Double) -> String {
    let t = Int(s.rounded())
    return t >= 60 ? "\(t / 60)m\(String(format: "%02d", t % 60))s" : "\(t)s"
}
