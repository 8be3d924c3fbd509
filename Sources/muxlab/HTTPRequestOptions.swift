import ArgumentParser
import Load

/// The HTTP request flags `muxlab load` and `muxlab bench --server-command` share: declared once,
/// so both commands name, document and check them alike.
struct HTTPRequestOptions: ParsableArguments {
    @Option(help: ArgumentHelp("HTTP: the request's method (default GET).", valueName: "method"))
    var method: String?

    @Option(help: ArgumentHelp("HTTP: the request target (default /).", valueName: "path"))
    var path: String?

    @Option(name: .customLong("header"), help: ArgumentHelp("HTTP: a request header \"Name: value\" (repeatable); Host and Content-Length are filled in when absent.", valueName: "header"))
    var headers: [String] = []

    @Option(help: ArgumentHelp("HTTP: the request body, read from this file (Content-Length set from it).", valueName: "file"))
    var bodyFile: String?

    @Option(help: ArgumentHelp("HTTP: one or more raw HTTP/1.1 requests, separated by lines ###, sent in turn on each connection (instead of --method, --path, --header, --body-file).", valueName: "file"))
    var requestFile: String?

    @Option(help: ArgumentHelp("HTTP: the one status that counts as an answer, 100-599 (default: any 2xx).", valueName: "status"))
    var expectStatus: Int?

    @Option(help: ArgumentHelp("HTTP: a substring every answer's body must hold, else a wrong response.", valueName: "text"))
    var expectBody: String?

    /// The flags given on the command line, in the order above.
    var given: [String] {
        [("--method", method != nil), ("--path", path != nil), ("--header", !headers.isEmpty), ("--body-file", bodyFile != nil),
         ("--request-file", requestFile != nil), ("--expect-status", expectStatus != nil), ("--expect-body", expectBody != nil)]
            .filter(\.1).map(\.0)
    }

    /// The request they describe (GET / by default).
    var spec: HTTPRequestSpec {
        var spec = HTTPRequestSpec()
        spec.method = method ?? "GET"
        spec.path = path ?? "/"
        spec.headers = headers
        spec.bodyFile = bodyFile
        spec.requestFile = requestFile
        spec.expectStatus = expectStatus
        spec.expectBody = expectBody
        return spec
    }
}
