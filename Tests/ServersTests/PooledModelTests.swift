#if canImport(Glibc)
import Glibc
#endif
import Kernel
import Servers
import TestSupport
import Testing

/// Models 5-9 (the reactor as I/O thread, with workers and with several loops) and the killer
/// toggles K1, K3 and H2, observed through what real clients receive and the servers' counters.
@Suite("Reactor + threads models and killer toggles", .serialized)
struct PooledModelTests {
    static let threadedModels = ["reactor-thread-per-request", "reactor-worker", "reactor-pool", "multi-reactor", "multi-reactor-pool"]
    static let request = Array("GET / HTTP/1.1\r\nHost: muxlab\r\n\r\n".utf8)

    /// The server's counters (SIGUSR1 -> one `stats ...` line).
    func stats(_ server: ChildProcess) throws -> [String: Int] { try TestSupport.serverStats(server) }

    /// Loops publish their counters after each wake-up, a moment after the answers left:
    /// ask again until `done` holds (or give up after 50 tries and return the last line).
    func stats(_ server: ChildProcess, until done: ([String: Int]) -> Bool) throws -> [String: Int] {
        var last = try stats(server)
        for _ in 0..<50 where !done(last) {
            usleep(100_000)
            last = try stats(server)
        }
        return last
    }

    /// The answer to `message` for the wire protocol.
    func expectedAnswer(_ wire: String, _ message: [UInt8]) -> [UInt8] {
        wire == "http" ? HTTPResponse.bytes : message
    }

