import Servers
import Testing

/// Feeds `stream` to framing `F` the way a read path does: in chunks of `chunk` bytes, the partial request
/// after the complete ones kept at the front; returns the requests found and the bytes left partial.
func frame<F: Framing>(_: F.Type, _ stream: [UInt8], chunk: Int, limit: Int = .max) -> (requests: Int, left: Int) {
    var held: [UInt8] = []
    var requests = 0
    var offset = 0
    while offset < stream.count {
        let end = min(stream.count, offset + chunk)
        held += stream[offset..<end]
        offset = end
        let found = held.withUnsafeBytes { F.complete($0.baseAddress!, $0.count, limit: limit) }
        requests += found.requests
        held.removeFirst(found.bytes)
    }
    return (requests, held.count)
}

@Suite("Framing: where requests end, whatever the reads cut")
struct FramingProtocolTests {
    static let request = Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)

    @Test("HTTP: pipelined requests are found whole however the stream is cut; a partial one is kept", arguments: [1, 2, 3, 7, 27, 64, 4096])
    func httpAnyCut(chunk: Int) {
        let stream = Array([[UInt8]](repeating: Self.request, count: 5).joined()) + Array("GET / HT".utf8)
        let got = frame(HTTPFraming.self, stream, chunk: chunk)
        #expect(got.requests == 5)
        #expect(got.left == 8)
    }

    @Test("HTTP: POSTs with Content-Length bodies, pipelined, are found whole however the stream is cut", arguments: [1, 5, 13, 64, 4096])
    func httpBodiesAnyCut(chunk: Int) {
        let post = Array("POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n{\"item\":\"\r\n\r\n\"}".utf8)
        let stream = Array([[UInt8]](repeating: post, count: 4).joined()) + Self.request + Array(post.dropLast(3))
        let got = frame(HTTPFraming.self, stream, chunk: chunk)
        #expect(got.requests == 5)
        #expect(got.left == post.count - 3)
    }

    @Test("HTTP: the limit stops after that many requests and names only their bytes")
    func httpLimit() {
        let stream = Array([[UInt8]](repeating: Self.request, count: 3).joined())
        let found = stream.withUnsafeBytes { HTTPFraming.complete($0.baseAddress!, $0.count, limit: 2) }
        #expect(found.requests == 2 && found.bytes == 2 * Self.request.count)
        let none = stream.withUnsafeBytes { HTTPFraming.complete($0.baseAddress!, Self.request.count - 1, limit: 9) }
        #expect(none.requests == 0 && none.bytes == 0)
    }

    @Test("echo: each chunk read is one request of its own length, nothing kept", arguments: [1, 16, 64])
    func echoChunks(chunk: Int) {
        let got = frame(EchoFraming.self, [UInt8](repeating: 7, count: 640), chunk: chunk)
        #expect(got.requests == 640 / chunk)
        #expect(got.left == 0)
        let empty = [UInt8]().withUnsafeBytes { EchoFraming.complete($0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, 0, limit: 1) }
        #expect(empty.requests == 0 && empty.bytes == 0)
    }
}
