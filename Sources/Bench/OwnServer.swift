import Foundation
import Kernel
import Load
import Vocabulary

/// `muxlab bench --server-command '...'`: the one-experiment workload for a user's own server, written
/// as TOML into the run directory (`workload.toml`, so the run can be repeated as it is) and loaded
/// through the same loader and driver as any workload file: timing and evidence windows, the same rows.
public struct OwnServerPlan: Sendable {
    /// The server's argument list, {port} {cpus} {host} {workdir} filled in per cell.
    public var command: [String]
    public var wire: WireProtocol = .http
    public var http = HTTPRequestSpec()
    public var connections = [10, 100, 1000]
    /// Active connections per cell; nil: all of them.
    public var active: Int?
    public var rate: Int?
    public var duration = 5.0
    public var warmup = 1.0
    public var repeats = 3
    public var serverCPUs = "1"
    /// A config file the server reads: copied into {workdir} per cell with {port}, {cpus}, {workdir} and {host} filled in.
    public var serverConfig: String?
    public var clientCPUs = "0"

    public init(command: [String]) { self.command = command }

    /// The command as written, split into words as a shell would for plain words and quotes
    /// ('single', "double", backslash escapes); no expansion of any kind.
    /// `portInConfig`: the --server-config file names {port} (nginx's listen), so the command need not.
    public static func words(_ text: String, portInConfig: Bool = false) throws -> [String] {
        var words: [String] = [], current = "", inWord = false
        var quote: Character?
        var escaped = false
        for c in text {
            if escaped { current.append(c); escaped = false; inWord = true; continue }
            if let q = quote {
                if c == q { quote = nil } else if c == "\\" && q == "\"" { escaped = true } else { current.append(c) }
                continue
            }
            switch c {
            case "'", "\"": quote = c; inWord = true
            case "\\": escaped = true
            case " ", "\t", "\n":
                if inWord { words.append(current); current = ""; inWord = false }
            default: current.append(c); inWord = true
            }
        }
        guard quote == nil, !escaped else {
            throw ValueError("--server-command \"\(text)\": an unclosed quote or a trailing backslash")
        }
        if inWord { words.append(current) }
        guard !words.isEmpty else { throw ValueError("--server-command is empty: give the server's command line, e.g. 'python3 app.py --port {port}'") }
        guard portInConfig || words.contains(where: { $0.contains("{port}") }) else {
            throw ValueError("--server-command \"\(text)\": no {port} in it (nor in a --server-config file): the server must listen on the port the driver picks (e.g. --port {port}, or -l 127.0.0.1:{port})")
        }
        return words
    }

    /// The name the rows give the server (`model`): its executable's base name in [a-z0-9-].
    public var serverName: String {
        let skipped = command.first == "taskset" ? command.dropFirst(3).first ?? "server" : command[0]
        let base = (skipped as NSString).lastPathComponent.lowercased()
        var name = String(base.map { ("a"..."z").contains($0) || ("0"..."9").contains($0) ? $0 : "-" })
        while name.hasPrefix("-") { name.removeFirst() }
        if name.isEmpty { name = "server" }
        return Workload.models.contains(name) ? "own-" + name : name
    }

    /// The server pinned to the cell's server CPUs: `taskset -c {cpus}` in front unless the command says {cpus} itself.
    public var pinnedCommand: [String] {
        command.contains { $0.contains("{cpus}") } ? command : ["taskset", "-c", "{cpus}"] + command
    }

    public func toml() -> String {
        func quoted(_ s: String) -> String {
            "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "\n", with: "\\n") + "\""
        }
        func list(_ words: [String]) -> String { "[" + words.map(quoted).joined(separator: ", ") + "]" }
        var text = """
        # Written by `muxlab bench --server-command`: the one-experiment workload of this run.
        # Run it again with `muxlab bench workload.toml`.
        title = \(quoted("Own server: " + command.joined(separator: " ")))

        [defaults]
        duration = \(quoted(formatDecimal(duration) + "s"))
        warmup = \(quoted(formatDecimal(warmup) + "s"))
        repeat = \(repeats)
        server_cpus = \(quoted(serverCPUs))
        client_cpus = \(quoted(clientCPUs))
        protocol = \(quoted(wire.rawValue))
        # A user's server may call malloc often: each hit of the malloc uprobe traps, so it is not attached.
        malloc_probe = false

        [[experiment]]
        id = "own-server"
        claims = []
        description = \(quoted("muxlab's load against " + command.joined(separator: " ")))
        [experiment.base]
        model = \(quoted(serverName))
        server_command = \(list(pinnedCommand))

        """
        if let serverConfig { text += "server_config = \(quoted(absolute(serverConfig)))\n" }
        if let active { text += "active = \(active)\n" }
        if let rate { text += "rate = \(rate)\n" }
        if wire == .http {
            if http.method != "GET" { text += "method = \(quoted(http.method))\n" }
            if http.path != "/" { text += "path = \(quoted(http.path))\n" }
            if !http.headers.isEmpty { text += "headers = \(list(http.headers))\n" }
            if let f = http.bodyFile { text += "body_file = \(quoted(absolute(f)))\n" }
            if let f = http.requestFile { text += "request_file = \(quoted(absolute(f)))\n" }
            if let s = http.expectStatus { text += "expect_status = \(s)\n" }
            if let b = http.expectBody { text += "expect_body = \(quoted(b))\n" }
        }
        text += "[experiment.matrix]\nconnections = [\(connections.map(String.init).joined(separator: ", "))]\n"
        return text
    }

    func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    /// "10,100,1000" as connection counts (1-100000 each, distinct).
    public static func connectionList(_ text: String) throws -> [Int] {
        let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let values = parts.compactMap { Int($0) }
        guard !parts.isEmpty, values.count == parts.count, values.allSatisfy({ (1...100_000).contains($0) }),
              Set(values).count == values.count else {
            throw ValueError("--connections \"\(text)\": expected distinct counts 1-100000 separated by commas, e.g. 10,100,1000")
        }
        return values
    }

    /// The rows of a finished run, one line per cell setting: medians over the repeats.
    public static func summary(_ rows: [ResultRow]) -> String {
        var text = "| connections | ok rows | requests/s | p50 µs | p99 µs | server CPU µs/req | syscalls/req | copies KB/req | switches/req |\n"
        text += "|---|---|---|---|---|---|---|---|---|\n"
        var order: [Int] = []
        for r in rows where !order.contains(r.connections ?? 0) { order.append(r.connections ?? 0) }
        for c in order {
            let all = rows.filter { ($0.connections ?? 0) == c }
            let ok = all.filter { $0.status == .ok }
            func median(_ values: [Double?]) -> String {
                let v = values.compactMap { $0 }.sorted()
                guard !v.isEmpty else { return "" }
                return formatFigure(v.count % 2 == 1 ? v[v.count / 2] : (v[v.count / 2 - 1] + v[v.count / 2]) / 2)
            }
            text += "| \(c) | \(ok.count) of \(all.count) | \(median(ok.map(\.throughputRPS))) | \(median(ok.map(\.latencyP50Us))) | "
                + "\(median(ok.map(\.latencyP99Us))) | \(median(ok.map(\.cpuUsPerReq))) | \(median(ok.map(\.syscallsPerReq))) | "
                + "\(median(ok.map { $0.copyBytesPerReq.map { $0 / 1024 } })) | \(median(ok.map(\.ctxSwitchesPerReq))) |\n"
        }
        return text
    }
}
