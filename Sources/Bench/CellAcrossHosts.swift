#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Histogram
import Kernel
import Load
import Probe

/// A cell across hosts (`server_host`, `load_hosts`): the server started on its host and the load split over
/// the load hosts, each by that host's `muxlab agent`; one timing window opened and closed by the driver on
/// every host, its edges read on all of them at once; the loads' histograms added exactly. The row says
/// which host ran what (`hosts`), each load host's CPU per request, each host's own window length and its
/// clock's offset from the driver's. With probes on, the server's host probes the server for the evidence window.
extension BenchRunner {
    /// The session with host `name`: made on first use, made again when the last one broke.
    func agent(_ name: String) throws -> AgentSession {
        if let session = agents[name], session.broken == nil { return session }
        agents[name]?.close()
        agents[name] = nil
        guard let host = workload.hosts[name] else { throw CellFailure("host \(name) is not in the workload's [hosts]") }
        let session = try AgentSession(host: host, localVersion: options.muxlabVersion, localExecutable: options.executable,
                                       logDirectory: logDirectory)
        agents[name] = session
        return session
    }

    func closeAgents() {
        for session in agents.values { session.close() }
        agents.removeAll()
    }

    func nextAgentChild() -> Int {
        agentChildren += 1
        return agentChildren
    }

    func measureAcrossHosts(_ cell: Cell, into row: inout ResultRow, probes: Bool) throws -> SyscallsCSV.Entries {
        guard let serverName = cell.serverHost else { throw CellFailure("load_hosts needs server_host") }
        row.hosts = "server=\(serverName) load=" + (cell.loadHosts.isEmpty ? "local" : cell.loadHosts.joined(separator: ","))
        let serverSession = try agent(serverName)
        let address = serverSession.host.address
        let server = RemoteChild(session: serverSession, child: nextAgentChild(), what: "muxlab serve")
        let arguments = serverArguments(cell, listen: ["--listen", address, "--allow-non-loopback"], &row)
        let cpuSource = try server.session.spawn(child: server.child, arguments: arguments, counters: "server", cpu: true).cpuSource
        defer { server.session.end(child: server.child) }
        guard case .ready(let port, _, let settings) = try server.expect("a ready message", within: 10, { if case .ready = $0 { true } else { false } }) else {
            throw CellFailure("unreachable")
        }
        try accept(ready: settings, cell, &row)
        let target = Endpoint(host: address, port: port)
        try verify(cell, target: target, &row)

        let load = try HostsLoad(cell, target: target, runner: self, server: server)
        defer { load.stop() }
        let clock = AcrossClock(cell: cell, server: server, load: load)
        try clock.wait(cell.warmup)
        let edges = AcrossEdges(server: server, loads: load.parts)
        let timing = try MeasurementWindow(id: 1, server: edges, load: load, sampler: nil)
            .measure(seconds: cell.duration, subWindows: cell.subWindows, wait: { try clock.wait($0) })
        try keepLatencyHistogram(cell, from: load, window: 1)
        var m = CellMeasurement(timing: timing, memoryAtReady: .unmeasured, cpuSource: cpuSource ?? "unknown")
        row.probeStatus = "off"
        if probes {
            // The server's host probes the server; where they cannot attach, the timing row stands and says why.
            let status = try server.session.attach(child: server.child)
            row.probeStatus = status
            if !status.hasPrefix("failed") {
                m.evidence = try MeasurementWindow(id: 2, server: AcrossEdges(server: server, loads: load.parts, kernel: true), load: load, sampler: nil)
                    .measure(seconds: cell.evidenceSeconds, wait: { try clock.wait($0) })
            }
        }
        load.stop()
        row.fill(m, cell: cell)
        fillHosts(&row, server: server, load: load, edges: edges)
        if timing.load.requests == 0 && cell.active > 0 && !cell.allowErrors {
            throw CellFailure("no request completed in the measured window (errors: \(timing.load.errorsTotal))")
        }
        if row.status == .windowMismatch { progress("  cell \(cell.index): \(row.reason ?? "")") }
        return BenchRunner.syscallEntries(m.evidence?.kernel)
    }

