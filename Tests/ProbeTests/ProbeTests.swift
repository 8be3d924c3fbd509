#if canImport(Glibc)
import Glibc
#endif
import Kernel
import Probe
import TestSupport
import Testing

/// eBPF needs root; CI is root. Elsewhere these tests fail with the reason rather than pass silently.
func requireRoot() throws {
    guard geteuid() == 0 else {
        throw ProbeError("the probe tests load eBPF programs and must run as root (uid \(geteuid())); CI runs them as root")
    }
}

/// Starts `muxlab calibrate` with `arguments`; it waits for SIGUSR1 before working.
func startCalibration(_ arguments: [String]) throws -> ChildProcess {
    let child = try ChildProcess(executable: try TestSupport.muxlab, arguments: ["calibrate"] + arguments)
    guard child.readLine(timeout: 10)?.hasPrefix("ready pid=") == true else {
        child.stop()
        throw ProbeError("calibrate did not start")
    }
    return child
}

/// Lets a calibration child do its work and waits for it to finish.
func runToCompletion(_ child: ChildProcess) throws {
    child.signal(SIGUSR1)
    let line = child.readLine(timeout: 30)
    #expect(line?.hasPrefix("done") == true)
    #expect(child.wait(timeout: 10) == .exited(0))
}

func syscallCount(_ k: KernelCounters, _ name: String) -> UInt64 {
    k.syscalls.values.first { SyscallNames.name(Int($0.id)) == name }?.count ?? 0
}

@Suite("Kernel sampler against known work", .serialized)
struct ProbeCalibrationTests {
    @Test("counts exact syscalls, at least the allocations, sleeps, bytes and lock waits the target made")
    func calibration() throws {
        try requireRoot()
        let n = 1000, m = 500, k = 20, b = 65536, f = 5
        let child = try startCalibration(["--syscalls", "\(n)", "--allocations", "\(m)", "--sleeps", "\(k)",
                                          "--bytes", "\(b)", "--lock-waits", "\(f)"])
        let sampler = try KernelSampler(pid: child.pid, allocations: true)
        #expect(sampler.failures.isEmpty, "\(sampler.failures)")
        let before = try sampler.snapshot()
        try runToCompletion(child)
        let c = KernelCounters(from: before, to: try sampler.snapshot())
        #expect(syscallCount(c, "getppid") == UInt64(n))
        // Slack: the Swift runtime and stdio allocate a little around the loop (documented in the README).
        #expect(c.totals.mallocs >= UInt64(m))
        #expect(c.totals.mallocs <= UInt64(m) + 200)
        #expect(c.totals.frees >= UInt64(m))
        #expect(c.totals.switches_voluntary >= UInt64(k))
        #expect(c.totals.read_bytes >= UInt64(b))
        #expect(c.totals.write_bytes >= UInt64(b))
        #expect(c.totals.futex_wait_calls >= UInt64(f))
        #expect(c.totals.syscall_ns > 0)
    }

    @Test("a noisy neighbour making the same calls is not counted")
    func neighbourNotCounted() throws {
        try requireRoot()
        let target = try startCalibration(["--syscalls", "300", "--allocations", "0", "--sleeps", "0", "--bytes", "0", "--lock-waits", "0"])
        let neighbour = try startCalibration(["--syscalls", "7000", "--allocations", "100", "--sleeps", "0", "--bytes", "0", "--lock-waits", "0"])
        let sampler = try KernelSampler(pid: target.pid, allocations: true)
        let before = try sampler.snapshot()
        try runToCompletion(neighbour)
        try runToCompletion(target)
        let c = KernelCounters(from: before, to: try sampler.snapshot())
        #expect(syscallCount(c, "getppid") == 300)
    }

    @Test("a target that forks is counted with its child")
    func followsForks() throws {
        try requireRoot()
        let child = try startCalibration(["--syscalls", "400", "--allocations", "0", "--sleeps", "0", "--bytes", "0", "--lock-waits", "0", "--fork"])
        let sampler = try KernelSampler(pid: child.pid, allocations: false)
        let before = try sampler.snapshot()
        try runToCompletion(child)
        let c = KernelCounters(from: before, to: try sampler.snapshot())
        #expect(syscallCount(c, "getppid") == 800)
        #expect(c.totals.forks_followed >= 1)
    }

    @Test("the epoll reactor's own count of epoll_wait calls equals the sampler's")
    func crossCheckEpollWaits() throws {
        try requireRoot()
        let (server, endpoint) = try TestSupport.startServer(["--io", "epoll-lt"])
        defer { server.stop() }
        let sampler = try KernelSampler(pid: server.pid, allocations: false)
        let before = try sampler.snapshot()
        // The server waits without a timeout: SIGUSR1 ends the wait entered before the sampler attached.
        server.signal(SIGUSR1)
        let first = server.readLine(timeout: 5) ?? ""
        for _ in 0..<3 {
            let fd = try TestSupport.connect(endpoint)
            for i in 0..<50 {
                #expect(TestSupport.writeAll(fd, [UInt8(i)]))
                #expect(TestSupport.readExactly(fd, 1) == [UInt8(i)])
            }
            close(fd)
        }
        usleep(50_000)
        server.signal(SIGTERM)
        let last = server.readLine(timeout: 5) ?? ""
        #expect(server.wait(timeout: 5) == .exited(0))
        let c = KernelCounters(from: before, to: try sampler.snapshot())
        func waits(_ line: String) -> UInt64? {
            line.split(separator: " ").first { $0.hasPrefix("waits=") }.flatMap { UInt64($0.dropFirst(6)) }
        }
        let w1 = try #require(waits(first))
        let w2 = try #require(waits(last))
        #expect(w2 > w1 + 150)
        #expect(c.totals.epoll_wait_calls == w2 - w1)
    }
}

@Suite("Per-request figures")
struct PerRequestTests {
    @Test("no requests, no per-request figures (empty, never zero)")
    func noRequests() throws {
        try requireRoot()
        let sampler = try KernelSampler(pid: getpid(), allocations: false)
        let a = try sampler.snapshot()
        let k = KernelCounters(from: a, to: try sampler.snapshot())
        #expect(PerRequestFigures(k, requests: 0, allocationsCounted: true) == nil)
        let f = try #require(PerRequestFigures(k, requests: 10, allocationsCounted: false))
        #expect(f.mallocs == nil)
    }

    @Test("a pid that does not exist is a clear error naming it")
    func missingPID() {
        do {
            _ = try KernelSampler(pid: 0x3fff_fff0)
            Issue.record("attached to a pid that does not exist")
        } catch {
            #expect("\(error)".contains("\(0x3fff_fff0)"))
        }
    }

    @Test("syscall names come from the x86_64 table")
    func names() {
        #expect(SyscallNames.name(0) == "read")
        #expect(SyscallNames.name(232) == "epoll_wait")
        #expect(SyscallNames.name(9999) == "syscall_9999")
    }
}
