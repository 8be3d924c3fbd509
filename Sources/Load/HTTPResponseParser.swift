/// Why a response is not HTTP/1.1 as the load reads it.
public enum HTTPResponseError: UInt8, Error, CustomStringConvertible, Sendable {
    case statusLine, headerTooLong, contentLength, chunkSize, chunkTerminator, switchingProtocols

    public var description: String {
        switch self {
        case .statusLine: return "not an HTTP/1.x status line (HTTP/1.1 SSS reason)"
        case .headerTooLong: return "header block or line longer than the limit"
        case .contentLength: return "Content-Length is not a decimal number, or two differ"
        case .chunkSize: return "a chunk size line is not hexadecimal digits (extensions after ';')"
        case .chunkTerminator: return "chunk data not followed by CRLF"
        case .switchingProtocols: return "101 Switching Protocols: the connection left HTTP/1.1"
        }
    }
}

/// One HTTP/1.1 response read as its bytes arrive: the status line, the headers it needs
/// (Content-Length, Transfer-Encoding: chunked, Connection: close), the body by length, by chunks
/// (extensions and trailers skipped) or to the end of the stream, and 1xx responses skipped.
///
/// Hand-written rather than taken from a library: it runs on the load's hot path for every byte of
/// every answer and must not allocate (swift-nio's HTTP decoder builds an `HTTPResponseHead` with its
/// header strings per response). A connection's state is these few words plus a line buffer the
/// caller owns (one per active connection, allocated once).
public struct HTTPResponseParser: Sendable {
    public enum Phase: UInt8, Sendable {
        case statusLine, headers, body, untilClose, chunkSize, chunkData, chunkEnd, trailers
    }

    public enum Step: Equatable, Sendable {
        /// Every byte taken; the response goes on.
        case needMore
        /// The response ended with byte `consumed` of this feed; what follows is the next response's.
        case complete(consumed: Int)
        case malformed(HTTPResponseError)
    }

    public var phase: Phase = .statusLine
    /// The final response's status (1xx ones are skipped), 0 before its status line.
    public private(set) var status = 0
    public private(set) var contentLength = -1
    public private(set) var chunked = false
    /// The server said `Connection: close`, or gave no length (the body ends with the stream).
    public private(set) var close = false
    /// Body bytes of this response so far (chunk framing not counted).
    public private(set) var bodyBytes = 0
    /// The expected body substring was seen (true when none is expected).
    public private(set) var found = true
    /// The request was HEAD: its response has no body whatever its headers say.
    public var headOnly = false
    var remaining = 0
    var lineLength = 0
    var headerBytes = 0
    var matched = 0

    public init() {}

    /// Ready for a new connection's first response.
    public mutating func reset(headOnly: Bool = false) {
        self = HTTPResponseParser()
        self.headOnly = headOnly
    }

    /// Takes `n` bytes; `line` holds a header line while it arrives (`limit` bytes, also the bound on the
    /// whole header block), `pattern` the body substring to look for.
    public mutating func feed(_ p: UnsafePointer<UInt8>, _ n: Int, line: UnsafeMutablePointer<UInt8>, limit: Int,
                              pattern: BodyPattern?) -> Step {
        var k = 0
        while k < n {
            switch phase {
            case .body, .chunkData, .untilClose:
                let take = phase == .untilClose ? n - k : min(remaining, n - k)
                if let pattern, !found { scan(p + k, take, pattern) }
                bodyBytes += take
                k += take
                guard phase != .untilClose else { continue }
                remaining -= take
                if remaining == 0 {
                    if phase == .body { return finish(at: k) }
                    phase = .chunkEnd
                }
            default:
                let b = p[k]
                k += 1
                guard b == 10 else {
                    guard lineLength < limit, headerBytes < limit else { return .malformed(.headerTooLong) }
                    line[lineLength] = b
                    lineLength += 1
                    if phase != .chunkSize && phase != .chunkEnd { headerBytes += 1 }
                    continue
                }
                var length = lineLength
                if length > 0 && line[length - 1] == 13 { length -= 1 }
                lineLength = 0
                switch endOfLine(line, length, pattern: pattern) {
                case .needMore: continue
                case .complete: return finish(at: k)
                case .malformed(let e): return .malformed(e)
                }
            }
        }
        return .needMore
    }

