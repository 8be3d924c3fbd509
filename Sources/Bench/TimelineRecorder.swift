import Kernel
import Probe

/// Samples one server every `every` seconds of a cell into `timeline.csv`:
/// the curves behind the EMFILE plot (claim E4) and the soak's flat lines.
struct TimelineRecorder {
    let cell: Cell
    let every: Double
    let server: Int32
    /// Attached for the evidence window only: the probe columns start there.
    var sampler: KernelSampler?
    let file: TimelineCSV
    /// The load's phase as last announced: connect, warmup, measure, done.
    var phase = "connect"
    private var first: (cpu: UInt64, kernel: KernelSnapshot?)?
    private var nextAt: UInt64 = 0

    init(cell: Cell, every: Double, server: Int32, sampler: KernelSampler?, file: TimelineCSV) {
        self.cell = cell
        self.every = every
        self.server = server
        self.sampler = sampler
        self.file = file
    }

    mutating func sampleIfDue(now: UInt64, since start: UInt64) throws {
        guard now >= nextAt else { return }
        try sample(now: now, since: start)
    }

    mutating func sample(now: UInt64, since start: UInt64) throws {
        nextAt = now + UInt64(every * 1e9)
        let cpu = ProcessStats.cpuNanos(tree: server)
        let kernel = try sampler?.snapshot()
        if first == nil { first = (cpu, kernel) }
        if first?.kernel == nil, let kernel { first = (first!.cpu, kernel) }
        let counters = kernel.flatMap { k in first?.kernel.map { KernelCounters(from: $0, to: k) } }
        try file.append(TimelineSample(
            cell: cell.index, experiment: cell.experiment, label: cell.label,
            seconds: Double(now - start) / 1e9, phase: phase,
            cpuSeconds: Double(cpu &- first!.cpu) / 1e9,
            muxCalls: counters?.multiplexerCalls, acceptCalls: counters?.acceptCalls, syscalls: counters?.totals.syscalls,
            fds: ProcessStats.openDescriptors(server), rssKB: ProcessStats.rssKB(tree: server)))
    }
}
