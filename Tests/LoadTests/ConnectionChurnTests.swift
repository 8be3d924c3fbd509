#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Kernel
import Load
import TestSupport
import Testing
import Vocabulary

/// `muxlab serve --help` offers --close (claim H2's server-first variant).
let serveHasCloseOption: Bool = {
    guard let muxlab = try? TestSupport.muxlab,
          let child = try? ChildProcess(executable: muxlab, arguments: ["serve", "--help"]) else { return false }
    defer { child.stop() }
    return child.readRemaining(timeout: 10).contains { $0.contains("--close") }
}()

/// An HTTP server that answers one request per connection and then closes it (Connection: close), one
/// connection at a time, on its own thread, until stopped or 20 s have passed.
final class ServerFirstHTTPServer: @unchecked Sendable {
    let listenFD: Int32
    let port: UInt16
    private let lock = NSLock()
    private var stopped = false
    private var served = 0
    private let finished = DispatchSemaphore(value: 0)

    init() throws {
        (listenFD, port) = try Sockets.listen(on: Endpoint(host: "127.0.0.1", port: 0))
        try Sockets.setNonBlocking(listenFD, false)
        Thread.detachNewThread { [self] in serve() }
    }

    var answered: Int { lock.lock(); defer { lock.unlock() }; return served }

    func stop() {
        lock.lock(); stopped = true; lock.unlock()
        finished.wait()
        close(listenFD)
    }

    private func serve() {
        let response = Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".utf8)
        let deadline = monotonicNanos() + 20_000_000_000
        var buffer = [UInt8](repeating: 0, count: 4096)
        while monotonicNanos() < deadline {
            lock.lock(); let done = stopped; lock.unlock()
            if done { break }
            var pfd = pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 50) == 1 else { continue }
            let fd = accept(listenFD, nil, nil)
            if fd < 0 { continue }
            var tv = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            var got: [UInt8] = []
            while got.count < 4 || Array(got.suffix(4)) != [13, 10, 13, 10] {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                got.append(contentsOf: buffer[0..<n])
            }
            if got.count >= 4 && Array(got.suffix(4)) == [13, 10, 13, 10] && TestSupport.writeAll(fd, response) {
                lock.lock(); served += 1; lock.unlock()
            }
            close(fd)
        }
        finished.signal()
    }
}

@Suite("Short connections, server closes and hang-ups", .serialized)
struct ConnectionChurnTests {
    @Test("--requests-per-connection 1: every answer ends its connection and a new one takes its place, no errors", arguments: ["echo", "http"])
    func oneRequestPerConnection(wire: String) throws {
        let (server, endpoint) = try TestSupport.startServer(["--io", "epoll-et", "--protocol", wire])
        defer { server.stop() }
        var config = LoadConfig(target: endpoint)
        config.connections = 20
        config.active = 10
        config.duration = 1
        config.warmup = 0
        config.wire = WireProtocol(rawValue: wire)!
        config.requestsPerConnection = 1
        let s = try LoadGenerator(config).run()
        #expect(s.errorsTotal == 0, "\(s.errors)")
        #expect(s.requests > 100)
        // Each answer (all inside the window: no warm-up) reopened exactly one connection.
        #expect(s.connectionsOpened == config.connections + s.requests)
        #expect(s.latencySamples == s.requests)
        #expect(s.requestsPerConnection == 1)
        #expect(s.closedByServer == 0)
        #expect(s.served == 10)
    }

    @Test("a server that closes after each answer: closed_by_server, reopened, never an error (in-test server)")
    func serverClosesAfterAnswer() throws {
        let server = try ServerFirstHTTPServer()
        var config = LoadConfig(target: Endpoint(host: "127.0.0.1", port: server.port))
        config.connections = 4
        config.active = 4
        config.duration = 1
        config.warmup = 0
        config.wire = .http
        let s = try LoadGenerator(config).run()
        server.stop()
        #expect(s.errorsTotal == 0, "\(s.errors)")
        #expect(s.requests > 20)
        let closed = try #require(s.closedByServer)
        // One answer per connection: each close follows one answer, and each close of an active connection reopens one.
        #expect(closed <= s.requests && s.requests <= closed + config.active)
        #expect(s.connectionsOpened == config.connections + closed)
        #expect(server.answered >= s.requests)
    }

