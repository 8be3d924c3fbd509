#if canImport(Glibc)
import Glibc
#endif
import CShims
import Foundation
import Histogram
import Kernel

/// Per-connection client state, in one slab indexed by connection number.
struct Client {
    var fd: Int32 = -1
    /// 0 not opened, 1 connecting, 2 open, 3 dead, 4 waiting to reopen (its last connect failed).
    var state: UInt8 = 0
    var active = false
    var busy = false
    var wantWrite = false
    /// Bytes of the current request written, and of its response received.
    var sent = 0
    var received = 0
    /// Latency origin: the intended send time (open loop) or the actual one (closed loop).
    var origin: UInt64 = 0
    var sentAt: UInt64 = 0
    /// Open loop: the intended time of the slot in flight, and the slots waiting for this connection
    /// (a ring of `LoadLoop.backlogCapacity` intended times in `LoadLoop.backlog`).
    var intended: UInt64 = 0
    var queued: Int32 = 0
    var queueHead: Int32 = 0
    /// Replaced after a timeout: waiting for the new connection is the server's delay, so it counts as latency.
    var connectIsLatency = false
    /// Ordinal among active connections, -1 for idle ones.
    var slot: Int32 = -1
    /// Which of the load's requests this connection sends next (HTTP: they go in turn).
    var requestIndex: Int32 = 0
    /// --pipeline: requests sent (or waiting to be written) and not answered, the oldest's place in the
    /// connection's ring of send times, how many still wait to be written, and the request the oldest is.
    var inFlight: Int32 = 0
    var pipeHead: Int32 = 0
    var toWrite: Int32 = 0
    var recvIndex: Int32 = 0
    /// Completed at least one request (warm-up included).
    var served = false
    /// When the current connection's connect() was called, and when it completed.
    var connectAt: UInt64 = 0
    var connectedAt: UInt64 = 0
    /// Requests answered on the current connection.
    var answeredOnConnection = 0
}

/// The load generator: one thread, one epoll loop, a fixed mix of idle and active connections.
public final class LoadGenerator {
    let config: LoadConfig
    let sources: [String?]

    public init(_ config: LoadConfig) throws {
        self.config = config
        // Inside a namespace muxlab created (topology = "netns") only its veth twin is reachable.
        guard config.target.isLoopback || config.allowNonLoopback || NetworkNamespace.currentIsMuxlabCreated() else {
            throw LoadError("target \(config.target) is not a loopback address (127.0.0.0/8 or ::1) and this process does not run in a network namespace muxlab created (\(NetworkNamespace.directory)/\(NetworkNamespace.prefix)*); load goes elsewhere only with --allow-non-loopback")
        }
        if config.pipeline > 1 {
            let clash = config.rate != nil ? "--rate (the open loop's slots each wait for a free connection)"
                : config.hangUp ? "--hang-up (no answer is read)"
                : config.requestsPerConnection > 0 ? "--requests-per-connection (a connection closes between answers)" : nil
            if let clash { throw LoadError("--pipeline \(config.pipeline) keeps requests in flight in the closed loop; it cannot go with \(clash)") }
            guard config.pipeline <= LoadGenerator.maxPipeline else {
                throw LoadError("--pipeline \(config.pipeline): at most \(LoadGenerator.maxPipeline) requests in flight per connection")
            }
        }
        guard config.active <= config.connections else {
            throw LoadError("--active \(config.active) is more than --connections \(config.connections): active connections are a subset")
        }
        let hard = DescriptorLimit.current().hard
        if config.connections > LoadGenerator.connectionsPerProcess {
            throw LoadError("--connections \(config.connections) needs \(config.connections + LoadGenerator.descriptorReserve) descriptors but one process may open at most \(hard) here (hard RLIMIT_NOFILE, cannot be raised); use at most \(LoadGenerator.connectionsPerProcess) connections per load process, or --processes \(LoadProcesses.automaticCount(connections: config.connections)) or more")
        }
        let perSource = LoadGenerator.portsPerSource
        let needed = (config.connections + perSource - 1) / perSource
        let ipv4Loopback = !config.target.isIPv6 && config.target.isLoopback
        if needed > 1 && !ipv4Loopback {
            throw LoadError("--connections \(config.connections) exceeds the ~\(perSource) ephemeral ports of one source address; more than that needs an IPv4 loopback target (extra sources 127.0.0.2, .3, ...)")
        }
        let wanted = LoadGenerator.sourceCount(connections: config.connections, requestsPerConnection: config.requestsPerConnection)
        if !ipv4Loopback || (config.sourceFirst == nil && wanted == 1) {
            sources = [nil]
        } else {
            let first = config.sourceFirst ?? 0
            sources = (first..<first + wanted).map(LoadGenerator.sourceAddress)
        }
    }

