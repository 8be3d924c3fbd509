#if canImport(Glibc)
import Glibc
#endif
import Kernel
import Vocabulary

/// One request, one response, checked, before any cell is measured: a server
/// that answers wrongly fails the cell instead of producing a data point.
public enum RoundTrip {
    /// HTTP sends the first of the load's own requests (`http`) and accepts what the load accepts: any 2xx
    /// (or `expectStatus`), the expected body substring, Content-Length, chunked or close-delimited bodies.
    /// `anyStatus`: the load's requests are not the driver's to know (a wrk cell with the user's Lua script), so
    /// `GET /` must get a whole, well-formed HTTP response of any status; the load's own counts judge the rest.
    public static func verify(_ target: Endpoint, wire: WireProtocol, messageSize: Int, http: HTTPRequestSpec = HTTPRequestSpec(),
                              anyStatus: Bool = false, timeout: Double = 5) throws {
        let (fd, inProgress) = try Sockets.startConnect(to: target)
        defer { FD.close(fd) }
        if inProgress {
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard Glibc.poll(&pfd, 1, Int32(timeout * 1000)) == 1 else { throw LoadError("verify: connecting to \(target) timed out after \(timeout) s") }
            let err = Sockets.pendingError(fd)
            if err != 0 { throw LoadError("verify: cannot connect to \(target): \(SystemError("connect", errno: err))") }
        }
        let request: [UInt8]
        var parser = HTTPResponseParser()
        switch wire {
        case .echo: request = (0..<messageSize).map { UInt8(truncatingIfNeeded: 65 + ($0 * 11) % 26) }
        case .http:
            let first = try http.build(host: "\(target)").requests[0]
            request = first.bytes
            parser.reset(headOnly: first.headOnly)
        }
        let pattern = http.expectBody.map { BodyPattern(Array($0.utf8)) }
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
        var line = [UInt8](repeating: 0, count: LoadLoop.headerCapacity)
        var whole = false
        while !(wire == .echo && got.count >= request.count) && !whole {
            try waitFor(fd, POLLIN, deadline, target)
            let r = try chunk.withUnsafeMutableBytes { try FD.read(fd, $0.baseAddress!, $0.count) }
            switch r {
            case .wouldBlock: continue
            case .done(0):
                if wire == .http && parser.endOfStream() { whole = true; continue }
                throw LoadError("verify: \(target) closed the connection after \(got.count) bytes of the response")
            case .done(let n):
                got.append(contentsOf: chunk[0..<n])
                guard wire == .http else { continue }
                let step = chunk.withUnsafeBufferPointer { c in
                    line.withUnsafeMutableBufferPointer { l in
                        parser.feed(c.baseAddress!, n, line: l.baseAddress!, limit: l.count, pattern: pattern)
                    }
                }
                switch step {
                case .needMore: continue
                case .malformed(let e): throw LoadError("verify: response from \(target): \(e): \(quoted(got))")
                case .complete(let consumed):
                    guard consumed == n else {
                        throw LoadError("verify: \(n - consumed) bytes from \(target) after a whole response: \(quoted(got))")
                    }
                    whole = true
                }
            }
        }
        switch wire {
        case .echo:
            guard got == request else {
                let at = (0..<min(got.count, request.count)).first { got[$0] != request[$0] } ?? min(got.count, request.count)
                throw LoadError("verify: echo from \(target) differs from the request at byte \(at) (sent \(request.count), got \(got.count))")
            }
        case .http:
            if anyStatus { return }  // the loop above ends only on a whole response
            guard parser.accepted(expectStatus: http.expectStatus) else {
                let statusOK = http.expectStatus.map { parser.status == $0 } ?? (200...299).contains(parser.status)
                let why = statusOK ? "its body does not hold \"\(http.expectBody ?? "")\""
                    : "status \(parser.status), expected \(http.expectStatus.map(String.init) ?? "any 2xx")"
                throw LoadError("verify: response from \(target): \(why): \(quoted(got))")
            }
        }
    }

    /// The start of a response, quoted for a message.
    static func quoted(_ bytes: [UInt8]) -> String { String(decoding: bytes.prefix(120), as: UTF8.self).debugDescription }

    static func waitFor(_ fd: Int32, _ event: Int32, _ deadline: UInt64, _ target: Endpoint) throws {
        let now = monotonicNanos()
        guard now < deadline else { throw LoadError("verify: no answer from \(target) in time") }
        var pfd = pollfd(fd: fd, events: Int16(event), revents: 0)
        _ = Glibc.poll(&pfd, 1, Int32((deadline - now) / 1_000_000) + 1)
    }
}
