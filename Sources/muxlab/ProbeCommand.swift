import ArgumentParser
import Foundation
import Glibc
import Kernel
import Probe

struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Sample any running process tree with eBPF: syscalls, copies, switches, allocations, locks.",
        discussion: """
        Attaches to PID, its threads and every process it forks (also its existing children).
        Needs root. Each interval prints the top syscalls (like syscount) and one line per killer.

        OVERHEAD: every syscall on the machine takes the tracepoint path while attached (about
        2x a bare syscall on these VMs); each malloc/free of the target traps into a uprobe
        (microseconds each): --no-allocations skips those.

        EXAMPLES:
          muxlab probe --pid $(pgrep -o nginx) --duration 10s
          muxlab probe --pid 1234 --duration 30s --interval 5s --top 15
          muxlab probe --pid 1234 --duration 5s --json
        """
    )

    @Option(help: "Process to attach to (its threads and children too).")
    var pid: Int32

    @Option(help: "How long to sample, 0.1s-86400s.")
    var duration: DurationArgument = .init(seconds: 5)

    @Option(help: "Print a table every interval, 0.1s-86400s (default: once, at the end).")
    var interval: DurationArgument?

    @Option(help: "Syscalls to list, 1-500.")
    var top = 10

    @Flag(help: "Skip the malloc/free uprobes (no allocation counts, less overhead).")
    var noAllocations = false

    @Flag(help: "One JSON object per interval instead of tables.")
    var json = false

    func validate() throws {
        try check(pid, 1...Int32.max, "--pid")
        try check(duration.seconds, 0.1...86400, "--duration", unit: " s")
        if let interval { try check(interval.seconds, 0.1...86400, "--interval", unit: " s") }
        try check(top, 1...500, "--top")
    }

    func run() throws {
        let sampler: KernelSampler
        do {
            sampler = try KernelSampler(pid: pid, allocations: !noAllocations)
        } catch let e as ProbeError {
            writeLine("muxlab \(e)", fd: 2)
            throw ExitCode(1)
        }
        for f in sampler.failures { writeLine("muxlab probe: not attached: \(f)", fd: 2) }
        let step = interval?.seconds ?? duration.seconds
        let end = monotonicNanos() + UInt64(duration.seconds * 1e9)
        var last = try sampler.snapshot()
        while monotonicNanos() < end {
            let wait = min(step, Double(end - monotonicNanos()) / 1e9)
            usleep(UInt32(max(0, wait) * 1e6))
            sampler.addTree()
            let now = try sampler.snapshot()
            let delta = KernelCounters(from: last, to: now)
            last = now
            writeLine(json ? jsonReport(delta, sampler) : textReport(delta, sampler))
            if kill(pid, 0) != 0 && errno == ESRCH {
                writeLine("muxlab probe: pid \(pid) has exited", fd: 2)
                break
            }
        }
    }

    func textReport(_ k: KernelCounters, _ s: KernelSampler) -> String {
        let t = k.totals
        var lines = [String(format: "pid %d (%@): %.1f s", pid, processName(pid), k.seconds)]
        lines.append("SYSCALL".padding(toLength: 20, withPad: " ", startingAt: 0) + "      COUNT     ERRORS     EAGAIN    TOTAL ms    AVG us")
        for (name, st) in k.syscallsByCount.prefix(top) {
            lines.append(name.padding(toLength: 20, withPad: " ", startingAt: 0)
                + String(format: " %10llu %10llu %10llu %11.3f %9.3f", st.count, st.errors, st.eagain,
                         Double(st.total_ns) / 1e6, Double(st.total_ns) / 1e3 / Double(max(1, st.count))))
        }
        lines.append("multiplexers: \(k.multiplexerCalls) calls (select \(t.select_calls), poll \(t.poll_calls), epoll_wait \(t.epoll_wait_calls)), \(t.mux_events_total) events, fd-set bytes in \(t.fdset_bytes_in) out \(t.fdset_bytes_out), epoll_event bytes out \(t.epoll_bytes_out), epoll_ctl add \(t.epoll_ctl_add) mod \(t.epoll_ctl_mod) del \(t.epoll_ctl_del)")
        lines.append("copies: kernel->user \(t.read_bytes) B in \(t.read_calls) reads, user->kernel \(t.write_bytes) B in \(t.write_calls) writes, io_uring kernel->user \(t.uring_read_bytes) B in \(t.uring_reads) completions, user->kernel \(t.uring_write_bytes) B in \(t.uring_writes), zero-copy \(t.zerocopy_bytes) B, skb copies \(t.skb_copy_bytes) B")
        lines.append(String(format: "switches: %llu voluntary, %llu involuntary, %llu wake-ups, off-CPU %.3f s, %llu migrations",
                            t.switches_voluntary, t.switches_involuntary, t.wakeups, Double(t.offcpu_ns) / 1e9, t.migrations))
        let allocs = s.countsAllocations ? "\(t.mallocs) mallocs (\(t.malloc_bytes) B), \(t.frees) frees" : "mallocs not counted"
        lines.append("allocations: \(allocs), \(t.page_faults) page faults, mmap \(t.mmap_calls) munmap \(t.munmap_calls) brk \(t.brk_calls)")
        lines.append(String(format: "locks: %llu futex waits (%.1f us): for a lock %llu (%.1f us; LOCK_PI %llu), for work %llu (%.1f us); %llu kernel lock contentions (%.1f us)",
                            t.futex_wait_calls, Double(t.futex_wait_ns) / 1e3, t.futex_lock_waits, Double(t.futex_lock_wait_ns) / 1e3,
                            t.futex_lock_pi, t.futex_cond_waits, Double(t.futex_cond_wait_ns) / 1e3,
                            t.lock_contentions, Double(t.lock_contention_ns) / 1e3))
        for missed in k.undercounts { lines.append("undercount: \(missed)") }
        return lines.joined(separator: "\n") + "\n"
    }

    func jsonReport(_ k: KernelCounters, _ s: KernelSampler) -> String {
        let t = k.totals
        var obj: [String: Any] = [
            "pid": pid, "seconds": k.seconds,
            "syscalls": k.syscallsByCount.prefix(top).map { ["name": $0.name, "count": $0.stat.count, "total_ns": $0.stat.total_ns, "errors": $0.stat.errors, "eagain": $0.stat.eagain] },
            "syscalls_total": t.syscalls, "mux_calls": k.multiplexerCalls, "fdset_bytes": k.fdsetBytes,
            "fdset_bytes_in": t.fdset_bytes_in, "fdset_bytes_out": t.fdset_bytes_out, "epoll_event_bytes": t.epoll_bytes_out,
            "read_bytes": t.read_bytes, "write_bytes": t.write_bytes, "zerocopy_bytes": t.zerocopy_bytes,
            "uring_read_bytes": t.uring_read_bytes, "uring_write_bytes": t.uring_write_bytes,
            "switches_voluntary": t.switches_voluntary, "switches_involuntary": t.switches_involuntary,
            "wakeups": t.wakeups, "offcpu_ns": t.offcpu_ns, "migrations": t.migrations,
            "page_faults": t.page_faults, "futex_waits": t.futex_wait_calls, "futex_wait_ns": t.futex_wait_ns,
            "futex_lock_waits": t.futex_lock_waits, "futex_lock_wait_ns": t.futex_lock_wait_ns,
            "futex_cond_waits": t.futex_cond_waits, "futex_cond_wait_ns": t.futex_cond_wait_ns,
            "lock_contentions": t.lock_contentions, "lock_contention_ns": t.lock_contention_ns,
            "not_attached": s.failures.map(\.description), "undercounts": k.undercounts,
        ]
        if s.countsAllocations { obj["mallocs"] = t.mallocs; obj["frees"] = t.frees }
        let data = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    func processName(_ pid: Int32) -> String {
        (readSmallFile("/proc/\(pid)/comm") ?? "?").trimmingCharacters(in: "\n ")
    }
}
