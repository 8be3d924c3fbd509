#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// Model 2 (claim C2): an accept loop starts one detached thread per connection, which serves it
/// with blocking calls and ends with it. Threads, and the switches between them, grow with clients.
/// `--thread-stack` sets each thread's stack (claim T1: glibc's 8 MiB default is address space, not memory).
public enum ThreadPerConnectionServer {
    public static func run(_ context: ServerContext) throws {
        let counters = try BlockingSession.prepare(context)
        let config = context.config
        let listenFD = context.listenFD
        // 0 asks pthread_create for glibc's default.
        let sessionStack = config.threadStackBytes ?? BlockingSession.stackBytes
        try startThread(stackBytes: BlockingSession.stackBytes) {
            var acceptor = BlockingAcceptor(listenFD: listenFD, counters: counters, slot: 0)
            var loggedRefusal = false
            while true {
                let fd = acceptor.next()
                do {
                    try startThread(stackBytes: sessionStack) {
                        // Threads add into slot tid % slots: relaxed atomics, so sharing a slot is only slower.
                        let session = BlockingSession(config: config, counters: counters, slot: Int(mux_gettid()))
                        session.serve(fd)
                    }
                    counters.add(.accepted, slot: 0)
                    counters.add(.threads, slot: 0)
                } catch {
                    FD.close(fd)
                    counters.add(.refused, slot: 0)
                    if !loggedRefusal {
                        loggedRefusal = true
                        writeLine("muxlab serve: refusing connections: \(error)", fd: 2)
                    }
                }
            }
        }
        ServerOutput.ready(Server.readyLine(config, port: context.port))
        Supervisor.wait(stats: { counters.statsLine(BlockingSession.statsFields + [.threads]) })
    }
}

/// Claim T1: the stack sizes `--thread-stack` takes.
public enum ThreadStack {
    /// What `--thread-stack BYTES` allows: glibc's PTHREAD_STACK_MIN (16 KiB) up to 1 GiB.
    public static let allowedBytes = 16_384...(1 << 30)

    /// glibc's default for a new thread: RLIMIT_STACK's soft limit (8 MiB on most systems), 2 MiB on
    /// x86-64 when that is unlimited (nptl's ARCH_STACK_DEFAULT_SIZE).
    public static var glibcDefaultBytes: Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_STACK.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max else { return 2 << 20 }
        return max(allowedBytes.lowerBound, Int(limit.rlim_cur))
    }

    /// "default" (0: glibc's default), or bytes with an optional K or M suffix (KiB, MiB); nil when neither
    /// or out of `allowedBytes`.
    public static func parse(_ text: String) -> Int? {
        let lower = text.lowercased()
        if lower == "default" { return 0 }
        var digits = Substring(lower)
        var scale = 1
        if let last = digits.last, last == "k" || last == "m" {
            scale = last == "k" ? 1 << 10 : 1 << 20
            digits = digits.dropLast()
        }
        guard let n = Int(digits), n <= Int.max / scale, allowedBytes.contains(n * scale) else { return nil }
        return n * scale
    }

    /// For messages: what `--thread-stack` allows.
    public static var allowedText: String {
        "default (glibc's: RLIMIT_STACK, \(glibcDefaultBytes >> 10) KiB here) or \(allowedBytes.lowerBound)-\(allowedBytes.upperBound) bytes, with an optional K or M suffix (256K, 8M)"
    }
}
