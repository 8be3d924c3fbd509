#if canImport(Glibc)
import Glibc
#endif
import Kernel
import Servers
import TestSupport
import Testing

/// The reactor's deliberately broken variants (claims E1-E4) against the correct defaults,
/// each observed through the server's own counters or what a real client receives.
@Suite("Reactor variants for the E claims", .serialized)
struct ReactorVariantTests {
    /// The server's counters now (SIGUSR1 -> one `stats ...` line).
    func stats(_ server: ChildProcess) throws -> [String: Int] { try TestSupport.serverStats(server) }

    /// Multiplexer waits the server makes in 300 ms holding `clients` idle connections.
    func idleWaits(_ arguments: [String], clients: Int = 5) throws -> Int {
        let (server, endpoint) = try TestSupport.startServer(arguments)
        defer { server.stop() }
        let fds = try (0..<clients).map { _ in try TestSupport.connect(endpoint) }
        defer { fds.forEach { close($0) } }
        usleep(100_000)
        let before = try stats(server)["waits"] ?? 0
        usleep(300_000)
        return (try stats(server)["waits"] ?? 0) - before
    }

    @Test("E1: level-triggered with write interest from accept on busy-loops on idle sockets; on demand it sleeps")
    func epolloutAlwaysBusyLoops() throws {
        let always = try idleWaits(["--io", "epoll-lt", "--epollout", "always"])
        let onDemand = try idleWaits(["--io", "epoll-lt", "--epollout", "on-demand"])
        let edge = try idleWaits(["--io", "epoll-et", "--epollout", "always"])
        // The stats request itself ends one wait; a busy loop makes thousands in 300 ms.
        #expect(always > 1000, "LT + EPOLLOUT always made only \(always) waits in 300 ms")
        #expect(onDemand <= 3, "LT on demand made \(onDemand) waits with no traffic")
        #expect(edge <= 3, "ET reports writability once per edge, yet made \(edge) waits")
    }

    @Test("E2: edge-triggered reading once per edge strands bytes; until EAGAIN echoes all", arguments: ["until-eagain", "once"])
    func lazyEdgeTriggeredReadLosesData(policy: String) throws {
        let (server, endpoint) = try TestSupport.startServer(["--io", "epoll-et", "--read-size", "16", "--et-read", policy])
        defer { server.stop() }
        let fd = try TestSupport.connect(endpoint)
        defer { close(fd) }
        let message = (0..<64).map { UInt8($0 + 32) }
        #expect(TestSupport.writeAll(fd, message))
        let echoed = TestSupport.readWithin(fd, ms: 500)
        if policy == "once" {
            #expect(echoed == Array(message[0..<16]), "one 16-byte read per edge: the other 48 bytes wait for an edge that never comes")
        } else {
            #expect(echoed == message)
        }
    }

