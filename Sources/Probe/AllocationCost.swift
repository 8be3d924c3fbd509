#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// The ways muxlab can count a process's allocations.
public enum AllocationCounting: String, CaseIterable, Sendable {
    /// Nothing counts: the malloc/free pair's own cost.
    case none
    /// libMuxAllocCounter.so preloaded (AllocationCounters).
    case interposer
    /// The libc malloc/free uprobes (KernelSampler with `allocations: true`).
    case uprobes
}

/// What one malloc(64)+free pair costs in a child counted one way, timed by the child around
/// its own loop (`muxlab calibrate --malloc-pairs K --rounds R`), so start-up and attaching stay out.
public struct AllocationCost: Sendable {
    public let way: AllocationCounting
    /// Pairs per round.
    public let pairs: Int
    /// Nanoseconds per pair, one figure per round.
    public let nsPerPair: [Double]
    /// Allocation calls and frees the way counted from the start signal to the child's last line
    /// (its pairs, plus the few allocations of printing its result); nil for `.none`.
    public let counted: (mallocs: UInt64, frees: UInt64)?

    /// The least disturbed round: the machine is shared, and interference only ever adds time.
    public var best: Double { nsPerPair.min() ?? .nan }
    public var median: Double {
        let s = nsPerPair.sorted()
        return s.isEmpty ? .nan : s[s.count / 2]
    }

    /// Runs the child under `way` and reads its timings; throws when the way could not count
    /// (the uprobes did not attach, the interposer saw fewer calls than the loop made).
    public static func measure(_ way: AllocationCounting, muxlab: String, pairs: Int, rounds: Int,
                               library: String? = nil, tag: String = "cost") throws -> AllocationCost {
        let counters = way == .interposer ? try AllocationCounters.create(tag: "\(tag)-\(monotonicNanos())", slots: 8, library: library) : nil
        let child = try ChildProcess(executable: muxlab, arguments: ["calibrate", "--malloc-pairs", String(pairs), "--rounds", String(rounds)],
                                     environment: counters?.childEnvironment())
        defer { child.stop() }
        guard let ready = child.readLine(timeout: 20), ready.hasPrefix("ready ") else {
            throw ProbeError("allocation cost (\(way.rawValue)): the calibrate child printed no ready line (\(child.poll().map { "\($0)" } ?? "running"))")
        }
        var sampler: KernelSampler?
        if way == .uprobes {
            let s = try KernelSampler(pid: child.pid, allocations: true)
            guard s.countsAllocations else {
                throw ProbeError("allocation cost (uprobes): the malloc uprobes did not attach: \(s.failures.map(\.description).joined(separator: "; "))")
            }
            sampler = s
        }
        let kernelBefore = try sampler?.snapshot()
        let countsBefore = counters?.read()
        child.signal(SIGUSR1)
        // Generous: a uprobed pair takes two traps of ~15 us each here.
        let limit = 60 + Double(pairs * rounds) * 100e-6
        guard let done = child.readLine(timeout: limit), done.hasPrefix("done "),
              let list = lineKeyValues(done)["ns"] else {
            throw ProbeError("allocation cost (\(way.rawValue)): no result line from the calibrate child within \(Int(limit)) s")
        }
        let totals = list.split(separator: ",").compactMap { Double($0) }
        guard totals.count == rounds else {
            throw ProbeError("allocation cost (\(way.rawValue)): the child's result line '\(done)' has not \(rounds) round timings")
        }
        var counted: (mallocs: UInt64, frees: UInt64)?
        if let sampler, let before = kernelBefore {
            let k = KernelCounters(from: before, to: try sampler.snapshot()).totals
            counted = (k.mallocs, k.frees)
        }
        if let counters, let before = countsBefore {
            let d = counters.read().since(before)
            if let reason = d.incompleteReason { throw ProbeError("allocation cost (interposer): \(reason)") }
            counted = (d.mallocs, d.frees)
        }
        if let counted, counted.mallocs < UInt64(pairs * rounds) || counted.frees < UInt64(pairs * rounds) {
            throw ProbeError("allocation cost (\(way.rawValue)): counted \(counted.mallocs) allocations and \(counted.frees) frees, fewer than the \(pairs * rounds) pairs made")
        }
        return AllocationCost(way: way, pairs: pairs, nsPerPair: totals.map { $0 / Double(pairs) }, counted: counted)
    }

    /// The child's side: `rounds` timed rounds of `pairs` malloc(64)+free pairs (the loop is C, so
    /// nothing but the pair runs in it), nanoseconds per round.
    public static func timePairs(_ pairs: Int, rounds: Int) -> [UInt64] {
        var ns = [UInt64](repeating: 0, count: rounds)
        for r in 0..<rounds {
            let start = monotonicNanos()
            mux_malloc_free_pairs(UInt64(pairs), 64)
            ns[r] = monotonicNanos() - start
        }
        return ns
    }

}
