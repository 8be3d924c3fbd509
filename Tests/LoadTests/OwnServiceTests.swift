#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Kernel
import Load
import TestSupport
import Testing
import Vocabulary

/// The load against a service it did not write: services/orders.py (Python's http.server), POST with a
/// JSON body, chunked replies, `Connection: close`, 404s and `100 Continue`.
@Suite("Load against a user's own service (services/orders.py)", .serialized)
struct OwnServiceTests {
    /// Starts the service on a free port; nil (with the reason recorded) when python3 is missing.
    static func startService() throws -> (ChildProcess, Endpoint) {
        let python = "/usr/bin/python3"
        guard access(python, X_OK) == 0 else { throw ValueError("\(python) is missing: the own-service tests need Debian's python3") }
        let child = try ChildProcess(executable: python, arguments: [TestSupport.packageRoot + "/services/orders.py", "--port", "0"],
                                     stderrPath: "/tmp/muxlab-orders-\(getpid())-\(monotonicNanos()).err")
        guard let line = child.readLine(timeout: 10), line.hasPrefix("ready "),
              let port = TestSupport.keyValues(line)["port"].flatMap({ UInt16($0) }) else {
            child.stop()
            throw ValueError("services/orders.py printed no ready line: \(child.stderrTail(3))")
        }
        return (child, Endpoint(host: "127.0.0.1", port: port))
    }

    static func config(_ endpoint: Endpoint, _ configure: (inout HTTPRequestSpec) -> Void) -> LoadConfig {
        var config = LoadConfig(target: endpoint)
        config.wire = .http
        config.connections = 4
        config.active = 4
        config.duration = 0.6
        config.warmup = 0  // a wrong first answer drops its connection: in a warm-up the window would see none
        configure(&config.http)
        return config
    }

    static func bodyFile(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("muxlab-order-\(getpid())-\(monotonicNanos()).json").path
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test("POST /orders with a JSON body: chunked 201 answers, all accepted, and only with the body asked for")
    func postOrders() throws {
        let (service, endpoint) = try Self.startService()
        defer { service.stop() }
        let body = try Self.bodyFile("{\"items\": [1, 2, 3]}")
        defer { try? FileManager.default.removeItem(atPath: body) }
        let ok = try LoadGenerator(Self.config(endpoint) {
            $0.method = "POST"; $0.path = "/orders"; $0.headers = ["Content-Type: application/json"]; $0.bodyFile = body
            $0.expectBody = "\"items\": 3"
        }).run()
        #expect(ok.requests > 50 && ok.errorsTotal == 0, "\(ok.requests) requests, errors \(ok.errors), \(ok.firstWrongResponse ?? "")")
        #expect(ok.closedByServer == 0, "keep-alive: no connection replaced")
        let status = try LoadGenerator(Self.config(endpoint) {
            $0.method = "POST"; $0.path = "/orders"; $0.bodyFile = body; $0.expectStatus = 200
        }).run()
        #expect(status.requests == 0 && status.errors.wrongResponse > 0)
        #expect(status.firstWrongResponse == "status 201 (expected 200)", "\(status.firstWrongResponse ?? "none")")
        let missing = try LoadGenerator(Self.config(endpoint) {
            $0.method = "POST"; $0.path = "/orders"; $0.bodyFile = body; $0.expectBody = "rejected"
        }).run()
        #expect(missing.requests == 0 && missing.firstWrongResponse?.contains("does not hold \"rejected\"") == true,
                "\(missing.firstWrongResponse ?? "none")")
    }

    @Test("Connection: close answers replace the connection and count it, not an error; 100 Continue is skipped")
    func closeAndContinue() throws {
        let (service, endpoint) = try Self.startService()
        defer { service.stop() }
        let closing = try LoadGenerator(Self.config(endpoint) { $0.path = "/health"; $0.headers = ["Connection: close"] }).run()
        #expect(closing.requests > 20 && closing.errorsTotal == 0, "\(closing.requests) requests, errors \(closing.errors), \(closing.firstWrongResponse ?? "")")
        #expect((closing.closedByServer ?? 0) >= closing.requests, "every answer closed its connection: \(closing.closedByServer ?? 0)")
        let body = try Self.bodyFile("{\"items\": []}")
        defer { try? FileManager.default.removeItem(atPath: body) }
        let continued = try LoadGenerator(Self.config(endpoint) {
            $0.method = "POST"; $0.path = "/orders"; $0.headers = ["Expect: 100-continue"]; $0.bodyFile = body
        }).run()
        #expect(continued.requests > 20 && continued.errorsTotal == 0, "\(continued.errors), \(continued.firstWrongResponse ?? "")")
    }

    @Test("a 404 is a wrong response by default, named, and an answer with --expect-status 404")
    func notFound() throws {
        let (service, endpoint) = try Self.startService()
        defer { service.stop() }
        let wrong = try LoadGenerator(Self.config(endpoint) { $0.path = "/missing" }).run()
        #expect(wrong.requests == 0 && wrong.errors.wrongResponse > 0)
        #expect(wrong.firstWrongResponse == "status 404 (expected any 2xx)", "\(wrong.firstWrongResponse ?? "none")")
        let expected = try LoadGenerator(Self.config(endpoint) { $0.path = "/missing"; $0.expectStatus = 404 }).run()
        #expect(expected.requests > 20 && expected.errorsTotal == 0)
    }

    @Test("a request file's requests go in turn on each connection; the driver's round trip sends the first and accepts a 2xx")
    func requestFileAndVerify() throws {
        let (service, endpoint) = try Self.startService()
        defer { service.stop() }
        let file = try Self.bodyFile("POST /orders HTTP/1.1\nContent-Type: application/json\n\n{\"items\": [7]}\n###\nGET /health HTTP/1.1\n\n")
        defer { try? FileManager.default.removeItem(atPath: file) }
        var spec = HTTPRequestSpec()
        spec.requestFile = file
        let s = try LoadGenerator(Self.config(endpoint) { $0 = spec }).run()
        #expect(s.requests > 20 && s.errorsTotal == 0, "\(s.errors), \(s.firstWrongResponse ?? "")")
        // Both kinds answered: a body substring only one of them has fails the other half of the answers.
        var half = spec
        half.expectBody = "accepted"
        let h = try LoadGenerator(Self.config(endpoint) { $0 = half }).run()
        #expect(h.errors.wrongResponse > 0 && h.firstWrongResponse?.contains("(2 bytes) does not hold") == true, "\(h.firstWrongResponse ?? "none")")
        try RoundTrip.verify(endpoint, wire: .http, messageSize: 0, http: spec)
        let error = #expect(throws: LoadError.self) { try RoundTrip.verify(endpoint, wire: .http, messageSize: 0, timeout: 2) }
        #expect(error?.description.contains("status 404, expected any 2xx") == true, "\(error.map { "\($0)" } ?? "none")")
    }
}
