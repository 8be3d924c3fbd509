import Foundation
import Vocabulary

/// How a cell ended.
public enum CellStatus: String, Codable, Sendable, CaseIterable {
    case ok
    case failed
    /// The combination makes no sense or cannot run here (e.g. select above FD_SETSIZE); not an error.
    case notApplicable = "not-applicable"
    /// Measured, but the server and the load disagree on the requests of a window by more than
    /// 1 % plus the requests in flight: not one window, so not data (left out of every verdict).
    case windowMismatch = "window-mismatch"
}

/// One row of `results.csv`. A figure that was not measured or does not
/// apply is nil and prints as an empty cell, never as 0.
/// Per-request figures divide by the requests completed in the measured window.
public struct ResultRow: Equatable, Sendable {
    /// The I/O back-end as the vocabulary names it; nil for an external server's ("external") or an unknown word.
    public var ioMode: IOMode? { IOMode(rawValue: io) }
    /// The model as the vocabulary names it; nil for a peer's own name (nginx) or an unknown word.
    public var serverModel: ServerModel? { ServerModel(rawValue: model) }
    /// The load generator; a run from before the `load` column was muxlab's own.
    public var loadGenerator: LoadGeneratorKind? { load.map { LoadGeneratorKind(rawValue: $0) } ?? .muxlab }

    // MARK: Contract columns (DESIGN.md), in order
    public var experiment: String
    public var model: String
    public var io: String
    public var reactors: Int?
    public var workers: Int?
    public var `protocol`: String
    public var connections: Int?
    public var active: Int?
    /// message_bytes: request size.
    public var messageBytes: Int?
    /// target_rps: open-loop rate; nil for closed loop.
    public var targetRPS: Int?
    /// duration_s: the measured window, seconds.
    public var durationS: Double?
    /// Requests completed in the measured window.
    public var requests: Int?
    /// All failed requests and connections in the measured window.
    public var errors: Int?
    public var throughputRPS: Double?
    public var latencyP50Us: Double?
    public var latencyP99Us: Double?
    public var latencyP999Us: Double?
    public var latencyMaxUs: Double?
    /// server_cpu_s: user + system CPU seconds of the server tree in the window.
    public var serverCPUSeconds: Double?
    public var cpuUsPerReq: Double?
    public var syscallsPerReq: Double?
    /// select/poll/epoll_wait/io_uring_enter calls per request.
    public var muxCallsPerReq: Double?
    /// fd-set bytes copied in and out per request: select's bitmaps, poll's pollfds in and
    /// revents out (fdset_bytes_in_per_req + fdset_bytes_out_per_req); empty without select/poll calls.
    public var fdsetBytesPerReq: Double?
    public var copyBytesPerReq: Double?
    public var ctxSwitchesPerReq: Double?
    public var involuntarySwitchesPerReq: Double?
    public var wakeupsPerReq: Double?
    public var mallocsPerReq: Double?
    /// Page faults of the server tree in the window (a count, not per request).
    public var pageFaults: Int?
    public var futexWaitsPerReq: Double?
    public var futexWaitUsPerReq: Double?
    public var lockContentionsPerReq: Double?
    public var serverCPUs: String
    public var clientCPUs: String
    public var numaNode: Int?
    /// uname -r of the machine that ran the cell.
    public var kernel: String?

