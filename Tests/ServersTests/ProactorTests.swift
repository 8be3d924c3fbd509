#if canImport(Glibc)
import Glibc
#endif
import Kernel
import Servers
import TestSupport
import Testing

/// Model 10 over real sockets: io_uring completions must give the same bytes, in the same
/// order, as the readiness models, and stop and report the same way (claim C8's precondition).
@Suite("Proactor (io_uring) over real sockets", .serialized)
struct ProactorTests {
    static let request = Array("GET / HTTP/1.1\r\nHost: muxlab\r\n\r\n".utf8)

    func start(_ arguments: [String]) throws -> (ChildProcess, Endpoint) {
        try TestSupport.startServer(["--model", "proactor"] + arguments)
    }

    func keyValues(_ line: String) -> [String: Int] {
        TestSupport.keyValues(line).compactMapValues { Int($0) }
    }

    /// The server's counters now (SIGUSR1 -> one `stats ...` line, the server goes on).
    func stats(_ server: ChildProcess) throws -> [String: Int] { try TestSupport.serverStats(server) }

    func pattern(_ count: Int, seed: Int = 0) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: ($0 &+ seed) &* 31 &+ $0 >> 9) }
    }

    /// Writes without blocking until done or 100 ms pass with no progress (the server stopped reading).
    func writeUntilStalled(_ fd: Int32, _ bytes: [UInt8]) -> Int {
        try? Sockets.setNonBlocking(fd, true)
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + sent, bytes.count - sent) }
            if n > 0 { sent += n; continue }
            guard n < 0 && (errno == EAGAIN || errno == EINTR) else { break }
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            if poll(&pfd, 1, 100) == 0 { break }
        }
        return sent
    }

    func responses(_ count: Int) -> [UInt8] { Array(Array(repeating: HTTPResponse.bytes, count: count).joined()) }

    @Test("echo: 20 clients open at once, 5 messages each, every answer byte-exact", arguments: [1, 4096])
    func echoRoundTrips(size: Int) throws {
        let (server, endpoint) = try start(["--protocol", "echo"])
        defer { server.stop() }
        var fds: [Int32] = []
        defer { fds.forEach { close($0) } }
        for _ in 0..<20 { fds.append(try TestSupport.connect(endpoint)) }
        for round in 0..<5 {
            // All 20 ask before any answer is read, so the ring has many connections in flight.
            for (i, fd) in fds.enumerated() { #expect(TestSupport.writeAll(fd, pattern(size, seed: i * 7 + round))) }
            for (i, fd) in fds.enumerated() { #expect(TestSupport.readExactly(fd, size) == pattern(size, seed: i * 7 + round)) }
        }
        let s = try stats(server)
        #expect(s["accepted"] == 20)
        #expect(s["closed"] == 0)
    }

    @Test("http: 20 keep-alive clients open at once, 5 requests each, one response per request")
    func httpRoundTrips() throws {
        let (server, endpoint) = try start(["--protocol", "http"])
        defer { server.stop() }
        var fds: [Int32] = []
        defer { fds.forEach { close($0) } }
        for _ in 0..<20 { fds.append(try TestSupport.connect(endpoint)) }
        for _ in 0..<5 {
            for fd in fds { #expect(TestSupport.writeAll(fd, Self.request)) }
            for fd in fds { #expect(TestSupport.readExactly(fd, HTTPResponse.bytes.count) == HTTPResponse.bytes) }
        }
        #expect(try stats(server)["http_requests"] == 100)
    }

    @Test("echoes 1 MiB written in one go, byte-exact: output backs up, reading pauses and resumes")
    func largeEcho() throws {
        let (server, endpoint) = try start(["--protocol", "echo"])
        defer { server.stop() }
        let fd = try TestSupport.connect(endpoint)
        defer { close(fd) }
        let payload = pattern(1 << 20)
        // Write from another thread while this one reads, so both directions fill up.
        var writer = pthread_t()
        let job = Unmanaged.passRetained(BulkWriter(fd: fd, bytes: payload))
        pthread_create(&writer, nil, { arg in
            let job = Unmanaged<BulkWriter>.fromOpaque(arg!).takeUnretainedValue()
            job.ok = TestSupport.writeAll(job.fd, job.bytes)
            return nil
        }, job.toOpaque())
        let echoed = TestSupport.readExactly(fd, payload.count)
        pthread_join(writer, nil)
        #expect(job.takeRetainedValue().ok)
        #expect(echoed.count == payload.count)
        #expect(echoed == payload)
    }

    @Test("100 pipelined HTTP requests in one write are answered in order, then a split request")
    func pipelinedHTTP() throws {
        let (server, endpoint) = try start(["--protocol", "http"])
        defer { server.stop() }
        let fd = try TestSupport.connect(endpoint)
        defer { close(fd) }
        #expect(TestSupport.writeAll(fd, Array(Array(repeating: Self.request, count: 100).joined())))
        #expect(TestSupport.readExactly(fd, responses(100).count) == responses(100))
        // A request split across two recvs is kept, not answered early and not lost.
        #expect(TestSupport.writeAll(fd, Array(Self.request[0..<10])))
        usleep(50_000)
        #expect(TestSupport.writeAll(fd, Array(Self.request[10...])))
        #expect(TestSupport.readExactly(fd, HTTPResponse.bytes.count) == HTTPResponse.bytes)
        #expect(try stats(server)["http_requests"] == 101)
    }

    @Test("SIGUSR1 prints the counters and the server goes on serving")
    func statsOnSIGUSR1() throws {
        let (server, endpoint) = try start(["--protocol", "echo"])
        defer { server.stop() }
        let fd = try TestSupport.connect(endpoint)
        defer { close(fd) }
        #expect(TestSupport.writeAll(fd, Array("ping".utf8)))
        #expect(TestSupport.readExactly(fd, 4) == Array("ping".utf8))
        let s = try stats(server)
        #expect((s["accepted"] ?? 0) > 0)
        #expect((s["events"] ?? 0) > 0)
        #expect((s["waits"] ?? 0) > 0)
        #expect(s["stale"] == 0)
        #expect(server.poll() == nil)
        #expect(TestSupport.writeAll(fd, Array("pong".utf8)))
        #expect(TestSupport.readExactly(fd, 4) == Array("pong".utf8))
    }

    @Test("SIGTERM ends it with exit 0 and a final stats line, clients still connected")
    func stopsOnSIGTERM() throws {
        let (server, endpoint) = try start(["--protocol", "echo"])
        let fd = try TestSupport.connect(endpoint)
        defer { close(fd) }
        #expect(TestSupport.writeAll(fd, Array("ping".utf8)))
        #expect(TestSupport.readExactly(fd, 4) == Array("ping".utf8))
        server.signal(SIGTERM)
        let line = server.readLine(timeout: 5)
        let status = server.wait(timeout: 5)
        if status == nil { server.stop() }
        #expect(status == .exited(0))
        #expect(line?.hasPrefix("stats waits=") == true)
        #expect(line.map(keyValues)?["accepted"] == 1)
    }

    @Test("--close server-first: the server closes after the first answer")
    func serverFirstClose() throws {
        let (server, endpoint) = try start(["--protocol", "http", "--close", "server-first"])
        defer { server.stop() }
        let fd = try TestSupport.connect(endpoint)
        defer { close(fd) }
        #expect(TestSupport.writeAll(fd, Self.request))
        #expect(TestSupport.readExactly(fd, HTTPResponse.bytes.count) == HTTPResponse.bytes)
        var byte: UInt8 = 0
        #expect(read(fd, &byte, 1) == 0)
    }

    @Test("a client that resets with answers owed is closed; no descriptor leaks and the next client is served")
    func resetWithAnswersOwed() throws {
        let (server, endpoint) = try start(["--protocol", "http"])
        defer { server.stop() }
        let baseline = ProcessStats.openDescriptors(server.pid) ?? -1
        for _ in 0..<3 {
            let fd = try TestSupport.connect(endpoint)
            var size: Int32 = 4096
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            // Far more answers than the socket holds: the server's send waits in flight when the RST lands.
            #expect(writeUntilStalled(fd, Array(Array(repeating: Self.request, count: 20_000).joined())) > 0)
            var lg = linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, socklen_t(MemoryLayout<linger>.size))
            close(fd)
        }
        var settled = false
        for _ in 0..<200 where !settled {
            let s = try stats(server)
            settled = s["closed"] == 3 && ProcessStats.openDescriptors(server.pid) == baseline
            if !settled { usleep(10_000) }
        }
        #expect(settled)
        let fd = try TestSupport.connect(endpoint)
        defer { close(fd) }
        #expect(TestSupport.writeAll(fd, Self.request))
        #expect(TestSupport.readExactly(fd, HTTPResponse.bytes.count) == HTTPResponse.bytes)
        #expect(try stats(server)["stale"] == 0)
    }

    @Test("80 peers that flood without reading starve no one: a new client is still echoed, every flooder gets its bytes back")
    func floodersDoNotStarveOthers() throws {
        let (server, endpoint) = try start(["--protocol", "echo"])
        defer { server.stop() }
        var flooders: [(fd: Int32, sent: Int)] = []
        defer { flooders.forEach { close($0.fd) } }
        // Up to 4 MiB each, until the server stops taking bytes: 80 backed-up peers are far more
        // than the provided-buffer ring (1,024 x 64 KiB) could hold if buffers waited for their echo.
        let chunk = pattern(64 << 10)
        for _ in 0..<80 {
            // No SO_RCVBUF shrinking here: after connect it makes TCP prune and back off for seconds.
            let fd = try TestSupport.connect(endpoint)
            var sent = 0
            for _ in 0..<64 { let n = writeUntilStalled(fd, chunk); sent += n; if n < chunk.count { break } }
            flooders.append((fd, sent))
        }
        // The scenario happened: output backed up and reading paused.
        #expect((try stats(server)["pauses"] ?? 0) > 0)
        let probe = try TestSupport.connect(endpoint)
        defer { close(probe) }
        #expect(TestSupport.writeAll(probe, Array("still served".utf8)))
        #expect(TestSupport.readExactly(probe, 12) == Array("still served".utf8))
        // Each flooder now reads back exactly what it sent.
        var intact = 0
        for f in flooders {
            try? Sockets.setNonBlocking(f.fd, false)
            shutdown(f.fd, Int32(SHUT_WR))
            var got = 0
            var buf = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = buf.withUnsafeMutableBytes { read(f.fd, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                got += n
            }
            if got == f.sent { intact += 1 }
        }
        #expect(intact == 80)
        #expect(try stats(server)["stale"] == 0)
    }

    @Test("--model proactor --io epoll-et is refused, naming the value and what is allowed")
    func refusesReadinessBackend() throws {
        let child = try ChildProcess(executable: try TestSupport.muxlab,
                                     arguments: ["serve", "--port", "0", "--model", "proactor", "--io", "epoll-et"],
                                     stderrPath: "/tmp/muxlab-test-\(getpid())-\(monotonicNanos()).err")
        let status = child.wait(timeout: 10)
        if status == nil { child.stop() }
        #expect(status != nil && status != .exited(0))
        #expect(child.readLine(timeout: 0.1)?.hasPrefix("ready") != true)
        let log = child.stderrTail(3).joined(separator: "\n")
        #expect(log.contains("epoll-et"))
        #expect(log.contains("io_uring"))
    }

    @Test("a ring that cannot be created is one line naming the errno and the sysctl")
    func setupFailureNamesCause() {
        let disabled = ProactorServer.setupFailure(errno: EPERM, disabledSysctl: 2)
        #expect(disabled.contains("errno \(EPERM)"))
        #expect(disabled.contains("kernel.io_uring_disabled=2"))
        #expect(!disabled.contains("\n"))
        #expect(ProactorServer.setupFailure(errno: ENOSYS, disabledSysctl: nil).contains("no io_uring"))
        #expect(!ProactorServer.setupFailure(errno: EPERM, disabledSysctl: 0).contains("io_uring_disabled"))
    }
}

final class BulkWriter {
    let fd: Int32
    let bytes: [UInt8]
    var ok = false
    init(fd: Int32, bytes: [UInt8]) { self.fd = fd; self.bytes = bytes }
}
