#if canImport(Glibc)
import Glibc
#endif
import Kernel
import Probe
import TestSupport
import Testing

/// select's and poll's fd-set copies, epoll's event copy, io_uring's bytes and futex waits by kind,
/// each against a program whose calls are known exactly (issue 13: probe columns that mean their names).
@Suite("Probe columns against known calls", .serialized)
struct ProbeColumnTests {
    static let calls = 200

    @Test("select(nfds, readfds only): ceil(nfds/64) x 8 bytes in and out per call, nothing else", arguments: [10, 100, 1000])
    func selectBitmaps(nfds: Int) throws {
        try requireRoot()
        let k = try KnownWork.measure(["select", "\(nfds)", "\(Self.calls)"])
        let t = k.totals, perSet = UInt64((nfds + 63) / 64 * 8), calls = UInt64(Self.calls)
        #expect(t.select_calls == calls, "select calls \(t.select_calls), made \(calls)")
        #expect(t.fdset_bytes_in == calls * perSet, "select nfds \(nfds): fd-set bytes in \(t.fdset_bytes_in), expected \(calls) x \(perSet)")
        #expect(t.fdset_bytes_out == calls * perSet, "select nfds \(nfds): fd-set bytes out \(t.fdset_bytes_out), expected \(calls) x \(perSet)")
        #expect(t.epoll_bytes_out == 0, "select only: epoll event bytes \(t.epoll_bytes_out)")
        let f = try #require(PerRequestFigures(k, requests: Self.calls, allocationsCounted: false))
        #expect(f.fdsetBytesIn == Double(perSet) && f.fdsetBytesOut == Double(perSet) && f.fdsetBytes == Double(2 * perSet),
                "per call: in \(String(describing: f.fdsetBytesIn)) out \(String(describing: f.fdsetBytesOut))")
        #expect(f.epollEventBytes == nil, "no epoll_wait call: epoll_event_bytes_per_req must be empty, is \(String(describing: f.epollEventBytes))")
    }

    @Test("poll(n fds): 8 bytes per pollfd in, 2 (revents) out per call", arguments: [10, 100, 1000])
    func pollArray(n: Int) throws {
        try requireRoot()
        let k = try KnownWork.measure(["poll", "\(n)", "\(Self.calls)"])
        let t = k.totals, calls = UInt64(Self.calls), fds = UInt64(n)
        #expect(t.poll_calls == calls, "poll calls \(t.poll_calls), made \(calls)")
        #expect(t.fdset_bytes_in == calls * 8 * fds, "poll \(n) fds: fd-set bytes in \(t.fdset_bytes_in), expected \(calls) x 8 x \(n)")
        #expect(t.fdset_bytes_out == calls * 2 * fds, "poll \(n) fds: fd-set bytes out \(t.fdset_bytes_out), expected \(calls) x 2 x \(n)")
        #expect(t.poll_events == calls * fds, "poll events \(t.poll_events), expected \(calls) x \(n)")
        #expect(t.epoll_bytes_out == 0, "poll only: epoll event bytes \(t.epoll_bytes_out)")
    }

    @Test("epoll_wait returning k events: 12k event bytes, no fd-set bytes", arguments: [1, 10, 64])
    func epollEvents(k events: Int) throws {
        try requireRoot()
        let k = try KnownWork.measure(["epoll", "100", "\(events)", "\(Self.calls)"])
        let t = k.totals, calls = UInt64(Self.calls)
        #expect(t.epoll_wait_calls == calls, "epoll_wait calls \(t.epoll_wait_calls), made \(calls)")
        #expect(t.epoll_bytes_out == calls * 12 * UInt64(events), "epoll_wait k=\(events): event bytes \(t.epoll_bytes_out), expected \(calls) x 12 x \(events)")
        #expect(t.fdset_bytes_in == 0 && t.fdset_bytes_out == 0, "epoll only: fd-set bytes in \(t.fdset_bytes_in) out \(t.fdset_bytes_out)")
        let f = try #require(PerRequestFigures(k, requests: Self.calls, allocationsCounted: false))
        #expect(f.epollEventBytes == Double(12 * events), "per call: epoll event bytes \(String(describing: f.epollEventBytes))")
        #expect(f.fdsetBytes == nil && f.fdsetBytesIn == nil && f.fdsetBytesOut == nil,
                "no select/poll call: fd-set columns must be empty, are \(String(describing: f.fdsetBytes))")
        // The 100 registrations: timed one by one, sys_enter -> sys_exit (claim E5).
        #expect(k.epollCtlCalls == 100 && t.epoll_ctl_add == 100, "epoll_ctl calls \(k.epollCtlCalls), ADDs \(t.epoll_ctl_add), made 100")
        #expect(f.epollCtls == 100 / Double(Self.calls), "epoll_ctl per request \(String(describing: f.epollCtls))")
        let ns = try #require(f.epollCtlNsPerCall, "epoll_ctl_ns_per_call empty with 100 calls")
        #expect(ns > 0 && ns < 1_000_000, "epoll_ctl \(ns) ns per call")
    }

    @Test("futex waits: contended pthread and PI mutexes are lock waits, pthread_cond_wait is a wait for work")
    func futexKinds() throws {
        try requireRoot()
        let plain = 20, pi = 10, conds = 30
        let k = try KnownWork.measure(["futex", "\(plain)", "\(pi)", "\(conds)"])
        let t = k.totals
        // Exact: the program hands each turn over only once the waiter sleeps in futex(2).
        #expect(t.futex_lock_waits == UInt64(plain + pi), "lock waits \(t.futex_lock_waits) (FUTEX_WAIT \(t.futex_wait_plain), LOCK_PI \(t.futex_lock_pi)), made \(plain) + \(pi)")
        #expect(t.futex_lock_pi == UInt64(pi), "LOCK_PI waits \(t.futex_lock_pi), made \(pi)")
        #expect(t.futex_cond_waits == UInt64(conds), "cond waits \(t.futex_cond_waits) (WAIT_BITSET \(t.futex_wait_bitset)), made \(conds)")
        #expect(t.futex_wait_calls == t.futex_lock_waits + t.futex_cond_waits, "all waits \(t.futex_wait_calls) = lock + cond")
        // Each lock round holds the waiter at least 1 ms.
        #expect(t.futex_lock_wait_ns >= UInt64(plain + pi) * 1_000_000, "lock wait time \(t.futex_lock_wait_ns) ns for \(plain + pi) rounds of >= 1 ms")
        let f = try #require(PerRequestFigures(k, requests: 10, allocationsCounted: false))
        #expect(f.futexLockWaits == Double(plain + pi) / 10 && f.futexCondWaits == Double(conds) / 10,
                "per request: lock \(f.futexLockWaits) cond \(f.futexCondWaits)")
    }

    @Test("the proactor's io_uring recv/send count as copies: 64-byte echo = 128 bytes per request")
    func proactorCopies() throws {
        try requireRoot()
        let (server, endpoint) = try TestSupport.startServer(["--model", "proactor", "--protocol", "echo"])
        defer { server.stop() }
        let sampler = try KernelSampler(pid: server.pid, allocations: false)
        let before = try sampler.snapshot()
        // Connected after the sampler attached: the connection's multishot recv is armed in the window.
        let fd = try TestSupport.connect(endpoint)
        let requests = 300
        let message = [UInt8](repeating: 0x6d, count: 64)
        for _ in 0..<requests {
            #expect(TestSupport.writeAll(fd, message))
            #expect(TestSupport.readExactly(fd, 64) == message)
        }
        let k = KernelCounters(from: before, to: try sampler.snapshot())
        close(fd)
        let t = k.totals
        #expect(t.uring_read_bytes == UInt64(64 * requests), "io_uring receive bytes \(t.uring_read_bytes), sent \(64 * requests)")
        #expect(t.uring_write_bytes == UInt64(64 * requests), "io_uring send bytes \(t.uring_write_bytes), echoed \(64 * requests)")
        let f = try #require(PerRequestFigures(k, requests: requests, allocationsCounted: false))
        // Tight: only a stray syscall read or write (none expected) could move it.
        #expect(abs(f.copyBytes - 128) <= 1, "copy_bytes_per_req \(f.copyBytes), expected 128 (64 in + 64 out)")
    }

    @Test("undercounts name a full targets map and a full per-thread map; none when nothing was lost")
    func undercounts() {
        var a = mux_counters(), b = mux_counters()
        #expect(KernelCounters(from: KernelSnapshot(counters: a, takenAt: 0), to: KernelSnapshot(counters: b, takenAt: 1)).undercounts.isEmpty)
        a.thread_state_full = 2
        b.thread_state_full = 5
        b.targets_full = 12
        let named = KernelCounters(from: KernelSnapshot(counters: a, takenAt: 0), to: KernelSnapshot(counters: b, takenAt: 1)).undercounts
        #expect(named == ["targets map full: 12 processes not followed",
                          "per-thread state map full: 3 syscalls, switches or lock waits untimed"], "\(named)")
    }
}
