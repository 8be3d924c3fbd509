import Kernel

/// The fixed HTTP response, the same bytes for every request (as nginx's `return 200 "..."`).
public enum HTTPResponse {
    public static let body = "Hello, World!"
    public static let text = "HTTP/1.1 200 OK\r\nServer: muxlab\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
    public static let bytes: [UInt8] = Array(text.utf8)
}

/// Finds complete HTTP requests (header block ended by CRLF CRLF) in a byte range.
public enum HTTPRequestScanner {
    /// Offset just past the first complete request in `p[0..<len]`, or nil when none is complete.
    @inline(__always)
    public static func endOfRequest(_ p: UnsafeRawPointer, _ len: Int) -> Int? {
        let b = p.assumingMemoryBound(to: UInt8.self)
        var i = 3
        while i < len {
            if b[i] == 10 && b[i - 1] == 13 && b[i - 2] == 10 && b[i - 3] == 13 { return i + 1 }
            i += 1
        }
        return nil
    }
}
