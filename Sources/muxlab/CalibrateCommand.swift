import ArgumentParser
import Glibc
import Kernel
import Probe

/// A target with known work, so the sampler's counts can be checked against the truth.
struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Do exactly known work (syscalls, allocations, sleeps, bytes, lock waits) for probe calibration.",
        discussion: """
        Prints `ready pid=<pid>`, waits for SIGUSR1 (attach the probe first), does the work, prints `done`.
        With --malloc-pairs the work is only that many malloc(64)+free pairs per round, timed: `done pairs=<K> ns=<round 1>,<round 2>,...`.

        --allocation-cost measures, in such children, what counting costs per pair: no counting, libMuxAllocCounter.so preloaded, and the libc uprobes (needs root); it prints ns per pair.

        EXAMPLES:
          muxlab calibrate --syscalls 1000 --allocations 500 --sleeps 20 --bytes 65536 --lock-waits 5
          muxlab calibrate --allocation-cost --malloc-pairs 2000000 --uprobe-pairs 20000 --rounds 5
        """,
        shouldDisplay: false
    )

    @Option(help: "getppid() calls, 0-10000000.") var syscalls = 1000
    @Option(help: "malloc() calls (kept live, then freed), 0-1000000.") var allocations = 500
    @Option(help: "1 ms sleeps (voluntary switches), 0-10000.") var sleeps = 20
    @Option(help: "Bytes through a socketpair, 0-1073741824.") var bytes = 65536
    @Option(help: "Contended pthread mutex waits, 0-10000.") var lockWaits = 5
    @Flag(help: "Also fork a child that makes the same getppid() calls.") var fork = false
    @Flag(help: "Start at once instead of waiting for SIGUSR1.") var noWait = false
    @Option(help: "Only time this many malloc(64)+free pairs per round, 0-100000000 (0: the work above; with --allocation-cost: pairs per round without uprobes, default 2000000).") var mallocPairs = 0
    @Option(help: "Rounds of --malloc-pairs, 1-100.") var rounds = 5
    @Flag(help: "Measure the cost per malloc/free pair of no counting, the preloaded counter and the libc uprobes.") var allocationCost = false
    @Option(help: "Pairs per round under the uprobes with --allocation-cost (two traps per pair), 1-10000000.") var uprobePairs = 20_000

    func validate() throws {
        try check(syscalls, 0...10_000_000, "--syscalls")
        try check(allocations, 0...1_000_000, "--allocations")
        try check(sleeps, 0...10_000, "--sleeps")
        try check(bytes, 0...(1 << 30), "--bytes")
        try check(lockWaits, 0...10_000, "--lock-waits")
        try check(mallocPairs, 0...100_000_000, "--malloc-pairs")
        try check(rounds, 1...100, "--rounds")
        try check(uprobePairs, 1...10_000_000, "--uprobe-pairs")
    }

    func run() throws {
        if allocationCost { return try measureAllocationCost() }
        if !noWait {
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGUSR1)
            sigprocmask(SIG_BLOCK, &set, nil)
            writeLine("ready pid=\(getpid())")
            var sig: Int32 = 0
            sigwait(&set, &sig)
        }
        if mallocPairs > 0 {
            let ns = AllocationCost.timePairs(mallocPairs, rounds: rounds)
            writeLine("done pairs=\(mallocPairs) ns=\(ns.map(String.init).joined(separator: ","))")
            return
        }
        var child: pid_t = 0
        if fork {
            child = Glibc.fork()
            if child == 0 {
                for _ in 0..<syscalls { _ = getppid() }
                _exit(0)
            }
        }
        for _ in 0..<syscalls { _ = getppid() }
        var sink = 0
        let blocks = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: max(1, allocations))
        for i in 0..<allocations {
            let p = malloc(16 + (i % 64) * 8)
            p?.storeBytes(of: UInt8(truncatingIfNeeded: i), as: UInt8.self)
            blocks[i] = p
        }
        for i in 0..<allocations {
            sink &+= Int(blocks[i]?.load(as: UInt8.self) ?? 0)
            free(blocks[i])
        }
        blocks.deallocate()
        for _ in 0..<sleeps { usleep(1000) }
        try pump(bytes)
        contend(lockWaits)
        if child > 0 {
            var st: Int32 = 0
            waitpid(child, &st, 0)
        }
        writeLine("done sink=\(sink)")
    }

    /// Each way in its own child, one after another; prints ns per pair (best round, median) and
    /// what each way counted, then the added cost against no counting.
    func measureAllocationCost() throws {
        let pairs = mallocPairs > 0 ? mallocPairs : 2_000_000
        let muxlab = currentExecutablePath()
        writeLine("allocation cost: malloc(64)+free pairs in a tight loop, \(rounds) rounds per way, ns per pair (best round, median)")
        var baseline = Double.nan
        var failed = false
        for way in AllocationCounting.allCases {
            let n = way == .uprobes ? uprobePairs : pairs
            let cost: AllocationCost
            do {
                cost = try AllocationCost.measure(way, muxlab: muxlab, pairs: n, rounds: rounds)
            } catch {
                // The other ways' figures stand; this one is named, and the exit status says it failed.
                writeLine("  " + padded(way.rawValue, 10) + " not measured: \(error)")
                failed = true
                continue
            }
            if way == .none { baseline = cost.best }
            let added = way == .none ? "" : "  +\(oneDecimal(cost.best - baseline)) ns per pair"
            let counted = cost.counted.map { "  counted \($0.mallocs) allocations, \($0.frees) frees for \(n * rounds) pairs" } ?? ""
            writeLine("  " + padded(way.rawValue, 10) + padded(oneDecimal(cost.best), 10, left: true) + " ns (\(oneDecimal(cost.median)))"
                      + "  \(n) pairs per round" + added + counted)
        }
        if failed { throw ExitCode(1) }
    }

    func oneDecimal(_ x: Double) -> String { "\((x * 10).rounded() / 10)" }

    func padded(_ s: String, _ width: Int, left: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, width - s.count))
        return left ? fill + s : s + fill
    }

    /// Writes `count` bytes into one end of a socketpair and reads them from the other.
    func pump(_ count: Int) throws {
        guard count > 0 else { return }
        var fds: [Int32] = [0, 0]
        try syscallOrThrow("socketpair") { socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) }
        defer { close(fds[0]); close(fds[1]) }
        var buf = [UInt8](repeating: 7, count: 16384)
        var left = count
        while left > 0 {
            let n = min(left, buf.count)
            let w = buf.withUnsafeBytes { write(fds[0], $0.baseAddress, n) }
            guard w > 0 else { throw SystemError("write", errno: errno) }
            var got = 0
            while got < w {
                let r = buf.withUnsafeMutableBytes { read(fds[1], $0.baseAddress, w - got) }
                guard r > 0 else { throw SystemError("read", errno: errno) }
                got += r
            }
            left -= w
        }
    }

    /// `count` times: this thread holds the mutex while a second thread blocks on it (a futex wait).
    func contend(_ count: Int) {
        guard count > 0 else { return }
        let shared = Contention(rounds: count)
        var thread = pthread_t()
        pthread_create(&thread, nil, { arg in
            let c = Unmanaged<Contention>.fromOpaque(arg!).takeUnretainedValue()
            for _ in 0..<c.rounds {
                sem_wait(&c.holding)           // the main thread holds the mutex now
                pthread_mutex_lock(&c.mutex)   // blocks: contended
                pthread_mutex_unlock(&c.mutex)
                sem_post(&c.released)
            }
            return nil
        }, Unmanaged.passUnretained(shared).toOpaque())
        for _ in 0..<count {
            pthread_mutex_lock(&shared.mutex)
            sem_post(&shared.holding)
            usleep(3000)                       // long enough for the other thread to block
            pthread_mutex_unlock(&shared.mutex)
            sem_wait(&shared.released)
        }
        pthread_join(thread, nil)
    }
}

final class Contention {
    let rounds: Int
    var mutex = pthread_mutex_t()
    var holding = sem_t()
    var released = sem_t()
    init(rounds: Int) {
        self.rounds = rounds
        pthread_mutex_init(&mutex, nil)
        sem_init(&holding, 0, 0)
        sem_init(&released, 0, 0)
    }
}
