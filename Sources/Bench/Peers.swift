#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Histogram
import Kernel
import Load
import Probe

/// Peers under the same harness (issue 7): an external server started from an argument list,
/// and wrk as the load generator, measured with the same snapshots and probes as muxlab's own.
extension BenchRunner {
    /// Starts `cell.serverCommand` with {port}, {host}, {cpus} and {workdir} filled in (after writing
    /// `cell.serverConfig` into {workdir}); returns once the port accepts connections.
    func startExternalServer(_ cell: Cell, _ row: inout ResultRow, tag: String, environment: [String]?) throws -> (ChildProcess, UInt16) {
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
                               stderrPath: "\(logDirectory)/\(tag)-server.err", environment: environment)
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

    /// wrk as the cell's load: the Lua report script in the run's work directory, and pinned runs of it.
    func startWrk(_ cell: Cell, target: Endpoint, tag: String) throws -> WrkLoadDriver {
        let wrk = try resolveExecutable("wrk", purpose: "load = \"wrk\"")
        let taskset = try resolveExecutable("taskset", purpose: "pinning wrk")
        let script = "\(options.outDirectory)/work/wrk-report.lua"
        if mkdir(options.outDirectory + "/work", 0o755) != 0 && errno != EEXIST {
            throw CellFailure("cannot create \(options.outDirectory)/work: \(String(cString: strerror(errno)))")
        }
        do { try WrkReport.script.write(toFile: script, atomically: true, encoding: .utf8) } catch {
            throw CellFailure("cannot write \(script): \(error)")
        }
        // A user's wrk script runs in every wrk of the cell; in the measured run muxlab's report is chained
        // after its `done` hook (both run, muxlab's line last).
        var measured = script
        if let user = cell.wrkScript {
            measured = "\(options.outDirectory)/work/wrk-report-cell-\(cell.index).lua"
            do { try WrkReport.chained(after: user).write(toFile: measured, atomically: true, encoding: .utf8) } catch {
                throw CellFailure("cannot write \(measured): \(error)")
            }
        }
        let threads = max(1, min(cell.clientCPUs.cpus.count, cell.connections))
        return try WrkLoadDriver(warmup: cell.warmup, connections: cell.connections, cpus: cell.clientCPUs.description) { seconds, report in
            var args = ["-c", cell.clientCPUs.description, wrk, "-t", String(threads), "-c", String(cell.connections),
                        "-d", "\(max(1, Int(seconds.rounded())))s", "--timeout", "\(max(1, Int(cell.requestTimeout.rounded())))s"]
            if report { args += ["-s", measured] } else if let user = cell.wrkScript { args += ["-s", user] }
            args += cell.loadArgs
            args.append("http://\(target)/")
            return try self.spawn(.client, executable: taskset, arguments: args, stderrPath: "\(self.logDirectory)/\(tag)-wrk.err")
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
            guard access(name, X_OK) == 0 else {
                let from = name.hasPrefix("/") ? "" : " (a relative path, from \(FileManager.default.currentDirectoryPath))"
                throw CellFailure("\(purpose): \(name) is not an executable file\(from)")
            }
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
    /// wrk's whole latency distribution: value (µs), count, value, count, ... (its Lua `latency(i)`).
    let latency: [UInt64]?

    enum CodingKeys: String, CodingKey {
        case requests, durationUs = "duration_us", p50, p90, p99, p999, max, connect, read, write, status, timeout, latency
    }

    /// The distribution as a nanosecond histogram like muxlab load's. It holds what wrk's percentiles come
    /// from: wrk 4 adds its own coordinated-omission fill-ins (stats_correct), so it may count more than `requests`.
    var histogram: Histogram<UInt64>? {
        guard let latency, !latency.isEmpty, latency.count % 2 == 0 else { return nil }
        var h = LoadGenerator.newHistogram()
        for i in stride(from: 0, to: latency.count, by: 2) where latency[i + 1] > 0 {
            _ = h.record(latency[i] * 1000, count: latency[i + 1])
        }
        return h
    }

    var seconds: Double { durationUs / 1e6 }
    var errorsTotal: Int { connect + read + write + status + timeout }

    /// wrk's run as a load summary. wrk opens all its connections; a failed connect is counted, and then
    /// the count held is not known.
    func summary(connections: Int, cpus: String, clientCPUSeconds: Double) -> LoadSummary {
        var errors = ErrorCounts()
        errors.connect = connect
        errors.read = read
        errors.write = write
        errors.timeout = timeout
        errors.wrongResponse = status
        var latency = LatencySummary()
        if requests > 0 {
            latency.p50 = p50; latency.p90 = p90; latency.p99 = p99; latency.p999 = p999; latency.max = max
        }
        return LoadSummary(target: "", mode: "closed", connections: connections, active: connections, targetRPS: nil,
                           durationS: seconds, requests: requests, errors: errors, errorsTotal: errorsTotal,
                           throughputRPS: seconds > 0 ? Double(requests) / seconds : 0, latencyUs: latency, cpus: cpus,
                           clientCPUSeconds: clientCPUSeconds, idleClosed: 0,
                           established: connect == 0 ? connections : nil, served: nil)
    }

    /// wrk's Lua API: `summary` counts, `latency` its histogram in µs (percentile(), max; `#latency` distinct
    /// values, `latency(i)` the i-th value and its count: the whole distribution, kept in histograms/).
    /// The user's script (`wrk_script`), then muxlab's `done` chained after the user's own.
    static func chained(after user: String) -> String {
        let quoted = user.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        return """
        -- Written by muxlab: the workload's wrk_script, then muxlab's report after its done hook.
        dofile("\(quoted)")
        local user_done = done
        \(script.replacingOccurrences(of: "done = function(summary, latency, requests)\n", with: "done = function(summary, latency, requests)\n  if user_done then user_done(summary, latency, requests) end\n"))
        """
    }

    /// wrk flags the driver sets itself (threads, connections, duration, timeout, script).
    static let ownedFlags = ["-t", "--threads", "-c", "--connections", "-d", "--duration", "--timeout", "-s", "--script"]

    static let script = """
    -- Written by muxlab: one JSON line with wrk's own figures, for the results row.
    done = function(summary, latency, requests)
      local e = summary.errors
      local points = {}
      for i = 1, #latency do
        local value, count = latency(i)
        points[#points + 1] = string.format('%d,%d', value, count)
      end
      io.write(string.format('{"requests":%d,"duration_us":%d,"p50":%.1f,"p90":%.1f,"p99":%.1f,"p999":%.1f,"max":%.1f,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"latency":[%s]}\\n',
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency:percentile(99.9), latency.max, e.connect, e.read, e.write, e.status, e.timeout, table.concat(points, ',')))
    end
    """
}
