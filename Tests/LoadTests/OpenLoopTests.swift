#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Kernel
import Load
import TestSupport
import Testing

/// An echo server on its own thread that reads and drops the first `swallow` bytes it receives (so the first
/// request is never answered) and echoes everything after, until stopped or 20 s have passed.
final class SwallowingEchoServer: @unchecked Sendable {
    let listenFD: Int32
    let port: UInt16
    private let lock = NSLock()
    private var stopped = false
    private var acceptedCount = 0
    private let finished = DispatchSemaphore(value: 0)

    init(swallow: Int) throws {
        (listenFD, port) = try Sockets.listen(on: Endpoint(host: "127.0.0.1", port: 0))
        Thread.detachNewThread { [self] in serve(swallow: swallow) }
    }

    var accepted: Int { lock.lock(); defer { lock.unlock() }; return acceptedCount }

    func stop() {
        lock.lock(); stopped = true; lock.unlock()
        finished.wait()
        close(listenFD)
    }

    private func serve(swallow: Int) {
        let deadline = monotonicNanos() + 20_000_000_000
        var left = swallow
        var connections: [Int32] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while monotonicNanos() < deadline {
            lock.lock(); let done = stopped; lock.unlock()
            if done { break }
            var polled = [pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)]
                + connections.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            guard poll(&polled, nfds_t(polled.count), 50) > 0 else { continue }
            if polled[0].revents != 0 {
                let fd = accept(listenFD, nil, nil)
                if fd >= 0 {
                    try? Sockets.setNonBlocking(fd, false)
                    connections.append(fd)
                    lock.lock(); acceptedCount += 1; lock.unlock()
                }
            }
            for p in polled.dropFirst() where p.revents != 0 {
                let n = buffer.withUnsafeMutableBytes { read(p.fd, $0.baseAddress, $0.count) }
                if n <= 0 {
                    close(p.fd)
                    connections.removeAll { $0 == p.fd }
                    continue
                }
                let dropped = min(n, left)
                left -= dropped
                if n > dropped { _ = TestSupport.writeAll(p.fd, Array(buffer[dropped..<n])) }
            }
        }
        for fd in connections { close(fd) }
        finished.signal()
    }
}

/// Within `fraction` of `expected`.
func near(_ value: Int, _ expected: Double, _ fraction: Double = 0.01) -> Bool {
    abs(Double(value) - expected) <= fraction * expected
}

/// The open loop's window ledger, exact whatever the host's stalls: every outcome counted in the window is a
/// slot released in it or one in flight at its opening, less those still in flight at its close.
func expectExactLedger(_ s: LoadSummary, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let slots = try #require(s.slots, sourceLocation: sourceLocation)
    let unsent = try #require(s.unsent, sourceLocation: sourceLocation)
    let atOpen = try #require(s.inFlightAtOpen, sourceLocation: sourceLocation)
    let atClose = try #require(s.inFlightAtClose, sourceLocation: sourceLocation)
    let outcomes = s.requests + s.errors.timeout + s.errors.read + s.errors.write + s.errors.wrongResponse + unsent
    #expect(outcomes == slots + atOpen - atClose,
            "requests \(s.requests) + timeouts \(s.errors.timeout) + read/write/wrong \(s.errors.read)/\(s.errors.write)/\(s.errors.wrongResponse) + unsent \(unsent) = \(outcomes); slots \(slots) + in flight at open \(atOpen) - at close \(atClose) = \(slots + atOpen - atClose)",
            sourceLocation: sourceLocation)
}

@Suite("Open loop keeps its schedule", .serialized)
struct OpenLoopTests {
    @Test("at a rate the server keeps up with, every slot of the window is sent and answered: none unsent, none timed out")
    func everySlotAnswered() throws {
        let (server, endpoint) = try TestSupport.startServer(["--io", "epoll-et"])
        defer { server.stop() }
        // A slot goes unsent only when its connection has gone unanswered for its whole backlog: 8 slots. At
        // 500/s over 40 connections a connection's slots are 80 ms apart, so only a 640 ms stall of this
        // machine (server or load descheduled) could leave one unsent. At 2,000/s over 20 (80 ms of backlog)
        // a fresh clone's CI met a ~120 ms stall and 85 unsent; this machine's own runs top out near 20 ms.
        var config = LoadConfig(target: endpoint)
        config.connections = 40
        config.active = 40
        config.rate = 500
        config.duration = 2
        config.warmup = 0.3
        let s = try LoadGenerator(config).run()
        let expected = 500 * s.durationS
        let slots = try #require(s.slots)
        let horizonUs = Double(LoadGenerator.slotBacklog) * 1e6 * Double(config.active) / 500
        #expect(s.unsent == 0, "unsent \(s.unsent ?? -1), longest latency \(s.latencyUs.max ?? -1) µs, backlog horizon \(horizonUs) µs")
        #expect(s.errorsTotal == 0, "\(s.errors)")
        #expect(near(slots, expected), "slots \(slots), rate x window \(expected)")
        // None unsent, none timed out: every slot answered, but for those in flight at the edges (a stall at
        // the close leaves more of them in flight, not fewer answered).
        try expectExactLedger(s)
        #expect(s.connectionsOpened == 40)
    }

