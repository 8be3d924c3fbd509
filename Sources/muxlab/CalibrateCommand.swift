import ArgumentParser
import Glibc
import Kernel

/// A target with known work, so the sampler's counts can be checked against the truth.
struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Do exactly known work (syscalls, allocations, sleeps, bytes, lock waits) for probe calibration.",
        discussion: """
        Prints `ready pid=<pid>`, waits for SIGUSR1 (attach the probe first), does the work, prints `done`.

        EXAMPLES:
          muxlab calibrate --syscalls 1000 --allocations 500 --sleeps 20 --bytes 65536 --lock-waits 5
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

    func validate() throws {
        try check(syscalls, 0...10_000_000, "--syscalls")
        try check(allocations, 0...1_000_000, "--allocations")
        try check(sleeps, 0...10_000, "--sleeps")
        try check(bytes, 0...(1 << 30), "--bytes")
        try check(lockWaits, 0...10_000, "--lock-waits")
    }

    func run() throws {
        if !noWait {
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGUSR1)
            sigprocmask(SIG_BLOCK, &set, nil)
            writeLine("ready pid=\(getpid())")
            var sig: Int32 = 0
            sigwait(&set, &sig)
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