    @Test("until-short: a short read ends the draining (no EAGAIN read), bytes sent later still come back, and a half-close is met")
    func shortReadEndsDraining() throws {
        /// Counter deltas over 200 echo rounds: EAGAIN reads, reads, and events the loop handled.
        func echoRounds(_ policy: String) throws -> (eagain: Int, reads: Int, events: Int) {
            let (server, endpoint) = try TestSupport.startServer(["--io", "epoll-et", "--et-read", policy])
            defer { server.stop() }
            let fd = try TestSupport.connect(endpoint)
            defer { close(fd) }
            let before = try stats(server)
            for round in 0..<200 {
                let message = (0..<64).map { UInt8(($0 + round) % 200 + 32) }
                #expect(TestSupport.writeAll(fd, message))
                #expect(TestSupport.readExactly(fd, 64) == message)
            }
            let after = try stats(server)
            func delta(_ key: String) -> Int { (after[key] ?? 0) - (before[key] ?? 0) }
            return (delta("reads_eagain"), delta("reads"), delta("events"))
        }
        // Each round's 64 bytes come in one read whatever the policy. A busy machine may let the next round's
        // bytes arrive before the loop's next read, so one wake-up can drain two rounds: count per event, not per round.
        let eagain = try echoRounds("until-eagain")
        let short = try echoRounds("until-short")
        #expect(eagain.reads - eagain.eagain == 200 && short.reads - short.eagain == 200,
                "data reads: until-eagain \(eagain.reads - eagain.eagain), until-short \(short.reads - short.eagain)")
        // Every connection event ends in an EAGAIN read; the events counted besides are the two stats wake-ups at most.
        #expect(eagain.eagain <= eagain.events && eagain.eagain >= eagain.events - 2 && eagain.events >= 100,
                "until-eagain: \(eagain.eagain) EAGAIN reads for \(eagain.events) events")
        #expect(short.eagain <= 10, "until-short made \(short.eagain) EAGAIN reads in 200 rounds (\(short.events) events)")

        // A request and a FIN together: the short read is followed by the read that meets the end of stream.
        let (server, endpoint) = try TestSupport.startServer(["--io", "epoll-et", "--et-read", "until-short"])
        defer { server.stop() }
        let fd = try TestSupport.connect(endpoint)
        defer { close(fd) }
        #expect(TestSupport.writeAll(fd, [1, 2, 3]))
        shutdown(fd, Int32(SHUT_WR))
        #expect(TestSupport.readWithin(fd, ms: 1000, max: 3) == [1, 2, 3])
        var byte: UInt8 = 0
        #expect(TestSupport.eventually(2) { recv(fd, &byte, 1, Int32(MSG_DONTWAIT)) == 0 }, "the server never closed after the client's FIN")
    }

    @Test("--busy-poll-us: the loop polls without sleeping for the window after an event, then sleeps; it still serves")
    func busyPolling() throws {
        let (server, endpoint) = try TestSupport.startServer(["--io", "epoll-et", "--busy-poll-us", "30000"])
        defer { server.stop() }
        let fd = try TestSupport.connect(endpoint)
        defer { close(fd) }
        #expect(TestSupport.writeAll(fd, [7, 8, 9]))
        #expect(TestSupport.readExactly(fd, 3) == [7, 8, 9])
        // Each stats request is an event: 30 ms of zero-timeout polls follow it, where a sleeping loop makes one wait.
        let waits = try idleWaits(["--io", "epoll-et", "--busy-poll-us", "30000"])
        #expect(waits > 100, "busy polling made only \(waits) waits after an event")
        // Then it sleeps: 400 idle ms cost far less than 400 ms of CPU.
        usleep(100_000)
        let cpu0 = ProcessStats.cpuNanos(tree: server.pid)
        usleep(400_000)
        let spent = Double((ProcessStats.cpuNanos(tree: server.pid)) - cpu0) / 1e6
        #expect(spent < 150, "the idle loop used \(spent) ms of CPU in 400 ms: it did not stop polling")
    }

    @Test("E2 contrast: level-triggered poll reading 16 bytes per report still echoes all 64 (M7)")
    func pollReportsAgain() throws {
        let (server, endpoint) = try TestSupport.startServer(["--io", "poll", "--read-size", "16", "--et-read", "once"])
        defer { server.stop() }
        let fd = try TestSupport.connect(endpoint)
        defer { close(fd) }
        let message = (0..<64).map { UInt8($0 + 32) }
        #expect(TestSupport.writeAll(fd, message))
        #expect(TestSupport.readExactly(fd, 64) == message)
        #expect((try stats(server)["reads"] ?? 0) >= 4)
    }

    @Test("E3: with blocking sockets the edge-triggered loop blocks in read and a second client waits")
    func blockingSocketsStallTheLoop() throws {
        let (server, endpoint) = try TestSupport.startServer(["--io", "epoll-et", "--blocking"])
        defer { server.stop() }
        let first = try TestSupport.connect(endpoint)
        #expect(TestSupport.writeAll(first, [1, 2, 3, 4]))
        #expect(TestSupport.readExactly(first, 4) == [1, 2, 3, 4])
        let second = try TestSupport.connect(endpoint)
        defer { close(second) }
        #expect(TestSupport.writeAll(second, [5, 6]))
        #expect(TestSupport.readWithin(second, ms: 400).isEmpty, "the loop should be stuck in read(first) until it closes")
        close(first)
        #expect(TestSupport.readWithin(second, ms: 2000, max: 2) == [5, 6])
    }

    @Test("E4: under EMFILE, LT without a remedy busy-loops on accept; the reserve descriptor sheds clients and sleeps")
    func emfile() throws {
        func run(_ emfile: String) throws -> (waits: Int, emfileFailures: Int, shedSeen: Bool) {
            let (server, endpoint) = try TestSupport.startServer(["--io", "epoll-lt", "--fd-limit", "16", "--emfile", emfile])
            defer { server.stop() }
            let fds = try (0..<20).map { _ in try TestSupport.connect(endpoint) }
            defer { fds.forEach { close($0) } }
            usleep(100_000)
            let before = try stats(server)
            usleep(300_000)
            let after = try stats(server)
            var byte: UInt8 = 0
            var pfd = pollfd(fd: fds[19], events: Int16(POLLIN), revents: 0)
            let shed = poll(&pfd, 1, 200) > 0 && read(fds[19], &byte, 1) == 0
            return ((after["waits"] ?? 0) - (before["waits"] ?? 0), after["accept_emfile"] ?? 0, shed)
        }
        let none = try run("none")
        let reserve = try run("reserve-fd")
        #expect(none.waits > 1000, "LT + no remedy: the listener stays readable, yet only \(none.waits) waits in 300 ms")
        #expect(none.emfileFailures > 1000)
        #expect(!none.shedSeen, "without a remedy the client is neither served nor closed")
        #expect(reserve.waits <= 3, "the reserve descriptor drained the queue, yet \(reserve.waits) waits followed")
        #expect(reserve.shedSeen, "the shed client sees end of stream")
    }

    @Test("option values outside the allowed set are refused, naming the option")
    func badOptions() throws {
        for (arguments, needle) in [(["--read-size", "0"], "--read-size"), (["--fd-limit", "3"], "--fd-limit"),
                                    (["--epollout", "sometimes"], "--epollout")] {
            let child = try ChildProcess(executable: try TestSupport.muxlab, arguments: ["serve", "--port", "0"] + arguments,
                                         stderrPath: "/tmp/muxlab-test-\(getpid())-\(monotonicNanos()).err")
            let status = child.wait(timeout: 10)
            #expect(status != nil && status != .exited(0))
            #expect(child.stderrTail(5).joined(separator: " ").contains(needle))
        }
    }
}
