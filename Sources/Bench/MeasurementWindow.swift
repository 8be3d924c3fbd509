#if canImport(Glibc)
import Glibc
#endif
import Kernel
import Load
import Probe

/// The server of a cell as a window sees it: its process, the counters it publishes to a file the
/// driver reads at the edges (muxlab's own servers; nil for a `server_command` peer), the cgroup
/// that accounts its CPU and its allocation counter.
final class ServerSide {
    let process: ChildProcess
    let counters: ServerCounterFile?
    let cpu: CellCPU
    /// The allocation counter preloaded into it (nil: malloc_probe = false).
    let allocations: AllocationCounters?

    init(process: ChildProcess, counters: ServerCounterFile?, cpu: CellCPU, allocations: AllocationCounters?) {
        self.process = process
        self.counters = counters
        self.cpu = cpu
        self.allocations = allocations
    }

    /// Everything at one edge, cheapest-to-skew first: the kernel maps, the CPU counter, the allocation
    /// counters, then the server's request counters and the load's count of answers side by side (plain
    /// memory reads, µs apart), between two readings of the driver's clock.
    func edge(_ sampler: KernelSampler?, load: ServerCounterFile? = nil) throws -> Edge {
        let kernel = try sampler?.snapshot()
        let cpu = cpu.nanos()
        let allocations = allocations?.read()
        let from = monotonicNanos()
        let counters = counters?.read()
        let completed = load?.sum(.completed)
        return Edge(kernel: kernel, cpu: cpu, allocations: allocations, counters: counters, loadCompleted: completed,
                    from: from, at: monotonicNanos())
    }

    struct Edge {
        let kernel: KernelSnapshot?
        let cpu: UInt64?
        let allocations: AllocationTotals?
        let counters: [String: UInt64]?
        /// The load's running count of answers (nil: a load that keeps none for us).
        let loadCompleted: UInt64?
        /// The driver's clock before and after it read the two sides' counters: a driver descheduled
        /// between the readings (ms on a host that steals time) shows here, not as a skewed count.
        let from: UInt64
        let at: UInt64
    }
}

/// Where a window's edges are read: the server's counters and CPU and the load's count of answers, on this
/// machine (`ServerSide`) or on the cell's hosts (`AcrossEdges`).
protocol EdgeSource: AnyObject {
    func edge(_ sampler: KernelSampler?, load: ServerCounterFile?) throws -> ServerSide.Edge
}

extension ServerSide: EdgeSource {}

/// What one measured window saw on every side.
struct WindowMeasurement {
    /// What the load measured between its open and close.
    var load: LoadSummary
    /// The server's own counters at the window's edges (nil: a peer that keeps none for us).
    var serverOpen: [String: UInt64]?
    var serverClose: [String: UInt64]?
    /// The kernel's counts over the window (evidence pass only).
    var kernel: KernelCounters?
    /// Server CPU nanoseconds over the window (every task of its cgroup).
    var serverCPUNanos: UInt64?
    /// The server's allocations over the window (the preloaded counter), when it counts them.
    var allocations: AllocationTotals?
    /// The load's answers between the driver's two readings, beside the server's (nil: wrk).
    var loadCompleted: UInt64?
    /// How long the driver took over reading both sides' counters, at the two edges together.
    var readingSeconds = 0.0
    /// The share of the cell's CPUs' time the host stole over the window (/proc/stat; nil: not readable).
    var stealShare: Double?
    /// The driver's window: from the open snapshot to the close snapshot.
    var seconds: Double
    /// The server's CPU and request counters at the sub-window edges inside the window (timing window only).
    var marks: [ServerSide.Edge] = []
    /// Between the two readings of the server's counters: the driver's edges (nil without them).
    var serverSeconds: Double? { serverOpen == nil ? nil : seconds }

    /// The requests the window's per-request figures divide by: the load's answers counted at the driver's
    /// edges, the instants its server CPU, kernel and server counts are read; wrk's own count where it keeps none.
    var requests: Int { loadCompleted.map { Int($0) } ?? load.requests }
    /// The window those requests were counted in.
    var durationS: Double { loadCompleted == nil ? load.durationS : seconds }
    var throughputRPS: Double { durationS > 0 ? Double(requests) / durationS : 0 }
    /// How far apart in time the two sides' counts were taken, both edges together: the driver's reading
    /// time; for a load that counts only in its own window (wrk), how much its length differs from the driver's.
    var countsApart: Double { loadCompleted == nil ? abs(load.durationS - seconds) : readingSeconds }