    @Test("2x overload: slots = rate x window within 1 %, every one answered, timed out or unsent, and timed-out connections are replaced")
    func overloadAccounted() throws {
        // One loop burning 1 ms per request answers at most ~1,000 requests/s: 2,000/s is twice that.
        let (server, endpoint) = try TestSupport.startServer(["--model", "reactor", "--io", "epoll-et", "--compute-us", "1000"])
        defer { server.stop() }
        var config = LoadConfig(target: endpoint)
        config.connections = 12
        config.active = 12
        config.rate = 2000
        config.duration = 4
        config.warmup = 1
        // Twelve requests at 1 ms each keep an answer up to ~12 ms away: past a 10 ms timeout now and then.
        config.requestTimeout = 0.01
        let s = try LoadGenerator(config).run()
        let expected = 2000 * s.durationS
        let slots = try #require(s.slots)
        let unsent = try #require(s.unsent)
        #expect(near(slots, expected), "slots \(slots), rate x window \(expected)")
        try expectExactLedger(s)
        #expect(s.throughputRPS < 1500, "the server was not overloaded: \(s.throughputRPS) requests/s")
        #expect(s.errors.timeout > 0 && unsent > 0, "timeouts \(s.errors.timeout), unsent \(unsent)")
        #expect(s.errors.connect + s.errors.read + s.errors.write + s.errors.wrongResponse == 0, "\(s.errors)")
        // Each timeout replaced its connection; all twelve are still there at the end.
        #expect((s.connectionsOpened ?? 0) > 12, "connections opened \(s.connectionsOpened ?? 0)")
        #expect(s.connections == 12)
    }

    @Test("a request never answered times out, its connection is replaced, and its later slots are still sent")
    func timedOutConnectionReplaced() throws {
        let server = try SwallowingEchoServer(swallow: 64)
        defer { server.stop() }
        var config = LoadConfig(target: Endpoint(host: "127.0.0.1", port: server.port))
        config.connections = 1
        config.active = 1
        config.rate = 200
        config.duration = 1.5
        config.warmup = 0
        config.requestTimeout = 0.05
        let s = try LoadGenerator(config).run()
        let slots = try #require(s.slots)
        let unsent = try #require(s.unsent)
        #expect(s.errors.timeout == 1)
        #expect(s.connectionsOpened == 2 && server.accepted == 2)
        #expect(s.connections == 1)
        // 300 slots: of the ~20 due while the first request hung (the timeout scan runs every 100 ms) 8 wait and
        // the rest go unsent; the slots after the reconnect are sent.
        #expect(s.requests >= 250, "requests \(s.requests) of \(slots) slots")
        #expect(unsent > 0 && unsent < 40, "unsent \(unsent)")
        try expectExactLedger(s)
        // The slots that waited out the hang and the reconnect count them: latency from their intended times.
        #expect((s.latencyUs.max ?? 0) >= 40_000, "max latency \(s.latencyUs.max ?? 0) us")
    }

    @Test("--processes 2: slots and unsent are summed over the load processes")
    func mergedAccounting() throws {
        let (server, endpoint) = try TestSupport.startServer(["--io", "epoll-et"])
        defer { server.stop() }
        let run = try runMuxlab(["load", "--target", "\(endpoint)", "--connections", "20", "--active", "10",
                                 "--rate", "2000", "--processes", "2", "--warmup", "0.3s", "--duration", "1.5s", "--json"])
        #expect(run.status == .exited(0), "\(run.stderr)")
        let line = try #require(run.lines.first { $0.hasPrefix("{") })
        let s = try JSONDecoder().decode(LoadSummary.self, from: Data(line.utf8))
        #expect(s.processes == 2)
        let slots = try #require(s.slots)
        // Each child counts its own window; the windows differ by the children's start-up jitter only.
        #expect(near(slots, 2000 * s.durationS, 0.02), "slots \(slots), duration \(s.durationS) s")
        // Every slot of both children is answered, timed out or counted unsent (a child the host stalls leaves
        // some unsent: 206 of 3,017 in one CI run), but for those in flight at the windows' edges. A merge that
        // dropped a child's unsent or in-flight counts would break it.
        try expectExactLedger(s)
        #expect(s.requests > slots / 2, "requests \(s.requests) of \(slots) slots")
    }
}
