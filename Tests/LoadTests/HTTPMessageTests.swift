import Foundation
import Load
import Testing

/// The load's HTTP/1.1: the requests a user writes, and answers read whole however the stream is cut.
@Suite("HTTP messages: requests built from flags and files, responses parsed in pieces")
struct HTTPMessageTests {
    /// Feeds `text` in pieces of `piece` bytes; the steps, one per response completed or the last one.
    static func parse(_ text: String, piece: Int, headOnly: Bool = false, expectBody: String? = nil)
        -> (steps: [HTTPResponseParser.Step], parsers: [HTTPResponseParser]) {
        let bytes = Array(text.utf8)
        var parser = HTTPResponseParser()
        parser.reset(headOnly: headOnly)
        let pattern = expectBody.map { BodyPattern(Array($0.utf8)) }
        var line = [UInt8](repeating: 0, count: 256)
        var steps: [HTTPResponseParser.Step] = [], done: [HTTPResponseParser] = []
        var at = 0
        while at < bytes.count {
            let n = min(piece, bytes.count - at)
            var offset = 0
            while offset < n {
                let step = bytes.withUnsafeBufferPointer { b in
                    line.withUnsafeMutableBufferPointer { l in
                        parser.feed(b.baseAddress! + at + offset, n - offset, line: l.baseAddress!, limit: l.count, pattern: pattern)
                    }
                }
                switch step {
                case .complete(let consumed):
                    steps.append(.complete(consumed: at + offset + consumed))  // as an offset into the whole text
                    done.append(parser)
                    offset += consumed
                case .malformed:
                    return (steps + [step], done + [parser])
                case .needMore:
                    offset = n
                }
            }
            at += n
        }
        return (steps, done + [parser])
    }

    static let pieces = [1, 2, 3, 5, 7, 13, 64, 4096]

    @Test("Content-Length: one response complete exactly at its end, however the bytes arrive", arguments: pieces)
    func contentLength(piece: Int) {
        let text = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 5\r\n\r\nhello"
        let (steps, parsers) = Self.parse(text, piece: piece)
        #expect(steps == [.complete(consumed: text.utf8.count)])
        #expect(parsers[0].status == 200 && parsers[0].contentLength == 5 && parsers[0].bodyBytes == 5)
        #expect(parsers[0].accepted(expectStatus: nil))
    }

    @Test("chunked: sizes in hex with extensions, trailers skipped, the body the chunks' sum", arguments: pieces)
    func chunked(piece: Int) {
        let text = "HTTP/1.1 201 Created\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            + "a;name=x\r\n0123456789\r\n1B\r\n" + String(repeating: "z", count: 27) + "\r\n0\r\nX-Trailer: 1\r\n\r\n"
        let (steps, parsers) = Self.parse(text, piece: piece, expectBody: "9z")
        #expect(steps == [.complete(consumed: text.utf8.count)])
        #expect(parsers[0].status == 201 && parsers[0].chunked && parsers[0].bodyBytes == 37)
        #expect(parsers[0].found, "the substring spans two chunks")
        #expect(parsers[0].accepted(expectStatus: nil) && !parsers[0].accepted(expectStatus: 200))
    }

    @Test("pipelined answers end where each ends; 1xx responses are skipped; 204 and HEAD have no body", arguments: [1, 3, 4096])
    func sequence(piece: Int) {
        let first = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        let second = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
        let third = "HTTP/1.1 404 Not Found\r\nConnection: keep-alive, Close\r\nContent-Length: 3\r\n\r\nnop"
        let (steps, parsers) = Self.parse(first + second + third, piece: piece)
        let ends = [first, first + second, first + second + third].map(\.utf8.count)
        #expect(steps == ends.map { .complete(consumed: $0) })
        #expect(parsers.prefix(3).map(\.status) == [200, 204, 404])
        #expect(!parsers[2].accepted(expectStatus: nil) && parsers[2].accepted(expectStatus: 404))
        #expect(parsers[2].close && !parsers[0].close)
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
        #expect(Self.parse(head, piece: piece, headOnly: true).steps == [.complete(consumed: head.utf8.count)])
    }

    @Test("no length: the body runs to the end of the stream, which completes it")
    func untilClose() {
        let text = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome bytes"
        var (steps, parsers) = Self.parse(text, piece: 4)
        #expect(steps.isEmpty)
        #expect(parsers[0].close && parsers[0].bodyBytes == 10)
        let whole = parsers[0].endOfStream()
        #expect(whole)
        var cut = Self.parse("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", piece: 100).parsers[0]
        let cutWhole = cut.endOfStream()
        #expect(!cutWhole, "a body cut short by the close is not whole")
        _ = steps
    }

    @Test("malformed answers say why", arguments: [
        ("HTTP/2 200 OK\r\n\r\n", HTTPResponseError.statusLine),
        ("ICY 200 OK\r\n\r\n", .statusLine),
        ("HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", .contentLength),
        ("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", .contentLength),
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", .chunkSize),
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n", .chunkTerminator),
        ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", .switchingProtocols),
        ("HTTP/1.1 200 OK\r\nX-Long: " + String(repeating: "a", count: 300) + "\r\n\r\n", .headerTooLong),
    ])
    func malformed(text: String, error: HTTPResponseError) {
        #expect(Self.parse(text, piece: 7).steps.last == .malformed(error))
    }

