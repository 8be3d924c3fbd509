#if canImport(Glibc)
import Glibc
#endif
import Kernel
import Vocabulary

/// One request, one response, checked, before any cell is measured: a server
/// that answers wrongly fails the cell instead of producing a data point.
public enum RoundTrip {
    public static func verify(_ target: Endpoint, wire: WireProtocol, messageSize: Int, timeout: Double = 5) throws {
        let (fd, inProgress) = try Sockets.startConnect(to: target)
        defer { FD.close(fd) }
        if inProgress {
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard Glibc.poll(&pfd, 1, Int32(timeout * 1000)) == 1 else { throw LoadError("verify: connecting to \(target) timed out after \(timeout) s") }
            let err = Sockets.pendingError(fd)
            if err != 0 { throw LoadError("verify: cannot connect to \(target): \(SystemError("connect", errno: err))") }
        }
        let request: [UInt8]
        switch wire {
        case .echo: request = (0..<messageSize).map { UInt8(truncatingIfNeeded: 65 + ($0 * 11) % 26) }
        case .http: request = Array("GET /verify HTTP/1.1\r\nHost: \(target)\r\n\r\n".utf8)
        }
        let deadline = monotonicNanos() + UInt64(timeout * 1e9)
        var sent = 0
        while sent < request.count {
            try waitFor(fd, POLLOUT, deadline, target)
            switch try request.withUnsafeBytes({ try FD.write(fd, $0.baseAddress! + sent, request.count - sent) }) {
            case .done(let n): sent += n
            case .wouldBlock: continue
            }
        }
        var got: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            if wire == .echo && got.count >= request.count { break }
            if wire == .http, let need = httpLength(got), got.count >= need { break }
            try waitFor(fd, POLLIN, deadline, target)
            let r = try chunk.withUnsafeMutableBytes { try FD.read(fd, $0.baseAddress!, $0.count) }
            switch r {
            case .wouldBlock: continue
            case .done(0): throw LoadError("verify: \(target) closed the connection after \(got.count) bytes of the response")
            case .done(let n): got.append(contentsOf: chunk[0..<n])
            }
        }
        switch wire {
        case .echo:
            guard got == request else {
                let at = (0..<min(got.count, request.count)).first { got[$0] != request[$0] } ?? min(got.count, request.count)
                throw LoadError("verify: echo from \(target) differs from the request at byte \(at) (sent \(request.count), got \(got.count))")
            }
        case .http:
            guard httpLength(got) == got.count else {
                throw LoadError("verify: response from \(target) is not one HTTP/1.1 200 with a Content-Length: \(String(decoding: got.prefix(80), as: UTF8.self).debugDescription)")
            }
        }
    }

    /// Total length of a complete "HTTP/1.x 200" response with Content-Length, nil while incomplete or invalid.
    static func httpLength(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4, let end = bytes.withUnsafeBytes({ HTTPRequestScanner.endOfRequest($0.baseAddress!, $0.count) }) else { return nil }
        let length = bytes.withUnsafeBytes { LoadLoop.contentLength(ofOKResponse: $0.baseAddress!, end) }
        return length.map { end + $0 }
    }

    static func waitFor(_ fd: Int32, _ event: Int32, _ deadline: UInt64, _ target: Endpoint) throws {
        let now = monotonicNanos()
        guard now < deadline else { throw LoadError("verify: no answer from \(target) in time") }
        var pfd = pollfd(fd: fd, events: Int16(event), revents: 0)
        _ = Glibc.poll(&pfd, 1, Int32((deadline - now) / 1_000_000) + 1)
    }
}