    @Test("muxlab serve --close server-first: closed_by_server, no errors",
          .enabled(if: serveHasCloseOption, "muxlab serve --help has no --close option in this build: the server-first variant (claim H2) is missing"))
    func realServerFirst() throws {
        let (server, endpoint) = try TestSupport.startServer(["--protocol", "http", "--close", "server-first"])
        defer { server.stop() }
        var config = LoadConfig(target: endpoint)
        config.connections = 10
        config.active = 10
        config.duration = 1
        config.warmup = 0
        config.wire = .http
        let s = try LoadGenerator(config).run()
        #expect(s.errorsTotal == 0, "\(s.errors)")
        #expect(s.requests > 20)
        let closed = try #require(s.closedByServer)
        #expect(closed <= s.requests && s.requests <= closed + config.active,
                "the server should close each connection after its answer: \(closed) closes for \(s.requests) answers")
        #expect(s.connectionsOpened == config.connections + closed)
    }

    @Test("--hang-up: one request per connection, closed unread; hang-ups counted, no latency samples")
    func hangUp() throws {
        let (server, endpoint) = try TestSupport.startServer(["--protocol", "http"])
        defer { server.stop() }
        var config = LoadConfig(target: endpoint)
        config.connections = 10
        config.active = 5
        config.duration = 0.5
        config.warmup = 0
        config.wire = .http
        config.hangUp = true
        let s = try LoadGenerator(config).run()
        #expect(s.errorsTotal == 0, "\(s.errors)")
        let hangups = try #require(s.hangups)
        #expect(hangups > 50)
        #expect(s.requests == 0 && s.latencySamples == 0 && s.latencyUs.p50 == nil)
        #expect(s.connectionsOpened == config.connections + hangups)
        #expect(server.poll() == nil, "a server that ignores SIGPIPE survives hang-ups")
    }

    @Test("--hang-up against a server that does not ignore SIGPIPE: it dies, the load ends on time, exit 0, connect errors counted")
    func hangUpKillsServer() throws {
        let (server, endpoint) = try TestSupport.startServer(["--protocol", "http", "--sigpipe", "default"])
        defer { server.stop() }
        let load = try ChildProcess(executable: try TestSupport.muxlab, arguments: [
            "load", "--target", "\(endpoint)", "--protocol", "http", "--connections", "10", "--active", "5",
            "--hang-up", "--warmup", "0.3s", "--duration", "1s", "--json"], stderrPath: "/tmp/muxlab-test-\(getpid())-hangup.err")
        defer { load.stop() }
        let line = load.readLine(timeout: 10) ?? ""
        let s = try JSONDecoder().decode(LoadSummary.self, from: Data(line.utf8))
        #expect(load.wait(timeout: 5) == .exited(0), "\(load.stderrTail(3))")
        #expect(server.wait(timeout: 2) == .signaled(SIGPIPE), "the write to a reset peer kills the server")
        #expect((s.hangups ?? 0) > 0)
        #expect(s.errors.connect > 0, "reopening after the server died fails, counted as connect errors")
        #expect(s.durationS < 1.5)
    }

    @Test("an idle timeout on the server: idle connections closed by it are counted, not errors, and not reopened")
    func idleTimeout() throws {
        let (server, endpoint) = try TestSupport.startServer(["--protocol", "echo", "--idle-timeout", "0.3s"])
        defer { server.stop() }
        var config = LoadConfig(target: endpoint)
        config.connections = 40
        config.active = 4
        config.duration = 1
        config.warmup = 0
        let s = try LoadGenerator(config).run()
        #expect(s.errorsTotal == 0, "\(s.errors)")
        #expect((s.closedByServer ?? 0) >= 36)
        #expect(s.idleClosed == 36)
        #expect(s.connectionsOpened == 40, "idle connections are not replaced")
        #expect(s.connections == 4)
        #expect(s.requests > 100)
    }
}