    @Test("a body substring not there leaves the answer unaccepted")
    func bodyMissing() {
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world"
        #expect(Self.parse(text, piece: 3, expectBody: "world").parsers[0].accepted(expectStatus: nil))
        #expect(!Self.parse(text, piece: 3, expectBody: "worlds").parsers[0].accepted(expectStatus: nil))
        #expect(Self.parse(text, piece: 3, expectBody: "lo wo").parsers[0].found)
        #expect(Self.parse("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\naaaaab", piece: 1, expectBody: "aaab").parsers[0].found)
    }

    // MARK: requests

    static func refuses(_ spec: HTTPRequestSpec, _ message: String) {
        let error = #expect(throws: LoadError.self) { try spec.build(host: "h") }
        #expect(error?.description.contains(message) == true, "\(error.map { "\($0)" } ?? "no error")")
    }

    static func text(_ set: HTTPRequestSet, _ k: Int = 0) -> String { String(decoding: set.requests[k].bytes, as: UTF8.self) }

    @Test("the default request is GET / with Host and User-Agent, byte for byte what the load always sent")
    func defaultRequest() throws {
        let set = try HTTPRequestSpec().build(host: "127.0.0.1:8080")
        #expect(Self.text(set) == "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: muxlab\r\n\r\n")
        #expect(set == HTTPRequestSet.standard(host: "127.0.0.1:8080"))
    }

    @Test("flags: method, path, headers in order, a body file with its Content-Length filled in")
    func fromFlags() throws {
        let body = FileManager.default.temporaryDirectory.appendingPathComponent("muxlab-body-\(getpid()).json").path
        try Data("{\"items\":[1,2]}".utf8).write(to: URL(fileURLWithPath: body))
        defer { try? FileManager.default.removeItem(atPath: body) }
        var spec = HTTPRequestSpec()
        spec.method = "POST"
        spec.path = "/orders?x=1"
        spec.headers = ["Content-Type: application/json", "X-Trace:abc"]
        spec.bodyFile = body
        let set = try spec.build(host: "h:1")
        #expect(Self.text(set) == "POST /orders?x=1 HTTP/1.1\r\nHost: h:1\r\nContent-Type: application/json\r\nX-Trace: abc\r\n"
            + "User-Agent: muxlab\r\nContent-Length: 15\r\n\r\n{\"items\":[1,2]}")
        spec.headers.append("host: other")
        spec.headers.append("Content-Length: 15")
        #expect(Self.text(try spec.build(host: "h:1")).hasPrefix("POST /orders?x=1 HTTP/1.1\r\nContent-Type"), "a Host given is kept, not added")
        var empty = HTTPRequestSpec()
        empty.method = "PUT"
        #expect(Self.text(try empty.build(host: "h")).contains("Content-Length: 0\r\n"))
        empty.method = "HEAD"
        #expect(try empty.build(host: "h").requests[0].headOnly)
        #expect(spec.arguments.starts(with: ["--method", "POST", "--path", "/orders?x=1", "--header"]))
    }

    @Test("a request file: requests separated by ###, LF or CRLF lines, Host and Content-Length filled in, sent in turn")
    func fromFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("muxlab-requests-\(getpid()).http").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let file = "POST /orders HTTP/1.1\nContent-Type: application/json\n\n{\"items\":\n[1]}\n### the second\r\n"
            + "GET /health HTTP/1.1\r\nHost: svc\r\n\r\n\r\n###\n\n"
        try Data(file.utf8).write(to: URL(fileURLWithPath: path))
        var spec = HTTPRequestSpec()
        spec.requestFile = path
        let set = try spec.build(host: "127.0.0.1:9")
        #expect(set.requests.count == 2)
        #expect(Self.text(set, 0) == "POST /orders HTTP/1.1\r\nHost: 127.0.0.1:9\r\nContent-Type: application/json\r\nUser-Agent: muxlab\r\n"
            + "Content-Length: 14\r\n\r\n{\"items\":\n[1]}")
        #expect(Self.text(set, 1) == "GET /health HTTP/1.1\r\nHost: svc\r\nUser-Agent: muxlab\r\n\r\n")
    }

    @Test("bad requests are refused naming the value and what is allowed", arguments: [
        ("method", "G T", "--method \"G T\": a method is"),
        ("path", "orders", "--path \"orders\": a request target starts with /"),
        ("path", "/a b", "no spaces"),
        ("header", "NoColon", "--header \"NoColon\": expected \"Name: value\""),
        ("header", "Transfer-Encoding: chunked", "chunked requests are not sent"),
        ("header", "Content-Length: 4", "the body is 0 bytes"),
        ("body", "/nonexistent/body.json", "--body-file /nonexistent/body.json: the file does not exist"),
        ("status", "42", "--expect-status 42: a status is 100-599"),
    ])
    func refused(field: String, value: String, message: String) {
        var spec = HTTPRequestSpec()
        switch field {
        case "method": spec.method = value
        case "path": spec.path = value
        case "header": spec.headers = [value]
        case "body": spec.bodyFile = value
        default: spec.expectStatus = Int(value)
        }
        Self.refuses(spec, message)
    }

    @Test("a request file refuses flags beside it and lines that are not a request")
    func fileRefusals() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("muxlab-bad-\(getpid()).http").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data("GET /a HTTP/1.1\n\n###\nGET /b\n".utf8).write(to: URL(fileURLWithPath: path))
        var spec = HTTPRequestSpec()
        spec.requestFile = path
        Self.refuses(spec, "request 2: \"GET /b\" is not a request line")
        spec.method = "POST"
        Self.refuses(spec, "cannot be given with it")
        try Data("\n\n###\n".utf8).write(to: URL(fileURLWithPath: path))
        spec.method = "GET"
        Self.refuses(spec, "no request in the file")
    }
}