    /// The row's per-host columns: each load host's CPU per request, each host's window and clock offset.
    func fillHosts(_ row: inout ResultRow, server: RemoteChild, load: HostsLoad, edges: AcrossEdges) {
        let parts = load.byHost[1] ?? []
        row.clientCPUUsPerReqHosts = parts.compactMap { part in
            let s = part.summary
            return s.requests > 0 && s.clientCPUSeconds >= 0 ? "\(part.host)=\(formatDecimal(s.clientCPUSeconds * 1e6 / Double(s.requests)))" : nil
        }
        var windows: [String] = []
        if let first = edges.serverClocks.first, let last = edges.serverClocks.last, last > first {
            windows.append("\(server.session.host.name)=\(formatDecimal(Double(last - first) / 1e9))")
        }
        windows += parts.map { "\($0.host)=\(formatDecimal($0.summary.durationS))" }
        row.hostWindowS = windows
        let sessions = edges.sessions
        row.clockOffsetUs = sessions.compactMap { s in s.clockOffsetNanos.map { "\(s.host.name)=\(formatDecimal(Double($0) / 1e3))" } }
        row.clockRoundTripUs = sessions.compactMap { s in
            s.clockOffsetNanos == nil ? nil : "\(s.host.name)=\(formatDecimal(Double(s.shortestRoundTripNanos) / 1e3))"
        }
    }
}

extension MemoryMark {
    init(pssKB: Int?, slabKB: Int?, eventpollMappings: Int?) {
        self.pssKB = pssKB
        self.slabKB = slabKB
        self.eventpollMappings = eventpollMappings
    }

    /// Nothing read: the server runs on another host, where this build reads no memory figures.
    static let unmeasured = MemoryMark(pssKB: nil, slabKB: nil, eventpollMappings: nil)
}

/// A child an agent started on its host, named for messages.
struct RemoteChild {
    let session: AgentSession
    let child: Int
    let what: String

    /// The child's next message that matches, within `seconds`; its end, or the session's, fails the cell,
    /// naming the host. `first`: checked before it each time (the server, while a load connects).
    func expect(_ description: String, within seconds: Double, first: () throws -> Void = {},
                _ match: (ControlMessage) -> Bool) throws -> ControlMessage {
        let deadline = monotonicNanos() + UInt64(seconds * 1e9)
        while monotonicNanos() < deadline {
            try first()
            if let message = try session.receive(child: child, timeout: 0.2), match(message) { return message }
            try checkAlive()
        }
        throw CellFailure("\(session.named): \(what) sent no \(description) within \(formatSeconds(seconds))")
    }

    /// Throws, naming the host, once the child ended (with its last stderr) or the session broke.
    func checkAlive() throws {
        try session.drain()
        if let exit = session.exitStatus(child: child) {
            let said = exit.stderr.suffix(3).joined(separator: " | ")
            throw CellFailure("\(session.named): \(what) ended (\(exit.status))" + (said.isEmpty ? "" : ": " + said))
        }
    }
}

/// The load of a cell across hosts: its connections, active connections and rate split over the load hosts
/// as `muxlab load` splits them over processes, one `muxlab load --control` per host; without load_hosts,
/// one on this machine against the server's host.
final class HostsLoad: LoadDriver {
    struct Part {
        let host: String
        let remote: RemoteChild
        var session: AgentSession { remote.session }
        var child: Int { remote.child }
    }

    let parts: [Part]
    /// The load on this machine, when the cell names no load host.
    let local: MuxlabLoadDriver?
    let cell: Cell
    let target: Endpoint
    var process: ChildProcess? { local?.process }
    var counters: ServerCounterFile? { local?.counters }
    /// Each window's summary from each host, for the per-host columns.
    private(set) var byHost: [Int: [(host: String, summary: LoadSummary)]] = [:]
    private var merged: [Int: Histogram<UInt64>] = [:]
    private var stopped = false