    /// Seconds one process may take to open its connections: three times the planned ramp plus 10 s,
    /// as a loaded machine connects slower than asked. Past it, what is not connected has failed.
    public static func connectLimit(connections: Int, connectRate: Int) -> Double {
        10 + 3 * Double(connections) / Double(max(1, connectRate))
    }

    /// Slots a busy connection queues, each sent when it frees with latency from its intended time (as wrk2 does:
    /// skipping them would omit exactly the slow moments); bounded so a stalled connection does not burst every
    /// missed slot on recovery (8 ride out a 10 ms stall at 1 ms a slot): a slot past it is refused, `unsent`.
    public static let slotBacklog: Int32 = 8
    /// Open loop: slots due within this go out in one pass, so the loop wakes per batch, not per slot (wrk2's
    /// timers have the same 1 ms grain). `make bench-openloop` measured it: against closed loops of the same
    /// throughput, 1.23x their CPU per request at 1 ms (median of 5), 1.41x at 100 µs; p99 no worse.
    public static let defaultBatch = 0.001
    /// The most requests `--pipeline` keeps in flight on one connection.
    public static let maxPipeline = 256

    /// About this many ephemeral ports exist per source address towards one target (32768-60999).
    public static let portsPerSource = 28_000
    /// Descriptors one load process keeps for itself besides its connections.
    public static let descriptorReserve = 32
    /// The most connections one load process can hold under the hard descriptor limit.
    public static var connectionsPerProcess: Int { DescriptorLimit.current().hard - descriptorReserve }
    /// Connections placed on one source address. connect() picks a port by scanning the range from an
    /// offset, even ports first (inet_hash_connect); once the even half is taken towards one target, every
    /// connect scans it through: 100,000 connections over 6 processes (one address each) slowed to ~1,200
    /// per second past ~14,000 per address. With two addresses each, all 100,000 connected in ~5 s.
    public static let connectionsPerSource = 12_000
    /// Source addresses one process uses: one per `connectionsPerSource` connections, and four when
    /// connections are reopened (the TIME_WAIT they leave is spread over them).
    public static func sourceCount(connections: Int, requestsPerConnection: Int) -> Int {
        max((connections + connectionsPerSource - 1) / connectionsPerSource, requestsPerConnection > 0 ? 4 : 1)
    }

    /// The n-th loopback source address: 127.0.0.1, 127.0.0.2, ... 127.0.0.254, 127.0.1.1, ...
    static func sourceAddress(_ n: Int) -> String? { "127.0.\(n / 254).\(n % 254 + 1)" }

    public func run() throws -> LoadSummary {
        try runKeepingHistogram().summary
    }

    /// The summary and the latency histogram behind it (a multi-process parent merges the children's).
    public func runKeepingHistogram() throws -> (summary: LoadSummary, histogram: Histogram<UInt64>) {
        if let cpus = config.cpus { try Placement.pin(cpus) }
        signal(SIGPIPE, SIG_IGN)
        if config.waitForStart {
            // Blocked before the parent can learn we are connected, so its start signal is never lost or fatal.
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGUSR1)
            pthread_sigmask(SIG_BLOCK, &set, nil)
        }
        DescriptorLimit.raiseToHard()
        let loop = try LoadLoop(config: config, sources: sources)
        defer { loop.closeAll() }
        let summary = try loop.run()
        return (summary, loop.histogram)
    }

    /// A new latency histogram: nanoseconds up to 120 s, three significant digits.
    public static func newHistogram() -> Histogram<UInt64> {
        Histogram<UInt64>(highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three)
    }
}

