import Foundation

// MARK: - Schema

/// How one column maps to a typed field.
enum ResultField {
    case text(WritableKeyPath<ResultRow, String>)
    case optionalText(WritableKeyPath<ResultRow, String?>)
    case int(WritableKeyPath<ResultRow, Int?>)
    case double(WritableKeyPath<ResultRow, Double?>)
    case words(WritableKeyPath<ResultRow, [String]>)
    /// Numbers separated by spaces (a row's sub-window samples); empty when none.
    case numbers(WritableKeyPath<ResultRow, [Double]>)
    case status(WritableKeyPath<ResultRow, CellStatus>)
    case date(WritableKeyPath<ResultRow, Date?>)

    func text(of row: ResultRow) -> String {
        switch self {
        case .text(let path): return row[keyPath: path]
        case .optionalText(let path): return row[keyPath: path] ?? ""
        case .int(let path): return row[keyPath: path].map(String.init) ?? ""
        case .double(let path): return row[keyPath: path].map(formatDecimal) ?? ""
        case .words(let path): return row[keyPath: path].joined(separator: " ")
        case .numbers(let path): return row[keyPath: path].map(formatDecimal).joined(separator: " ")
        case .status(let path): return row[keyPath: path].rawValue
        case .date(let path): return row[keyPath: path].map(formatTimestamp) ?? ""
        }
    }

    func parse(_ text: String, into row: inout ResultRow, column: String) throws {
        func bad(_ expected: String) -> DataFileError {
            DataFileError("results column \(column) = \"\(text)\": expected \(expected)")
        }
        switch self {
        case .text(let path): row[keyPath: path] = text
        case .optionalText(let path): row[keyPath: path] = text
        case .int(let path):
            guard let value = Int(text) else { throw bad("an integer") }
            row[keyPath: path] = value
        case .double(let path):
            guard let value = Double(text), value.isFinite else { throw bad("a number") }
            row[keyPath: path] = value
        case .words(let path): row[keyPath: path] = text.split(separator: " ").map(String.init)
        case .numbers(let path):
            let values = text.split(separator: " ").map { Double($0) }
            guard values.allSatisfy({ $0?.isFinite == true }) else { throw bad("numbers separated by spaces") }
            row[keyPath: path] = values.map { $0! }
        case .status(let path):
            guard let value = CellStatus(rawValue: text) else {
                throw bad(CellStatus.allCases.map(\.rawValue).joined(separator: " | "))
            }
            row[keyPath: path] = value
        case .date(let path):
            guard let value = parseTimestamp(text) else { throw bad("an ISO 8601 UTC time") }
            row[keyPath: path] = value
        }
    }
}

