import Foundation

/// The HTTP requests of a load as the user wrote them (`muxlab load --method --path --header --body-file`,
/// or `--request-file`; a workload's `method`, `path`, `headers`, `body_file`, `request_file`) and what
/// counts as an answer (`--expect-status`, `--expect-body`). A multi-process load hands its children
/// the same flags (`arguments`).
public struct HTTPRequestSpec: Sendable, Equatable, Codable {
    public var method = "GET"
    public var path = "/"
    /// "Name: value" lines, in order.
    public var headers: [String] = []
    public var bodyFile: String?
    /// One or more raw HTTP/1.1 requests separated by lines `###`, sent in turn on each connection.
    public var requestFile: String?
    /// The one status that counts as an answer; nil: any 2xx.
    public var expectStatus: Int?
    /// A substring every answer's body must hold.
    public var expectBody: String?

    public init() {}

    /// The request `GET /` that a load without any of these sends.
    public var isDefault: Bool { self == HTTPRequestSpec() }

    /// `muxlab load` flags that say the same.
    public var arguments: [String] {
        var args: [String] = []
        if method != "GET" { args += ["--method", method] }
        if path != "/" { args += ["--path", path] }
        for h in headers { args += ["--header", h] }
        if let bodyFile { args += ["--body-file", bodyFile] }
        if let requestFile { args += ["--request-file", requestFile] }
        if let expectStatus { args += ["--expect-status", String(expectStatus)] }
        if let expectBody { args += ["--expect-body", expectBody] }
        return args
    }

    /// The largest body or request file read (a load keeps its requests in memory, sent as they are).
    public static let fileLimit = 16 << 20
    public static let statusRange = 100...599

    /// Checks every value and reads the files; errors name the flag, the value and what is allowed.
    public func build(host: String) throws -> HTTPRequestSet {
        if let expectStatus, !HTTPRequestSpec.statusRange.contains(expectStatus) {
            throw LoadError("--expect-status \(expectStatus): a status is 100-599 (default: any 2xx)")
        }
        if let requestFile {
            var plain = self
            (plain.requestFile, plain.expectStatus, plain.expectBody) = (nil, nil, nil)
            guard plain.isDefault else {
                throw LoadError("--request-file \(requestFile) holds whole requests: --method, --path, --header and --body-file cannot be given with it")
            }
            return try HTTPRequestSet.parse(try HTTPRequestSpec.read(requestFile, "--request-file"), host: host, source: requestFile)
        }
        let body = try bodyFile.map { try HTTPRequestSpec.read($0, "--body-file") } ?? []
        return HTTPRequestSet(requests: [try HTTPRequestSet.build(method: method, target: path, headers: headers, body: body,
                                                                  host: host, place: nil)])
    }

    /// A message of `build` with the workload's key names for the flags' (`--body-file X` -> `body_file = X`).
    public static func inWorkloadTerms(_ message: String) -> String {
        var text = message
        for (flag, key) in [("--method", "method ="), ("--path", "path ="), ("--header", "headers:"), ("--body-file", "body_file ="),
                            ("--request-file", "request_file ="), ("--expect-status", "expect_status ="), ("--expect-body", "expect_body ="),
                            (": method", ": method ="), (": path", ": path ="), (": header", ": headers:")] {
            text = text.replacingOccurrences(of: flag + " ", with: key + " ")
        }
        return text.replacingOccurrences(of: "--method, --path, --header and --body-file", with: "method, path, headers and body_file")
    }

    static func read(_ path: String, _ flag: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            let why = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist"
            throw LoadError("\(flag) \(path): the file \(why)")
        }
        guard data.count <= fileLimit else {
            throw LoadError("\(flag) \(path): \(data.count) bytes; at most \(fileLimit) (16 MiB)")
        }
        return [UInt8](data)
    }
}

/// One request's bytes as sent, and whether its answer has a body (not for HEAD).
public struct HTTPRequest: Sendable, Equatable {
    public let bytes: [UInt8]
    public let headOnly: Bool
}

/// The requests a load sends, each connection in turn, built once before the run.
public struct HTTPRequestSet: Sendable, Equatable {
    public let requests: [HTTPRequest]

    /// `GET /` with Host and `User-Agent: muxlab`, what a load sends by default.
    public static func standard(host: String) -> HTTPRequestSet {
        // Built from literals that pass every check.
        HTTPRequestSet(requests: [try! build(method: "GET", target: "/", headers: [], body: [], host: host, place: nil)])
    }

