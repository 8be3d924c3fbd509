#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Kernel
import Load
import Probe

/// Peers under the same harness (issue 7): an external server started from an argument list,
/// and wrk as the load generator, measured with the same snapshots and probes as muxlab's own.
extension BenchRunner {
    /// Starts `cell.serverCommand` with {port}, {host}, {cpus} and {workdir} filled in (after writing
    /// `cell.serverConfig` into {workdir}); returns once the port accepts connections.
    func startExternalServer(_ cell: Cell, _ row: inout ResultRow, tag: String) throws -> (ChildProcess, UInt16) {
        let port = try freeLoopbackPort()
        let workdir = "\(options.outDirectory)/work/\(tag)"
        for dir in [options.outDirectory + "/work", workdir, workdir + "/logs"] where mkdir(dir, 0o755) != 0 && errno != EEXIST {
            throw CellFailure("cannot create \(dir): \(String(cString: strerror(errno)))")
        }
        func fill(_ text: String) -> String {
            text.replacingOccurrences(of: "{port}", with: String(port))
                .replacingOccurrences(of: "{cpus}", with: cell.serverCPUs.description)
                .replacingOccurrences(of: "{workdir}", with: workdir)
                .replacingOccurrences(of: "{host}", with: serverHost)
        }
        if let template = cell.serverConfig {
            guard let text = try? String(contentsOfFile: template, encoding: .utf8) else {
                throw CellFailure("server_config \(template) cannot be read")
            }
            let written = workdir + "/" + (template as NSString).lastPathComponent
            do { try fill(text).write(toFile: written, atomically: true, encoding: .utf8) } catch {
                throw CellFailure("cannot write \(written): \(error)")
            }
        }
        let arguments = cell.serverCommand.map(fill)
        let executable = try resolveExecutable(arguments[0], purpose: "server_command")
        let server = try spawn(.server, executable: executable, arguments: Array(arguments.dropFirst()),
                               stderrPath: "\(logDirectory)/\(tag)-server.err")
        // No ready line from a peer: it is ready when its port accepts a connection.
        let deadline = monotonicNanos() + 10_000_000_000
        while true {
            if let status = server.poll() {
                throw CellFailure("\(arguments[0]) exited before accepting (\(status)): \(server.stderrTail(3).joined(separator: " | "))")
            }
            do {
                if try onClientSide({ acceptsConnections(Endpoint(host: serverHost, port: port)) }) { break }
            } catch {
                server.stop()
                throw CellFailure("cannot check whether \(arguments[0]) accepts: \(error)")
            }
            if monotonicNanos() > deadline {
                server.stop()
                throw CellFailure("\(arguments[0]) did not accept on port \(port) within 10 s: \(server.stderrTail(3).joined(separator: " | "))")
            }
            usleep(20_000)
        }
        row.serverCPUs = Placement.affinity(pid: server.pid).description
        return (server, port)
    }

    /// The measured window driven by wrk: a warm-up run, then the measured run bracketed by
    /// the same snapshots as `muxlab load`'s phases. wrk's own histogram gives the latencies
    /// (a Lua `done` hook prints them as one JSON line); its connects fall inside the window.
    func measureWithWrk(_ cell: Cell, _ row: inout ResultRow, server: ChildProcess, target: Endpoint,
                        sampler: KernelSampler?, tag: String, memoryAtReady: MemoryMark) throws {
        let wrk = try resolveExecutable("wrk", purpose: "load = \"wrk\"")
        let taskset = try resolveExecutable("taskset", purpose: "pinning wrk")
        let script = "\(options.outDirectory)/work/wrk-report.lua"
        if mkdir(options.outDirectory + "/work", 0o755) != 0 && errno != EEXIST {
            throw CellFailure("cannot create \(options.outDirectory)/work: \(String(cString: strerror(errno)))")
        }
        do { try WrkReport.script.write(toFile: script, atomically: true, encoding: .utf8) } catch {
            throw CellFailure("cannot write \(script): \(error)")
        }
        let threads = max(1, min(cell.clientCPUs.cpus.count, cell.connections))
        func run(seconds: Double, report: Bool) throws -> ChildProcess {
            var args = ["-c", cell.clientCPUs.description, wrk, "-t", String(threads), "-c", String(cell.connections),
                        "-d", "\(max(1, Int(seconds.rounded())))s", "--timeout", "\(max(1, Int(cell.requestTimeout.rounded())))s"]
            if report { args += ["-s", script] }
            args.append("http://\(target)/")
            return try spawn(.client, executable: taskset, arguments: args, stderrPath: "\(logDirectory)/\(tag)-wrk.err")
        }
        if cell.warmup > 0 {
            let warm = try run(seconds: cell.warmup, report: false)
            guard warm.wait(timeout: cell.warmup + 30) != nil else { warm.stop(); throw CellFailure("wrk warm-up did not end") }
        }
        sampler?.addTree()
        let kernelAtStart = try sampler?.snapshot()
        let cpuAtStart = ProcessStats.cpuNanos(tree: server.pid)
        row.serverFDsStart = ProcessStats.openDescriptors(tree: server.pid)
        // wrk's CPU: what the driver's reaped children used, before and after reaping the measured run.
        let childrenCPUBefore = ProcessStats.rusageCPUSeconds(reapedChildren: true)
        let measured = try run(seconds: cell.duration, report: true)
        defer { measured.stop(grace: 0.5) }
        var lines: [String] = []
        let deadline = monotonicNanos() + UInt64((cell.duration + 30) * 1e9)
        while measured.poll() == nil || !lines.contains(where: { $0.hasPrefix("{") }) {
            if benchInterruptSignal != 0 { throw CellFailure("interrupted") }
            if let status = server.poll() { throw CellFailure("server died during the cell (\(status))") }
            if monotonicNanos() > deadline { throw CellFailure("wrk did not finish within \(formatSeconds(cell.duration + 30))") }
            if let line = measured.readLine(timeout: 0.2) { lines.append(line) } else if measured.poll() != nil { lines += measured.readRemaining(timeout: 0.5); break }
        }
        let cpuAtEnd = ProcessStats.cpuNanos(tree: server.pid)
        let kernelAtEnd = try sampler?.snapshot()
        row.serverFDsEnd = ProcessStats.openDescriptors(tree: server.pid)
        row.serverRSSKB = ProcessStats.rssKB(tree: server.pid)
        row.serverThreads = ProcessStats.threads(tree: server.pid)
        let memoryAtEnd = MemoryMark(server: server.pid)
        guard let json = lines.last(where: { $0.hasPrefix("{") }),
              let report = try? JSONDecoder().decode(WrkReport.self, from: Data(json.utf8)) else {
            throw CellFailure("wrk printed no report (\(measured.poll().map { "\($0)" } ?? "running")): \(measured.stderrTail(3).joined(separator: " | "))")
        }
        report.fill(&row)
        // wrk opens all its connections; a failed connect is counted, and then the count is not known.
        fillMemory(&row, from: memoryAtReady, to: memoryAtEnd, connections: report.connect == 0 ? cell.connections : nil)
        if measured.wait(timeout: 5) != nil {
            fillClientCPU(&row, seconds: ProcessStats.rusageCPUSeconds(reapedChildren: true) - childrenCPUBefore, window: report.seconds, requests: report.requests)
        }
        fillServerCPU(&row, from: cpuAtStart, to: cpuAtEnd, window: report.seconds, requests: report.requests)
        if let sampler, let a = kernelAtStart, let b = kernelAtEnd {
            try fillProbeColumns(&row, cell, KernelCounters(from: a, to: b), requests: report.requests,
                                 allocations: sampler.countsAllocations)
        }
        if report.requests == 0 && !cell.allowErrors {
            throw CellFailure("wrk completed no request (errors: \(report.errorsTotal))")
        }
    }

