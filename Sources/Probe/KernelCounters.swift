import CSampler

/// What the kernel saw between two snapshots.
public struct KernelCounters {
    public var totals: mux_counters
    public var syscalls: [Int: mux_syscall_stat]
    public var seconds: Double

    /// `later - earlier`, field by field (every field of mux_counters is a u64 counter).
    public init(from earlier: KernelSnapshot, to later: KernelSnapshot) {
        var d = later.counters
        let count = MemoryLayout<mux_counters>.size / MemoryLayout<UInt64>.size
        withUnsafeMutableBytes(of: &d) { dst in
            withUnsafeBytes(of: earlier.counters) { src in
                let a = dst.bindMemory(to: UInt64.self)
                let b = src.bindMemory(to: UInt64.self)
                for i in 0..<count { a[i] = a[i] &- b[i] }
            }
        }
        totals = d
        var table: [Int: mux_syscall_stat] = [:]
        for (id, s) in later.syscalls {
            let e = earlier.syscalls[id] ?? mux_syscall_stat()
            var x = mux_syscall_stat()
            x.id = s.id
            x.count = s.count &- e.count
            x.total_ns = s.total_ns &- e.total_ns
            x.errors = s.errors &- e.errors
            x.eagain = s.eagain &- e.eagain
            if x.count > 0 { table[id] = x }
        }
        syscalls = table
        seconds = Double(later.takenAt &- earlier.takenAt) / 1e9
    }

    /// select, poll and epoll_wait calls, plus io_uring_enter: the proactor's wait (claim C8).
    public var multiplexerCalls: UInt64 { totals.multiplexerCalls + (syscalls[426]?.count ?? 0) }
    public var fdsetBytes: UInt64 { totals.fdset_bytes_in + totals.fdset_bytes_out }
    public var copyBytes: UInt64 { totals.read_bytes + totals.write_bytes }
    public var switches: UInt64 { totals.switches_voluntary + totals.switches_involuntary }

    /// Reads that found nothing (EAGAIN) on the read family.
    public var eagainReads: UInt64 {
        [0, 19, 45, 47].reduce(0) { $0 + (syscalls[$1]?.eagain ?? 0) }  // read, readv, recvfrom, recvmsg
    }

    /// accept and accept4 calls, failed ones included (an EMFILE busy loop is all failures).
    public var acceptCalls: UInt64 {
        [43, 288].reduce(0) { $0 + (syscalls[$1]?.count ?? 0) }  // accept, accept4
    }

    /// Syscalls by count, most first, with names.
    public var syscallsByCount: [(name: String, stat: mux_syscall_stat)] {
        syscalls.values.sorted { $0.count > $1.count }.map { (SyscallNames.name(Int($0.id)), $0) }
    }
}

/// The per-request figures of results.csv, each dividing by requests completed in the measured window.
public struct PerRequestFigures: Equatable, Sendable {
    public var syscalls: Double
    public var muxCalls: Double
    public var fdsetBytes: Double
    public var copyBytes: Double
    public var switches: Double
    public var involuntarySwitches: Double
    public var wakeups: Double
    /// nil when the allocation uprobes are not attached.
    public var mallocs: Double?
    public var pageFaults: Int
    public var futexWaits: Double
    public var futexWaitUs: Double
    public var lockContentions: Double
    public var epollWaits: Double
    public var reads: Double
    public var writes: Double
    public var eagainReads: Double
    public var zerocopyBytes: Double
    public var offcpuUs: Double
    public var migrations: Int

    /// nil when no request completed: a per-request figure needs requests.
    public init?(_ k: KernelCounters, requests: Int, allocationsCounted: Bool) {
        guard requests > 0 else { return nil }
        let r = Double(requests)
        let t = k.totals
        syscalls = Double(t.syscalls) / r
        muxCalls = Double(k.multiplexerCalls) / r
        fdsetBytes = Double(k.fdsetBytes) / r
        copyBytes = Double(k.copyBytes) / r
        switches = Double(k.switches) / r
        involuntarySwitches = Double(t.switches_involuntary) / r
        wakeups = Double(t.wakeups) / r
        mallocs = allocationsCounted ? Double(t.mallocs) / r : nil
        pageFaults = Int(t.page_faults)
        futexWaits = Double(t.futex_wait_calls) / r
        futexWaitUs = Double(t.futex_wait_ns) / 1000 / r
        lockContentions = Double(t.lock_contentions) / r
        epollWaits = Double(t.epoll_wait_calls) / r
        reads = Double(t.read_calls) / r
        writes = Double(t.write_calls) / r
        eagainReads = Double(k.eagainReads) / r
        zerocopyBytes = Double(t.zerocopy_bytes) / r
        offcpuUs = Double(t.offcpu_ns) / 1000 / r
        migrations = Int(t.migrations)
    }
}

extension mux_counters {
    /// select + poll + epoll_wait family calls.
    public var multiplexerCalls: UInt64 { select_calls + poll_calls + epoll_wait_calls }
}
