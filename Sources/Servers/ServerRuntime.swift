#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// Counters shared by every thread and forked process of one server (anonymous MAP_SHARED
/// memory, created before any fork). Writers use their own slot: threads and processes
/// `add` into slot `tid % slots` (relaxed atomics), single-owner loops `publish` running totals.
/// The supervisor sums the slots into the `stats` line the driver reads.
public final class SharedCounters: @unchecked Sendable {
    public typealias Field = ServerCounter

    public static let slots = Int(MUX_CTR_SLOTS)
    let base: UnsafeMutablePointer<UInt64>

    /// Anonymous, or the driver's file when MUXLAB_SERVER_COUNTERS names one (the driver reads it at window edges).
    public init() throws {
        guard let p = mux_counters_create() else {
            let file = getenv(MUX_CTR_ENV).map { String(cString: $0) }
            throw SystemError(file.map { "mmap(shared counters \($0))" } ?? "mmap(shared counters)", errno: errno)
        }
        base = p
    }

    /// True when a driver reads these counters itself (MUXLAB_SERVER_COUNTERS is set).
    public static var driverReads: Bool { getenv(MUX_CTR_ENV) != nil }

    @inline(__always)
    public func add(_ field: Field, _ n: UInt64 = 1, slot: Int) {
        mux_counter_add(base, Int32(truncatingIfNeeded: slot), field.rawValue, n)
    }

    @inline(__always)
    public func publish(_ field: Field, _ value: UInt64, slot: Int) {
        mux_counter_store(base, Int32(truncatingIfNeeded: slot), field.rawValue, value)
    }

    /// Copies a loop's own counters into its slot (one owner per slot).
    public func publish(_ s: ReactorStats, _ p: PollerStats, slot: Int) {
        publish(.accepted, s.accepted, slot: slot)
        publish(.refused, s.refused, slot: slot)
        publish(.closed, s.closed, slot: slot)
        publish(.reads, s.reads, slot: slot)
        publish(.readsEAGAIN, s.readsEAGAIN, slot: slot)
        publish(.writes, s.writes, slot: slot)
        publish(.writesEAGAIN, s.writesEAGAIN, slot: slot)
        publish(.bytesOut, s.bytesOut, slot: slot)
        publish(.requests, s.requests, slot: slot)
        publish(.acceptEMFILE, s.acceptEMFILE, slot: slot)
        publish(.idleClosed, s.idleClosed, slot: slot)
        publish(.waits, p.waits, slot: slot)
        publish(.events, p.events, slot: slot)
        publish(.scanned, p.scanned, slot: slot)
    }

    public func sum(_ field: Field) -> UInt64 { mux_counter_sum(base, field.rawValue) }

    /// `stats k=v ...` over the given fields (those that apply to the model), plus `extra`.
    public func statsLine(_ fields: [Field], extra: String = "") -> String {
        var line = "stats " + fields.map { "\($0.key)=\(sum($0))" }.joined(separator: " ")
        if !extra.isEmpty { line += " " + extra }
        return line
    }
}

/// Stop and stats for servers with more than one thread or process: the supervising thread
/// blocks SIGTERM, SIGINT and SIGUSR1 before it starts anything (threads and forked children
/// inherit the mask, so no worker is interrupted), then waits for them synchronously.
public enum Supervisor {
    /// Call first, on the main thread, before any thread or child exists.
    public static func blockSignals() throws {
        let rc = mux_block_stop_signals()
        if rc != 0 { throw SystemError("pthread_sigmask", errno: -rc) }
    }

    /// Prints `stats()` on every SIGUSR1; on SIGTERM/SIGINT runs `stop` (end children, by pid),
    /// prints `stats()` once more and returns: the caller then exits.
    public static func wait(stats: () -> String, stop: () -> Void = {}) {
        while true {
            let sig = mux_wait_stop_signal()
            if sig == SIGUSR1 {
                ServerOutput.stats(stats())
                continue
            }
            if sig == SIGTERM || sig == SIGINT || sig < 0 {
                stop()
                ServerOutput.stats(stats())
                return
            }
        }
    }
}

/// Starts a detached thread running `body` (a Swift closure), with `stackBytes` of stack (0: default).
public func startThread(stackBytes: Int = 0, _ body: @escaping () -> Void) throws {
    let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    let rc = mux_thread_start({ arg in
        let b = Unmanaged<ThreadBody>.fromOpaque(arg!).takeRetainedValue()
        b.body()
        return nil
    }, box, stackBytes)
    if rc != 0 {
        Unmanaged<ThreadBody>.fromOpaque(box).release()
        throw SystemError("pthread_create", errno: rc)
    }
}

final class ThreadBody {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

/// Per-request work that is not I/O: CPU burnt in user space (no syscalls, calibrated once
/// per process against the monotonic clock) and blocking time (nanosleep), claims C5 and C9.
public enum Work {
    /// Spin iterations per microsecond on this CPU, measured at first use.
    nonisolated(unsafe) static var iterationsPerMicro: UInt64 = 0

    /// Measures the spin rate (call at startup, on the CPU the work will run on).
    public static func calibrate() {
        guard iterationsPerMicro == 0 else { return }
        var best: UInt64 = 0
        for _ in 0..<5 {
            let n: UInt64 = 200_000
            let t0 = monotonicNanos()
            spin(n)
            let ns = max(1, monotonicNanos() - t0)
            best = max(best, n * 1000 / ns)
        }
        iterationsPerMicro = max(1, best)
    }

    /// A dependent chain the optimiser cannot remove or vectorise.
    @inline(never)
    static func spin(_ n: UInt64) {
        var x: UInt64 = 0x9E37_79B9_7F4A_7C15
        var i: UInt64 = 0
        while i < n {
            x = x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            x ^= x >> 29
            i &+= 1
        }
        sink = x
    }
    nonisolated(unsafe) static var sink: UInt64 = 0

    /// Burns about `micros` µs of CPU (more if the thread is preempted meanwhile).
    @inline(__always)
    public static func compute(micros: Int) {
        guard micros > 0 else { return }
        spin(UInt64(micros) &* iterationsPerMicro)
    }

    /// Sleeps `micros` µs: a stand-in for blocking I/O done by a pool thread.
    @inline(__always)
    public static func block(micros: Int) {
        guard micros > 0 else { return }
        var ts = timespec(tv_sec: micros / 1_000_000, tv_nsec: (micros % 1_000_000) * 1000)
        var left = timespec()
        while nanosleep(&ts, &left) != 0 && errno == EINTR { ts = left }
    }
}
