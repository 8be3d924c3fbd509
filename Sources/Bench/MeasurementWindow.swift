#if canImport(Glibc)
import Glibc
#endif
import Kernel
import Load
import Probe

/// The server of a cell as a window sees it: its process, its control channel (muxlab's own
/// servers; nil for a `server_command` peer) and the cgroup that accounts its CPU.
final class ServerSide {
    let process: ChildProcess
    let channel: ControlChannel?
    let cpu: CellCPU
    private var edge = 0

    init(process: ChildProcess, channel: ControlChannel?, cpu: CellCPU) {
        self.process = process
        self.channel = channel
        self.cpu = cpu
    }

    /// The server's cumulative counters at this edge (with `at_ns`, its own clock), or nil when it
    /// does not answer within `timeout` (a loop stalled in a blocking call, a peer without a channel).
    func counters(opening: Bool, timeout: Double = 1) -> [String: UInt64]? {
        awaitCounters(ask(opening: opening), timeout: timeout)
    }

    /// Asks for the counters at an edge without waiting; the edge's number, for `awaitCounters`.
    func ask(opening: Bool) -> Int? {
        guard let channel else { return nil }
        edge += 1
        channel.send(opening ? .open(window: edge) : .close(window: edge))
        return edge
    }

    func awaitCounters(_ edge: Int?, timeout: Double = 1) -> [String: UInt64]? {
        guard let edge else { return nil }
        return awaitCounters([edge], timeout: timeout)[edge]
    }

    /// The answers to these edges that arrive within `timeout` (an answer to an earlier edge that
    /// came late is not one of these edges').
    func awaitCounters(_ edges: [Int], timeout: Double = 1) -> [Int: [String: UInt64]] {
        guard let channel else { return [:] }
        var answers: [Int: [String: UInt64]] = [:]
        let deadline = monotonicNanos() + UInt64(timeout * 1e9)
        while answers.count < edges.count && monotonicNanos() < deadline {
            guard let message = try? channel.receive(timeout: 0.1) else {
                if channel.closed { break }
                continue
            }
            if case .counters(let edge?, let values) = message, edges.contains(edge) { answers[edge] = values }
        }
        return answers
    }
}

/// What one measured window saw on every side.
struct WindowMeasurement {
    /// What the load measured between its open and close.
    var load: LoadSummary
    /// The server's counters at the window's edges (nil: no channel, or no answer).
    var serverOpen: [String: UInt64]?
    var serverClose: [String: UInt64]?
    /// The kernel's counts over the window (evidence pass only).
    var kernel: KernelCounters?
    /// Server CPU nanoseconds over the window (every task of its cgroup).
    var serverCPUNanos: UInt64?
    /// The driver's window: from the open snapshot to the close snapshot.
    var seconds: Double
    /// The server's own window length, from its clock at the two answers.
    var serverSeconds: Double? {
        guard let a = serverOpen?["at_ns"], let b = serverClose?["at_ns"], b >= a else { return nil }
        return Double(b - a) / 1e9
    }

    /// A counter's growth over the window, when the server reported it at both edges.
    func serverDelta(_ key: String) -> UInt64? {
        guard let a = serverOpen?[key], let b = serverClose?[key], b >= a else { return nil }
        return b - a
    }
}

/// One measured window, opened and closed by the driver on both sides. At each edge the kernel maps
/// and the CPU counter are read first, then the server and the load are told at once (µs apart, so
/// both count the same requests), and their slower answers (the load's summary takes 10-25 ms to
/// build, a stalled loop none) are read after the window: nothing slow sits between the edges.
struct MeasurementWindow {
    let id: Int
    let server: ServerSide
    let load: LoadDriver
    let sampler: KernelSampler?

    /// Opens the window, lets `wait(seconds)` pass the time (it polls the cell's children), closes it.
    func measure(seconds: Double, wait: (Double) throws -> Void) throws -> WindowMeasurement {
        // Processes the server forked since the probes attached (a /proc walk: slow, so before the edge).
        sampler?.addTree()
        let kernelOpen = try sampler?.snapshot()
        let cpuOpen = server.cpu.nanos()
        let openedAt = monotonicNanos()
        let openEdge = server.ask(opening: true)
        try load.open(window: id, seconds: seconds)
        try load.run(seconds: seconds, wait: wait)

        let kernelClose = try sampler?.snapshot()
        let cpuClose = server.cpu.nanos()
        let closedAt = monotonicNanos()
        try load.close(window: id)
        let closeEdge = server.ask(opening: false)
        let summary = try load.summary(window: id)
        let answers = server.awaitCounters([openEdge, closeEdge].compactMap { $0 })
        let serverOpen = openEdge.flatMap { answers[$0] }, serverClose = closeEdge.flatMap { answers[$0] }
        var m = WindowMeasurement(load: summary, serverOpen: serverOpen, serverClose: serverClose,
                                  seconds: Double(closedAt - openedAt) / 1e9)
        if let a = kernelOpen, let b = kernelClose { m.kernel = KernelCounters(from: a, to: b) }
        if let a = cpuOpen, let b = cpuClose, b >= a { m.serverCPUNanos = b - a }
        return m
    }
}
