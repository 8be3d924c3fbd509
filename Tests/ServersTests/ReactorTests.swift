#if canImport(Glibc)
import Glibc
#endif
import Kernel
import Servers
import TestSupport
import Testing

@Suite("HTTP request framing")
struct RequestScannerTests {
    func end(_ text: String) -> Int? {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { HTTPRequestScanner.endOfRequest($0.baseAddress!, bytes.count) }
    }

    @Test("a request ends after the empty line; a partial one has no end yet")
    func requestBoundaries() {
        #expect(end("GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 27)
        #expect(end("GET / HTTP/1.1\r\nHost: x\r\n\r") == nil)
        #expect(end("GET / HTTP/1.1\r\n") == nil)
        #expect(end("GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n") == 18)
        #expect(end("") == nil)
    }

    @Test("a Content-Length body (any case of the name) belongs to its request; a partial body has no end yet")
    func requestBodies() {
        let post = "POST /orders HTTP/1.1\r\nHost: x\r\ncontent-LENGTH:  5\r\n\r\n"
        #expect(end(post + "hello") == post.utf8.count + 5)
        #expect(end(post + "hell") == nil)
        #expect(end(post + "helloGET / HTTP/1.1\r\n\r\n") == post.utf8.count + 5)
        // Content-Length: 0, and headers that only start like it, add nothing.
        #expect(end("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n") == 38)
        #expect(end("GET / HTTP/1.1\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\n\r\n") == 68)
        #expect(end("GET / HTTP/1.1\r\nContent-Lengthy: 9\r\n\r\n") == 38)
        // A value past the limit never completes: the connection's buffer fills and the server closes it.
        #expect(end("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\nabc") == nil)
    }

    @Test("the fixed response carries a matching Content-Length")
    func responseIsWellFormed() {
        let text = HTTPResponse.text
        #expect(text.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(text.contains("Content-Length: \(HTTPResponse.body.utf8.count)\r\n\r\n"))
        #expect(text.hasSuffix(HTTPResponse.body))
    }
}

@Suite("Connection errors sorted: the peer's close and count, the loop's own trap")
struct ConnectionErrnoTests {
    @Test("EBADF, EFAULT, ENOTSOCK and EINVAL are the loop's mistakes; resets, broken pipes and timeouts the peer's")
    func sorting() {
        for e in [EBADF, EFAULT, ENOTSOCK, EINVAL] { #expect(ConnectionErrno.isProgrammerError(e), "errno \(e)") }
        for e in [ECONNRESET, EPIPE, ETIMEDOUT, ECONNABORTED, EHOSTUNREACH, ENOTCONN, ENOBUFS] {
            #expect(!ConnectionErrno.isProgrammerError(e), "errno \(e)")
        }
    }

    @Test("peer errors are counted by errno and printed as the stats line's peer_ fields")
    func counting() {
        var p = PeerErrors()
        for e in [ECONNRESET, ECONNRESET, EPIPE, ETIMEDOUT, EHOSTUNREACH] { p.count(e) }
        #expect(p.resets == 2 && p.brokenPipes == 1 && p.timeouts == 1 && p.other == 1)
        #expect(p.statsFields == "peer_resets=2 peer_broken_pipes=1 peer_timeouts=1 peer_other_errors=1")
    }

    @Test("a read that fails with EBADF kills the server by a trap naming read and the descriptor, not a close")
    func programmerErrorTraps() throws {
        // A child `muxlab serve` with the hidden fault that makes an accepted descriptor a write-only pipe end
        // (epoll still reports the socket under that number). The Swift backtracer is off: it would spend
        // seconds symbolicating before the process dies.
        let stderrPath = "/tmp/muxlab-test-\(getpid())-fault-ebadf.err"
        var environment: [String] = []
        var entry = environ
        while let p = entry.pointee {
            let text = String(cString: p)
            if !text.hasPrefix("SWIFT_BACKTRACE=") { environment.append(text) }
            entry += 1
        }
        let server = try ChildProcess(executable: try TestSupport.muxlab, arguments: ["serve", "--port", "0", "--fault-bad-descriptor"],
                                      stderrPath: stderrPath, environment: environment + ["SWIFT_BACKTRACE=enable=no"])
        defer { server.stop() }
        let line = try #require(server.readLine(timeout: 10), "no ready line: \(server.stderrTail(3))")
        let port = try #require(TestSupport.keyValues(line)["port"].flatMap { UInt16($0) }, "\(line)")
        let fd = try TestSupport.connect(Endpoint(host: "127.0.0.1", port: port))
        defer { close(fd) }
        #expect(TestSupport.writeAll(fd, Array("ping".utf8)))
        let status = server.wait(timeout: 10)
        #expect(status == .signaled(SIGILL) || status == .signaled(SIGTRAP), "the server \(status.map { "\($0)" } ?? "still runs")")
        let text = server.stderrTail(5).joined(separator: "\n")
        #expect(text.contains("a programmer error, not the peer's") && text.contains("read: Bad file descriptor (errno 9) on connection descriptor"), "\(text)")
    }
}

@Suite("Reactor over real sockets", .serialized)
struct ReactorTests {
    static let modes = ["select", "poll", "epoll-lt", "epoll-et"]

