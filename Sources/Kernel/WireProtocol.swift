// What a request and its response look like on the wire (`WireProtocol`, in Vocabulary).

/// Finds the end of an HTTP header block (CRLF CRLF) in a byte range: a request for the server, a response head for the client.
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
