#if canImport(Glibc)
import Glibc
#endif
import Kernel
import Servers
import TestSupport
import Testing

/// Models 1-3 as real processes: iterative (C1), thread- and process-per-connection (C2) and
/// prefork with each way of sharing the listener (C3), plus the H2 and H3 options they honour.
@Suite("Blocking models 1-3", .serialized)
struct BlockingModelTests {
    static let models: [[String]] = [
        ["--model", "iterative"],
        ["--model", "thread-per-connection"],
        ["--model", "process-per-connection"],
        ["--model", "prefork"],
        ["--model", "prefork", "--io", "epoll-et"],
    ]
    static let request = Array("GET / HTTP/1.1\r\nHost: muxlab\r\n\r\n".utf8)

    // MARK: helpers

    /// `muxlab serve` on a free port, with its ready line.
    func start(_ arguments: [String]) throws -> (server: ChildProcess, endpoint: Endpoint, ready: [String: String]) {
        let (child, endpoint, line) = try TestSupport.startServerWithReadyLine(arguments)
        return (child, endpoint, TestSupport.keyValues(line))
    }

    /// The server's counters now: SIGUSR1 to the supervisor, which answers from sigwait.
    func stats(_ server: ChildProcess) throws -> [String: Int] { try TestSupport.serverStats(server) }

    /// The server's child processes.
    func childPids(_ pid: Int32) -> [Int32] { ProcessStats.processTree(pid).filter { $0 != pid } }

    /// A pid that no longer exists (neither running nor an unreaped zombie).
    func gone(_ pid: Int32) -> Bool { access("/proc/\(pid)", F_OK) != 0 }

    /// True when the peer's next read is end of stream (within the socket's 10 s receive timeout).
    func seesEndOfStream(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        return read(fd, &byte, 1) == 0
    }