    // MARK: muxlab's own columns
    /// cell: `Cell.index`; also the `cell` column of syscalls.csv.
    public var cell: Int?
    /// Space-separated in the CSV.
    public var claims: [String]
    public var label: String
    /// Space-separated in the CSV.
    public var serverArgs: [String]
    /// Flags `muxlab bench --server-extra` appended to every muxlab server of the run (not a cell setting:
    /// `muxlab compare` matches cells without it, so a run with an injected cost lines up with one without).
    public var serverExtra: [String] = []
    /// A cell across hosts: "server=a load=b,c" (the `[hosts]` names); empty on this machine.
    public var hosts: String?
    /// Across hosts, per load host: "b=1.23 c=1.31", its load's CPU µs per request it completed.
    public var clientCPUUsPerReqHosts: [String] = []
    /// Across hosts, per host: "a=12.5 b=-3" (µs), its clock minus the driver's, from the shortest edge round trip.
    public var clockOffsetUs: [String] = []
    /// Across hosts, per host: "a=85 b=97" (µs), the shortest edge round trip, which bounds the offset's error
    /// (half of it either way).
    public var clockRoundTripUs: [String] = []
    /// Across hosts, per host: "a=1.002 b=1.001" (s), the timing window as that host measured it (the server
    /// host between its edge reads, each load host its own open to close).
    public var hostWindowS: [String] = []
    public var status: CellStatus
    /// Why the cell failed or does not apply; one line.
    public var reason: String?
    public var errorsConnect: Int?
    public var errorsRead: Int?
    public var errorsWrite: Int?
    public var errorsTimeout: Int?
    public var errorsWrongResponse: Int?
    public var latencyP90Us: Double?
    /// Peak resident set of the server tree, KiB.
    public var serverRSSKB: Int?
    public var serverThreads: Int?
    public var epollWaitPerReq: Double?
    public var readsPerReq: Double?
    public var writesPerReq: Double?
    /// Reads that returned EAGAIN, per request (the ET tax, claim E2).
    public var eagainReadsPerReq: Double?
    public var zerocopyBytesPerReq: Double?
    public var offcpuUsPerReq: Double?
    /// CPU migrations of the server tree in the window.
    public var migrations: Int?
    /// "on", "off", or why the sampler did not run.
    public var probeStatus: String?
    public var host: String?
    /// Git commit of the muxlab that produced the row.
    public var commit: String?
    /// When the cell started; ISO 8601 UTC in the CSV.
    public var startedAt: Date?
    /// Which pass of a repeated experiment (`repeat` in the workload), 1-based.
    public var repetition: Int?
    /// Multiplexer calls per second of the window (applies with no requests, e.g. a busy loop, claim E1).
    public var muxCallsPerS: Double?
    /// accept/accept4 calls per second of the window, failed ones included (claim E4).
    public var acceptsPerS: Double?
    /// Server CPU seconds per second of the window: 1.0 is one core busy.
    public var serverCPUUtil: Double?
    /// The load generator's own CPU over the measured window (muxlab load: its rusage in the window,
    /// children summed; wrk: the whole measured wrk run, connects included), per second and per request.
    /// A load near 1.0 CPU per CPU it was given was the limit, not the server.
    public var clientCPUSeconds: Double?
    /// Server PSS at the end of the window (shared pages counted once over a prefork tree), and that
    /// over the connections established (baseline included); the machine's slab growth since the server
    /// was ready (sockets, files, epoll items of both ends) per connection established.
    public var serverPSSKB: Int?
    public var serverPSSKBPerConn: Double?
    public var eventpollMappings: Int?
    public var kernelSlabKBPerConn: Double?
    public var clientCPUUtil: Double?
    public var clientCPUUsPerReq: Double?
    /// Ready events returned per multiplexer call (from the calls' return values).
    public var muxEventsPerCall: Double?
    /// epoll_event bytes the kernel copied out per epoll_wait call (12 per event, claim M6).
    public var epollBytesOutPerCall: Double?
    /// mmap calls of the server tree in the window (claim M6: epoll needs none).
    public var mmapCalls: Int?
    /// Descriptors the server looked at in user space per wake-up (its own count, window; claim M3).
    public var scannedPerWakeup: Double?
    /// Connections the server accepted and kept / accepted and closed at once
    /// (past FD_SETSIZE, or shed under EMFILE), over the whole cell.
    public var serverAccepted: Int?
    public var serverRefused: Int?
    /// accept calls that failed with EMFILE/ENFILE, over the whole cell (the server's count).
    public var acceptEMFILE: Int?
    /// Load connections that were established / that completed at least one request, over the whole cell.
    public var connectionsEstablished: Int?
    public var connectionsServed: Int?
    /// The first verification round trip: "ok" or what went wrong (cells with allow_errors run on).
    public var verify: String?
    /// Watchdog: the longest the server's event loop sat in one call other than its
    /// multiplexer wait, seconds; empty when the model is not watched (claim E3).
    public var stallS: Double?
    /// That call, e.g. "read fd=7"; empty below the watchdog's 1 s threshold.
    public var stallCall: String?
    /// Extra flags the cell gave `muxlab load`; space-separated in the CSV.
    public var loadArgs: [String] = []
    /// HTTP cells: the load's request flags (`--method POST --path /orders ...`) or wrk's script
    /// (`wrk_script=PATH`); empty for `GET /`.
    public var httpRequest: [String] = []
    /// Connections the load generator opened in the whole cell, reconnects included (short connections).
    public var connectionsOpened: Int?
    /// Connections the server closed after a complete answer or while idle (claims H2, H3).
    public var closedByServer: Int?
    /// Requests sent by clients that hung up without reading the answer (claim H1).
    public var hangups: Int?
    /// TCP sockets in TIME_WAIT right after the load ended whose local port is the server's
    /// (the server closed first) / whose remote port is the server's (the client did), claim H2.
    public var timeWaitServer: Int?
    public var timeWaitClient: Int?
    /// Open descriptors of the server tree at the start and end of the measured window (claim H3).
    public var serverFDsStart: Int?
    public var serverFDsEnd: Int?
    /// Connections the server accepted inside the measured window (its own count).
    public var acceptedInWindow: Int?
    /// Scheduler wake-ups of server tasks / accept calls, per connection accepted in the window (claim C3).
    public var wakeupsPerAccept: Double?
    public var acceptCallsPerAccept: Double?
    /// Threads the server started over the whole cell (thread-per-connection, thread-per-request).
    public var serverThreadsStarted: Int?
    /// The load generator that drove the cell: muxlab or wrk (issue 7's peers).
    public var load: String?
    /// The external server's argument list as the workload gives it (placeholders unfilled); empty for `muxlab serve`.
    public var serverCommand: [String] = []
    /// How the server ended when it died during a cell that allows errors, e.g. "killed by signal 13" (claim H1).
    public var serverExit: String?
    /// Where server and load met: "loopback" or "netns" (a veth pair between two namespaces).
    public var topology: String?
    // Two passes (issue 13): the timing columns above come from a window with no probe attached;
    // the per-request kernel columns from an evidence window right after it, with the probes.
    /// Requests the server answered in the timing window (its own count: HTTP responses, or echo
    /// bytes written over the message size); nil for a peer that keeps no counters for us.
    public var serverRequests: Int?
    /// The timing window between the two readings of the server's counters, and between the driver's
    /// kernel and CPU readings (the same edges: both are read there together).
    public var serverWindowS: Double?
    public var windowS: Double?
    /// The requests the load timed in its own window (opened and closed on the driver's messages): what
    /// the latency percentiles and the kept histogram are over; `requests` is counted at the driver's edges.
    public var latencySamples: Int?
    /// The share of the cell's CPUs' time the host stole in the timing and evidence windows (/proc/stat),
    /// and how many times the cell was measured: one whose window lost more than `disturbedSteal` is
    /// measured again at the end of the run (the set-aside attempt goes to `disturbed.csv`).
    public var stealShare: Double?
    public var evidenceStealShare: Double?
    public var attempts: Int?
    /// The variant in force as the server's ready message reported it (its defaults resolved by the
    /// server): the columns `variantColumns` name. nil for an external server, a cell that never
    /// started, or a results.csv written before these columns.
    public var variant: ServerVariant?
    /// How the server's CPU was accounted: cgroup-v1, cgroup-v2 (every task of the cell, exited ones
    /// included) or proc-tree (the tasks alive at the edges only).
    public var serverCPUSource: String?
    /// The evidence window: the load's requests, the server's, its length, and what the probes cost:
    /// its throughput and server CPU per request, and probe_overhead = its throughput over the timing window's.
    public var evidenceRequests: Int?
    public var evidenceServerRequests: Int?
    public var evidenceDurationS: Double?
    public var evidenceThroughputRPS: Double?
    public var evidenceCPUUsPerReq: Double?
    public var probeOverhead: Double?
    /// fd_set bitmaps / pollfd arrays copied user -> kernel per request; empty without select/poll calls.
    public var fdsetBytesInPerReq: Double?
    /// fd_set bitmaps / pollfd revents copied kernel -> user per request; empty without select/poll calls.
    public var fdsetBytesOutPerReq: Double?
    /// struct epoll_event bytes epoll_wait copied out per request (12 per event); empty without epoll_wait calls.
    public var epollEventBytesPerReq: Double?
    /// futex waits for a lock (FUTEX_WAIT of a pthread mutex, LOCK_PI of Synchronization.Mutex) per request, and their time.
    public var futexLockWaitsPerReq: Double?
    public var futexLockWaitUsPerReq: Double?
    /// futex waits for work (FUTEX_WAIT_BITSET of a condition variable or semaphore, futex_waitv) per request.
    public var futexCondWaitsPerReq: Double?
    /// Open loop: send slots due in the window that could not be sent (connection busy past its backlog,
    /// reconnecting or dead); empty for a closed loop.
    public var unsent: Int?
    /// The timing window cut into sub-windows (`SubWindows`): the server's requests per second and its CPU µs per
    /// request in each, as samples for the verdicts' and `muxlab compare`'s intervals; empty where the server
    /// keeps no request counter (a peer) or the window was too short to cut.
    public var throughputSamples: [Double] = []
    public var cpuUsPerReqSamples: [Double] = []
    /// epoll_ctl calls per request (evidence window); empty when the server made no epoll call.
    public var epollCtlPerReq: Double?
    /// Mean time in one epoll_ctl call, ns, timed by the probe from sys_enter to sys_exit (claim E5); empty without calls.
    public var epollCtlNsPerCall: Double?