    /// Starts every host's part and waits until each has connected; a server that ends meanwhile fails the cell.
    init(_ cell: Cell, target: Endpoint, runner: BenchRunner, server: RemoteChild) throws {
        self.cell = cell
        self.target = target
        let limit = LoadGenerator.connectLimit(connections: cell.connections, connectRate: cell.connectRate) + 10
        if cell.loadHosts.isEmpty {
            parts = []
            local = try HostsLoad.startHere(cell, target: target, runner: runner, server: server, connectLimit: limit)
            return
        }
        local = nil
        var config = LoadConfig(target: target)
        config.connections = cell.connections
        config.active = cell.active
        config.rate = cell.rate
        config.connectRate = cell.connectRate
        config.processes = cell.loadHosts.count
        let shares: [LoadShare]
        do { shares = try LoadProcesses.split(config) } catch { throw CellFailure("load_hosts: \(error)") }
        var parts: [Part] = []
        do {
            for (name, share) in zip(cell.loadHosts, shares) {
                let remote = RemoteChild(session: try runner.agent(name), child: runner.nextAgentChild(), what: "muxlab load")
                let arguments = runner.loadArguments(cell, target: target, share: share) + ["--allow-non-loopback"]
                _ = try remote.session.spawn(child: remote.child, arguments: arguments, counters: "load")
                parts.append(Part(host: name, remote: remote))
            }
            let deadline = monotonicNanos() + UInt64(limit * 1e9)
            for part in parts {
                let left = max(0.5, Double(Int64(deadline) - Int64(monotonicNanos())) / 1e9)
                _ = try part.remote.expect("connected message (its connections open)", within: left, first: { try server.checkAlive() }) {
                    if case .connected = $0 { true } else { false }
                }
            }
        } catch {
            for part in parts { part.session.end(child: part.child) }
            throw error
        }
        self.parts = parts
    }

    /// `muxlab load --control` on this machine against the server's host (a `[hosts]` address: allowed).
    static func startHere(_ cell: Cell, target: Endpoint, runner: BenchRunner, server: RemoteChild, connectLimit: Double) throws -> MuxlabLoadDriver {
        let counters: ServerCounterFile
        do { counters = try ServerCounterFile(tag: "cell-\(cell.index)", kind: "load") } catch { throw CellFailure("cannot make the load's counters file: \(error)") }
        let arguments = runner.loadArguments(cell, target: target, share: nil) + ["--allow-non-loopback", "--counters", counters.path]
        let child = try ChildProcess(executable: runner.options.executable, arguments: arguments,
                                     stderrPath: "\(runner.logDirectory)/cell-\(cell.index)-load.err", control: true)
        do {
            return try MuxlabLoadDriver(child: child, counters: counters, connectLimit: connectLimit, alive: { try server.checkAlive() })
        } catch {
            child.stop(grace: 0.5)
            throw error
        }
    }

    func open(window id: Int, seconds: Double) throws {
        try local?.open(window: id, seconds: seconds)
        for part in parts { part.session.send(child: part.child, .open(window: id)) }
    }

    func run(seconds: Double, wait: (Double) throws -> Void) throws { try wait(seconds) }

    func close(window id: Int) throws {
        try local?.close(window: id)
        for part in parts { part.session.send(child: part.child, .close(window: id)) }
    }

    /// Every host's summary of window `id`, as one: counts summed, histograms added exactly.
    func summary(window id: Int) throws -> LoadSummary {
        if let local {
            let summary = try local.summary(window: id)
            byHost[id] = [("local", summary)]
            merged[id] = local.latencyHistogram(window: id)
            return summary
        }
        var pieces: [(name: String, part: (summary: LoadSummary, histogram: Histogram<UInt64>))] = []
        var hosts: [(host: String, summary: LoadSummary)] = []
        for part in parts {
            guard case .window(_, let summary, let text) = try part.remote.expect("summary of window \(id)", within: 10, {
                if case .window(id, _, _) = $0 { true } else { false }
            }) else { continue }
            guard let text, let histogram = try? JSONDecoder().decode(Histogram<UInt64>.self, from: Data(text.utf8)) else {
                throw CellFailure("\(part.session.named): muxlab load sent window \(id) without a readable latency histogram")
            }
            pieces.append(("host \(part.host)", (summary, histogram)))
            hosts.append((part.host, summary))
        }
        do {
            let (summary, histogram) = try LoadProcesses.merge(pieces, target: "\(target)", rate: cell.rate, cpus: cell.clientCPUs.description,
                                                              requestsPerConnection: 0)
            byHost[id] = hosts
            merged[id] = histogram
            return summary
        } catch {
            throw CellFailure("the load hosts' summaries of window \(id) do not add up: \(error)")
        }
    }