/// The event loop proper; allocation-free once connected, reopening connections included.
final class LoadLoop {
    let config: LoadConfig
    let sources: [String?]
    let epfd: Int32
    let events: UnsafeMutablePointer<mux_epoll_event>
    let maxEvents: Int32 = 1024
    let clients: UnsafeMutablePointer<Client>
    let count: Int
    /// fd -> client index.
    let owner: UnsafeMutablePointer<Int32>
    let ownerCapacity: Int
    /// Active client indexes, in schedule order.
    let activeIndex: UnsafeMutablePointer<Int32>
    let activeCount: Int
    /// Every request the load sends, end to end, and where each starts (`requestCount + 1` offsets) and
    /// whether its answer has no body (HEAD).
    let request: UnsafeMutableRawPointer
    let requestOffsets: UnsafeMutablePointer<Int>
    let requestHeadOnly: UnsafeMutablePointer<Bool>
    let requestCount: Int
    let scratch: UnsafeMutableRawPointer
    let scratchSize = 64 * 1024
    /// HTTP: one response parser and one header line buffer per active connection (slot).
    let parsers: UnsafeMutablePointer<HTTPResponseParser>
    let headers: UnsafeMutablePointer<UInt8>
    /// The longest header block (and line) an answer may have.
    static let headerCapacity = 8192
    let expectStatus: Int?
    let bodyPattern: BodyPattern?
    /// Requests in flight per active connection (`--pipeline`; 1: one at a time, the plain path), their send
    /// times (a ring of `pipeline` per active connection), and with one request the same bytes `pipeline`
    /// times over, so a connection tops up its pipeline in one write.
    let pipeline: Int
    let pipeTimes: UnsafeMutablePointer<UInt64>
    let pipelineBytes: UnsafeMutableRawPointer
    /// The target and the source addresses as socket addresses, built once so reopening a connection allocates nothing.
    let family: Int32
    let targetAddress: UnsafeMutablePointer<sockaddr_storage>
    let targetLength: socklen_t
    let sourceAddresses: UnsafeMutablePointer<sockaddr_storage>
    let sourceLength: socklen_t
    let bindsSource: Bool
    let requestsPerConnection: Int
    let hangUp: Bool
    let openLoop: Bool
    /// Interest in an open connection: readable, and the peer's FIN (the server closed after its answer).
    let readInterest = MUX_EPOLLIN | MUX_EPOLLRDHUP
    var histogram = LoadGenerator.newHistogram()
    var errors = ErrorCounts()
    var requests = 0
    /// Answers completed since the start, in or out of a window, and where the driver reads them.
    var completed: UInt64 = 0
    let published: LoadCounterSlot?
    var idleClosed = 0
    var establishedCount = 0
    var connectionsOpened = 0
    var closedByServer = 0
    var hangups = 0
    var nextSource = 0
    var measuring = false
    /// The driver's channel (stdin/stdout) when it opens and closes the windows (`--control`).
    let control: ControlChannel?
    var stopRequested = false
    var windowID = 0
    var windowOpenedAt: UInt64 = 0
    var cpuAtOpen = 0.0
    var lastSummary: LoadSummary?
    var firstConnectError: String?
    var firstWrongResponse: String?
    /// The schedule's origin and slot interval (open loop), set when the run starts.
    var runStart: UInt64 = 0
    var interval = 0.0
    /// Open loop: the next slot of the schedule to release; slots whose intended time fell in the window, and
    /// those of them (or of slots waiting in a backlog) that could not be sent.
    var nextSlot = 0
    var slots = 0
    var unsent = 0
    /// Open loop: slots whose outcome was still to come when the window opened, and when it closed.
    var inFlightAtOpen = 0
    var inFlightAtClose = 0
    /// The measured window's end on the schedule's clock: a slot due after it is not the window's.
    var windowEnd = UInt64.max
    /// Open loop: per active connection, a ring of intended times of slots waiting for it (`Client.queued`).
    let backlog: UnsafeMutablePointer<UInt64>
    /// The ring holds one more: a request in flight when the server closed goes back first in line.
    static let backlogCapacity = Int(LoadGenerator.slotBacklog) + 1
    /// Phase lines built before the loop, so announcing a phase allocates nothing inside the window.
    let phaseLines: [LoadPhase: [UInt8]] = Dictionary(uniqueKeysWithValues: [LoadPhase.connected, .measure, .done].map {
        ($0, Array(($0.line + "\n").utf8))
    })

