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
    /// A child talks to this parent over its stdin and stdout; under the driver's control the parent
    /// forwards the windows and `--duration` only bounds the child's run, else the child times its one
    /// window itself from the common start.
    public func childArguments(_ k: Int) -> [String] {
        let s = shares[k]
        let timing = config.control ? ["--duration", "\(runBound)s", "--warmup", "0s"]
            : ["--duration", "\(config.duration)s", "--warmup", "\(config.warmup)s", "--self-timed"]
        var args = ["load", "--target", "\(config.target)", "--connections", String(s.connections), "--active", String(s.active)]
            + timing + [
                    "--message-size", String(config.messageSize), "--protocol", config.wire.rawValue,
                    "--connect-rate", String(s.connectRate), "--request-timeout", "\(config.requestTimeout)s",
                    "--batch", "\(config.batch)s",
                    "--requests-per-connection", String(config.requestsPerConnection),
                    "--processes", "1", "--load-child", "--source-first", String(s.sourceFirst)]
        if let rate = s.rate { args += ["--rate", String(rate)] }
        if let counters = config.counters { args += ["--counters", counters, "--counter-slot", String(k + 1)] }
        if config.hangUp { args.append("--hang-up") }
        if let cpu = s.cpu { args += ["--cpus", String(cpu)] }
        if config.allowNonLoopback { args.append("--allow-non-loopback") }
        if config.wire == .http { args += config.http.arguments }
        if config.pipeline > 1 { args += ["--pipeline", String(config.pipeline)] }
        return args
    }

    /// The longest a child may run: connecting as slowly as allowed, warm-up, the window(s) and a minute.
    var runBound: Int {
        let slowestConnect = shares.map { LoadGenerator.connectLimit(connections: $0.connections, connectRate: $0.connectRate) }.max() ?? 10
        return Int((slowestConnect + config.warmup + config.duration + 60).rounded(.up))
    }

    /// One child as the parent sees it: its control channel, what it has said so far, how it ended.
    final class Child {
        let pid: Int32
        let channel: ControlChannel
        var connected: Int?
        /// Window id -> its summary and histogram.
        var windows: [Int: (summary: LoadSummary, histogram: Histogram<UInt64>)] = [:]
        var status: ExitStatus?

        init(pid: Int32, channel: ControlChannel) { self.pid = pid; self.channel = channel }
        deinit { close(channel.input); close(channel.output) }
    }

    public func run() throws -> LoadSummary {
        // A child that has ended closes its stdin: telling it to stop is then EPIPE, not death.
        signal(SIGPIPE, SIG_IGN)
        var children: [Child] = []
        let result: LoadSummary
        do {
            for k in shares.indices { children.append(try spawn(k)) }
            result = try supervise(children)
        } catch {
            stopAll(children)
            throw error
        }
        for child in children where child.status == nil {
            child.status = reap(child.pid, within: 5) ?? kill(child)
        }
        return result
    }

    func spawn(_ k: Int) throws -> Child {
        var out: [Int32] = [0, 0]
        var input: [Int32] = [0, 0]
        try syscallOrThrow("pipe2") { mux_pipe_cloexec(&out) }
        do { try syscallOrThrow("pipe2") { mux_pipe_cloexec(&input) } } catch { close(out[0]); close(out[1]); throw error }
        let argv = [executable] + childArguments(k)
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = ChildProcess.currentEnvironmentList().map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) }; cEnv.forEach { free($0) } }
        // Same process group as this parent, so a signal to the group reaches the children; they die with us.
        let rc = mux_spawn(executable, cArgs, cEnv, input[0], out[1], 2, 0)
        close(out[1])
        close(input[0])
        if rc < 0 {
            close(out[0]); close(input[1])
            throw LoadError("cannot start load process \(k + 1) of \(shares.count): \(SystemError("fork(\(executable))", errno: -rc))")
        }
        return Child(pid: rc, channel: ControlChannel(input: out[0], output: input[1]))
    }

    /// Drives the children: once all have connected they start together; windows open and close on
    /// the driver's word (`--control`) or, self-timed, after the warm-up and the duration; each window's
    /// summaries are merged once every child sent its own. A child that ends early, or a run past its
    /// bound, stops the whole load with an error that names the pid and how it ended.
    func supervise(_ children: [Child]) throws -> LoadSummary {
        let upstream: ControlChannel? = config.control ? .standard : nil
        let deadline = monotonicNanos() + UInt64(Double(runBound) * 1e9)
        var polled = [pollfd](repeating: pollfd(), count: children.count + 1)
        var started = false
        var stopping = false
        var merged: [Int: LoadSummary] = [:]
        var openAt = UInt64.max, closeAt = UInt64.max
        func tellAll(_ m: ControlMessage) { for child in children { child.channel.send(m) } }
        while true {
            let now = monotonicNanos()
            if now >= deadline {
                throw LoadError("load processes (pid \(children.map { "\($0.pid)" }.joined(separator: ", "))) did not finish within \(runBound) s (connect, warm-up, duration and a minute); stopped them")
            }
            // Self-timed: the children open and close their one window themselves, from the common start.
            if now >= openAt { openAt = .max; phase(.measure); closeAt = now + UInt64(config.duration * 1e9) }
            if now >= closeAt { closeAt = .max; phase(.done) }
            for (k, child) in children.enumerated() {
                polled[k] = pollfd(fd: child.channel.closed ? -1 : child.channel.input, events: Int16(POLLIN), revents: 0)
            }
            polled[children.count] = pollfd(fd: upstream.map { $0.closed ? -1 : $0.input } ?? -1, events: Int16(POLLIN), revents: 0)
            let next = min(deadline, openAt, closeAt)
            let ms = Int32(min(200, (next > now ? next - now : 0) / 1_000_000 + 1))
            if Glibc.poll(&polled, nfds_t(polled.count), ms) < 0 && errno != EINTR {
                throw SystemError("poll", errno: errno)
            }
            for (k, child) in children.enumerated() where polled[k].revents != 0 {
                child.channel.fill()
                while let m = try child.channel.buffered() { try take(m, from: child) }
            }
            if let upstream, polled[children.count].revents != 0 {
                upstream.fill()
                while let m = try upstream.buffered() {
                    switch m {
                    case .open, .close: tellAll(m)
                    case .stop: stopping = true; tellAll(.stop)
                    default: continue
                    }
                }
                if upstream.closed && !stopping { stopping = true; tellAll(.stop) }
            }
            if !started && children.allSatisfy({ $0.connected != nil }) {
                started = true
                // All connected: start every child's warm-up at the same moment.
                for child in children { _ = Glibc.kill(child.pid, SIGUSR1) }
                let established = children.reduce(0) { $0 + ($1.connected ?? 0) }
                if let upstream { upstream.send(.connected(established: established)) } else { phase(.connected) }
                openAt = upstream == nil ? monotonicNanos() + UInt64(config.warmup * 1e9) : .max
            }
            let ids = Set(children.flatMap { $0.windows.keys }).filter { id in merged[id] == nil && children.allSatisfy { $0.windows[id] != nil } }
            for id in ids.sorted() {
                let (summary, histogram) = try merge(children.map { ($0.pid, $0.windows[id]!) })
                merged[id] = summary
                if let upstream {
                    upstream.send(.window(id: id, summary: summary, histogram: histogramText(histogram)))
                } else {
                    stopping = true
                    tellAll(.stop)
                }
            }
            if stopping && children.allSatisfy({ $0.channel.closed }) {
                // Self-timed: the one window; under control: the last one the driver closed.
                if let last = merged.keys.max() { return merged[last]! }
                throw LoadError("the load stopped before any measured window closed")
            }
            // A self-timed child ends by itself once it has sent its window.
            for child in children where child.channel.closed && child.status == nil && !stopping && (upstream != nil || child.windows.isEmpty) {
                child.status = reap(child.pid, within: 2) ?? kill(child)
                throw LoadError("load process pid \(child.pid) ended (\(child.status!)) \(child.connected == nil ? "before it connected" : "before the load was told to stop"); its messages, if any, are above on stderr")
            }
        }
    }

    func histogramText(_ h: Histogram<UInt64>) -> String? {
        (try? JSONEncoder().encode(h)).map { String(decoding: $0, as: UTF8.self) }
    }

    func phase(_ p: LoadPhase) {
        if config.printPhases { writeLine(p.line) }
    }

    func take(_ message: ControlMessage, from child: Child) throws {
        switch message {
        case .connected(let n):
            child.connected = n
        case .window(let id, let summary, let text):
            guard let text else { throw LoadError("load process pid \(child.pid) sent window \(id) without its latency histogram") }
            do {
                child.windows[id] = (summary, try JSONDecoder().decode(Histogram<UInt64>.self, from: Data(text.utf8)))
            } catch {
                throw LoadError("load process pid \(child.pid) sent an unreadable latency histogram: \(error)")
            }
        default:
            break
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
    func merge(_ windows: [(pid: Int32, part: (summary: LoadSummary, histogram: Histogram<UInt64>))]) throws -> (LoadSummary, Histogram<UInt64>) {
        try LoadProcesses.merge(windows.map { ("load process pid \($0.pid)", $0.part) }, target: "\(config.target)", rate: config.rate,
                                cpus: config.cpus?.description ?? Placement.affinity().description,
                                requestsPerConnection: config.requestsPerConnection)
    }

    /// Parts of one load (processes here, or hosts: `muxlab bench` with load_hosts), each named for messages,
    /// as one summary: counts and errors summed, histograms added bucket by bucket (exactly: same layout).
    public static func merge(_ windows: [(name: String, part: (summary: LoadSummary, histogram: Histogram<UInt64>))], target: String,
                             rate: Int?, cpus: String, requestsPerConnection: Int) throws -> (LoadSummary, Histogram<UInt64>) {
        var histogram = LoadGenerator.newHistogram()
        var parts: [LoadSummary] = []
        for (name, part) in windows {
            let (s, h) = part
            guard h.numberOfSignificantValueDigits == histogram.numberOfSignificantValueDigits,
                  h.lowestDiscernibleValue == histogram.lowestDiscernibleValue,
                  h.highestTrackableValue <= histogram.highestTrackableValue else {
                throw LoadError("\(name) sent a histogram of another layout (\(h.numberOfSignificantValueDigits) digits, \(h.lowestDiscernibleValue)-\(h.highestTrackableValue) ns)")
            }
            guard Int(h.totalCount) == s.requests else {
                throw LoadError("\(name): its histogram holds \(h.totalCount) samples but it counted \(s.requests) requests")
            }
            histogram.add(h)
            parts.append(s)
        }
        func sum(_ field: (LoadSummary) -> Int?) -> Int { parts.reduce(0) { $0 + (field($1) ?? 0) } }
        let errors = parts.reduce(ErrorCounts()) { $0 + $1.errors }
        var s = LoadSummary(
            target: target, mode: rate == nil ? "closed" : "open",
            connections: sum(\.connections), active: sum(\.active), targetRPS: rate,
            durationS: parts.map(\.durationS).max() ?? 0, requests: sum(\.requests), errors: errors, errorsTotal: errors.total,
            // Each child's rate over its own window: the windows differ by the children's start-up jitter only.
            throughputRPS: (parts.reduce(0) { $0 + $1.throughputRPS } * 10).rounded() / 10,
            latencyUs: LatencySummary(histogram), cpus: cpus,
            clientCPUSeconds: (parts.reduce(0) { $0 + $1.clientCPUSeconds } * 1000).rounded() / 1000,
            idleClosed: sum(\.idleClosed), established: sum(\.established), served: sum(\.served))
        s.connectionsOpened = sum(\.connectionsOpened)
        s.closedByServer = sum(\.closedByServer)
        s.hangups = sum(\.hangups)
        if rate != nil {
            s.slots = sum(\.slots)
            s.unsent = sum(\.unsent)
            s.inFlightAtOpen = sum(\.inFlightAtOpen)
            s.inFlightAtClose = sum(\.inFlightAtClose)
        }
        s.requestsPerConnection = requestsPerConnection
        s.processes = parts.reduce(0) { $0 + max(1, $1.processes ?? 1) }
        s.latencySamples = Int(histogram.totalCount)
        s.firstConnectError = parts.lazy.compactMap(\.firstConnectError).first
        s.firstWrongResponse = parts.lazy.compactMap(\.firstWrongResponse).first
        return (s, histogram)
    }
}
