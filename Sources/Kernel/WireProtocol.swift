// What a request looks like on the wire to muxlab's HTTP servers (`WireProtocol`, in Vocabulary).

/// Finds the end of the first HTTP/1.1 request in a byte range: its header block (up to CRLF CRLF) and,
/// when a `Content-Length` header says so, that many body bytes after it (bodies are read and dropped, as
/// nginx's `return 200` does). Hand-written rather than a parser library's: it runs on every request
/// of every server loop, over bytes already in the connection's buffer, and must allocate nothing.
/// A chunked request body is not framed (no server here takes one): its chunks would read as requests.
public enum HTTPRequestScanner {
    /// "content-length:", lower case; a header name matches it whatever its case.
    static let contentLength: [UInt8] = Array("content-length:".utf8)

    /// A body longer than this never completes (the connection's buffer fills and the server closes it).
    public static let maxBody = 1 << 30

    /// Offset just past the first complete request (header and body) in `p[0..<len]`, or nil when none is complete.
    @inline(__always)
    public static func endOfRequest(_ p: UnsafeRawPointer, _ len: Int) -> Int? {
        let b = p.assumingMemoryBound(to: UInt8.self)
        var body = 0
        var i = 1
        while i < len {
            if b[i] == 10 && b[i - 1] == 13 {
                if i >= 3 && b[i - 2] == 10 && b[i - 3] == 13 {
                    let end = i + 1 + body
                    return end <= len ? end : nil
                }
                // A header line starts at i + 1: only one beginning with c or C can be Content-Length.
                if i + 1 < len && b[i + 1] | 0x20 == 0x63, let value = contentLengthValue(b, from: i + 1, len) {
                    body = value
                }
            }
            i += 1
        }
        return nil
    }

    /// The value of a `Content-Length:` header line starting at `start`, if that is the line there and
    /// its digits are all in range; nil for any other line (or one not yet whole).
    @inline(__always)
    static func contentLengthValue(_ b: UnsafePointer<UInt8>, from start: Int, _ len: Int) -> Int? {
        let name = contentLength.count
        guard start + name <= len else { return nil }
        for k in 0..<name where b[start + k] | (contentLength[k] == 0x3a || contentLength[k] == 0x2d ? 0 : 0x20) != contentLength[k] {
            return nil
        }
        var j = start + name
        while j < len && (b[j] == 0x20 || b[j] == 0x09) { j += 1 }
        var value = 0
        var digits = 0
        while j < len, b[j] >= 0x30 && b[j] <= 0x39 {
            value = min(value * 10 + Int(b[j] - 0x30), maxBody + 1)
            digits += 1
            j += 1
        }
        return digits > 0 ? value : nil
    }
}