    /// A row with the cell's parameters filled in and every figure empty.
    /// Status starts as `ok`; the driver sets `failed` / `not-applicable` with a reason.
    public init(cell: Cell) {
        self.init(experiment: cell.experiment, model: cell.model, io: cell.io, protocol: cell.protocol.rawValue)
        reactors = cell.reactors
        workers = cell.workers
        connections = cell.connections
        active = cell.active
        messageBytes = cell.messageSize
        targetRPS = cell.rate
        durationS = cell.duration
        serverCPUs = cell.serverCPUs.description
        clientCPUs = cell.clientCPUs.description
        numaNode = cell.numaNode
        self.cell = cell.index
        claims = cell.claims
        label = cell.label
        serverArgs = cell.serverArgs
        loadArgs = cell.loadArgs
        httpRequest = (cell.protocol == .http ? cell.http.arguments : []) + (cell.wrkScript.map { ["wrk_script=" + $0] } ?? [])
        load = cell.load.rawValue
        serverCommand = cell.serverCommand
        repetition = cell.repetition
        topology = cell.topology.rawValue
    }

    /// A row with only the identifying strings set.
    public init(experiment: String, model: String = "", io: String = "", protocol: String = "") {
        self.experiment = experiment
        self.model = model
        self.io = io
        self.protocol = `protocol`
        serverCPUs = ""
        clientCPUs = ""
        claims = []
        label = ""
        serverArgs = []
        status = .ok
    }

