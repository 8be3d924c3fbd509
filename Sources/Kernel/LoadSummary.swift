/// Errors by class, as the load generator counts them.
public struct ErrorCounts: Codable, Equatable, Sendable {
    public var connect = 0
    public var read = 0
    public var write = 0
    public var timeout = 0
    public var wrongResponse = 0

    public init() {}
    public var total: Int { connect + read + write + timeout + wrongResponse }

    public static func + (a: ErrorCounts, b: ErrorCounts) -> ErrorCounts {
        var s = a
        s.connect += b.connect; s.read += b.read; s.write += b.write
        s.timeout += b.timeout; s.wrongResponse += b.wrongResponse
        return s
    }

    enum CodingKeys: String, CodingKey {
        case connect, read, write, timeout
        case wrongResponse = "wrong_response"
    }
}

/// Latency percentiles in microseconds, from the HdrHistogram.
public struct LatencySummary: Codable, Equatable, Sendable {
    public var p50: Double?
    public var p90: Double?
    public var p99: Double?
    public var p999: Double?
    public var max: Double?
    public var mean: Double?
    public init() {}
}

/// The one machine-readable summary `muxlab load --json` prints.
public struct LoadSummary: Codable, Equatable, Sendable {
    public var target: String
    /// "closed" (one request outstanding per active connection) or "open" (fixed total rate).
    public var mode: String
    public var connections: Int
    public var active: Int
    public var targetRPS: Int?
    public var durationS: Double
    public var requests: Int
    public var errors: ErrorCounts
    public var errorsTotal: Int
    public var throughputRPS: Double
    public var latencyUs: LatencySummary
    public var cpus: String
    public var clientCPUSeconds: Double
    /// Connections the server closed while idle (an idle timeout at work).
    public var idleClosed: Int
    /// Connections that were established, and that completed at least one request, over the whole run.
    public var established: Int?
    public var served: Int?
    /// connect() calls made over the whole run, the initial connections and every reopening included.
    public var connectionsOpened: Int?
    /// Connections the server ended over the whole run: after a complete answer (active ones are reopened) or while idle.
    public var closedByServer: Int?
    /// Requests sent on connections closed at once without reading the answer (--hang-up), over the whole run.
    public var hangups: Int?
    /// Answered requests after which an active connection is closed and reopened; 0: kept alive.
    public var requestsPerConnection: Int?
    /// Load processes whose results this summary merges.
    public var processes: Int?
    /// Latency samples in the (merged) histogram: equals requests.
    public var latencySamples: Int?
    /// Open loop (nil for closed): send slots released while the window was open (= rate x window up to one
    /// batch), and the slots that could not be sent (their connection busy with a full backlog, reconnecting or
    /// dead); what balances them exactly is below.
    public var slots: Int?
    public var unsent: Int?
    /// Open loop: slots sent or waiting in a backlog, their outcome not yet known, when the window opened and
    /// when it closed. The window's ledger is then exact whatever the host's stalls: requests + errors.timeout +
    /// unsent (+ read, write and wrong-response errors of active connections) = slots + inFlightAtOpen - inFlightAtClose.
    public var inFlightAtOpen: Int?
    public var inFlightAtClose: Int?
    /// Why the first failed connect failed (errno text, or the connect deadline); nil when none failed.
    public var firstConnectError: String?
    /// What was wrong with the first answer counted as a wrong response (status, framing, body, extra bytes).
    public var firstWrongResponse: String?

    public init(target: String, mode: String, connections: Int, active: Int, targetRPS: Int?, durationS: Double,
                requests: Int, errors: ErrorCounts, errorsTotal: Int, throughputRPS: Double, latencyUs: LatencySummary,
                cpus: String, clientCPUSeconds: Double, idleClosed: Int, established: Int?, served: Int?) {
        self.target = target; self.mode = mode; self.connections = connections; self.active = active
        self.targetRPS = targetRPS; self.durationS = durationS; self.requests = requests; self.errors = errors
        self.errorsTotal = errorsTotal; self.throughputRPS = throughputRPS; self.latencyUs = latencyUs; self.cpus = cpus
        self.clientCPUSeconds = clientCPUSeconds; self.idleClosed = idleClosed; self.established = established; self.served = served
    }

    enum CodingKeys: String, CodingKey {
        case target, mode, connections, active, requests, errors, cpus
        case targetRPS = "target_rps"
        case durationS = "duration_s"
        case errorsTotal = "errors_total"
        case throughputRPS = "throughput_rps"
        case latencyUs = "latency_us"
        case clientCPUSeconds = "client_cpu_s"
        case idleClosed = "idle_closed"
        case established, served, hangups, processes, slots, unsent
        case connectionsOpened = "connections_opened"
        case closedByServer = "closed_by_server"
        case requestsPerConnection = "requests_per_connection"
        case latencySamples = "latency_samples"
        case firstConnectError = "first_connect_error"
        case firstWrongResponse = "first_wrong_response"
        case inFlightAtOpen = "in_flight_at_open"
        case inFlightAtClose = "in_flight_at_close"
    }
}