    init(config: LoadConfig, sources: [String?]) throws {
        self.config = config
        self.sources = sources
        control = config.control ? ControlChannel.standard : nil
        published = try config.counters.map { try LoadCounterSlot(path: $0, slot: config.counterSlot) }
        requestsPerConnection = config.requestsPerConnection
        hangUp = config.hangUp
        openLoop = config.rate != nil
        epfd = try syscallOrThrow("epoll_create1") { mux_epoll_create() }
        events = mux_epoll_events_alloc(maxEvents)
        count = config.connections
        clients = .allocate(capacity: count)
        clients.initialize(repeating: Client(), count: count)
        ownerCapacity = DescriptorLimit.current().hard + 64
        owner = .allocate(capacity: ownerCapacity)
        owner.initialize(repeating: -1, count: ownerCapacity)
        activeCount = config.active
        activeIndex = .allocate(capacity: max(1, activeCount))
        let backlogSlots = openLoop ? max(1, activeCount) * LoadLoop.backlogCapacity : 1
        backlog = .allocate(capacity: backlogSlots)
        backlog.initialize(repeating: 0, count: backlogSlots)
        // Spread active connections evenly among the idle ones, as libevent's bench does.
        for j in 0..<activeCount {
            let i = j * count / activeCount
            activeIndex[j] = Int32(i)
            clients[i].active = true
            clients[i].slot = Int32(j)
        }
        let layout = try RequestLayout(config, activeCount: activeCount)
        requestHeadOnly = layout.headOnly
        requestOffsets = layout.offsets
        request = layout.bytes
        requestCount = layout.count
        pipeline = layout.pipeline
        pipelineBytes = layout.pipelineBytes
        pipeTimes = layout.pipeTimes
        expectStatus = config.http.expectStatus
        bodyPattern = config.http.expectBody.map { BodyPattern(Array($0.utf8)) }
        scratch = .allocate(byteCount: scratchSize, alignment: 16)
        let slots = config.wire == .http ? max(1, activeCount) : 1
        parsers = .allocate(capacity: slots)
        parsers.initialize(repeating: HTTPResponseParser(), count: slots)
        headers = .allocate(capacity: slots * LoadLoop.headerCapacity)
        family = config.target.isIPv6 ? AF_INET6 : AF_INET
        let target = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: 1)
        target.initialize(to: sockaddr_storage())
        targetLength = config.target.withSockAddr { address, length in
            UnsafeMutableRawPointer(target).copyMemory(from: address, byteCount: Int(length))
            return length
        }
        targetAddress = target
        bindsSource = sources.first.flatMap { $0 } != nil
        let from = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: sources.count)
        from.initialize(repeating: sockaddr_storage(), count: sources.count)
        var length = socklen_t(0)
        for (k, source) in sources.enumerated() {
            guard let source else { continue }
            length = Endpoint(host: source, port: 0).withSockAddr { address, length in
                UnsafeMutableRawPointer(from + k).copyMemory(from: address, byteCount: Int(length))
                return length
            }
        }
        sourceAddresses = from
        sourceLength = length
    }

    deinit {
        mux_epoll_events_free(events)
        clients.deallocate(); owner.deallocate(); activeIndex.deallocate(); backlog.deallocate()
        request.deallocate(); requestOffsets.deallocate(); requestHeadOnly.deallocate()
        pipeTimes.deallocate(); pipelineBytes.deallocate()
        scratch.deallocate(); parsers.deallocate(); headers.deallocate()
        targetAddress.deallocate(); sourceAddresses.deallocate()
        FD.close(epfd)
    }

    func closeAll() {
        for i in 0..<count where clients[i].fd >= 0 {
            FD.close(clients[i].fd)
            clients[i].fd = -1
        }
    }

    // MARK: run

    func run() throws -> LoadSummary {
        try connectAll()
        announce(.connected)
        if let channel = control {
            channel.send(.connected(established: establishedCount))
            _ = mux_epoll_ctl(epfd, MUX_EPOLL_CTL_ADD, channel.input, MUX_EPOLLIN)
        }
        if config.waitForStart { try waitForStartSignal() }
        let start = monotonicNanos()
        runStart = start
        // Self-timed: warm-up, then one window. Under control the driver opens and closes the windows;
        // warm-up + duration is then only the bound on the whole run.
        let measureAt = start + UInt64(config.warmup * 1e9)
        let selfTimed = control == nil || config.selfTimed
        if selfTimed { windowID = 1 }
        let endAt = selfTimed ? measureAt + UInt64(config.duration * 1e9) : start + UInt64((config.warmup + config.duration) * 1e9)
        let timeoutNs = UInt64(config.requestTimeout * 1e9)
        let batchNs = UInt64(config.batch * 1e9)
        interval = config.rate.map { 1e9 / Double($0) } ?? 0
        var nextTimeoutScan = start + 100_000_000
        var progress = config.progress ? LoadProgress(start: start) : nil
        var nextProgress = progress == nil ? UInt64.max : start + 1_000_000_000
        defer {
            progress?.clear()
            progress?.free()
        }

        if !openLoop {
            for j in 0..<activeCount where clients[Int(activeIndex[j])].state == 2 { beginClosedLoop(Int(activeIndex[j]), now: start) }
        }
        while !stopRequested {
            let now = monotonicNanos()
            if selfTimed && !measuring && now >= measureAt { openWindow(now) }
            if now >= endAt { break }
            var wakeAt = !selfTimed || measuring ? endAt : min(endAt, measureAt)
            if openLoop && activeCount > 0 { wakeAt = min(wakeAt, releaseSlots(through: now + batchNs)) }
            if now >= nextTimeoutScan {
                scanTimeouts(now: now, limit: timeoutNs)
                nextTimeoutScan = now + 100_000_000
            }
            if now >= nextProgress {
                progress?.show(now: now, elapsed: now - start, measuring: measuring, completed: completed, requests: requests,
                               errors: errors.total, p99Us: histogram.totalCount > 0 ? histogram.valueAtPercentile(99) / 1000 : 0)
                nextProgress = now + 1_000_000_000
            }
            wakeAt = min(wakeAt, nextTimeoutScan, nextProgress)
            let n = mux_epoll_wait_ns(epfd, events, maxEvents, Int64(wakeAt > now ? wakeAt - now : 0))
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("epoll_pwait2", errno: errno)
            }
            for e in 0..<Int(n) {
                let fd = mux_epoll_event_fd(events, Int32(e))
                if let channel = control, fd == channel.input {
                    try takeControl(channel)
                    continue
                }
                let flags = mux_epoll_event_flags(events, Int32(e))
                let i = Int(owner[Int(fd)])
                if i < 0 { continue }
                if clients[i].state == 1 {
                    finishReopen(i)
                    continue
                }
                if flags & MUX_EPOLLOUT != 0 && clients[i].wantWrite { continueWrite(i) }
                // A hang-up may have replaced the connection: its events wait for the next round.
                if flags & (readInterest | MUX_EPOLLERR | MUX_EPOLLHUP) != 0 && clients[i].state == 2 && clients[i].fd == fd {
                    onReadable(i, flags: flags)
                }
            }
        }
        // A window still open at the end (self-timed, or the run's bound passed under control) closes now.
        if measuring { closeWindow(monotonicNanos()) }
        return lastSummary ?? summary(measured: 0, cpu: 0)
    }
}

