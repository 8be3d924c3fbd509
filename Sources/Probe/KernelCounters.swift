import CSampler

/// What the kernel saw between two snapshots.
public struct KernelCounters {
    public var totals: mux_counters
    public var syscalls: [Int: mux_syscall_stat]
    public var seconds: Double
    /// Processes the full targets map refused since the sampler opened (not a delta:
    /// one refused before the window still goes unfollowed in it).
    public var targetsNotFollowed: UInt64

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
        targetsNotFollowed = later.counters.targets_full
    }

    /// select, poll and epoll_wait calls, plus io_uring_enter: the proactor's wait (claim C8).
    public var multiplexerCalls: UInt64 { totals.multiplexerCalls + (syscalls[426]?.count ?? 0) }
    /// select's bitmaps and poll's pollfd array in and revents out; epoll's event copy is `epoll_bytes_out`.
    public var fdsetBytes: UInt64 { totals.fdset_bytes_in + totals.fdset_bytes_out }
    /// Bytes between user and kernel by read/write-family syscalls and by io_uring completions.
    public var copyBytes: UInt64 {
        totals.read_bytes + totals.write_bytes + totals.uring_read_bytes + totals.uring_write_bytes
    }

    /// What the figures miss, in words, for probe_status; empty when nothing was lost.
    public var undercounts: [String] {
        var out: [String] = []
        if targetsNotFollowed > 0 {
            out.append("targets map full: \(targetsNotFollowed) processes not followed")
        }
        if totals.thread_state_full > 0 {
            out.append("per-thread state map full: \(totals.thread_state_full) syscalls, switches or lock waits untimed")
        }
        return out
    }
    public var switches: UInt64 { totals.switches_voluntary + totals.switches_involuntary }

    /// epoll_ctl calls and their time, sys_enter -> sys_exit, from the per-syscall table (claim E5).
    public var epollCtlCalls: UInt64 { syscalls[233]?.count ?? 0 }  // epoll_ctl
    public var epollCtlNanos: UInt64 { syscalls[233]?.total_ns ?? 0 }

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
    /// fd-set figures: nil when no select or poll call was made (they do not apply).
    public var fdsetBytes: Double?
    public var fdsetBytesIn: Double?
    public var fdsetBytesOut: Double?
    /// struct epoll_event bytes copied out; nil when no epoll_wait call was made.
    public var epollEventBytes: Double?
    public var copyBytes: Double
    public var switches: Double
    public var involuntarySwitches: Double
    public var wakeups: Double
    /// nil when the allocation uprobes are not attached.
    public var mallocs: Double?
    public var pageFaults: Int
    public var futexWaits: Double
    public var futexWaitUs: Double
    /// FUTEX_WAIT and LOCK_PI waits: for a lock (csampler.h has the op mapping).
    public var futexLockWaits: Double
    public var futexLockWaitUs: Double
    /// WAIT_BITSET, WAIT_REQUEUE_PI and futex_waitv waits: for work (a condition, a semaphore, a join).
    public var futexCondWaits: Double
    public var lockContentions: Double
    public var epollWaits: Double
    public var reads: Double
    public var writes: Double
    public var eagainReads: Double
    public var zerocopyBytes: Double
    public var offcpuUs: Double
    public var migrations: Int
    /// epoll_ctl calls per request; nil when the server made no epoll call at all (the figure does not apply).
    public var epollCtls: Double?
    /// Mean time in one epoll_ctl call, ns, sys_enter -> sys_exit (per call, not per request); nil without calls.
    public var epollCtlNsPerCall: Double?

    /// nil when no request completed: a per-request figure needs requests.
    public init?(_ k: KernelCounters, requests: Int, allocationsCounted: Bool) {
        guard requests > 0 else { return nil }
        let r = Double(requests)
        let t = k.totals
        syscalls = Double(t.syscalls) / r
        muxCalls = Double(k.multiplexerCalls) / r
        let scans = t.select_calls + t.poll_calls > 0
        fdsetBytes = scans ? Double(k.fdsetBytes) / r : nil
        fdsetBytesIn = scans ? Double(t.fdset_bytes_in) / r : nil
        fdsetBytesOut = scans ? Double(t.fdset_bytes_out) / r : nil
        epollEventBytes = t.epoll_wait_calls > 0 ? Double(t.epoll_bytes_out) / r : nil
        copyBytes = Double(k.copyBytes) / r
        switches = Double(k.switches) / r
        involuntarySwitches = Double(t.switches_involuntary) / r
        wakeups = Double(t.wakeups) / r
        mallocs = allocationsCounted ? Double(t.mallocs) / r : nil
        pageFaults = Int(t.page_faults)
        futexWaits = Double(t.futex_wait_calls) / r
        futexWaitUs = Double(t.futex_wait_ns) / 1000 / r
        futexLockWaits = Double(t.futex_lock_waits) / r
        futexLockWaitUs = Double(t.futex_lock_wait_ns) / 1000 / r
        futexCondWaits = Double(t.futex_cond_waits) / r
        lockContentions = Double(t.lock_contentions) / r
        epollWaits = Double(t.epoll_wait_calls) / r
        reads = Double(t.read_calls) / r
        writes = Double(t.write_calls) / r
        eagainReads = Double(k.eagainReads) / r
        zerocopyBytes = Double(t.zerocopy_bytes) / r
        offcpuUs = Double(t.offcpu_ns) / 1000 / r
        migrations = Int(t.migrations)
        let ctls = k.epollCtlCalls
        epollCtls = ctls > 0 || t.epoll_wait_calls > 0 ? Double(ctls) / r : nil
        epollCtlNsPerCall = ctls > 0 ? Double(k.epollCtlNanos) / Double(ctls) : nil
    }
}

extension mux_counters {
    /// select + poll + epoll_wait family calls.
    public var multiplexerCalls: UInt64 { select_calls + poll_calls + epoll_wait_calls }
}