    @Test("echoes 4 MiB written in one go: partial writes queued, reading paused and resumed", arguments: modes)
    func largeEchoSurvivesBackpressure(io: String) throws {
        let (server, endpoint) = try TestSupport.startServer(["--io", io])
        defer { server.stop() }
        let fd = try TestSupport.connect(endpoint)
        defer { close(fd) }
        let payload = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) }
        // Write from another thread while this one reads, so both directions fill up.
        var writer = pthread_t()
        let box = Unmanaged.passRetained(WriteJob(fd: fd, bytes: payload))
        pthread_create(&writer, nil, { arg in
            let job = Unmanaged<WriteJob>.fromOpaque(arg!).takeRetainedValue()
            job.ok = TestSupport.writeAll(job.fd, job.bytes)
            return nil
        }, box.toOpaque())
        let echoed = TestSupport.readExactly(fd, payload.count)
        pthread_join(writer, nil)
        #expect(echoed.count == payload.count)
        #expect(echoed == payload)
    }

    @Test("answers 200 pipelined HTTP requests split at odd boundaries, one response each", arguments: modes)
    func pipelinedHTTP(io: String) throws {
        let (server, endpoint) = try TestSupport.startServer(["--io", io, "--protocol", "http"])
        defer { server.stop() }
        let fd = try TestSupport.connect(endpoint)
        defer { close(fd) }
        let one = Array("GET / HTTP/1.1\r\nHost: muxlab\r\n\r\n".utf8)
        let all = Array((0..<200).map { _ in one }.joined())
        var at = 0
        var step = 1
        while at < all.count {
            let n = min(step, all.count - at)
            #expect(TestSupport.writeAll(fd, Array(all[at..<at + n])))
            at += n
            step = step % 97 + 13
        }
        let expected = HTTPResponse.bytes.count * 200
        let got = TestSupport.readExactly(fd, expected)
        #expect(got.count == expected)
        #expect(got == Array((0..<200).map { _ in HTTPResponse.bytes }.joined()))
    }

    @Test("stops on SIGTERM and reports its own counters")
    func stopsCleanly() throws {
        let (server, endpoint) = try TestSupport.startServer(["--io", "epoll-et"])
        let fd = try TestSupport.connect(endpoint)
        #expect(TestSupport.writeAll(fd, Array("ping".utf8)))
        #expect(TestSupport.readExactly(fd, 4) == Array("ping".utf8))
        close(fd)
        server.signal(SIGTERM)
        let stats = server.readLine(timeout: 5)
        #expect(server.wait(timeout: 5) == .exited(0))
        #expect(stats?.hasPrefix("stats waits=") == true)
        #expect(stats?.contains("accepted=1") == true)
    }

    @Test("select refuses connections past FD_SETSIZE, says so, and keeps serving (M1)")
    func selectRefusesPastLimit() throws {
        let (server, endpoint) = try TestSupport.startServer(["--io", "select"])
        defer { server.stop() }
        var fds: [Int32] = []
        defer { fds.forEach { close($0) } }
        for _ in 0..<1030 { fds.append(try TestSupport.connect(endpoint)) }
        // A client the server accepted still gets its echo.
        #expect(TestSupport.writeAll(fds[0], [1, 2, 3]))
        #expect(TestSupport.readExactly(fds[0], 3) == [1, 2, 3])
        // The last ones were refused (closed by the server): read sees end of stream.
        var byte: UInt8 = 0
        #expect(read(fds[fds.count - 1], &byte, 1) == 0)
        let log = server.stderrTail(5).joined(separator: "\n")
        #expect(log.contains("FD_SETSIZE = 1024"))
    }

    @Test("--cpus pins the server process (sched_getaffinity of its pid)")
    func readyLineReportsPinning() throws {
        let (server, _) = try TestSupport.startServer(["--io", "poll", "--cpus", "0"])
        defer { server.stop() }
        #expect(Placement.affinity(pid: server.pid) == CPUList([0]))
    }
}

final class WriteJob {
    let fd: Int32
    let bytes: [UInt8]
    var ok = false
    init(fd: Int32, bytes: [UInt8]) { self.fd = fd; self.bytes = bytes }
}