    /// The stream ended: true when that completes the response (a body delimited by the close).
    public mutating func endOfStream() -> Bool {
        guard phase == .untilClose else { return false }
        phase = .statusLine
        return true
    }

    /// The response is a success: the expected status (any 2xx when nil) and, if asked for, the body substring.
    public func accepted(expectStatus: Int?) -> Bool {
        (expectStatus.map { status == $0 } ?? (200...299).contains(status)) && found
    }

    mutating func finish(at k: Int) -> Step {
        phase = .statusLine
        headerBytes = 0
        return .complete(consumed: k)
    }

    /// A whole line (CR stripped) of the status line, a header, a chunk size, a chunk's end or a trailer.
    mutating func endOfLine(_ line: UnsafeMutablePointer<UInt8>, _ length: Int, pattern: BodyPattern?) -> Step {
        switch phase {
        case .statusLine:
            // "HTTP/1.x SSS[ reason]"
            guard length >= 12, line[0] == 72, line[1] == 84, line[2] == 84, line[3] == 80, line[4] == 47, line[5] == 49,
                  line[6] == 46, isDigit(line[7]), line[8] == 32, isDigit(line[9]), isDigit(line[10]), isDigit(line[11]),
                  length == 12 || line[12] == 32 else { return .malformed(.statusLine) }
            status = Int(line[9] - 48) * 100 + Int(line[10] - 48) * 10 + Int(line[11] - 48)
            (contentLength, chunked, close, bodyBytes, matched) = (-1, false, false, 0, 0)
            found = pattern == nil || pattern!.count == 0
            phase = .headers
        case .headers:
            if length > 0 { return header(line, length) }
            if status == 101 { return .malformed(.switchingProtocols) }
            if status < 200 {  // 100 Continue, 103 Early Hints: the final response follows
                phase = .statusLine
                headerBytes = 0
                status = 0
                return .needMore
            }
            if headOnly || status == 204 || status == 304 { return .complete(consumed: 0) }
            if chunked {
                phase = .chunkSize
            } else if contentLength >= 0 {
                guard contentLength > 0 else { return .complete(consumed: 0) }
                phase = .body
                remaining = contentLength
            } else {
                phase = .untilClose
                close = true
            }
        case .chunkSize:
            var size = 0, digits = 0, j = 0
            while j < length, let v = hexValue(line[j]) {
                guard digits < 15 else { return .malformed(.chunkSize) }
                size = size * 16 + v
                digits += 1
                j += 1
            }
            guard digits > 0, j == length || line[j] == 59 || line[j] == 32 || line[j] == 9 else { return .malformed(.chunkSize) }
            if size == 0 {
                phase = .trailers
            } else {
                phase = .chunkData
                remaining = size
            }
        case .chunkEnd:
            guard length == 0 else { return .malformed(.chunkTerminator) }
            phase = .chunkSize
        case .trailers:
            if length == 0 { return .complete(consumed: 0) }
        case .body, .chunkData, .untilClose:
            break
        }
        return .needMore
    }

    /// One header line: Content-Length, Transfer-Encoding and Connection are read, the rest skipped.
    mutating func header(_ line: UnsafeMutablePointer<UInt8>, _ length: Int) -> Step {
        var colon = 0
        while colon < length && line[colon] != 58 { colon += 1 }
        guard colon < length else { return .needMore }  // not a header: skipped, as lenient clients do
        var start = colon + 1
        while start < length && (line[start] == 32 || line[start] == 9) { start += 1 }
        var end = length
        while end > start && (line[end - 1] == 32 || line[end - 1] == 9) { end -= 1 }
        if nameIs(line, colon, HTTPResponseParser.contentLengthName) {
            var v = 0, j = start
            guard end > start, end - start <= 18 else { return .malformed(.contentLength) }
            while j < end {
                guard isDigit(line[j]) else { return .malformed(.contentLength) }
                v = v * 10 + Int(line[j] - 48)
                j += 1
            }
            guard contentLength < 0 || contentLength == v else { return .malformed(.contentLength) }
            contentLength = v
        } else if nameIs(line, colon, HTTPResponseParser.transferEncodingName) {
            // The last coding decides: "gzip, chunked" is chunked.
            chunked = valueEnds(line, start, end, HTTPResponseParser.chunkedToken)
        } else if nameIs(line, colon, HTTPResponseParser.connectionName) {
            if valueHasToken(line, start, end, HTTPResponseParser.closeToken) { close = true }
        }
        return .needMore
    }

