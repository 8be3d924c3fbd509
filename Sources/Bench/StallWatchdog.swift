#if canImport(Glibc)
import Glibc
#endif
import Kernel
import Probe

/// Watches a single event-loop thread from outside (claim E3). The loop is stalled while it
/// makes no multiplexer call at all and sits in some other call (a blocking read, say):
/// with the kernel sampler attached, "no multiplexer call" is its exact count; without it,
/// the thread must also not have switched once (one blocked call, not a busy loop).
/// Reads /proc/PID/syscall (the call and its first argument) and /proc/PID/status.
struct StallWatchdog {
    let pid: Int32
    /// Multiplexer waits, where an idle loop belongs: select, poll, epoll_wait, ppoll,
    /// pselect6, epoll_pwait, io_uring_enter, epoll_pwait2.
    static let waits: Set<Int> = [23, 7, 232, 271, 270, 281, 426, 441]
    /// Calls whose first argument is a descriptor: read, write, readv, writev, accept, sendto,
    /// recvfrom, sendmsg, recvmsg, accept4.
    static let fdCalls: Set<Int> = [0, 1, 19, 20, 43, 44, 45, 46, 47, 288]

    /// Since when the loop has made no progress, by the marker that stayed the same.
    private var since: (at: UInt64, marker: UInt64)?
    /// The last non-wait call seen during the current stall.
    private var lastCall: String?
    /// The longest stall seen, seconds, and a call it sat in.
    private(set) var longest = 0.0
    private(set) var longestCall: String?

    init(pid: Int32) { self.pid = pid }

    /// One look, every few hundred milliseconds. `muxCalls`: the sampler's count of the
    /// server's multiplexer calls, when the sampler runs.
    mutating func sample(now: UInt64 = monotonicNanos(), muxCalls: UInt64?) {
        guard let state = StallWatchdog.currentCall(pid) else { since = nil; return }
        // Sitting in its wait is where an idle loop belongs.
        guard !state.inWait else { since = nil; return }
        // The progress marker: multiplexer calls (exact), else voluntary switches (a blocked call).
        guard let marker = muxCalls ?? ProcessStats.statusField(pid, "voluntary_ctxt_switches:").map(UInt64.init) else { since = nil; return }
        if let call = state.call { lastCall = call }
        guard let s = since, s.marker == marker else {
            since = (now, marker)
            return
        }
        let seconds = Double(now - s.at) / 1e9
        if seconds > longest { longest = seconds; longestCall = lastCall ?? "running, never in its wait" }
    }

    /// The thread's current syscall: in a multiplexer wait, in another call ("read fd=7"), or running (nil call).
    static func currentCall(_ pid: Int32) -> (inWait: Bool, call: String?)? {
        guard let text = readSmallFile("/proc/\(pid)/syscall") else { return nil }
        let fields = text.split(separator: " ")
        guard let first = fields.first else { return nil }
        guard let nr = Int(first), nr >= 0 else { return (false, nil) }  // "running" or -1: not in a call
        if waits.contains(nr) { return (true, nil) }
        let arg = fields.count > 1 ? UInt64(fields[1].dropFirst(2), radix: 16).map(String.init) ?? String(fields[1]) : "?"
        return (false, "\(SyscallNames.name(nr)) \(fdCalls.contains(nr) ? "fd" : "arg0")=\(arg)")
    }

}