    /// Parses a row read back from `results.csv` (e.g. by `CSVTable`).
    /// Missing columns stay empty; a malformed number throws, naming the column.
    public init(record: [String: String]) throws {
        self.init(experiment: "")
        for column in ResultRow.schema {
            guard let text = record[column.name], !text.isEmpty else { continue }
            try column.field.parse(text, into: &self, column: column.name)
        }
        variant = try ResultRow.variant(from: record)
    }

    /// The variant columns, each with the ready message's key it holds; model, io, protocol and reactors
    /// are the row's own columns (the driver passes them to the server as they are).
    static let variantColumns: [(name: String, key: String)] = [
        ("workers_in_force", "workers"), ("accept", "accept"), ("copy", "copy"), ("alloc", "alloc"), ("queue", "queue"),
        ("sigpipe", "sigpipe"), ("close", "close"), ("epollout", "epollout"), ("et_read", "et_read"),
        ("read_size", "read_size"), ("blocking_sockets", "blocking"), ("emfile", "emfile"), ("idle_timeout_s", "idle_timeout"),
        ("fd_limit", "fd_limit"), ("compute_us", "compute_us"), ("block_us", "block_us"), ("thread_stack", "thread_stack"),
        ("thread_stack_default", "thread_stack_default"),
        ("heavy_share", "heavy_share"), ("heavy_us", "heavy_us"),
    ]

    /// The variant a record's columns hold; nil when they are empty (an external server, an older run).
    static func variant(from record: [String: String]) throws -> ServerVariant? {
        guard let copy = record["copy"], !copy.isEmpty else { return nil }
        var fields = ["model": record["model"] ?? "", "io": record["io"] ?? "", "protocol": record["protocol"] ?? "",
                      "reactors": record["reactors"].flatMap { $0.isEmpty ? nil : $0 } ?? "1"]
        for column in variantColumns {
            if let text = record[column.name], !text.isEmpty { fields[column.key] = text }
        }
        do {
            return try ServerVariant(readyFields: fields)
        } catch {
            throw DataFileError("results columns of the server variant: \(error)")
        }
    }

    /// The variant columns' texts: empty without a variant, and for fields the ready message leaves out.
    var variantTexts: [String] {
        guard let variant else { return Array(repeating: "", count: ResultRow.variantColumns.count) }
        let fields = Dictionary(variant.readyFields.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        return ResultRow.variantColumns.map { fields[$0.key] ?? "" }
    }

    /// Every row of a results table, typed; a malformed value throws naming the file, the row and the column.
    public static func rows(of table: CSVTable, path: String) throws -> [ResultRow] {
        try table.rows.enumerated().map { index, record in
            do {
                return try ResultRow(record: record)
            } catch {
                throw DataFileError("\(path): row \(index + 1): \(error)")
            }
        }
    }

    /// `DIR/results.csv` typed, or nil when the directory has none (the reports that read it then say nothing).
    public static func readIfPresent(directory: String) throws -> [ResultRow]? {
        let path = directory + "/results.csv"
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        return try rows(of: CSVTable.read(path: path), path: path)
    }

    /// The `results.csv` header, in order: the DESIGN.md contract columns, then muxlab's own.
    public static let columns: [String] = schema.map(\.name) + variantColumns.map(\.name)

    /// This row's values in `columns` order, unquoted.
    public func fields() -> [String] {
        ResultRow.schema.map { $0.field.text(of: self) } + variantTexts
    }

    /// The value printed in one column, or nil for an unknown column name.
    public subscript(column name: String) -> String? {
        if let field = ResultRow.schema.first(where: { $0.name == name })?.field { return field.text(of: self) }
        return ResultRow.variantColumns.firstIndex { $0.name == name }.map { variantTexts[$0] }
    }
}
