#if canImport(Glibc)
import Glibc
#endif
import Kernel
import Load
import TestSupport
import Testing
import Vocabulary

@Suite("Load generator refusals")
struct LoadRefusalTests {
    @Test("a target off loopback is refused unless explicitly allowed")
    func nonLoopbackRefused() {
        let config = LoadConfig(target: Endpoint(host: "192.0.2.1", port: 80))
        #expect(throws: LoadError.self) { try LoadGenerator(config) }
    }

    @Test("more connections than one process's descriptors names both numbers")
    func beyondDescriptorLimit() {
        var config = LoadConfig(target: Endpoint(host: "127.0.0.1", port: 9))
        config.connections = DescriptorLimit.current().hard + 1
        config.active = 1
        do {
            _ = try LoadGenerator(config)
            Issue.record("accepted \(config.connections) connections")
        } catch {
            #expect("\(error)".contains("\(config.connections)"))
            #expect("\(error)".contains("\(DescriptorLimit.current().hard)"))
        }
    }

    @Test("an unreachable target is one clear error naming it")
    func unreachable() throws {
        // A port nobody listens on: bind one, then close it.
        let (fd, port) = try Sockets.listen(on: Endpoint(host: "127.0.0.1", port: 0))
        close(fd)
        var config = LoadConfig(target: Endpoint(host: "127.0.0.1", port: port))
        config.connections = 3
        config.active = 3
        config.duration = 0.2
        config.warmup = 0
        do {
            _ = try LoadGenerator(config).run()
            Issue.record("load against a closed port succeeded")
        } catch let e as LoadError {
            #expect(e.description.contains("127.0.0.1:\(port)"))
            #expect(e.description.contains("refused"))
        }
    }
}

@Suite("Load generator against a real server", .serialized)
struct LoadRunTests {
    @Test("closed loop over an idle/active mix: requests complete, every response checked, no errors", arguments: ["echo", "http"])
    func closedLoop(wire: String) throws {
        let (server, endpoint) = try TestSupport.startServer(["--io", "epoll-et", "--protocol", wire])
        defer { server.stop() }
        var config = LoadConfig(target: endpoint)
        config.connections = 200
        config.active = 20
        config.duration = 1
        config.warmup = 0.2
        config.wire = WireProtocol(rawValue: wire)!
        let s = try LoadGenerator(config).run()
        #expect(s.connections == 200)
        #expect(s.active == 20)
        #expect(s.requests > 100)
        #expect(s.errorsTotal == 0)
        #expect(s.latencyUs.p50 != nil && s.latencyUs.p99! >= s.latencyUs.p50!)
        #expect(s.mode == "closed")
    }

    @Test("open loop sends at the asked rate (within 20 %) and counts latency from intended send times")
    func openLoopRate() throws {
        let (server, endpoint) = try TestSupport.startServer(["--io", "epoll-et"])
        defer { server.stop() }
        var config = LoadConfig(target: endpoint)
        config.connections = 20
        config.active = 10
        config.rate = 2000
        config.duration = 1.5
        config.warmup = 0.3
        let s = try LoadGenerator(config).run()
        #expect(s.mode == "open")
        #expect(s.errorsTotal == 0)
        #expect(s.throughputRPS > 1600 && s.throughputRPS < 2400)
    }

    @Test("requests without a valid answer are errors (timeout or wrong response), never requests")
    func wrongResponsesCounted() throws {
        // An HTTP server given echo requests answers with HTTP: every byte differs from the request.
        let (server, endpoint) = try TestSupport.startServer(["--io", "epoll-lt", "--protocol", "http"])
        defer { server.stop() }
        var config = LoadConfig(target: endpoint)
        config.connections = 4
        config.active = 4
        config.duration = 0.5
        config.warmup = 0
        config.messageSize = 40
        config.requestTimeout = 0.3
        // 40 bytes of echo pattern never form an HTTP request: no answer comes, so they time out.
        let s = try LoadGenerator(config).run()
        #expect(s.requests == 0)
        #expect(s.errors.timeout + s.errors.wrongResponse == 4)
    }

    @Test("the verification round trip passes on a correct server and fails on the wrong protocol")
    func verification() throws {
        let (server, endpoint) = try TestSupport.startServer(["--io", "poll", "--protocol", "echo"])
        defer { server.stop() }
        try RoundTrip.verify(endpoint, wire: .echo, messageSize: 1000)
        #expect(throws: LoadError.self) { try RoundTrip.verify(endpoint, wire: .http, messageSize: 0, timeout: 1) }
    }
}