    mutating func scan(_ p: UnsafePointer<UInt8>, _ n: Int, _ pattern: BodyPattern) {
        var m = matched
        let bytes = pattern.bytes, failure = pattern.failure
        for j in 0..<n {
            let b = p[j]
            while m > 0 && bytes[m] != b { m = failure[m - 1] }
            if bytes[m] == b { m += 1 }
            if m == pattern.count {
                found = true
                break
            }
        }
        matched = m
    }

    static let contentLengthName: StaticString = "content-length"
    static let transferEncodingName: StaticString = "transfer-encoding"
    static let connectionName: StaticString = "connection"
    static let chunkedToken: StaticString = "chunked"
    static let closeToken: StaticString = "close"
}

@inline(__always) private func isDigit(_ b: UInt8) -> Bool { b >= 48 && b <= 57 }

@inline(__always) private func hexValue(_ b: UInt8) -> Int? {
    switch b {
    case 48...57: return Int(b - 48)
    case 97...102: return Int(b - 87)
    case 65...70: return Int(b - 55)
    default: return nil
    }
}

/// The header name `line[0..<length]` is `name` (lower case), ignoring case.
@inline(__always) private func nameIs(_ line: UnsafeMutablePointer<UInt8>, _ length: Int, _ name: StaticString) -> Bool {
    guard length == name.utf8CodeUnitCount else { return false }
    let n = name.utf8Start
    for j in 0..<length where line[j] | 0x20 != n[j] { return false }
    return true
}

/// The value's last comma-separated token is `token`, ignoring case.
private func valueEnds(_ line: UnsafeMutablePointer<UInt8>, _ start: Int, _ end: Int, _ token: StaticString) -> Bool {
    let count = token.utf8CodeUnitCount
    guard end - start >= count else { return false }
    let t = token.utf8Start
    for j in 0..<count where line[end - count + j] | 0x20 != t[j] { return false }
    let before = end - count - 1
    return before < start || line[before] == 44 || line[before] == 32 || line[before] == 9
}

/// One of the value's comma-separated tokens is `token`, ignoring case.
private func valueHasToken(_ line: UnsafeMutablePointer<UInt8>, _ start: Int, _ end: Int, _ token: StaticString) -> Bool {
    var s = start
    while s < end {
        var e = s
        while e < end && line[e] != 44 { e += 1 }
        var a = s, b = e
        while a < b && (line[a] == 32 || line[a] == 9) { a += 1 }
        while b > a && (line[b - 1] == 32 || line[b - 1] == 9) { b -= 1 }
        if b - a == token.utf8CodeUnitCount && valueEnds(line, a, b, token) { return true }
        s = e + 1
    }
    return false
}

/// A body substring to look for (`--expect-body`), with its failure table (Knuth-Morris-Pratt, so it is
/// found across reads in one pass); allocated once per load.
public final class BodyPattern: @unchecked Sendable {
    let bytes: UnsafeMutablePointer<UInt8>
    let failure: UnsafeMutablePointer<Int>
    public let count: Int

    public init(_ text: [UInt8]) {
        count = text.count
        bytes = .allocate(capacity: max(1, count))
        failure = .allocate(capacity: max(1, count))
        bytes.initialize(repeating: 0, count: max(1, count))
        failure.initialize(repeating: 0, count: max(1, count))
        for (j, b) in text.enumerated() { bytes[j] = b }
        var k = 0
        if count > 1 {
            for j in 1..<count {
                while k > 0 && bytes[j] != bytes[k] { k = failure[k - 1] }
                if bytes[j] == bytes[k] { k += 1 }
                failure[j] = k
            }
        }
    }

    deinit {
        bytes.deallocate()
        failure.deallocate()
    }
}