    func latencyHistogram(window id: Int) -> Histogram<UInt64>? { merged[id] }

    /// Tells each host's load to finish, then has its agent end it (idempotent).
    func stop() {
        guard !stopped else { return }
        stopped = true
        local?.stop()
        for part in parts { part.session.send(child: part.child, .stop) }
        for part in parts { part.session.end(child: part.child) }
    }
}

/// Both sides' counters at a window's edge, read on every host of the cell at once: the requests go out
/// together and the answers are taken as they come, so the reads are apart by about one round trip.
final class AcrossEdges: EdgeSource {
    let server: RemoteChild
    let loads: [HostsLoad.Part]
    /// Read the probes' snapshot of the server at each edge (the evidence window).
    let kernel: Bool
    /// The server host's clock at each edge read (CLOCK_REALTIME ns), in order.
    private(set) var serverClocks: [UInt64] = []
    /// Every host's session once, the server's first.
    let sessions: [AgentSession]

    init(server: RemoteChild, loads: [HostsLoad.Part], kernel: Bool = false) {
        self.server = server
        self.loads = loads
        self.kernel = kernel
        var sessions = [server.session]
        for part in loads where !sessions.contains(where: { $0 === part.session }) { sessions.append(part.session) }
        self.sessions = sessions
    }

    func edge(_ sampler: KernelSampler?, load: ServerCounterFile?) throws -> ServerSide.Edge {
        let from = monotonicNanos()
        let requests = sessions.map { $0.sendEdge() }
        var reads: [ObjectIdentifier: AgentEdge] = [:]
        for (session, request) in zip(sessions, requests) { reads[ObjectIdentifier(session)] = try session.receiveEdge(request) }
        let at = monotonicNanos()
        let serverRead = reads[ObjectIdentifier(server.session)]!
        serverClocks.append(serverRead.hostClock)
        let prefix = "\(server.child)."
        var counters: [String: UInt64] = [:]
        for (key, value) in serverRead.values where key.hasPrefix(prefix) { counters[String(key.dropFirst(prefix.count))] = value }
        let cpu = counters.removeValue(forKey: "cpu_ns")
        // A load on this machine: its count read here, beside the hosts'.
        var completed: UInt64 = load?.sum(.completed) ?? 0
        for part in loads { completed += reads[ObjectIdentifier(part.session)]?.values["\(part.child).completed"] ?? 0 }
        var snapshot: KernelSnapshot?
        if kernel {
            guard let text = serverRead.kernel[String(server.child)] else {
                throw CellFailure("\(server.session.named): the probes sent no snapshot of the server at an edge")
            }
            do { snapshot = try KernelSnapshot(wireText: text) } catch { throw CellFailure("\(server.session.named): \(error)") }
        }
        return ServerSide.Edge(kernel: snapshot, cpu: cpu, allocations: nil, counters: counters, loadCompleted: completed, from: from, at: at)
    }
}

/// Time passing in a cell across hosts: the driver watches the server and every load host's load (an end of
/// either, or of a session, fails the cell naming the host) and the cell's deadline.
struct AcrossClock {
    let cell: Cell
    let server: RemoteChild
    let load: HostsLoad
    let deadline: UInt64

    init(cell: Cell, server: RemoteChild, load: HostsLoad) {
        self.cell = cell
        self.server = server
        self.load = load
        deadline = monotonicNanos() + UInt64(cell.timeout * 1e9)
    }

    func wait(_ seconds: Double) throws {
        let end = monotonicNanos() + UInt64(max(0, seconds) * 1e9)
        while true {
            if benchInterruptSignal != 0 { throw CellFailure("interrupted") }
            try server.checkAlive()
            for part in load.parts { try part.remote.checkAlive() }
            if let local = load.local, let status = local.child.poll() {
                throw CellFailure("load generator ended (\(status)) before the cell's windows closed: \(local.child.stderrTail(3).joined(separator: " | "))")
            }
            let now = monotonicNanos()
            if now > deadline { throw CellFailure("cell exceeded its timeout of \(formatSeconds(cell.timeout))") }
            if now >= end { return }
            usleep(UInt32(min(Double(end - now) / 1e3, 200_000)))
        }
    }
}
