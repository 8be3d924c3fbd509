#if canImport(Glibc)
import Glibc
#endif
import Kernel
import Testing

@Suite("Value parsing: durations, CPU lists, endpoints")
struct ParsingTests {
    @Test("durations accept seconds with or without a unit")
    func durations() throws {
        #expect(try parseDuration("5") == 5)
        #expect(try parseDuration("5s") == 5)
        #expect(try parseDuration("250ms") == 0.25)
        #expect(try parseDuration("2m") == 120)
        #expect(try parseDuration("1.5") == 1.5)
        #expect(throws: ValueError.self) { try parseDuration("-1") }
        #expect(throws: ValueError.self) { try parseDuration("soon") }
        #expect(throws: ValueError.self) { try parseDuration("") }
    }

    @Test("CPU lists parse as the kernel writes them and print compactly")
    func cpuLists() throws {
        #expect(try CPUList(parsing: "0").cpus == [0])
        #expect(try CPUList(parsing: "0-3,6").cpus == [0, 1, 2, 3, 6])
        #expect(try CPUList(parsing: "3,1,2").description == "1-3")
        #expect(try CPUList(parsing: "0,2,4-5").description == "0,2,4-5")
        for bad in ["", "a", "3-1", "1-", "-1", "0,,1", "5000"] {
            #expect(throws: ValueError.self) { try CPUList(parsing: bad) }
        }
    }

    @Test("endpoints parse IPv4, IPv6 and localhost, and know loopback")
    func endpoints() throws {
        let v4 = try Endpoint(parsing: "127.0.0.1:8080")
        #expect(v4.port == 8080 && v4.isLoopback)
        #expect(try Endpoint(parsing: "[::1]:9").isLoopback)
        #expect(try Endpoint(parsing: "localhost:80").host == "127.0.0.1")
        #expect(try Endpoint(parsing: "127.5.6.7:80").isLoopback)
        #expect(try !Endpoint(parsing: "10.0.0.1:80").isLoopback)
        for bad in ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "example.com:80", "[::1]80"] {
            #expect(throws: ValueError.self) { try Endpoint(parsing: bad) }
        }
    }
}

