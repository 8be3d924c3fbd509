#if canImport(Glibc)
import Glibc
#endif
import CShims
import Foundation
import Histogram
import Kernel

/// One child's part of a multi-process load.
public struct LoadShare: Equatable, Sendable {
    public var connections: Int
    public var active: Int
    /// Its part of the total rate (open loop); nil in closed loop or when it has no active connections.
    public var rate: Int?
    public var connectRate: Int
    /// The one CPU it is pinned to (round-robin over --cpus), nil when unpinned.
    public var cpu: Int?
    /// Its first source address number: no two children share an address, so none shares ephemeral ports.
    public var sourceFirst: Int
}

/// A load spread over child processes (re-executions of this binary), for more connections than one
/// process may open or more load than one core makes. Children connect, wait until all have, then warm
/// up and measure together; the parent forwards each phase once every child reached it, merges the
/// children's latency histograms exactly and prints one summary.
public final class LoadProcesses {
    let config: LoadConfig
    let executable: String
    public let shares: [LoadShare]

    /// Line prefix of the histogram a child ships before its summary.
    public static let histogramPrefix = "histogram "

    /// Processes needed to hold `connections` under the per-process descriptor limit.
    public static func automaticCount(connections: Int) -> Int {
        let per = LoadGenerator.connectionsPerProcess
        return max(1, (connections + per - 1) / per)
    }

    public init(_ config: LoadConfig, executable: String = currentExecutablePath()) throws {
        self.config = config
        self.executable = executable
        shares = try LoadProcesses.split(config)
    }

    /// Connections, active connections, rate and connect rate divided as evenly as they go.
    public static func split(_ config: LoadConfig) throws -> [LoadShare] {
        let p = config.processes
        guard (1...64).contains(p) else { throw LoadError("--processes \(p) is out of range: use 1-64") }
        guard config.active <= config.connections else {
            throw LoadError("--active \(config.active) is more than --connections \(config.connections): active connections are a subset")
        }
        guard config.connections >= p else {
            throw LoadError("--processes \(p) is more than --connections \(config.connections): each process needs at least one connection")
        }
        func even(_ total: Int) -> [Int] { (0..<p).map { total / p + ($0 < total % p ? 1 : 0) } }
        let connections = even(config.connections)
        let perProcess = LoadGenerator.connectionsPerProcess
        if connections[0] > perProcess {
            throw LoadError("--connections \(config.connections) over --processes \(p) is \(connections[0]) per process, more than the \(perProcess) one process may open here (hard RLIMIT_NOFILE); use --processes \(automaticCount(connections: config.connections)) or more")
        }
        let active = even(config.active)
        var rates: [Int?] = Array(repeating: nil, count: p)
        if let rate = config.rate, config.active > 0 {
            // Each process gets the rate of its active connections, so every connection keeps the same pace.
            var parts = active.map { rate * $0 / config.active }
            var left = rate - parts.reduce(0, +)
            for k in 0..<p where left > 0 && active[k] > 0 { parts[k] += 1; left -= 1 }
            let starved = (0..<p).filter { active[$0] > 0 && parts[$0] == 0 }.count
            if starved > 0 {
                let busy = active.filter { $0 > 0 }.count
                throw LoadError("--rate \(rate) cannot be split over \(busy) processes with active connections: each needs at least 1 request/s; use --rate \(busy) or more, or fewer --processes")
            }
            for k in 0..<p where active[k] > 0 { rates[k] = parts[k] }
        }
        let connectRates = even(config.connectRate).map { max(1, $0) }
        let cpus = config.cpus?.cpus ?? []
        let sourcesEach = LoadGenerator.sourceCount(connections: connections[0], requestsPerConnection: config.requestsPerConnection)
        return (0..<p).map { k in
            LoadShare(connections: connections[k], active: active[k], rate: rates[k], connectRate: connectRates[k],
                      cpu: cpus.isEmpty ? nil : cpus[k % cpus.count], sourceFirst: k * sourcesEach)
        }
    }

    /// The command line of child `k` (argv[1...]): its share, plus the hidden options that make it a child.
    public func childArguments(_ k: Int) -> [String] {
        let s = shares[k]
        var args = ["load", "--target", "\(config.target)", "--connections", String(s.connections), "--active", String(s.active),
                    "--duration", "\(config.duration)s", "--warmup", "\(config.warmup)s",
                    "--message-size", String(config.messageSize), "--protocol", config.wire.rawValue,
                    "--connect-rate", String(s.connectRate), "--request-timeout", "\(config.requestTimeout)s",
                    "--requests-per-connection", String(config.requestsPerConnection),
                    "--processes", "1", "--load-child", "--source-first", String(s.sourceFirst)]
        if let rate = s.rate { args += ["--rate", String(rate)] }
        if config.hangUp { args.append("--hang-up") }
        if let cpu = s.cpu { args += ["--cpus", String(cpu)] }
        if config.allowNonLoopback { args.append("--allow-non-loopback") }
        return args
    }

