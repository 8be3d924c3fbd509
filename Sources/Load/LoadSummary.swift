import Histogram

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

    /// Percentiles of a nanosecond histogram, in microseconds to the nanosecond; all nil when it is empty.
    public init(_ histogram: Histogram<UInt64>) {
        guard histogram.totalCount > 0 else { return }
        let us = { (ns: UInt64) in (Double(ns) / 1000 * 1000).rounded() / 1000 }
        p50 = us(histogram.valueAtPercentile(50))
        p90 = us(histogram.valueAtPercentile(90))
        p99 = us(histogram.valueAtPercentile(99))
        p999 = us(histogram.valueAtPercentile(99.9))
        max = us(histogram.max)
        mean = (histogram.mean / 1000 * 1000).rounded() / 1000
    }
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
    /// Open loop (nil for closed): send slots whose intended time fell in the window, and those of them that
    /// could not be sent (their connection busy with a full backlog, reconnecting or dead); in steady state
    /// requests + errors.timeout + unsent = slots (= rate x window), up to the slots in flight at the window's edges.
    public var slots: Int?
    public var unsent: Int?
    /// Why the first failed connect failed (errno text, or the connect deadline); nil when none failed.
    public var firstConnectError: String?

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
    }
}

/// Phase lines the load generator prints so the driver can snapshot the server
/// exactly at the measured window's edges.
public enum LoadPhase: String, Sendable {
    case connected
    case measure
    case done

    public var line: String { "phase \(rawValue)" }
}
