import Kernel

/// The fixed HTTP response, the same bytes for every request (as nginx's `return 200 "..."`).
public enum HTTPResponse {
    public static let body = "Hello, World!"
    public static let text = "HTTP/1.1 200 OK\r\nServer: muxlab\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
    public static let bytes: [UInt8] = Array(text.utf8)
}