@Suite("The syscall wrapper")
struct SyscallTests {
    @Test("EAGAIN is a value, not an error")
    func eagainIsAValue() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        try Sockets.setNonBlocking(fds[0], true)
        var byte: UInt8 = 0
        #expect(try FD.read(fds[0], &byte, 1) == .wouldBlock)
        #expect(try FD.write(fds[1], "z", 1) == .done(1))
        #expect(try FD.read(fds[0], &byte, 1) == .done(1))
    }

    @Test("errors carry the call's name and errno")
    func errorsNameTheCall() {
        var byte: UInt8 = 0
        do {
            _ = try FD.read(-1, &byte, 1)
            Issue.record("read(-1) did not throw")
        } catch let e as SystemError {
            #expect(e.call == "read")
            #expect(e.errno == EBADF)
            #expect(e.description.hasPrefix("read: Bad file descriptor"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test("listening on a busy port says which port and what to do")
    func portInUse() throws {
        let (fd, port) = try Sockets.listen(on: Endpoint(host: "127.0.0.1", port: 0))
        defer { close(fd) }
        do {
            _ = try Sockets.listen(on: Endpoint(host: "127.0.0.1", port: port))
            Issue.record("second listen succeeded")
        } catch let e as ValueError {
            #expect(e.description.contains("port \(port)"))
            #expect(e.description.contains("already in use"))
        }
    }
}

@Suite("Placement and child processes", .serialized)
struct PlacementTests {
    @Test("pinning to a CPU that does not exist names the CPU and the CPUs there are")
    func pinToMissingCPU() {
        do {
            try Placement.pin(CPUList([4000]))
            Issue.record("pinning to CPU 4000 succeeded")
        } catch let e as ValueError {
            #expect(e.description.contains("CPU 4000 does not exist"))
            #expect(e.description.contains("\(Placement.onlineCPUs())"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test("a NUMA node that does not exist is refused with the nodes there are")
    func missingNUMANode() {
        #expect(throws: ValueError.self) { try Placement.bindMemory(toNode: Placement.numaNodeCount + 5) }
    }

    @Test("a child is spawned from an argument list, its stdout read by line, its exit status kept")
    func childProcess() throws {
        let child = try ChildProcess(executable: "/bin/sh", arguments: ["-c", "echo one; echo two; echo err >&2; exit 3"],
                                     stderrPath: "/tmp/muxlab-kernel-test-\(getpid()).err")
        #expect(child.readLine(timeout: 5) == "one")
        #expect(child.readLine(timeout: 5) == "two")
        #expect(child.wait(timeout: 5) == .exited(3))
        #expect(child.stderrTail(1) == ["err"])
    }

    @Test("readLine(timeout: 0) drains the pipe: a child writing one line longer than a pipe holds still exits (wrk's report)")
    func zeroTimeoutDrains() throws {
        // 300,000 bytes on one line: more than the 64 KiB a pipe holds, so the child blocks in write(2)
        // until the reader takes some. The reader polls with timeout 0, as the wrk driver does while it waits.
        let child = try ChildProcess(executable: "/bin/sh", arguments: ["-c", "head -c 300000 /dev/zero | tr '\\0' x; echo; echo done"])
        var lines: [String] = []
        let deadline = monotonicNanos() + 10_000_000_000
        while child.poll() == nil && monotonicNanos() < deadline {
            while let line = child.readLine(timeout: 0) { lines.append(line) }
            usleep(10_000)
        }
        // Before anything reads with a timeout: a reader that never drained would leave it blocked all 10 s.
        #expect(child.poll() == .exited(0), "the child is still blocked writing: the reader did not drain the pipe")
        lines += child.readRemaining(timeout: 1)
        #expect(lines.map(\.count) == [300_000, 4])
        child.stop(grace: 0.1)
    }

    @Test("stop() ends a child that ignores nothing, and its own children with it (process group)")
    func stopKillsTheGroup() throws {
        let child = try ChildProcess(executable: "/bin/sh", arguments: ["-c", "sleep 60 & echo $!; wait"])
        let grandchild = Int32(child.readLine(timeout: 5) ?? "") ?? -1
        #expect(grandchild > 0)
        #expect(child.stop(grace: 2) == .signaled(SIGTERM))
        // The grandchild was in the same group: it is gone (or a zombie awaiting init).
        usleep(100_000)
        let state = readSmallFile("/proc/\(grandchild)/stat").map { $0.split(separator: " ")[2] }
        #expect(state == nil || state == "Z")
    }
}

@Suite("Counter files: the driver reads the server's and the load's counts itself", .serialized)
struct CounterFileTests {
    @Test("what load processes publish in their slots is what the driver's file sums, at once")
    func loadSlots() throws {
        let file = try ServerCounterFile(tag: "test-load-\(UInt32.random(in: 0...UInt32.max))", kind: "load")
        #expect(file.path.hasPrefix("/dev/shm/muxlab-load-\(getpid())-"))
        let one = try LoadCounterSlot(path: file.path, slot: 1), two = try LoadCounterSlot(path: file.path, slot: 2)
        #expect(file.sum(.completed) == 0)
        one.publish(.completed, 1_000)
        two.publish(.completed, 234)
        #expect(file.sum(.completed) == 1_234)
        // A running total is stored, not added: publishing again replaces the slot's value.
        one.publish(.completed, 1_001)
        #expect(file.sum(.completed) == 1_235)
    }

    @Test("a file that is not a counters file is refused, naming it")
    func wrongFile() throws {
        let path = "/dev/shm/muxlab-test-notcounters-\(getpid())"
        close(open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600))
        defer { unlink(path) }
        #expect(throws: SystemError("mmap(load counters \(path))", errno: EINVAL)) { try LoadCounterSlot(path: path, slot: 0) }
    }

    @Test("counters files of a driver that is gone are removed; a running driver's are kept")
    func staleFiles() throws {
        let mine = try ServerCounterFile(tag: "test-stale-\(UInt32.random(in: 0...UInt32.max))")
        let stale = ["/dev/shm/muxlab-counters-\(Int32.max - 1)-cell-2", "/dev/shm/muxlab-load-\(Int32.max - 1)-cell-2"]
        for path in stale { close(open(path, O_RDWR | O_CREAT, 0o600)) }
        // Others that a killed driver left on this machine go too: all of them, at least these two.
        #expect(Set(stale).isSubset(of: Set(ServerCounterFile.removeStale())))
        #expect(stale.allSatisfy { access($0, F_OK) != 0 } && access(mine.path, F_OK) == 0)
    }
}

@Suite("Host CPU times: the steal a window's CPUs lost to other guests")
struct HostCPUTimesTests {
    static let before = """
    cpu  1000 0 500 8000 10 0 20 300 0 0
    cpu0 600 0 300 3900 5 0 10 100 0 0
    cpu1 400 0 200 4100 5 0 10 200 0 0
    intr 12345
    """
    static let after = """
    cpu  1100 0 560 8200 10 0 20 460 0 0
    cpu0 650 0 330 3980 5 0 10 120 0 0
    cpu1 450 0 230 4220 5 0 10 340 0 0
    intr 12400
    """

    @Test("the CPUs' lines are summed; the aggregate line and CPUs not asked for are left out")
    func parsesChosenCPUs() throws {
        let one = try #require(HostCPUTimes.parse(HostCPUTimesTests.before, cpus: [1]))
        #expect(one == HostCPUTimes(total: 400 + 200 + 4100 + 5 + 10 + 200, steal: 200))
        let both = try #require(HostCPUTimes.parse(HostCPUTimesTests.before, cpus: [0, 1]))
        #expect(both.steal == 300 && both.total == 4915 + 4915)
        #expect(HostCPUTimes.parse(HostCPUTimesTests.before, cpus: [7]) == nil)
    }

    @Test("steal share over a window: stolen ticks over all ticks of those CPUs, nil when no tick passed")
    func stealShare() throws {
        let a = try #require(HostCPUTimes.parse(HostCPUTimesTests.before, cpus: [1]))
        let b = try #require(HostCPUTimes.parse(HostCPUTimesTests.after, cpus: [1]))
        // cpu1: 50 + 30 + 120 ticks run or idle, 140 stolen: 140 / 340.
        #expect(abs((b.stealShare(since: a) ?? -1) - 140.0 / 340.0) < 1e-9)
        #expect(a.stealShare(since: a) == nil)
        let c0 = try #require(HostCPUTimes.parse(HostCPUTimesTests.after, cpus: [0])), c0a = try #require(HostCPUTimes.parse(HostCPUTimesTests.before, cpus: [0]))
        #expect(abs((c0.stealShare(since: c0a) ?? -1) - 20.0 / 180.0) < 1e-9)
    }

    @Test("this machine's /proc/stat reads for CPU 0, and its steal share over 50 ms lies in 0...1")
    func readsProcStat() throws {
        let a = try #require(HostCPUTimes.read(cpus: [0]), "/proc/stat has no cpu0 line")
        usleep(50_000)
        let b = try #require(HostCPUTimes.read(cpus: [0]))
        #expect(b.total >= a.total && b.steal >= a.steal)
        if let share = b.stealShare(since: a) { #expect(share >= 0 && share <= 1) }
    }
}