    static let tokenCharacters = Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)

    static func isToken(_ s: Substring) -> Bool { !s.isEmpty && s.utf8.allSatisfy { tokenCharacters.contains($0) } }

    /// A request from its parts: Host added first when absent, `User-Agent: muxlab` when absent,
    /// Content-Length when the body is not empty (or the method is POST, PUT or PATCH) and absent.
    /// `place` says where the parts came from in messages ("request 2 of FILE"); nil: the flags.
    static func build(method: String, target: String, headers: [String], body: [UInt8], host: String,
                      place: String?) throws -> HTTPRequest {
        func flag(_ name: String) -> String { place.map { "\($0): \(name.dropFirst(2))" } ?? name }
        guard isToken(Substring(method)), method.count <= 32 else {
            throw LoadError("\(flag("--method")) \"\(method)\": a method is 1-32 letters, digits or !#$%&'*+-.^_`|~ (e.g. GET, POST)")
        }
        let targetOK = (target.hasPrefix("/") || target == "*" || target.hasPrefix("http://") || target.hasPrefix("https://"))
            && target.utf8.allSatisfy { $0 > 32 && $0 != 127 }
        guard targetOK else {
            throw LoadError("\(flag("--path")) \"\(target)\": a request target starts with / (or is * or an absolute http:// URL) and holds no spaces or control characters")
        }
        var names = Set<String>()
        var givenLength: Int?
        for h in headers {
            let parts = h.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, isToken(parts[0]), !h.utf8.contains(13), !h.utf8.contains(10) else {
                throw LoadError("\(flag("--header")) \"\(h)\": expected \"Name: value\" on one line (e.g. \"Content-Type: application/json\")")
            }
            let name = parts[0].lowercased()
            let value = parts[1].trimmingCharacters(in: .whitespaces)
            names.insert(name)
            if name == "transfer-encoding" {
                throw LoadError("\(flag("--header")) \"\(h)\": request bodies go with a Content-Length (filled in from the body); chunked requests are not sent")
            }
            if name == "content-length" {
                guard let n = Int(value), n == body.count else {
                    throw LoadError("\(flag("--header")) \"\(h)\": the body is \(body.count) bytes; leave Content-Length out and it is filled in")
                }
                givenLength = n
            }
        }
        var head = "\(method) \(target) HTTP/1.1\r\n"
        if !names.contains("host") { head += "Host: \(host)\r\n" }
        for h in headers {
            let parts = h.split(separator: ":", maxSplits: 1)
            head += "\(parts[0]): \(parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : "")\r\n"
        }
        if !names.contains("user-agent") { head += "User-Agent: muxlab\r\n" }
        if givenLength == nil && (!body.isEmpty || ["POST", "PUT", "PATCH"].contains(method)) {
            head += "Content-Length: \(body.count)\r\n"
        }
        head += "\r\n"
        return HTTPRequest(bytes: Array(head.utf8) + body, headOnly: method == "HEAD")
    }

    /// Raw requests separated by lines starting `###` (as REST clients' .http files are): each a request
    /// line `METHOD TARGET HTTP/1.1`, header lines, an empty line and the body up to the separator (the
    /// line end just before it is not the body's). Lines may end in LF or CRLF; CRLF is sent.
    static func parse(_ bytes: [UInt8], host: String, source: String) throws -> HTTPRequestSet {
        var lines: [[UInt8]] = [[]]
        for b in bytes {
            if b == 10 { lines.append([]) } else { lines[lines.count - 1].append(b) }
        }
        var blocks: [[[UInt8]]] = [[]]
        for line in lines {
            if line.starts(with: Array("###".utf8)) { blocks.append([]) } else { blocks[blocks.count - 1].append(line) }
        }
        var requests: [HTTPRequest] = []
        for block in blocks {
            var rest = block[...]
            while let first = rest.first, String(decoding: first, as: UTF8.self).trimmingCharacters(in: .whitespaces).isEmpty {
                rest = rest.dropFirst()
            }
            guard let requestLine = rest.first else { continue }
            let place = "\(source): request \(requests.count + 1)"
            func text(_ line: [UInt8]) -> String {
                String(decoding: line.last == 13 ? line.dropLast() : line[...], as: UTF8.self)
            }
            let words = text(requestLine).split(separator: " ", omittingEmptySubsequences: false)
            guard words.count == 3, words[2] == "HTTP/1.1" else {
                throw LoadError("\(place): \"\(text(requestLine))\" is not a request line METHOD TARGET HTTP/1.1 (e.g. POST /orders HTTP/1.1)")
            }
            rest = rest.dropFirst()
            var headers: [String] = []
            while let line = rest.first, !text(line).isEmpty {
                headers.append(text(line))
                rest = rest.dropFirst()
            }
            rest = rest.dropFirst()
            // The body: the remaining lines joined by the line ends they had, less the line end before the
            // separator (or the file's end).
            var bodyLines = Array(rest)
            if bodyLines.last?.isEmpty == true { bodyLines.removeLast() }
            var body: [UInt8] = []
            for (j, line) in bodyLines.enumerated() {
                if j > 0 { body.append(10) }
                body += line
            }
            if body.last == 13 { body.removeLast() }
            if rest.allSatisfy({ text($0).isEmpty }) { body = [] }
            requests.append(try build(method: String(words[0]), target: String(words[1]), headers: headers, body: body,
                                      host: host, place: place))
        }
        guard !requests.isEmpty else {
            throw LoadError("\(source): no request in the file (one or more of METHOD TARGET HTTP/1.1, headers, an empty line and a body, separated by lines ###)")
        }
        return HTTPRequestSet(requests: requests)
    }
}