    /// `clients` connections each send `rounds` requests; every round all of them have a request
    /// in flight at once. True when every answer came back byte-exact.
    func roundTrips(_ endpoint: Endpoint, wire: String, clients: Int = 20, rounds: Int = 5) throws -> Bool {
        let fds = try (0..<clients).map { _ in try TestSupport.connect(endpoint) }
        defer { fds.forEach { close($0) } }
        var allGood = true
        for round in 0..<rounds {
            var sent: [[UInt8]] = []
            for (i, fd) in fds.enumerated() {
                let message = wire == "http" ? PooledModelTests.request : (0..<(100 + i)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ i &+ round) }
                sent.append(message)
                if !TestSupport.writeAll(fd, message) { allGood = false }
            }
            for (i, fd) in fds.enumerated() {
                let want = expectedAnswer(wire, sent[i])
                let got = TestSupport.readExactly(fd, want.count)
                if got != want { allGood = false }
            }
        }
        return allGood
    }

    /// Echoes `payload` written from another thread while this one reads.
    func echoLarge(_ endpoint: Endpoint, _ payload: [UInt8]) throws -> [UInt8] {
        let fd = try TestSupport.connect(endpoint)
        defer { close(fd) }
        var writer = pthread_t()
        let job = Unmanaged.passRetained(PayloadWriter(fd: fd, bytes: payload))
        pthread_create(&writer, nil, { arg in
            let job = Unmanaged<PayloadWriter>.fromOpaque(arg!).takeRetainedValue()
            _ = TestSupport.writeAll(job.fd, job.bytes)
            return nil
        }, job.toOpaque())
        let echoed = TestSupport.readExactly(fd, payload.count)
        pthread_join(writer, nil)
        return echoed
    }

    @Test("models 5-9 answer 20 concurrent clients, 5 requests each; stats on SIGUSR1; SIGTERM exits 0",
          arguments: threadedModels, ["echo", "http"])
    func concurrentRoundTrips(model: String, wire: String) throws {
        let (server, endpoint) = try TestSupport.startServer(["--model", model, "--protocol", wire])
        defer { server.stop() }
        #expect(try roundTrips(endpoint, wire: wire), "\(model)/\(wire): a wrong or missing answer")
        let offloaded = model != "multi-reactor"
        let s = try stats(server) {
            ($0["accepted"] ?? 0) >= 20 && (!offloaded || ($0["tasks"] ?? 0) >= 100) && (wire != "http" || ($0["http_requests"] ?? 0) >= 100)
        }
        #expect(s["accepted"] == 20)
        #expect(s["refused"] == 0)
        if wire == "http" { #expect((s["http_requests"] ?? 0) == 100) }
        if offloaded {
            // Each request (each echo chunk) went to a worker: at least one task per request.
            #expect((s["tasks"] ?? 0) >= 100, "tasks=\(s["tasks"] ?? -1)")
        } else {
            #expect(s["tasks"] == 0)
        }
        switch model {
        case "reactor-thread-per-request": #expect((s["threads_started"] ?? 0) >= 100, "one thread per request")
        case "reactor-worker": #expect(s["threads_started"] == 1)
        case "reactor-pool", "multi-reactor-pool": #expect(s["threads_started"] == 4)
        default: #expect(s["threads_started"] == 0)
        }
        server.signal(SIGTERM)
        let last = server.readLine(timeout: 5)
        #expect(last?.hasPrefix("stats ") == true)
        #expect(server.wait(timeout: 5) == .exited(0))
    }

    @Test("multiple reactors serve 40 connections, through an acceptor, SO_REUSEPORT listeners or one listener every loop pulls from (L1)",
          arguments: ["acceptor", "reuseport", "shared-epoll", "epoll-exclusive"], ["multi-reactor", "multi-reactor-pool"])
    func multipleReactorsServe(accept: String, model: String) throws {
        let (server, endpoint) = try TestSupport.startServer(["--model", model, "--reactors", "3", "--accept", accept])
        defer { server.stop() }
        #expect(try roundTrips(endpoint, wire: "echo", clients: 40, rounds: 3))
        let s = try stats(server) { ($0["accepted"] ?? 0) >= 40 }
        #expect(s["accepted"] == 40)
        #expect(s["refused"] == 0)
        #expect((s["waits"] ?? 0) > 0)
    }

    @Test("L1: with --accept shared-epoll two loops share one listener: each client accepted once, heavy connections answer correctly",
          arguments: ["epoll-lt", "epoll-et"])
    func sharedListenerLoopsPull(io: String) throws {
        let (server, endpoint) = try TestSupport.startServer(["--model", "multi-reactor", "--reactors", "2", "--io", io, "--accept", "shared-epoll",
                                                              "--heavy-share", "0.5", "--heavy-us", "200"])
        defer { server.stop() }
        #expect(try roundTrips(endpoint, wire: "echo", clients: 40, rounds: 3))
        let s = try stats(server) { ($0["accepted"] ?? 0) >= 40 }
        #expect(s["accepted"] == 40)
        #expect(s["refused"] == 0)
    }

    @Test("L1: --heavy-share and --heavy-us are refused apart, out of range, or on a model that computes off its loop, naming the value")
    func heavyRefusals() throws {
        let cases: [([String], String)] = [
            (["--heavy-share", "0.1"], "--heavy-us 0"),
            (["--heavy-us", "100"], "--heavy-share 0.0"),
            (["--heavy-share", "1.5", "--heavy-us", "100"], "--heavy-share 1.5 is out of range"),
            (["--model", "reactor-pool", "--heavy-share", "0.1", "--heavy-us", "100"], "--model reactor-pool"),
            (["--model", "multi-reactor", "--io", "poll", "--accept", "epoll-exclusive"], "allowed: acceptor, reuseport, shared-epoll"),
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

    @Test("reactor-pool with --compute-us 200 answers correctly through either queue (K4)",
          arguments: ["global-lock", "per-worker"], ["echo", "http"])
    func poolQueues(queue: String, wire: String) throws {
        let (server, endpoint) = try TestSupport.startServer(["--model", "reactor-pool", "--workers", "3", "--queue", queue,
                                                              "--compute-us", "200", "--protocol", wire])
        defer { server.stop() }
        #expect(try roundTrips(endpoint, wire: wire))
        let s = try stats(server) { ($0["tasks"] ?? 0) >= 100 }
        #expect((s["tasks"] ?? 0) >= 100)
        #expect(s["threads_started"] == 3)
    }

    @Test("multi-reactor-pool shares its pool through per-worker queues too")
    func multiReactorPoolPerWorker() throws {
        let (server, endpoint) = try TestSupport.startServer(["--model", "multi-reactor-pool", "--reactors", "2", "--workers", "3",
                                                              "--queue", "per-worker", "--compute-us", "50", "--protocol", "http"])
        defer { server.stop() }
        #expect(try roundTrips(endpoint, wire: "http"))
        let s = try stats(server) { ($0["http_requests"] ?? 0) >= 100 }
        #expect(s["http_requests"] == 100)
        #expect(s["tasks"] == 100)
    }

    @Test("K1: --copy staged and --copy splice echo 1 MiB byte-exactly",
          arguments: ["staged", "splice"], ["reactor", "reactor-pool", "multi-reactor", "multi-reactor-pool"])
    func copyModesEchoExactly(copy: String, model: String) throws {
        for io in ["epoll-et", "epoll-lt"] {
            let (server, endpoint) = try TestSupport.startServer(["--model", model, "--io", io, "--copy", copy])
            defer { server.stop() }
            let payload = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ $0 >> 11) }
            let echoed = try echoLarge(endpoint, payload)
            #expect(echoed.count == payload.count, "\(model) \(io) --copy \(copy)")
            #expect(echoed == payload, "\(model) \(io) --copy \(copy)")
        }
    }

    @Test("K1: --copy splice with --protocol http is refused, naming what it needs")
    func spliceNeedsEcho() throws {
        let child = try ChildProcess(executable: try TestSupport.muxlab,
                                     arguments: ["serve", "--port", "0", "--copy", "splice", "--protocol", "http"],
                                     stderrPath: "/tmp/muxlab-test-\(getpid())-splice.err")
        defer { _ = child.stop() }
        #expect(child.readLine(timeout: 10) == nil, "no ready line")
        let status = child.wait(timeout: 10)
        #expect(status != nil && status != .exited(0))
        #expect(child.stderrTail(3).joined().contains("--protocol echo"))
    }

    @Test("K3: --alloc per-request answers correctly", arguments: ["reactor", "reactor-pool", "multi-reactor-pool"], ["echo", "http"])
    func perRequestAllocation(model: String, wire: String) throws {
        let (server, endpoint) = try TestSupport.startServer(["--model", model, "--protocol", wire, "--alloc", "per-request"])
        defer { server.stop() }
        #expect(try roundTrips(endpoint, wire: wire))
    }

    @Test("K1 + K3 together: staged copies into a per-request buffer still answer correctly", arguments: ["echo", "http"])
    func stagedPerRequest(wire: String) throws {
        let (server, endpoint) = try TestSupport.startServer(["--model", "reactor-worker", "--protocol", wire,
                                                              "--copy", "staged", "--alloc", "per-request"])
        defer { server.stop() }
        #expect(try roundTrips(endpoint, wire: wire))
    }

    @Test("H2: --close server-first: the client sees end of stream right after its first answer",
          arguments: ["reactor", "reactor-worker", "multi-reactor", "multi-reactor-pool"], ["echo", "http"])
    func serverClosesFirst(model: String, wire: String) throws {
        let (server, endpoint) = try TestSupport.startServer(["--model", model, "--protocol", wire, "--close", "server-first"])
        defer { server.stop() }
        let fd = try TestSupport.connect(endpoint)
        defer { close(fd) }
        let message = wire == "http" ? PooledModelTests.request : Array("first".utf8)
        #expect(TestSupport.writeAll(fd, message))
        let want = expectedAnswer(wire, message)
        #expect(TestSupport.readExactly(fd, want.count) == want)
        var byte: UInt8 = 0
        #expect(read(fd, &byte, 1) == 0, "end of stream after the first answer")
        let s = try stats(server) { ($0["closed"] ?? 0) >= 1 }
        #expect(s["closed"] == 1)
    }

    @Test("off the loop, answers keep their order: 200 pipelined HTTP requests at odd boundaries, and 4 MiB of echo",
          arguments: threadedModels, ["epoll-et", "epoll-lt", "poll"])
    func orderAndBackpressure(model: String, io: String) throws {
        let (http, httpEndpoint) = try TestSupport.startServer(["--model", model, "--io", io, "--protocol", "http"])
        defer { http.stop() }
        let fd = try TestSupport.connect(httpEndpoint)
        defer { close(fd) }
        let all = Array((0..<200).map { _ in PooledModelTests.request }.joined())
        var at = 0
        var step = 1
        while at < all.count {
            let n = min(step, all.count - at)
            #expect(TestSupport.writeAll(fd, Array(all[at..<at + n])))
            at += n
            step = step % 97 + 13
        }
        let expected = Array((0..<200).map { _ in HTTPResponse.bytes }.joined())
        #expect(TestSupport.readExactly(fd, expected.count) == expected, "\(model) \(io): 200 pipelined answers")

        let (echo, echoEndpoint) = try TestSupport.startServer(["--model", model, "--io", io])
        defer { echo.stop() }
        let payload = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 29 &+ $0 >> 13) }
        #expect(try echoLarge(echoEndpoint, payload) == payload, "\(model) \(io): 4 MiB echo")
    }

    @Test("clients that reset while their request is with a worker: late answers are dropped, the rest are served",
          arguments: ["reactor-thread-per-request", "reactor-pool", "multi-reactor-pool"], ["epoll-et", "epoll-lt", "poll"])
    func resetWhileComputing(model: String, io: String) throws {
        // Each request sleeps 100 ms in its worker: the resets land while it is out.
        var arguments = ["--model", model, "--io", io, "--block-us", "100000"]
        if model != "reactor-thread-per-request" { arguments += ["--workers", "4"] }
        let (server, endpoint) = try TestSupport.startServer(arguments)
        defer { server.stop() }
        for _ in 0..<10 {
            let fd = try TestSupport.connect(endpoint)
            #expect(TestSupport.writeAll(fd, Array("gone".utf8)))
            usleep(10_000)
            // SO_LINGER 0: close sends RST, so the server meets the error with the task still out.
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            close(fd)
        }
        // New clients likely reuse the freed descriptors while the old tasks are still coming back.
        #expect(try roundTrips(endpoint, wire: "echo", clients: 20, rounds: 2))
        let s = try stats(server) { ($0["closed"] ?? 0) >= 30 }
        #expect(s["accepted"] == 30)
        #expect(s["closed"] == 30)
    }

    @Test("H2: by default (client-first) the server keeps the connection after an answer")
    func clientClosesFirstByDefault() throws {
        let (server, endpoint) = try TestSupport.startServer(["--model", "reactor-pool", "--protocol", "http"])
        defer { server.stop() }
        #expect(try roundTrips(endpoint, wire: "http", clients: 1, rounds: 3))
    }
}

final class PayloadWriter {
    let fd: Int32
    let bytes: [UInt8]
    init(fd: Int32, bytes: [UInt8]) {
        self.fd = fd
        self.bytes = bytes
    }
}