extension ResultRow {
    /// The single source of column names and order.
    static let schema: [(name: String, field: ResultField)] = [
        ("experiment", .text(\.experiment)),
        ("model", .text(\.model)),
        ("io", .text(\.io)),
        ("reactors", .int(\.reactors)),
        ("workers", .int(\.workers)),
        ("protocol", .text(\.protocol)),
        ("connections", .int(\.connections)),
        ("active", .int(\.active)),
        ("message_bytes", .int(\.messageBytes)),
        ("target_rps", .int(\.targetRPS)),
        ("duration_s", .double(\.durationS)),
        ("requests", .int(\.requests)),
        ("errors", .int(\.errors)),
        ("throughput_rps", .double(\.throughputRPS)),
        ("latency_p50_us", .double(\.latencyP50Us)),
        ("latency_p99_us", .double(\.latencyP99Us)),
        ("latency_p999_us", .double(\.latencyP999Us)),
        ("latency_max_us", .double(\.latencyMaxUs)),
        ("server_cpu_s", .double(\.serverCPUSeconds)),
        ("cpu_us_per_req", .double(\.cpuUsPerReq)),
        ("syscalls_per_req", .double(\.syscallsPerReq)),
        ("mux_calls_per_req", .double(\.muxCallsPerReq)),
        ("fdset_bytes_per_req", .double(\.fdsetBytesPerReq)),
        ("copy_bytes_per_req", .double(\.copyBytesPerReq)),
        ("ctx_switches_per_req", .double(\.ctxSwitchesPerReq)),
        ("involuntary_switches_per_req", .double(\.involuntarySwitchesPerReq)),
        ("wakeups_per_req", .double(\.wakeupsPerReq)),
        ("mallocs_per_req", .double(\.mallocsPerReq)),
        ("page_faults", .int(\.pageFaults)),
        ("futex_waits_per_req", .double(\.futexWaitsPerReq)),
        ("futex_wait_us_per_req", .double(\.futexWaitUsPerReq)),
        ("lock_contentions_per_req", .double(\.lockContentionsPerReq)),
        ("server_cpus", .text(\.serverCPUs)),
        ("client_cpus", .text(\.clientCPUs)),
        ("numa_node", .int(\.numaNode)),
        ("kernel", .optionalText(\.kernel)),
        ("cell", .int(\.cell)),
        ("claims", .words(\.claims)),
        ("label", .text(\.label)),
        ("server_args", .words(\.serverArgs)),
        ("status", .status(\.status)),
        ("reason", .optionalText(\.reason)),
        ("errors_connect", .int(\.errorsConnect)),
        ("errors_read", .int(\.errorsRead)),
        ("errors_write", .int(\.errorsWrite)),
        ("errors_timeout", .int(\.errorsTimeout)),
        ("errors_wrong_response", .int(\.errorsWrongResponse)),
        ("latency_p90_us", .double(\.latencyP90Us)),
        ("server_rss_kb", .int(\.serverRSSKB)),
        ("server_threads", .int(\.serverThreads)),
        ("epoll_wait_per_req", .double(\.epollWaitPerReq)),
        ("reads_per_req", .double(\.readsPerReq)),
        ("writes_per_req", .double(\.writesPerReq)),
        ("eagain_reads_per_req", .double(\.eagainReadsPerReq)),
        ("zerocopy_bytes_per_req", .double(\.zerocopyBytesPerReq)),
        ("offcpu_us_per_req", .double(\.offcpuUsPerReq)),
        ("migrations", .int(\.migrations)),
        ("probe_status", .optionalText(\.probeStatus)),
        ("host", .optionalText(\.host)),
        ("commit", .optionalText(\.commit)),
        ("started_at", .date(\.startedAt)),
        ("repeat", .int(\.repetition)),
        ("mux_calls_per_s", .double(\.muxCallsPerS)),
        ("accepts_per_s", .double(\.acceptsPerS)),
        ("server_cpu_util", .double(\.serverCPUUtil)),
        ("mux_events_per_call", .double(\.muxEventsPerCall)),
        ("epoll_bytes_out_per_call", .double(\.epollBytesOutPerCall)),
        ("mmap_calls", .int(\.mmapCalls)),
        ("scanned_per_wakeup", .double(\.scannedPerWakeup)),
        ("server_accepted", .int(\.serverAccepted)),
        ("server_refused", .int(\.serverRefused)),
        ("accept_emfile", .int(\.acceptEMFILE)),
        ("connections_established", .int(\.connectionsEstablished)),
        ("connections_served", .int(\.connectionsServed)),
        ("verify", .optionalText(\.verify)),
        ("stall_s", .double(\.stallS)),
        ("stall_call", .optionalText(\.stallCall)),
        ("load_args", .words(\.loadArgs)),
        ("connections_opened", .int(\.connectionsOpened)),
        ("closed_by_server", .int(\.closedByServer)),
        ("hangups", .int(\.hangups)),
        ("time_wait_server", .int(\.timeWaitServer)),
        ("time_wait_client", .int(\.timeWaitClient)),
        ("server_fds_start", .int(\.serverFDsStart)),
        ("server_fds_end", .int(\.serverFDsEnd)),
        ("accepted_in_window", .int(\.acceptedInWindow)),
        ("wakeups_per_accept", .double(\.wakeupsPerAccept)),
        ("accept_calls_per_accept", .double(\.acceptCallsPerAccept)),
        ("server_threads_started", .int(\.serverThreadsStarted)),
        ("server_exit", .optionalText(\.serverExit)),
        ("load", .optionalText(\.load)),
        ("server_command", .words(\.serverCommand)),
        ("client_cpu_s", .double(\.clientCPUSeconds)),
        ("client_cpu_util", .double(\.clientCPUUtil)),
        ("client_cpu_us_per_req", .double(\.clientCPUUsPerReq)),
        ("server_pss_kb", .int(\.serverPSSKB)),
        ("server_pss_kb_per_conn", .double(\.serverPSSKBPerConn)),
        ("eventpoll_mappings", .int(\.eventpollMappings)),
        ("kernel_slab_kb_per_conn", .double(\.kernelSlabKBPerConn)),
        ("topology", .optionalText(\.topology)),
        ("server_requests", .int(\.serverRequests)),
        ("server_window_s", .double(\.serverWindowS)),
        ("window_s", .double(\.windowS)),
        ("latency_samples", .int(\.latencySamples)),
        ("server_cpu_source", .optionalText(\.serverCPUSource)),
        ("evidence_requests", .int(\.evidenceRequests)),
        ("evidence_server_requests", .int(\.evidenceServerRequests)),
        ("evidence_duration_s", .double(\.evidenceDurationS)),
        ("evidence_throughput_rps", .double(\.evidenceThroughputRPS)),
        ("evidence_cpu_us_per_req", .double(\.evidenceCPUUsPerReq)),
        ("probe_overhead", .double(\.probeOverhead)),
        ("fdset_bytes_in_per_req", .double(\.fdsetBytesInPerReq)),
        ("fdset_bytes_out_per_req", .double(\.fdsetBytesOutPerReq)),
        ("epoll_event_bytes_per_req", .double(\.epollEventBytesPerReq)),
        ("futex_lock_waits_per_req", .double(\.futexLockWaitsPerReq)),
        ("futex_lock_wait_us_per_req", .double(\.futexLockWaitUsPerReq)),
        ("futex_cond_waits_per_req", .double(\.futexCondWaitsPerReq)),
        ("unsent", .int(\.unsent)),
        ("throughput_rps_samples", .numbers(\.throughputSamples)),
        ("cpu_us_per_req_samples", .numbers(\.cpuUsPerReqSamples)),
        ("epoll_ctl_per_req", .double(\.epollCtlPerReq)),
        ("epoll_ctl_ns_per_call", .double(\.epollCtlNsPerCall)),
        ("server_extra", .words(\.serverExtra)),
        ("steal_share", .double(\.stealShare)),
        ("evidence_steal_share", .double(\.evidenceStealShare)),
        ("attempts", .int(\.attempts)),
        ("http_request", .words(\.httpRequest)),
        ("hosts", .optionalText(\.hosts)),
        ("client_cpu_us_per_req_hosts", .words(\.clientCPUUsPerReqHosts)),
        ("clock_offset_us", .words(\.clockOffsetUs)),
        ("clock_round_trip_us", .words(\.clockRoundTripUs)),
        ("host_window_s", .words(\.hostWindowS)),
    ]
}

// MARK: - Number and time formats

/// Up to 3 decimals, no exponent, trailing zeros trimmed: "12.5", "0.003", "1200".
/// Non-finite values print empty: they are not measurements.
public func formatDecimal(_ value: Double) -> String {
    guard value.isFinite else { return "" }
    var text = String(format: "%.3f", value)
    if text.contains(".") {
        while text.hasSuffix("0") { text.removeLast() }
        if text.hasSuffix(".") { text.removeLast() }
    }
    return text == "-0" ? "0" : text
}

/// "2025-01-31T12:00:00Z".
func formatTimestamp(_ date: Date) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime]
    formatter.timeZone = TimeZone(identifier: "UTC")
    return formatter.string(from: date)
}

func parseTimestamp(_ text: String) -> Date? {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime]
    if let date = formatter.date(from: text) { return date }
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return formatter.date(from: text)
}