    /// True when a connect to `target` completes within 100 ms.
    func acceptsConnections(_ target: Endpoint) -> Bool {
        guard let (fd, inProgress) = try? Sockets.startConnect(to: target) else { return false }
        defer { FD.close(fd) }
        if !inProgress { return true }
        var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        return Glibc.poll(&pfd, 1, 100) == 1 && Sockets.pendingError(fd) == 0
    }

    /// A loopback port nothing listens on now (bound, read back, released).
    func freeLoopbackPort() throws -> UInt16 {
        let (fd, port) = try Sockets.listen(on: Endpoint(host: "127.0.0.1", port: 0), backlog: 1)
        FD.close(fd)
        return port
    }

    /// `name` as given when it has a slash, else the first match on PATH (and /usr/sbin, /sbin).
    func resolveExecutable(_ name: String, purpose: String) throws -> String {
        if name.contains("/") {
            guard access(name, X_OK) == 0 else { throw CellFailure("\(purpose): \(name) is not an executable file") }
            return name
        }
        if let found = executablesOnPath(named: name, extraDirectories: ["/usr/sbin", "/sbin"]).first { return found }
        throw CellFailure("\(purpose): \(name) is not installed (not on PATH): `make deps` installs nginx and wrk, or apt-get install -y \(name)")
    }
}

/// The one JSON line wrk's `done` hook prints: its own counts and percentiles (µs).
struct WrkReport: Decodable {
    let requests: Int
    let durationUs: Double
    let p50: Double, p90: Double, p99: Double, p999: Double, max: Double
    let connect: Int, read: Int, write: Int, status: Int, timeout: Int

    enum CodingKeys: String, CodingKey {
        case requests, durationUs = "duration_us", p50, p90, p99, p999, max, connect, read, write, status, timeout
    }

    var seconds: Double { durationUs / 1e6 }
    var errorsTotal: Int { connect + read + write + status + timeout }

    func fill(_ row: inout ResultRow) {
        row.requests = requests
        row.errors = errorsTotal
        row.errorsConnect = connect
        row.errorsRead = read
        row.errorsWrite = write
        row.errorsTimeout = timeout
        row.errorsWrongResponse = status
        row.durationS = seconds
        row.throughputRPS = seconds > 0 ? Double(requests) / seconds : nil
        if requests > 0 {
            row.latencyP50Us = p50
            row.latencyP90Us = p90
            row.latencyP99Us = p99
            row.latencyP999Us = p999
            row.latencyMaxUs = max
        }
    }

    /// wrk's Lua API: `summary` counts, `latency` its histogram in µs (percentile(), max).
    static let script = """
    -- Written by muxlab: one JSON line with wrk's own figures, for the results row.
    done = function(summary, latency, requests)
      local e = summary.errors
      io.write(string.format('{"requests":%d,"duration_us":%d,"p50":%.1f,"p90":%.1f,"p99":%.1f,"p999":%.1f,"max":%.1f,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\\n',
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency:percentile(99.9), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
    end
    """
}