    /// A counter's growth over the window, when the server reported it at both edges.
    func serverDelta(_ key: String) -> UInt64? { WindowMeasurement.delta(key, from: serverOpen, to: serverClose) }

    /// A counter's growth between two readings of the server's counters (window edges or sub-window marks).
    static func delta(_ key: String, from a: [String: UInt64]?, to b: [String: UInt64]?) -> UInt64? {
        guard let x = a?[key], let y = b?[key], y >= x else { return nil }
        return y - x
    }
}

/// One measured window, opened and closed by the driver. At each edge the driver reads, in a few µs
/// and before anything slower, the kernel maps, the server's CPU counter, its allocation and request
/// counters; at the open edge the load is then told to count, at the close edge to stop; its summary
/// (10-25 ms to build) is read after. The server is never asked: a stalled or starved server cannot
/// skew its own window, and answering allocates nothing in it.
struct MeasurementWindow {
    let id: Int
    let server: EdgeSource
    let load: LoadDriver
    let sampler: KernelSampler?
    /// Between reading the closing edge and telling the load (a test's fault; 0 in every real run).
    var stallAfterClose = 0.0
    /// The host CPUs the cell runs on (server's and load's), whose stolen time the window records.
    var cpus: [Int] = []

    /// Opens the window, lets `wait(seconds)` pass the time (it polls the cell's children), closes it.
    /// With `subWindows` above 1 the driver also reads the server's CPU and request counters at that many
    /// evenly spaced points (plain memory and cgroup reads, µs each), so the row carries samples within it.
    func measure(seconds: Double, subWindows: Int = 1, wait: (Double) throws -> Void) throws -> WindowMeasurement {
        // Processes the server forked since the probes attached (a /proc walk: slow, so before the edge).
        sampler?.addTree()
        let hostOpen = HostCPUTimes.read(cpus: cpus)
        let open = try server.edge(sampler, load: load.counters)
        var marks: [ServerSide.Edge] = []
        try load.open(window: id, seconds: seconds)
        // Marks at planned times from the open edge, whether the load waits once (muxlab) or in steps (wrk).
        let step = seconds / Double(max(1, subWindows)) * 1e9
        try load.run(seconds: seconds, wait: { total in
            let end = monotonicNanos() + UInt64(max(0, total) * 1e9)
            while marks.count + 1 < subWindows {
                let at = open.at + UInt64(Double(marks.count + 1) * step)
                guard at <= end else { break }
                let now = monotonicNanos()
                if at > now { try wait(Double(at - now) / 1e9) }
                marks.append(try server.edge(nil, load: nil))
            }
            let now = monotonicNanos()
            if end > now { try wait(Double(end - now) / 1e9) }
        })
        let close = try server.edge(sampler, load: load.counters)
        let hostClose = HostCPUTimes.read(cpus: cpus)
        if stallAfterClose > 0 { usleep(UInt32(stallAfterClose * 1e6)) }
        try load.close(window: id)
        let summary = try load.summary(window: id)

        var m = WindowMeasurement(load: summary, serverOpen: open.counters, serverClose: close.counters,
                                  seconds: Double(close.at - open.at) / 1e9)
        if let a = open.loadCompleted, let b = close.loadCompleted, b >= a { m.loadCompleted = b - a }
        m.readingSeconds = Double((open.at - open.from) + (close.at - close.from)) / 1e9
        if !marks.isEmpty { m.marks = [open] + marks + [close] }
        if let a = hostOpen, let b = hostClose { m.stealShare = b.stealShare(since: a) }
        if let a = open.kernel, let b = close.kernel { m.kernel = KernelCounters(from: a, to: b) }
        if let a = open.cpu, let b = close.cpu, b >= a { m.serverCPUNanos = b - a }
        if let a = open.allocations, let b = close.allocations { m.allocations = b.since(a) }
        return m
    }
}
