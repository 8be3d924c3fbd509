import Foundation
import Kernel
import Load
import Vocabulary

/// What drives a cell's server (`load`).
public enum LoadGeneratorKind: String, CaseIterable, Codable, Sendable {
    /// muxlab's own load generator (`muxlab load`): echo or HTTP, closed or open loop, idle connections.
    case muxlab
    /// wrk: HTTP in a closed loop over every connection.
    case wrk
}

/// Where server and load meet (`topology`).
public enum Topology: String, CaseIterable, Codable, Sendable {
    /// Both on 127.0.0.1 in the driver's own network namespace.
    case loopback
    /// Two network namespaces the driver creates for the cell, joined by a veth pair.
    case netns
}

/// One point of a workload matrix: everything the driver needs to run one
/// server variant under one load and produce one row of `results.csv`.
public struct Cell: Codable, Equatable, Sendable {
    /// Position in run order across the whole workload, 1-based.
    public var index: Int
    /// Experiment id; the CSV `experiment` column.
    public var experiment: String
    /// Claim ids (`CLAIMS.md`) this cell's experiment tests.
    public var claims: [String]
    public var model: String
    public var io: String
    public var `protocol`: WireProtocol
    public var reactors: Int
    public var workers: Int
    /// Connections the load generator holds open.
    public var connections: Int
    /// Connections that send requests; the rest stay idle.
    public var active: Int
    /// Request (and echo reply) size in bytes.
    public var messageSize: Int
    /// Open-loop target in requests/s across all connections; nil = closed loop.
    public var rate: Int?
    /// Measured window, seconds.
    public var duration: Double
    /// Traffic before the measured window, seconds.
    public var warmup: Double
    /// Wall-clock limit for the whole cell (spawn to teardown), seconds.
    public var timeout: Double
    /// Connections opened per second while ramping up.
    public var connectRate: Int
    public var serverCPUs: CPUList
    public var clientCPUs: CPUList
    public var numaNode: Int?
    /// Extra flags appended to `muxlab serve`.
    public var serverArgs: [String]
    /// Extra flags appended to `muxlab load`.
    public var loadArgs: [String] = []
    /// An external server's argument list ({port}, {cpus}, {workdir} filled in); empty: `muxlab serve`.
    public var serverCommand: [String] = []
    /// A config template for the external server, written into {workdir} under its own name.
    public var serverConfig: String?
    /// HTTP: the requests muxlab's load sends and what counts as an answer (`method`, `path`, `headers`,
    /// `body_file`, `request_file`, `expect_status`, `expect_body`; files beside the workload).
    public var http = HTTPRequestSpec()
    /// load = "wrk": a Lua script of the user's (request/response hooks), run by every wrk of the cell.
    public var wrkScript: String?
    /// The load generator: muxlab's own or wrk.
    public var load: LoadGeneratorKind = .muxlab
    /// Count mallocs with the libc uprobe. Each hit traps (~µs): a malloc-heavy peer such as
    /// nginx (5 per request) slows several-fold under it, so peer comparisons turn it off.
    public var mallocProbe = true
    /// "loopback" (both on 127.0.0.1) or "netns": server and load in two network namespaces
    /// the driver creates for the cell, joined by a veth pair (`CellNetwork`).
    public var topology: Topology = .loopback
    /// The `[hosts]` name the server runs on; nil: this machine.
    public var serverHost: String?
    /// The `[hosts]` names the load runs on, its connections split across them; empty: this machine.
    public var loadHosts: [String] = []
    /// Whether any part of the cell runs on another host.
    public var remote: Bool { serverHost != nil || !loadHosts.isEmpty }
    /// Workload keys whose matrix list has more than one value, in matrix order;
    /// `label` prints their values.
    public var varied: [String]
    /// A request outstanding longer than this is a timeout error (load `--request-timeout`).
    public var requestTimeout: Double = 5
    /// The cell runs a deliberately broken variant: a failed verification, errors
    /// and zero completed requests are its result, not a failure of the cell.
    public var allowErrors = false
    /// Sample the server every this many seconds into `timeline.csv`; nil = off.
    public var timeline: Double?
    /// The evidence window (probes attached), seconds; nil: the duration, at most 1 s.
    public var evidenceDuration: Double?
    /// How many times the experiment's matrix runs (`repeat`), and which pass this cell is.
    public var repeats = 1
    public var repetition = 1
    /// Online CPUs the cell needs (`needs_cpus`, e.g. loops on cores of their own beside the load's): on a
    /// machine with fewer it is written not applicable, "not testable here", and its CPU lists are not checked.
    public var needsCPUs: Int?