/// Phase lines a self-timed `muxlab load --phases` prints, for a person or a script watching it.
public enum LoadPhase: String, Sendable {
    case connected
    case measure
    case done

    public var line: String { "phase \(rawValue)" }
}

/// The requests a connection sends, laid out once before the loop so that sending allocates nothing: every
/// request's bytes back to back (`offsets[k]..<offsets[k + 1]`), whether each is a HEAD (no body in its
/// answer), and for `--pipeline N` of one request N copies in a row (one write fills the pipeline) with a
/// send time per request in flight. The loop owns the memory and frees it in its deinit.
struct RequestLayout {
    let headOnly: UnsafeMutablePointer<Bool>
    let offsets: UnsafeMutablePointer<Int>
    let bytes: UnsafeMutableRawPointer
    let count: Int
    let pipeline: Int
    let pipelineBytes: UnsafeMutableRawPointer
    let pipeTimes: UnsafeMutablePointer<UInt64>

    init(_ config: LoadConfig, activeCount: Int) throws {
        let built: [HTTPRequest]
        switch config.wire {
        case .echo:
            built = [HTTPRequest(bytes: (0..<config.messageSize).map { UInt8(truncatingIfNeeded: 97 + ($0 * 7) % 26) }, headOnly: false)]
        case .http:
            built = try config.http.build(host: "\(config.target)").requests
        }
        headOnly = .allocate(capacity: built.count)
        offsets = .allocate(capacity: built.count + 1)
        offsets[0] = 0
        for (k, r) in built.enumerated() {
            headOnly[k] = r.headOnly
            offsets[k + 1] = offsets[k] + r.bytes.count
        }
        // A local: a closure may not capture self before every stored property is set.
        let all = UnsafeMutableRawPointer.allocate(byteCount: max(1, offsets[built.count]), alignment: 16)
        for (k, r) in built.enumerated() {
            let at = all + offsets[k]
            r.bytes.withUnsafeBytes { at.copyMemory(from: $0.baseAddress!, byteCount: r.bytes.count) }
        }
        bytes = all
        count = built.count
        pipeline = max(1, config.pipeline)
        let oneLength = offsets[1]
        let repeats = pipeline > 1 && built.count == 1
        pipelineBytes = .allocate(byteCount: repeats ? pipeline * oneLength : 1, alignment: 16)
        if repeats {
            for k in 0..<pipeline { (pipelineBytes + k * oneLength).copyMemory(from: bytes, byteCount: oneLength) }
        }
        let timeSlots = pipeline > 1 ? max(1, activeCount) * pipeline : 1
        pipeTimes = .allocate(capacity: timeSlots)
        pipeTimes.initialize(repeating: 0, count: timeSlots)
    }
}
