/// What a request and its response look like on the wire.
public enum WireProtocol: String, CaseIterable, Sendable {
    /// The response is every byte of the request, back.
    case echo
    /// HTTP/1.1 keep-alive: each request (ended by an empty line) gets one fixed 200 response.
    case http

    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
}