    /// The defaults here are the workload file's defaults: a workload setting
    /// that is absent takes its value from this initializer.
    /// `active` defaults to `connections`; `timeout` to warmup + duration + 60 s.
    public init(
        index: Int = 1,
        experiment: String = "adhoc",
        claims: [String] = [],
        model: String = "reactor",
        io: String = "epoll-et",
        protocol: WireProtocol = .echo,
        reactors: Int = 1,
        workers: Int = 0,
        connections: Int = 10,
        active: Int? = nil,
        messageSize: Int = 64,
        rate: Int? = nil,
        duration: Double = 5,
        warmup: Double = 1,
        timeout: Double? = nil,
        connectRate: Int = 20_000,
        serverCPUs: CPUList = CPUList([1]),
        clientCPUs: CPUList = CPUList([0]),
        numaNode: Int? = nil,
        serverArgs: [String] = [],
        varied: [String] = []
    ) {
        self.index = index
        self.experiment = experiment
        self.claims = claims
        self.model = model
        self.io = io
        self.protocol = `protocol`
        self.reactors = reactors
        self.workers = workers
        self.connections = connections
        self.active = active ?? connections
        self.messageSize = messageSize
        self.rate = rate
        self.duration = duration
        self.warmup = warmup
        self.timeout = timeout ?? Cell.defaultTimeout(warmup: warmup, duration: duration)
        self.connectRate = connectRate
        self.serverCPUs = serverCPUs
        self.clientCPUs = clientCPUs
        self.numaNode = numaNode
        self.serverArgs = serverArgs
        self.varied = varied
    }

    /// The timing window is cut into this many sub-windows of at least `Cell.subWindowSeconds` (at most 10),
    /// each a sample of throughput and CPU per request for the intervals of the verdicts and `muxlab compare`.
    public var subWindows: Int { max(1, min(10, Int(duration / Cell.subWindowSeconds))) }
    public static let subWindowSeconds = 0.25

    /// The evidence window (probes attached): `evidence_duration`, else the duration up to 1 s
    /// (per-request counts settle well within that: see the README).
    public var evidenceSeconds: Double { evidenceDuration ?? min(duration, 1) }

    /// The model as the vocabulary names it; nil for an external server's own name (`server_command`).
    public var serverModel: ServerModel? { serverCommand.isEmpty ? ServerModel(rawValue: model) : nil }
    /// The I/O back-end as the vocabulary names it; nil for "external".
    public var ioMode: IOMode? { IOMode(rawValue: io) }

    /// What the cell takes once connected: warm-up, the timing window, with probes the evidence
    /// window and the probes' attach, and ~1.5 s of start-up and verification.
    public func plannedSeconds(probes: Bool) -> Double {
        warmup + duration + (probes ? evidenceSeconds + 0.5 : 0) + 1.5
    }

    /// The bound on a cell without `timeout`: its windows and a minute for starting, attaching the probes
    /// and stopping (a CI host that stole most of its CPU time once took over 30 s over a 1.5 s wrk cell).
    public static func defaultTimeout(warmup: Double, duration: Double) -> Double {
        warmup + duration + 60
    }

    /// "experiment#index": unique within a run.
    public var id: String { "\(experiment)#\(index)" }

    /// True when the load generator paces requests (`rate` set).
    public var isOpenLoop: Bool { rate != nil }

    /// The matrix coordinates that vary, e.g. "io=poll connections=100";
    /// empty for an experiment with a single cell.
    public var label: String {
        varied.map { "\($0)=\(settingText($0))" }.joined(separator: " ")
    }

    /// "idle-scaling io=poll connections=100" in progress lines; the experiment alone where nothing varies.
    public var name: String { label.isEmpty ? experiment : experiment + " " + label }

    /// The value of a workload key as the label prints it.
    public func settingText(_ key: String) -> String {
        switch key {
        case "model": return model
        case "io": return io
        case "protocol": return self.protocol.rawValue
        case "reactors": return String(reactors)
        case "workers": return String(workers)
        case "connections": return String(connections)
        case "active": return String(active)
        case "message_size": return String(messageSize)
        case "rate": return rate.map(String.init) ?? "closed-loop"
        case "duration": return formatDecimal(duration) + "s"
        case "warmup": return formatDecimal(warmup) + "s"
        case "timeout": return formatDecimal(timeout) + "s"
        case "connect_rate": return String(connectRate)
        case "server_cpus": return serverCPUs.description
        case "client_cpus": return clientCPUs.description
        case "numa_node": return numaNode.map(String.init) ?? "none"
        case "server_args": return "[" + serverArgs.joined(separator: " ") + "]"
        case "load_args": return "[" + loadArgs.joined(separator: " ") + "]"
        case "server_command": return "[" + serverCommand.joined(separator: " ") + "]"
        case "server_config": return serverConfig ?? "none"
        case "load": return load.rawValue
        case "malloc_probe": return String(mallocProbe)
        case "topology": return topology.rawValue
        case "server_host": return serverHost ?? "local"
        case "load_hosts": return loadHosts.isEmpty ? "local" : "[" + loadHosts.joined(separator: " ") + "]"
        case "request_timeout": return formatDecimal(requestTimeout) + "s"
        case "allow_errors": return String(allowErrors)
        case "needs_cpus": return needsCPUs.map(String.init) ?? "any"
        case "timeline": return timeline.map { formatDecimal($0) + "s" } ?? "off"
        case "method": return http.method
        case "path": return http.path
        case "headers": return "[" + http.headers.joined(separator: ", ") + "]"
        case "body_file": return http.bodyFile ?? "none"
        case "request_file": return http.requestFile ?? "none"
        case "expect_status": return http.expectStatus.map(String.init) ?? "2xx"
        case "expect_body": return http.expectBody ?? "none"
        case "wrk_script": return wrkScript ?? "none"
        case "evidence_duration": return evidenceDuration.map { formatDecimal($0) + "s" } ?? "default"
        default: return "?"
        }
    }
}

/// CPU lists travel as the kernel's compact text ("0-3,6").
extension CPUList: Codable {
    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do {
            try self.init(parsing: text)
        } catch {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "\(error)"))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
