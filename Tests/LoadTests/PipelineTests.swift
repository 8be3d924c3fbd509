#if canImport(Glibc)
import Glibc
#endif
import Kernel
import Load
import TestSupport
import Testing
import Vocabulary

/// `--pipeline N`: N requests in flight per connection, answered in order, each timed from its own send.
@Suite("Load generator pipelining against a real server", .serialized)
struct PipelineTests {
    static func run(_ wire: WireProtocol, pipeline: Int, connections: Int = 4) throws -> (LoadSummary, [String: Int]) {
        let (server, endpoint) = try TestSupport.startServer(["--io", "epoll-et", "--protocol", wire.rawValue])
        defer { server.stop() }
        var config = LoadConfig(target: endpoint)
        config.wire = wire
        config.connections = connections
        config.active = connections
        config.pipeline = pipeline
        config.duration = 0.5
        config.warmup = 0
        let s = try LoadGenerator(config).run()
        return (s, try TestSupport.serverStats(server, attempts: 3))
    }

    @Test("HTTP and echo at --pipeline 1, 8 and 32: no errors, and the server answered every request the load counts plus at most those in flight",
          arguments: [WireProtocol.http, .echo], [1, 8, 32])
    func inOrder(wire: WireProtocol, pipeline: Int) throws {
        let (s, stats) = try Self.run(wire, pipeline: pipeline)
        #expect(s.errorsTotal == 0 && s.requests > 500, "\(s.requests) requests, \(s.errors), \(s.firstWrongResponse ?? "")")
        #expect(s.latencySamples == s.requests)
        // Warm-up 0: the window is the whole run, so the server's count is the load's plus what was in flight at its end.
        let served = wire == .http ? stats["http_requests"] ?? -1 : (stats["bytes_out"] ?? -1) / 64
        #expect(served >= s.requests && served <= s.requests + 4 * pipeline,
                "server answered \(served), load counted \(s.requests), \(4 * pipeline) may be in flight")
    }

    @Test("POST with a body against muxlab's own HTTP servers (the reactor pipelined, the proactor, a blocking session): every body framed, no errors",
          arguments: [(["--io", "epoll-et"], 8), (["--model", "proactor"], 1), (["--model", "thread-per-connection"], 1)])
    func postBodies(server arguments: [String], pipeline: Int) throws {
        let body = "/tmp/muxlab-test-body-\(getpid())-\(pipeline).json"
        try String(repeating: "{\"item\": 42, \"note\": \"\r\n\r\n\"}", count: 20).write(toFile: body, atomically: true, encoding: .utf8)
        defer { unlink(body) }
        let (server, endpoint) = try TestSupport.startServer(arguments + ["--protocol", "http"])
        defer { server.stop() }
        var config = LoadConfig(target: endpoint)
        config.wire = .http
        config.connections = 4
        config.active = 4
        config.pipeline = pipeline
        config.duration = 0.5
        config.warmup = 0
        config.http.method = "POST"
        config.http.path = "/orders"
        config.http.bodyFile = body
        let s = try LoadGenerator(config).run()
        let stats = try TestSupport.serverStats(server, attempts: 3)
        #expect(s.errorsTotal == 0 && s.requests > 200, "\(arguments): \(s.requests) requests, \(s.errors), \(s.firstWrongResponse ?? "")")
        // A body read as requests would be answered too: the server's count stays within what was in flight.
        let served = stats["http_requests"] ?? -1
        #expect(served >= s.requests && served <= s.requests + 4 * pipeline,
                "\(arguments): server answered \(served), load counted \(s.requests), \(4 * pipeline) may be in flight")
    }

    @Test("pipelining needs the closed loop: --rate, --hang-up and --requests-per-connection are refused, naming both")
    func refusals() throws {
        var config = LoadConfig(target: Endpoint(host: "127.0.0.1", port: 9))
        config.pipeline = 8
        config.rate = 1000
        let e = #expect(throws: LoadError.self) { try LoadGenerator(config) }
        #expect(e?.description.contains("--pipeline 8") == true && e?.description.contains("--rate") == true, "\(e.map { "\($0)" } ?? "")")
        config.rate = nil
        config.pipeline = LoadGenerator.maxPipeline + 1
        #expect(throws: LoadError.self) { try LoadGenerator(config) }
    }
}