    func pattern(_ count: Int, seed: Int = 0) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: ($0 &+ seed) &* 31 &+ $0 >> 9) } }

    func responses(_ count: Int) -> [UInt8] { Array(Array(repeating: HTTPResponse.bytes, count: count).joined()) }

    /// One request/answer exchange, checked byte for byte.
    func exchange(_ fd: Int32, wire: String, round: Int) -> Bool {
        if wire == "echo" {
            let message = pattern(1 + round * 1500, seed: round)
            return TestSupport.writeAll(fd, message) && TestSupport.readExactly(fd, message.count) == message
        }
        switch round % 3 {
        case 0:
            return TestSupport.writeAll(fd, Self.request) && TestSupport.readExactly(fd, HTTPResponse.bytes.count) == HTTPResponse.bytes
        case 1:
            // Three pipelined in one write: three answers.
            let three = Array(Array(repeating: Self.request, count: 3).joined())
            return TestSupport.writeAll(fd, three) && TestSupport.readExactly(fd, 3 * HTTPResponse.bytes.count) == responses(3)
        default:
            // A request split across two writes: the partial one is kept until the rest comes.
            guard TestSupport.writeAll(fd, Array(Self.request[0..<10])) else { return false }
            usleep(20_000)
            return TestSupport.writeAll(fd, Array(Self.request[10...])) && TestSupport.readExactly(fd, HTTPResponse.bytes.count) == HTTPResponse.bytes
        }
    }

    // MARK: every model, both protocols

    @Test("verified round trips, several per connection; stats count the connections; SIGTERM exits 0 leaving no child",
          arguments: models, ["echo", "http"])
    func roundTrips(model: [String], wire: String) throws {
        let (server, endpoint, _) = try start(model + ["--protocol", wire])
        defer { server.stop() }
        var children: [Int32] = []
        for _ in 0..<2 {
            let fd = try TestSupport.connect(endpoint)
            for round in 0..<4 {
                #expect(exchange(fd, wire: wire, round: round), "\(model) \(wire): round \(round) answered wrongly")
            }
            children += childPids(server.pid)
            close(fd)
        }
        #expect(try TestSupport.eventually(5) { let s = try stats(server); return s["accepted"] == 2 && s["closed"] == 2 },
                "\(model) \(wire): \((try? stats(server)) ?? [:])")
        if wire == "http" { #expect(try stats(server)["http_requests"] == 2 * (1 + 3 + 1 + 1)) }
        let forks = model.contains("process-per-connection") || model.contains("prefork")
        #expect(forks ? !children.isEmpty : children.isEmpty, "\(model): children seen \(children)")
        if model.contains("process-per-connection") {
            // Each connection's child is reaped when it ends: no zombie waits for the stop.
            #expect(TestSupport.eventually(5) { children.allSatisfy(gone) }, "unreaped children: \(children.filter { !gone($0) })")
        }
        let status = server.stop()
        #expect(status == .exited(0), "\(model) \(wire): \(status) \(server.stderrTail(3))")
        #expect(server.readRemaining(timeout: 2).contains { $0.hasPrefix("stats ") }, "no final stats line")
        #expect(TestSupport.eventually(2) { children.allSatisfy(gone) }, "children left behind: \(children.filter { !gone($0) })")
    }

    // MARK: C3

    @Test("C3: prefork answers 40 short connections with each way of sharing the listener",
          arguments: [("blocking", "blocking"), ("blocking", "reuseport"), ("epoll-et", "shared-epoll"),
                      ("poll", "shared-epoll"), ("epoll-lt", "epoll-exclusive"), ("epoll-et", "epoll-exclusive"),
                      ("epoll-et", "reuseport")])
    func preforkAcceptModes(io: String, accept: String) throws {
        let (server, endpoint, ready) = try start(["--model", "prefork", "--io", io, "--accept", accept, "--protocol", "http"])
        defer { server.stop() }
        #expect(ready["accept"] == accept && ready["workers"] == "4")
        #expect(childPids(server.pid).count == 4)
        var answered = 0
        for _ in 0..<40 {
            let fd = try TestSupport.connect(endpoint)
            if TestSupport.writeAll(fd, Self.request), TestSupport.readExactly(fd, HTTPResponse.bytes.count) == HTTPResponse.bytes {
                answered += 1
            }
            close(fd)
        }
        // With reuseport a listener nobody accepts on would strand about a fifth of these.
        #expect(answered == 40, "\(io) \(accept): \(answered) of 40 answered")
        #expect(try TestSupport.eventually(5) { try stats(server)["accepted"] == 40 }, "\((try? stats(server)) ?? [:])")
        let children = childPids(server.pid)
        #expect(server.stop() == .exited(0))
        #expect(TestSupport.eventually(2) { children.allSatisfy(gone) })
    }

    @Test("C3: a prefork child that dies is reported once on stderr; the others go on serving")
    func preforkChildDeathIsReported() throws {
        let (server, endpoint, _) = try start(["--model", "prefork", "--workers", "2"])
        defer { server.stop() }
        let children = childPids(server.pid)
        #expect(children.count == 2)
        guard let victim = children.first else { return }
        kill(victim, SIGKILL)
        let reported = TestSupport.eventually(5) {
            server.stderrTail(5).contains { $0.contains("prefork child") && $0.contains("(pid \(victim)) died") }
        }
        #expect(reported, "stderr: \(server.stderrTail(5))")
        let fd = try TestSupport.connect(endpoint)
        defer { close(fd) }
        #expect(exchange(fd, wire: "echo", round: 1))
        #expect(server.stderrTail(10).filter { $0.contains("died") }.count == 1)
    }

    // MARK: M8

    @Test("M8: two preforked select children hold 1,500 connections between them: a full one leaves clients to the other")
    func preforkSelectPastFDSetSize() throws {
        _ = DescriptorLimit.raiseToHard()
        let (server, endpoint, _) = try start(["--model", "prefork", "--io", "select", "--workers", "2"])
        defer { server.stop() }
        var fds: [Int32] = []
        defer { fds.forEach { close($0) } }
        for _ in 0..<1500 { fds.append(try TestSupport.connect(endpoint)) }
        #expect(try TestSupport.eventually(10) { try stats(server)["accepted"] == 1500 }, "\((try? stats(server)) ?? [:])")
        #expect(try stats(server)["refused"] == 0, "a select child refused clients its sibling could hold")
        #expect(exchange(fds[0], wire: "echo", round: 0) && exchange(fds[1499], wire: "echo", round: 0))
    }

    @Test("M8: a prefork select child at FD_SETSIZE leaves clients queued, refusing none, and takes them as connections close")
    func preforkSelectChildYieldsListener() throws {
        _ = DescriptorLimit.raiseToHard()
        let (server, endpoint, _) = try start(["--model", "prefork", "--io", "select", "--workers", "1"])
        defer { server.stop() }
        var fds: [Int32] = []
        defer { fds.forEach { close($0) } }
        for _ in 0..<1100 { fds.append(try TestSupport.connect(endpoint)) }
        // It stops below 1,024 (stdio, the listener and its own pipes hold the lowest descriptors).
        #expect(try TestSupport.eventually(10) { try (stats(server)["accepted"] ?? 0) > 1000 })
        usleep(300_000)
        let held = try stats(server)["accepted"] ?? 0
        #expect(held < 1024 && held > 1000, "accepted \(held)")
        #expect(try stats(server)["refused"] == 0, "past FD_SETSIZE a prefork child must leave clients queued, not refuse them")
        for fd in fds.prefix(100) { close(fd) }
        fds.removeFirst(100)
        #expect(try TestSupport.eventually(10) { try stats(server)["accepted"] == 1100 }, "\((try? stats(server)) ?? [:])")
        #expect(try stats(server)["refused"] == 0)
        #expect(exchange(fds[fds.count - 1], wire: "echo", round: 1), "the last client, queued while the child was full, is served")
    }

    // MARK: C1, C2

    @Test("C1: iterative serves one client at a time: a second keep-alive client waits until the first closes")
    func iterativeStarvesSecondClient() throws {
        let (server, endpoint, _) = try start(["--model", "iterative"])
        defer { server.stop() }
        let first = try TestSupport.connect(endpoint)
        #expect(exchange(first, wire: "echo", round: 0))
        let second = try TestSupport.connect(endpoint)
        defer { close(second) }
        #expect(TestSupport.writeAll(second, [5, 6, 7]))
        #expect(TestSupport.readWithin(second, ms: 300).isEmpty, "the server is still serving the first client")
        #expect(exchange(first, wire: "echo", round: 1), "the first client is still served meanwhile")
        close(first)
        #expect(TestSupport.readWithin(second, ms: 5000, max: 3) == [5, 6, 7])
    }

    @Test("C2: thread-per-connection serves 50 concurrent clients, one thread each")
    func threadPerConnectionConcurrency() throws {
        let (server, endpoint, _) = try start(["--model", "thread-per-connection", "--protocol", "http"])
        defer { server.stop() }
        let fds = try (0..<50).map { _ in try TestSupport.connect(endpoint) }
        defer { fds.forEach { close($0) } }
        // Every client is connected before any is answered: a server that served them in turn would stall here.
        for fd in fds { #expect(TestSupport.writeAll(fd, Self.request)) }
        let answered = fds.filter { TestSupport.readExactly($0, HTTPResponse.bytes.count) == HTTPResponse.bytes }.count
        #expect(answered == 50)
        let s = try stats(server)
        #expect((s["threads_started"] ?? 0) >= 50, "\(s)")
        #expect(s["accepted"] == 50)
    }

    @Test("T1: --thread-stack default gives each connection's thread glibc's stack (the ready line says its size) and serves 50 clients")
    func threadStackDefault() throws {
        let (server, endpoint, ready) = try start(["--model", "thread-per-connection", "--thread-stack", "default"])
        defer { server.stop() }
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_STACK.rawValue), &limit)
        let expected = limit.rlim_cur == rlim_t.max ? 2 << 20 : Int(limit.rlim_cur)
        #expect(ready["thread_stack"] == String(expected), "\(ready)")
        let fds = try (0..<50).map { _ in try TestSupport.connect(endpoint) }
        defer { fds.forEach { close($0) } }
        #expect(fds.allSatisfy { exchange($0, wire: "echo", round: 0) })
        #expect((try stats(server)["threads_started"] ?? 0) >= 50)
    }

    // MARK: H2, H3

    /// The variants whose connections a `BlockingSession` serves (prefork's reactors have their own rules).
    static let blockingModels = models.filter { !$0.contains("--io") }

    @Test("H2: --close server-first ends the connection right after the first answer", arguments: blockingModels)
    func serverFirstClose(model: [String]) throws {
        for wire in ["echo", "http"] {
            let (server, endpoint, _) = try start(model + ["--protocol", wire, "--close", "server-first"])
            defer { server.stop() }
            let fd = try TestSupport.connect(endpoint)
            defer { close(fd) }
            #expect(exchange(fd, wire: wire, round: 0))
            #expect(seesEndOfStream(fd), "\(model) \(wire): no end of stream after the first answer")
        }
    }

    @Test("H3: --idle-timeout closes a silent client and counts it", arguments: models)
    func idleTimeout(model: [String]) throws {
        let (server, endpoint, _) = try start(model + ["--idle-timeout", "0.2s"])
        defer { server.stop() }
        let fd = try TestSupport.connect(endpoint)
        defer { close(fd) }
        #expect(exchange(fd, wire: "echo", round: 1), "served before falling silent")
        #expect(seesEndOfStream(fd), "\(model): the idle client was not closed")
        #expect(try TestSupport.eventually(5) { (try stats(server)["idle_closed"] ?? 0) >= 1 })
    }

    // MARK: refusals

    @Test("combinations the blocking models cannot run are refused, naming the value")
    func badCombinations() throws {
        let cases: [([String], String)] = [
            (["--model", "prefork", "--io", "epoll-et", "--accept", "blocking"], "--accept blocking"),
            (["--model", "prefork", "--io", "blocking", "--accept", "shared-epoll"], "--accept shared-epoll"),
            (["--model", "prefork", "--io", "poll", "--accept", "epoll-exclusive"], "--accept epoll-exclusive"),
            (["--model", "iterative", "--io", "epoll-et"], "epoll-et"),
            (["--model", "thread-per-connection", "--io", "poll"], "poll"),
            (["--model", "process-per-connection", "--workers", "2"], "--workers 2"),
            (["--model", "iterative", "--accept", "reuseport"], "--accept"),
            (["--model", "prefork", "--io", "io_uring"], "io_uring"),
            (["--model", "thread-per-connection", "--thread-stack", "12"], "--thread-stack 12 is not allowed: default"),
            (["--model", "thread-per-connection", "--thread-stack", "8X"], "16384-1073741824 bytes"),
            (["--model", "thread-per-connection", "--thread-stack", "2048M"], "--thread-stack 2048M"),
            (["--model", "reactor", "--thread-stack", "default"], "--thread-stack applies to thread-per-connection"),
        ]
        for (arguments, needle) in cases {
            let child = try ChildProcess(executable: try TestSupport.muxlab, arguments: ["serve", "--port", "0"] + arguments,
                                         stderrPath: "/tmp/muxlab-test-\(getpid())-\(monotonicNanos()).err")
            let status = child.wait(timeout: 10)
            if status == nil { child.stop() }
            #expect(status != nil && status != .exited(0), "\(arguments) was not refused")
            let message = child.stderrTail(5).joined(separator: " ")
            #expect(message.contains(needle), "\(arguments): \(message)")
        }
    }
}
