#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Histogram
import Kernel
import Load

/// The load side of a cell, as the measurement window sees it: connect and warm up, then windows
/// opened and closed on the driver's word, each answered with what the load measured in it.
protocol LoadDriver: AnyObject {
    /// The load process (for its pid in messages, and to see whether it still runs).
    var process: ChildProcess? { get }
    /// The file where the load publishes its running count of answers, read by the driver at each edge
    /// beside the server's counters (nil: wrk, which keeps no such count).
    var counters: ServerCounterFile? { get }
    /// Window `id` starts now and is planned to last `seconds` (wrk: a run of that length starts).
    func open(window id: Int, seconds: Double) throws
    /// Lets the window run: muxlab load for `seconds` (the driver closes it), wrk until its run ends.
    /// `wait` passes time while watching the cell's children.
    func run(seconds: Double, wait: (Double) throws -> Void) throws
    /// Window `id` ends now.
    func close(window id: Int) throws
    /// What the load measured in window `id`: its requests, errors, latencies and the load's own CPU.
    func summary(window id: Int) throws -> LoadSummary
    /// The latency histogram (ns) behind window `id`'s percentiles, once its summary was read; nil when the load sent none.
    func latencyHistogram(window id: Int) -> Histogram<UInt64>?
    /// Ends the load (it closes its connections) and waits for it briefly.
    func stop()
}

/// `muxlab load --control`: connects, warms up, and measures exactly the windows the driver opens.
final class MuxlabLoadDriver: LoadDriver {
    let child: ChildProcess
    let channel: ControlChannel
    let counters: ServerCounterFile?
    var process: ChildProcess? { child }
    /// Connections the load holds once connected.
    private(set) var established = 0

    /// Starts the load and waits until it has connected (bounded by `connectLimit`); `alive` is asked
    /// meanwhile so a server that dies during the connect fails the cell at once.
    init(child: ChildProcess, counters: ServerCounterFile, connectLimit: Double, alive: () throws -> Void) throws {
        self.child = child
        self.counters = counters
        guard let channel = child.channel else { throw CellFailure("the load was started without its control channel") }
        self.channel = channel
        let deadline = monotonicNanos() + UInt64(connectLimit * 1e9)
        while true {
            try alive()
            switch try receive(timeout: 0.2) {
            case .connected(let n)?:
                established = n
                return
            default:
                break
            }
            if monotonicNanos() > deadline {
                throw CellFailure("the load did not connect within \(formatSeconds(connectLimit)): \(child.stderrTail(3).joined(separator: " | "))")
            }
        }
    }

    func open(window id: Int, seconds: Double) throws {
        channel.send(.open(window: id))
    }

    func run(seconds: Double, wait: (Double) throws -> Void) throws { try wait(seconds) }

    func close(window id: Int) throws {
        channel.send(.close(window: id))
    }

    func summary(window id: Int) throws -> LoadSummary {
        let deadline = monotonicNanos() + 10_000_000_000
        while monotonicNanos() < deadline {
            if case .window(id, let summary, let histogram)? = try receive(timeout: 0.5) {
                histograms[id] = histogram
                return summary
            }
        }
        throw CellFailure("the load sent no summary for window \(id) within 10 s: \(child.stderrTail(3).joined(separator: " | "))")
    }

    /// The histograms the load sent with its summaries, JSON-encoded, by window.
    private var histograms: [Int: String] = [:]

    func latencyHistogram(window id: Int) -> Histogram<UInt64>? {
        histograms[id].flatMap { try? JSONDecoder().decode(Histogram<UInt64>.self, from: Data($0.utf8)) }
    }

    func stop() {
        channel.send(.stop)
        if child.wait(timeout: 3) == nil { child.stop(grace: 0.5) }
    }

    /// The next message; a load that ended is an error naming how it ended.
    private func receive(timeout: Double) throws -> ControlMessage? {
        if let m = try channel.receive(timeout: timeout) { return m }
        if channel.closed || child.poll() != nil {
            let status = child.wait(timeout: 1).map { "\($0)" } ?? "closed its output"
            throw CellFailure("load generator ended (\(status)): \(child.stderrTail(3).joined(separator: " | "))")
        }
        return nil
    }
}

/// wrk as the load: it cannot be told when to stop, so each window is one wrk run of the window's
/// length, and the window's edges are wrk's start and exit. Its own histogram gives the latencies
/// (a Lua `done` hook prints them as one JSON line); its connects fall inside the window.
final class WrkLoadDriver: LoadDriver {
    let start: (Double, Bool) throws -> ChildProcess
    private var current: ChildProcess?
    private var childrenCPUBefore = 0.0
    var process: ChildProcess? { current }
    var counters: ServerCounterFile? { nil }
    let connections: Int
    let cpus: String

    /// `start(seconds, report)` spawns one pinned wrk run; the warm-up is one run without a report.
    init(warmup: Double, connections: Int, cpus: String, start: @escaping (Double, Bool) throws -> ChildProcess) throws {
        self.start = start
        self.connections = connections
        self.cpus = cpus
        if warmup > 0 {
            let warm = try start(warmup, false)
            guard warm.wait(timeout: warmup + 30) != nil else { warm.stop(); throw CellFailure("wrk warm-up did not end") }
        }
    }

    func open(window id: Int, seconds: Double) throws {
        // wrk's CPU: what the driver's reaped children used, before and after reaping this run.
        childrenCPUBefore = ProcessStats.rusageCPUSeconds(reapedChildren: true)
        current = try start(seconds, true)
    }

    private var lines: [String] = []

    func run(seconds: Double, wait: (Double) throws -> Void) throws {
        guard let run = current else { throw CellFailure("wrk was never started") }
        lines = []
        let deadline = monotonicNanos() + UInt64((seconds + 30) * 1e9)
        while run.poll() == nil {
            if monotonicNanos() > deadline { run.stop(grace: 0.5); throw CellFailure("wrk did not finish within \(formatSeconds(seconds + 30))") }
            while let line = run.readLine(timeout: 0) { lines.append(line) }
            try wait(0.05)
        }
        lines += run.readRemaining(timeout: 0.5)
    }

    /// wrk's run ended by itself (in `run`).
    func close(window id: Int) throws {}

    func summary(window id: Int) throws -> LoadSummary {
        guard let run = current else { throw CellFailure("wrk window \(id) was never opened") }
        defer { current = nil }
        guard let json = lines.last(where: { $0.hasPrefix("{") }),
              let report = try? JSONDecoder().decode(WrkReport.self, from: Data(json.utf8)) else {
            throw CellFailure("wrk printed no report (\(run.poll().map { "\($0)" } ?? "running")): \(run.stderrTail(3).joined(separator: " | "))")
        }
        let cpu = run.wait(timeout: 5) != nil ? ProcessStats.rusageCPUSeconds(reapedChildren: true) - childrenCPUBefore : -1
        histograms[id] = report.histogram
        return report.summary(connections: connections, cpus: cpus, clientCPUSeconds: cpu)
    }

    /// wrk's own distribution, by window (its report's `latency` pairs).
    private var histograms: [Int: Histogram<UInt64>] = [:]

    func latencyHistogram(window id: Int) -> Histogram<UInt64>? { histograms[id] }

    func stop() { current?.stop(grace: 0.5) }
}