    /// One child as the parent sees it: its stdout pipe, what it has said so far, how it ended.
    final class Child {
        let pid: Int32
        let stdout: Int32
        var pending: [UInt8] = []
        var eof = false
        /// Phases reached: 0 none, 1 connected, 2 measure, 3 done.
        var phase = 0
        var histogram: Histogram<UInt64>?
        var summary: LoadSummary?
        var status: ExitStatus?

        init(pid: Int32, stdout: Int32) { self.pid = pid; self.stdout = stdout }
        deinit { close(stdout) }
    }

    public func run() throws -> LoadSummary {
        var children: [Child] = []
        do {
            for k in shares.indices { children.append(try spawn(k)) }
            try supervise(children)
        } catch {
            stopAll(children)
            throw error
        }
        for child in children where child.status == nil {
            child.status = reap(child.pid, within: 5) ?? kill(child)
        }
        return try merge(children)
    }

    func spawn(_ k: Int) throws -> Child {
        var fds: [Int32] = [0, 0]
        try syscallOrThrow("pipe2") { mux_pipe_cloexec(&fds) }
        let argv = [executable] + childArguments(k)
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = ChildProcess.currentEnvironmentList().map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) }; cEnv.forEach { free($0) } }
        // Same process group as this parent, so a signal to the group reaches the children; they die with us.
        let rc = mux_spawn(executable, cArgs, cEnv, fds[1], 2, 0)
        close(fds[1])
        if rc < 0 {
            close(fds[0])
            throw LoadError("cannot start load process \(k + 1) of \(shares.count): \(SystemError("fork(\(executable))", errno: -rc))")
        }
        return Child(pid: rc, stdout: fds[0])
    }

    /// Reads every child's lines until all have sent their summary; a child that ends first, or a run past its
    /// deadline, stops the whole load with an error that names the pid and how it ended.
    func supervise(_ children: [Child]) throws {
        let slowestConnect = shares.map { LoadGenerator.connectLimit(connections: $0.connections, connectRate: $0.connectRate) }.max() ?? 10
        let limit = slowestConnect + config.warmup + config.duration + 60
        let deadline = monotonicNanos() + UInt64(limit * 1e9)
        var forwarded = 0
        var chunk = [UInt8](repeating: 0, count: 65536)
        var polled = [pollfd](repeating: pollfd(), count: children.count)
        while children.contains(where: { $0.summary == nil }) {
            let now = monotonicNanos()
            if now >= deadline {
                let late = children.filter { $0.summary == nil }.map { "\($0.pid)" }.joined(separator: ", ")
                throw LoadError("load processes (pid \(late)) did not finish within \(Int(limit)) s (connect, warm-up, duration and a minute); stopped them")
            }
            for (k, child) in children.enumerated() {
                polled[k] = pollfd(fd: child.eof ? -1 : child.stdout, events: Int16(POLLIN), revents: 0)
            }
            let ms = Int32(min(200, (deadline - now) / 1_000_000 + 1))
            if Glibc.poll(&polled, nfds_t(polled.count), ms) < 0 && errno != EINTR {
                throw SystemError("poll", errno: errno)
            }
            for (k, child) in children.enumerated() where polled[k].revents != 0 {
                let n = chunk.withUnsafeMutableBytes { Glibc.read(child.stdout, $0.baseAddress, $0.count) }
                if n > 0 {
                    child.pending.append(contentsOf: chunk[0..<n])
                    while let nl = child.pending.firstIndex(of: 10) {
                        let line = String(decoding: child.pending[..<nl], as: UTF8.self)
                        child.pending.removeSubrange(...nl)
                        try take(line, from: child)
                    }
                } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                    child.eof = true
                }
            }
            for child in children where child.eof && child.summary == nil {
                child.status = reap(child.pid, within: 2) ?? kill(child)
                throw LoadError("load process pid \(child.pid) ended (\(child.status!)) before its summary\(child.phase > 0 ? ", after phase \(Self.phaseNames[child.phase - 1])" : ""); its messages, if any, are above on stderr")
            }
            // Forward a phase once every child has reached it, so the driver's window covers all of them.
            let reached = children.map(\.phase).min() ?? 0
            while forwarded < reached {
                forwarded += 1
                if forwarded == 1 {
                    // All connected: start every child's warm-up at the same moment.
                    for child in children { _ = Glibc.kill(child.pid, SIGUSR1) }
                }
                if config.printPhases { writeLine("phase \(Self.phaseNames[forwarded - 1])") }
            }
        }
    }

    static let phaseNames = ["connected", "measure", "done"]

    func take(_ line: String, from child: Child) throws {
        if line.hasPrefix("phase "), let k = Self.phaseNames.firstIndex(of: String(line.dropFirst(6))) {
            child.phase = max(child.phase, k + 1)
        } else if line.hasPrefix(Self.histogramPrefix) {
            do {
                child.histogram = try JSONDecoder().decode(Histogram<UInt64>.self, from: Data(line.utf8.dropFirst(Self.histogramPrefix.utf8.count)))
            } catch {
                throw LoadError("load process pid \(child.pid) sent an unreadable latency histogram: \(error)")
            }
        } else if line.hasPrefix("{") {
            do {
                child.summary = try JSONDecoder().decode(LoadSummary.self, from: Data(line.utf8))
            } catch {
                throw LoadError("load process pid \(child.pid) sent an unreadable summary: \(error)")
            }
        }
    }

    /// The child's status once it has ended within `seconds`, else nil.
    func reap(_ pid: Int32, within seconds: Double) -> ExitStatus? {
        let deadline = monotonicNanos() + UInt64(seconds * 1e9)
        while true {
            var st: Int32 = 0
            let r = waitpid(pid, &st, WNOHANG)
            if r == pid { return st & 0x7f == 0 ? .exited((st >> 8) & 0xff) : .signaled(st & 0x7f) }
            if r < 0 && errno != EINTR { return .exited(-1) }
            if monotonicNanos() >= deadline { return nil }
            usleep(2000)
        }
    }

    /// SIGKILL to this child only (by pid), then its status.
    func kill(_ child: Child) -> ExitStatus {
        _ = Glibc.kill(child.pid, SIGKILL)
        return reap(child.pid, within: 5) ?? .signaled(SIGKILL)
    }

    func stopAll(_ children: [Child]) {
        for child in children where child.status == nil { child.status = kill(child) }
    }

    /// One summary in the single-process shape: counts and errors summed, histograms added bucket by bucket.
    func merge(_ children: [Child]) throws -> LoadSummary {
        var histogram = LoadGenerator.newHistogram()
        var parts: [LoadSummary] = []
        for child in children {
            guard let s = child.summary else { throw LoadError("load process pid \(child.pid) sent no summary") }
            guard let h = child.histogram else { throw LoadError("load process pid \(child.pid) sent no latency histogram") }
            guard h.numberOfSignificantValueDigits == histogram.numberOfSignificantValueDigits,
                  h.lowestDiscernibleValue == histogram.lowestDiscernibleValue,
                  h.highestTrackableValue <= histogram.highestTrackableValue else {
                throw LoadError("load process pid \(child.pid) sent a histogram of another layout (\(h.numberOfSignificantValueDigits) digits, \(h.lowestDiscernibleValue)-\(h.highestTrackableValue) ns)")
            }
            guard Int(h.totalCount) == s.requests else {
                throw LoadError("load process pid \(child.pid): its histogram holds \(h.totalCount) samples but it counted \(s.requests) requests")
            }
            histogram.add(h)
            parts.append(s)
        }
        func sum(_ field: (LoadSummary) -> Int?) -> Int { parts.reduce(0) { $0 + (field($1) ?? 0) } }
        let errors = parts.reduce(ErrorCounts()) { $0 + $1.errors }
        var s = LoadSummary(
            target: "\(config.target)", mode: config.rate == nil ? "closed" : "open",
            connections: sum(\.connections), active: sum(\.active), targetRPS: config.rate,
            durationS: parts.map(\.durationS).max() ?? 0, requests: sum(\.requests), errors: errors, errorsTotal: errors.total,
            // Each child's rate over its own window: the windows differ by the children's start-up jitter only.
            throughputRPS: (parts.reduce(0) { $0 + $1.throughputRPS } * 10).rounded() / 10,
            latencyUs: LatencySummary(histogram), cpus: config.cpus?.description ?? Placement.affinity().description,
            clientCPUSeconds: (parts.reduce(0) { $0 + $1.clientCPUSeconds } * 1000).rounded() / 1000,
            idleClosed: sum(\.idleClosed), established: sum(\.established), served: sum(\.served))
        s.connectionsOpened = sum(\.connectionsOpened)
        s.closedByServer = sum(\.closedByServer)
        s.hangups = sum(\.hangups)
        if config.rate != nil {
            s.slots = sum(\.slots)
            s.unsent = sum(\.unsent)
        }
        s.requestsPerConnection = config.requestsPerConnection
        s.processes = children.count
        s.latencySamples = Int(histogram.totalCount)
        s.firstConnectError = parts.lazy.compactMap(\.firstConnectError).first
        return s
    }
}
