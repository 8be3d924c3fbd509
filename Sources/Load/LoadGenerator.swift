#if canImport(Glibc)
import Glibc
#endif
import CShims
import Foundation
import Histogram
import Kernel

/// What `muxlab load` does: connect, warm up, measure, summarise.
public struct LoadConfig: Sendable {
    public var target: Endpoint
    public var connections = 10
    public var active = 10
    /// Requests per second in total (open loop); nil for closed loop.
    public var rate: Int?
    public var duration = 5.0
    public var warmup = 1.0
    public var messageSize = 64
    public var wire: WireProtocol = .echo
    public var connectRate = 20_000
    public var cpus: CPUList?
    /// A request outstanding longer than this counts as a timeout and its connection is replaced.
    public var requestTimeout = 5.0
    /// Open loop: slots due within this many seconds go out together in one pass (`--batch`).
    public var batch = LoadGenerator.defaultBatch
    /// Print `phase ...` lines on stdout (for the driver).
    public var printPhases = false
    public var allowNonLoopback = false
    /// Answered requests after which an active connection is closed and a new one opened; 0 keeps it alive.
    public var requestsPerConnection = 0
    /// Each active connection sends one request and closes at once (FIN, then a reset), never reading the answer (claim H1).
    public var hangUp = false
    /// Load processes; more than one runs `LoadProcesses`, which starts this many children.
    public var processes = 1
    /// Number of this process's first source address (127.0.x.y); nil lets the kernel pick while one address suffices.
    public var sourceFirst: Int?
    /// A child of a multi-process load: once connected it waits for SIGUSR1, so that all children warm up together.
    public var waitForStart = false
    /// A child of a multi-process load (its window messages carry the histogram for the parent).
    public var isChild = false
    /// Windows opened and closed by the driver over stdin, answered on stdout (`--control`):
    /// warm-up + duration then only bound the run.
    public var control = false
    /// A child of a self-timed multi-process load: its one window is warm-up and duration from its
    /// start (all children start together), and it sends that window to its parent over the channel.
    public var selfTimed = false
    /// The driver's counters file (`--counters`) and this process's slot in it (`--counter-slot`; a
    /// multi-process load's children take 1, 2, ...): the running count of answers, published as each arrives.
    public var counters: String?
    public var counterSlot = 0

    public init(target: Endpoint) { self.target = target }
}

/// A load run that could not start or went wrong as a whole: the message names the value and the limit.
public struct LoadError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

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
    // HTTP response parsing.
    var headerLength = 0
    var crlfMatched: UInt8 = 0
    var inBody = false
    var bodyLeft = 0
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
    let request: UnsafeMutableRawPointer
    let requestLength: Int
    let scratch: UnsafeMutableRawPointer
    let scratchSize = 64 * 1024
    let headers: UnsafeMutableRawPointer
    let headerCapacity = 1024
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
    /// The schedule's origin and slot interval (open loop), set when the run starts.
    var runStart: UInt64 = 0
    var interval = 0.0
    /// Open loop: the next slot of the schedule to release; slots whose intended time fell in the window, and
    /// those of them (or of slots waiting in a backlog) that could not be sent.
    var nextSlot = 0
    var slots = 0
    var unsent = 0
    /// The measured window's edges on the schedule's clock: a slot belongs to the window holding its intended time.
    var windowFrom = UInt64.max
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
        switch config.wire {
        case .echo:
            let buf = UnsafeMutableRawPointer.allocate(byteCount: config.messageSize, alignment: 16)
            let p = buf.assumingMemoryBound(to: UInt8.self)
            for i in 0..<config.messageSize { p[i] = UInt8(truncatingIfNeeded: 97 + (i * 7) % 26) }
            requestLength = config.messageSize
            request = buf
        case .http:
            let text = "GET / HTTP/1.1\r\nHost: \(config.target)\r\nUser-Agent: muxlab\r\n\r\n"
            let bytes = Array(text.utf8)
            let buf = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 16)
            bytes.withUnsafeBytes { buf.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
            requestLength = bytes.count
            request = buf
        }
        scratch = .allocate(byteCount: scratchSize, alignment: 16)
        headers = .allocate(byteCount: config.wire == .http ? max(1, activeCount) * headerCapacity : 1, alignment: 16)
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
        request.deallocate(); scratch.deallocate(); headers.deallocate()
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

        if !openLoop {
            for j in 0..<activeCount where clients[Int(activeIndex[j])].state == 2 { startRequest(Int(activeIndex[j]), origin: start) }
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
            wakeAt = min(wakeAt, nextTimeoutScan)
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

    /// The measured window opens: counts, errors, latencies and CPU start from zero.
    func openWindow(_ now: UInt64) {
        measuring = true
        requests = 0
        errors = ErrorCounts()
        histogram.reset()
        // Open loop: the window's slots are those whose intended time falls in it.
        windowFrom = now
        windowEnd = .max
        slots = 0
        unsent = 0
        windowOpenedAt = now
        cpuAtOpen = cpuSeconds()
        announce(.measure)
    }

    /// The window closes: its summary is kept, and sent to the driver under control.
    func closeWindow(_ now: UInt64) {
        if openLoop && activeCount > 0 {
            // Slots due before the close that the last pass did not reach go out as usual: in flight at the close.
            windowEnd = now
            _ = releaseSlots(through: now &- 1)
        }
        measuring = false
        let cpu = cpuSeconds() - cpuAtOpen
        announce(.done)
        // Building the summary allocates; give a script that snapshots on "phase done" time to do so first.
        if config.printPhases { usleep(50_000) }
        let s = summary(measured: Double(now - windowOpenedAt) / 1e9, cpu: cpu)
        lastSummary = s
        if let channel = control {
            // A child's parent adds the histogram to the other children's, bucket by bucket; the driver
            // keeps the timing window's in the run directory (histograms/cell-N.hgrm).
            let histogramText = (try? JSONEncoder().encode(histogram)).map { String(decoding: $0, as: UTF8.self) }
            channel.send(.window(id: windowID, summary: s, histogram: histogramText))
        }
    }

    /// The driver's messages: open and close a window, or stop. End of stream stops too.
    func takeControl(_ channel: ControlChannel) throws {
        if !channel.fill() && channel.closed { stopRequested = true }
        while let message = try channel.buffered() {
            let now = monotonicNanos()
            switch message {
            case .open(let id):
                if measuring { closeWindow(now) }
                windowID = id
                openWindow(now)
            case .close(let id) where measuring && id == windowID:
                closeWindow(now)
            case .stop:
                stopRequested = true
            default:
                continue
            }
        }
        if channel.closed { stopRequested = true }
    }

    func announce(_ phase: LoadPhase) {
        guard config.printPhases, let bytes = phaseLines[phase] else { return }
        bytes.withUnsafeBytes { _ = Glibc.write(1, $0.baseAddress, $0.count) }
    }

    /// A multi-process child waits here for the parent's SIGUSR1 (blocked since before connecting).
    func waitForStartSignal() throws {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGUSR1)
        // The parent signals once every child has connected: allow for all of them connecting as slowly as we did.
        let limit = 60 + 2 * LoadGenerator.connectLimit(connections: count, connectRate: config.connectRate)
        var ts = timespec(tv_sec: Int(limit), tv_nsec: 0)
        while true {
            if sigtimedwait(&set, nil, &ts) == SIGUSR1 { return }
            if errno == EINTR { continue }
            throw LoadError("no start signal (SIGUSR1) from the parent load process within \(Int(limit)) s of connecting")
        }
    }

    // MARK: connect

    func connectAll() throws {
        let begin = monotonicNanos()
        let limit = LoadGenerator.connectLimit(connections: count, connectRate: config.connectRate)
        let deadline = begin + UInt64(limit * 1e9)
        var opened = 0
        var pending = 0
        while opened < count || pending > 0 {
            let now = monotonicNanos()
            if now > deadline {
                for i in 0..<count where clients[i].state == 1 { fail(i, connect: ETIMEDOUT) }
                // Connections the ramp never reached are failures too, not a smaller run.
                if opened < count {
                    if firstConnectError == nil {
                        firstConnectError = "\(count - opened) connections not yet opened when the connect deadline (\(Int(limit.rounded())) s) passed"
                    }
                    for i in opened..<count { fail(i, connect: ETIMEDOUT) }
                }
                break
            }
            let allowed = min(count, Int(Double(now - begin) / 1e9 * Double(config.connectRate)) + 1)
            while opened < allowed {
                let i = opened
                opened += 1
                let err = openConnection(i, source: min(sources.count - 1, i / LoadGenerator.connectionsPerSource))
                if err != 0 { fail(i, connect: err) } else { pending += 1 }
            }
            let n = mux_epoll_wait(epfd, events, maxEvents, opened < count ? 1 : 100)
            for e in 0..<Int(max(0, n)) {
                let i = Int(owner[Int(mux_epoll_event_fd(events, Int32(e)))])
                guard i >= 0, clients[i].state == 1 else { continue }
                pending -= 1
                let err = Sockets.pendingError(clients[i].fd)
                if err == 0 { established(i) } else { fail(i, connect: err) }
            }
        }
        if errors.connect == count {
            throw LoadError("cannot reach \(config.target): \(firstConnectError ?? "no connection succeeded")")
        }
    }

    /// Starts a non-blocking connect for client `i` from source number `source`; 0 or the errno that stopped it.
    /// Completion is always reported by epoll (writable), never handled here, so a reopening cannot recurse.
    func openConnection(_ i: Int, source: Int) -> Int32 {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { return errno }
        guard Int(fd) < ownerCapacity else { FD.close(fd); return EMFILE }
        if bindsSource {
            // Let connect() pick the port, so each source address gets its own ephemeral range.
            var one: Int32 = 1
            _ = setsockopt(fd, Int32(IPPROTO_IP), 24 /* IP_BIND_ADDRESS_NO_PORT */, &one, socklen_t(MemoryLayout<Int32>.size))
            let rc = UnsafeRawPointer(sourceAddresses + source).withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, sourceLength) }
            if rc != 0 { let e = errno; FD.close(fd); return e }
        }
        connectionsOpened += 1
        let rc = UnsafeRawPointer(targetAddress).withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, targetLength) }
        if rc != 0 && errno != EINPROGRESS && errno != EINTR { let e = errno; FD.close(fd); return e }
        clients[i].fd = fd
        clients[i].state = 1
        clients[i].connectAt = monotonicNanos()
        owner[Int(fd)] = Int32(i)
        _ = mux_epoll_ctl(epfd, MUX_EPOLL_CTL_ADD, fd, MUX_EPOLLOUT)
        return 0
    }

    func established(_ i: Int) {
        establishedCount += 1
        clients[i].state = 2
        clients[i].connectedAt = monotonicNanos()
        clients[i].answeredOnConnection = 0
        Sockets.setNoDelay(clients[i].fd)
        _ = mux_epoll_ctl(epfd, MUX_EPOLL_CTL_MOD, clients[i].fd, readInterest)
    }

    /// An initial connection failed: counted whether or not the window is open, and not replaced.
    func fail(_ i: Int, connect err: Int32) {
        errors.connect += 1
        if firstConnectError == nil { firstConnectError = "\(SystemError("connect(\(config.target))", errno: err))" }
        drop(i)
    }

    /// Closes a connection for good (it is not replaced); slots waiting for it will never be sent.
    func drop(_ i: Int) {
        release(i)
        clients[i].state = 3
        if measuring { unsent += Int(clients[i].queued) }
        clients[i].queued = 0
    }

    /// Closes client `i`'s descriptor; with `abort`, a FIN and then a reset (SO_LINGER 0): the reset meets the
    /// server's socket in CLOSE_WAIT, so its next write fails with EPIPE and raises SIGPIPE (after a reset
    /// alone it would fail with ECONNRESET, no signal). No TIME_WAIT is left behind.
    func release(_ i: Int, abort: Bool = false) {
        let fd = clients[i].fd
        if fd >= 0 {
            owner[Int(fd)] = -1
            if abort {
                _ = shutdown(fd, Int32(SHUT_WR))
                var lg = linger(l_onoff: 1, l_linger: 0)
                _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, socklen_t(MemoryLayout<linger>.size))
            }
            FD.close(fd)
        }
        clients[i].fd = -1
        clients[i].busy = false
        clients[i].wantWrite = false
    }

    // MARK: reopening

    /// Ends an active connection's current connection and opens a new one in its place; its backlog waits for it.
    func reopen(_ i: Int, connectIsLatency: Bool = false) {
        release(i, abort: hangUp)
        clients[i].connectIsLatency = connectIsLatency
        let err = openConnection(i, source: nextSource)
        nextSource = nextSource + 1 == sources.count ? 0 : nextSource + 1
        if err != 0 { reopenFailed(i, err) }
    }

    /// Counted in the window like other errors; the timeout scan tries again (at most ten times a second).
    func reopenFailed(_ i: Int, _ err: Int32) {
        if measuring { errors.connect += 1 }
        if firstConnectError == nil { firstConnectError = "\(SystemError("connect(\(config.target))", errno: err))" }
        release(i)
        clients[i].state = 4
    }

    /// A reopened connection completed (or failed): send at once (closed loop) or its oldest waiting slot (open loop).
    func finishReopen(_ i: Int) {
        let err = Sockets.pendingError(clients[i].fd)
        if err != 0 { reopenFailed(i, err); return }
        established(i)
        if !openLoop { startRequest(i, origin: clients[i].connectedAt) } else if clients[i].queued > 0 { sendQueued(i) }
    }

    /// The request in flight goes out again on a new connection (open loop: first in line, from its intended time).
    func resend(_ i: Int) {
        if openLoop { requeueFirst(i, clients[i].intended) }
        reopen(i)
    }

    /// A request unanswered past the timeout: counted, and its connection replaced so its later slots are still sent
    /// (a new connection, so a late answer to it cannot be taken for a later request's).
    func timedOut(_ i: Int) {
        if measuring { errors.timeout += 1 }
        reopen(i, connectIsLatency: true)
    }

    // MARK: requests

    /// Sends a request whose latency counts from `origin` (open loop: its slot's intended time).
    @inline(__always)
    func startRequest(_ i: Int, origin: UInt64) {
        let now = monotonicNanos()
        clients[i].busy = true
        clients[i].sent = 0
        clients[i].received = 0
        clients[i].intended = origin
        // A batch may send a slot early: then from its send. A planned reconnect's connect time is not latency.
        let from = min(origin, now)
        clients[i].origin = clients[i].connectIsLatency ? from : max(from, clients[i].connectedAt)
        clients[i].sentAt = now
        clients[i].headerLength = 0
        clients[i].crlfMatched = 0
        clients[i].inBody = false
        continueWrite(i)
    }

    func continueWrite(_ i: Int) {
        let fd = clients[i].fd
        while clients[i].sent < requestLength {
            do {
                switch try FD.write(fd, request + clients[i].sent, requestLength - clients[i].sent) {
                case .wouldBlock:
                    if !clients[i].wantWrite {
                        clients[i].wantWrite = true
                        _ = mux_epoll_ctl(epfd, MUX_EPOLL_CTL_MOD, fd, readInterest | MUX_EPOLLOUT)
                    }
                    return
                case .done(let n):
                    clients[i].sent += n
                }
            } catch {
                if measuring { errors.write += 1 }
                drop(i)
                return
            }
        }
        if hangUp {
            hangups += 1
            reopen(i)
            return
        }
        if clients[i].wantWrite {
            clients[i].wantWrite = false
            _ = mux_epoll_ctl(epfd, MUX_EPOLL_CTL_MOD, fd, readInterest)
        }
    }

    func onReadable(_ i: Int, flags: UInt32) {
        let n: Int
        do {
            switch try FD.read(clients[i].fd, scratch, scratchSize) {
            case .wouldBlock: return
            case .done(let got): n = got
            }
        } catch let e as SystemError where e.errno == ECONNRESET && crossedServerClose(i) {
            // The server closed with our request unread, so its kernel reset the connection: resend it, as below.
            closedByServer += 1
            resend(i)
            return
        } catch {
            if measuring || clients[i].busy { errors.read += 1 }
            drop(i)
            return
        }
        if n == 0 {
            onEndOfStream(i)
            return
        }
        guard clients[i].busy else {
            wrong(i)  // bytes nobody asked for
            return
        }
        let complete: Bool
        switch config.wire {
        case .echo: complete = checkEcho(i, n)
        case .http: complete = checkHTTP(i, n)
        }
        guard clients[i].state == 2, complete else { return }
        let now = monotonicNanos()
        clients[i].busy = false
        clients[i].served = true
        clients[i].answeredOnConnection += 1
        completed &+= 1
        published?.publish(.completed, completed)
        if measuring {
            requests += 1
            _ = histogram.record(now > clients[i].origin ? now - clients[i].origin : 0)
        }
        if flags & (MUX_EPOLLRDHUP | MUX_EPOLLHUP) != 0 {
            // The server closed right after this answer: do not send into a closing connection.
            closedByServer += 1
            reopen(i)
        } else if requestsPerConnection > 0 && clients[i].answeredOnConnection >= requestsPerConnection {
            reopen(i)
        } else if openLoop {
            if clients[i].queued > 0 { sendQueued(i) }
        } else {
            startRequest(i, origin: now)
        }
    }

    /// A request sent on a connection that had answered before, and not a byte of its answer back: the server
    /// may have closed after its previous answer before this request reached it.
    @inline(__always)
    func crossedServerClose(_ i: Int) -> Bool {
        clients[i].busy && clients[i].received == 0 && clients[i].headerLength == 0 && clients[i].answeredOnConnection > 0
    }

    /// The server closed the connection: the end of it after a complete answer, an error with an answer owed.
    func onEndOfStream(_ i: Int) {
        if clients[i].busy {
            if crossedServerClose(i) {
                // Our request crossed the FIN the server sent after its previous answer: resend it on a new connection
                // (as HTTP clients retry on a reused connection closed before any byte of the answer).
                closedByServer += 1
                resend(i)
            } else {
                errors.read += 1
                drop(i)
            }
        } else if !clients[i].active {
            // An idle connection the server reaped (its idle timeout): not replaced.
            closedByServer += 1
            idleClosed += 1
            drop(i)
        } else {
            closedByServer += 1
            reopen(i)
        }
    }

    /// Echo: the bytes must be exactly the request's, in order, and no more.
    @inline(__always)
    func checkEcho(_ i: Int, _ n: Int) -> Bool {
        let at = clients[i].received
        if at + n > requestLength || memcmp(scratch, request + at, n) != 0 {
            wrong(i)
            return false
        }
        clients[i].received = at + n
        return at + n == requestLength
    }

    /// HTTP: status 200, a Content-Length, exactly that many body bytes, nothing after.
    func checkHTTP(_ i: Int, _ n: Int) -> Bool {
        let bytes = scratch.assumingMemoryBound(to: UInt8.self)
        let header = headers + Int(clients[i].slot) * headerCapacity
        var k = 0
        while k < n {
            if clients[i].inBody {
                let take = min(clients[i].bodyLeft, n - k)
                clients[i].bodyLeft -= take
                k += take
                if clients[i].bodyLeft == 0 { break }
                continue
            }
            let b = bytes[k]
            k += 1
            guard clients[i].headerLength < headerCapacity else { wrong(i); return false }
            header.storeBytes(of: b, toByteOffset: clients[i].headerLength, as: UInt8.self)
            clients[i].headerLength += 1
            let m = clients[i].crlfMatched
            clients[i].crlfMatched = (b == (m % 2 == 0 ? 13 : 10)) ? m + 1 : (b == 13 ? 1 : 0)
            if clients[i].crlfMatched == 4 {
                guard let length = LoadLoop.contentLength(ofOKResponse: header, clients[i].headerLength) else { wrong(i); return false }
                clients[i].inBody = true
                clients[i].bodyLeft = length
                if length == 0 { break }
            }
        }
        let done = clients[i].inBody && clients[i].bodyLeft == 0
        if k < n || (done && k != n) { wrong(i); return false }
        return done
    }

    static let statusPrefix: [UInt8] = Array("HTTP/1.".utf8)
    static let lengthKey: [UInt8] = Array("content-length:".utf8)

    /// Content-Length of a "HTTP/1.x 200" header block, nil when either is missing.
    static func contentLength(ofOKResponse p: UnsafeRawPointer, _ len: Int) -> Int? {
        let b = p.assumingMemoryBound(to: UInt8.self)
        let status = statusPrefix
        guard len > 12 else { return nil }
        for j in 0..<status.count where b[j] != status[j] { return nil }
        guard b[9] == 50, b[10] == 48, b[11] == 48 else { return nil }  // "200"
        let key = lengthKey
        var line = 0
        while line < len {
            var end = line
            while end < len && b[end] != 10 { end += 1 }
            if end - line > key.count {
                var match = true
                for j in 0..<key.count where (b[line + j] | 0x20) != key[j] { match = false; break }
                if match {
                    var v = 0
                    var j = line + key.count
                    while j < end && b[j] == 32 { j += 1 }
                    var digits = 0
                    while j < end && b[j] >= 48 && b[j] <= 57 { v = v * 10 + Int(b[j] - 48); j += 1; digits += 1 }
                    return digits > 0 ? v : nil
                }
            }
            line = end + 1
        }
        return nil
    }

    func wrong(_ i: Int) {
        if measuring { errors.wrongResponse += 1 }
        drop(i)
    }

    /// Requests outstanding too long time out; connects of reopened connections too long or failed are tried again.
    func scanTimeouts(now: UInt64, limit: UInt64) {
        for j in 0..<activeCount {
            let i = Int(activeIndex[j])
            switch clients[i].state {
            case 2 where clients[i].busy && now > clients[i].sentAt && now - clients[i].sentAt > limit:
                timedOut(i)
            case 1 where now > clients[i].connectAt && now - clients[i].connectAt > limit:
                reopenFailed(i, ETIMEDOUT)
            case 4:
                let err = openConnection(i, source: nextSource)
                nextSource = nextSource + 1 == sources.count ? 0 : nextSource + 1
                if err != 0 { reopenFailed(i, err) }
            default:
                break
            }
        }
    }

    // MARK: open-loop schedule

    // Accounting: a slot belongs to the window holding its intended time (`slots`); its outcome counts in the window
    // open when the outcome is known: the answer's arrival (`requests`), the timeout's detection (`errors.timeout`),
    // or the moment it could not be sent (`unsent`: its intended time when its connection is dead or its backlog
    // full, or its connection's death while it waited). Slots in flight across an edge cancel in steady state, so
    // requests + timeouts + unsent (+ read, write and wrong-response errors) = slots = rate x window.

    /// Releases every slot due by `limit` to its connection, in schedule order; returns the next slot's intended time.
    func releaseSlots(through limit: UInt64) -> UInt64 {
        while true {
            let due = runStart + UInt64(Double(nextSlot) * interval)
            if due > limit { return due }
            let i = Int(activeIndex[nextSlot % activeCount])
            nextSlot += 1
            let counted = measuring && due >= windowFrom && due < windowEnd
            if counted { slots += 1 }
            offer(i, due: due, counted: counted)
        }
    }

    /// A slot for client `i`: sent now if its connection is open and free, else waits in its backlog, else unsent.
    @inline(__always)
    func offer(_ i: Int, due: UInt64, counted: Bool) {
        guard clients[i].state != 3, clients[i].queued < LoadGenerator.slotBacklog else {
            if counted { unsent += 1 }
            return
        }
        let base = Int(clients[i].slot) * LoadLoop.backlogCapacity
        backlog[base + (Int(clients[i].queueHead) + Int(clients[i].queued)) % LoadLoop.backlogCapacity] = due
        clients[i].queued += 1
        if clients[i].state == 2 && !clients[i].busy { sendQueued(i) }
    }

    /// Sends client `i`'s oldest waiting slot, latency from its intended time.
    @inline(__always)
    func sendQueued(_ i: Int) {
        let head = Int(clients[i].queueHead)
        let due = backlog[Int(clients[i].slot) * LoadLoop.backlogCapacity + head]
        clients[i].queueHead = Int32(head + 1 == LoadLoop.backlogCapacity ? 0 : head + 1)
        clients[i].queued -= 1
        startRequest(i, origin: due)
    }

    /// Puts a slot back first in client `i`'s line (the ring's spare place holds it when the backlog is full).
    func requeueFirst(_ i: Int, _ due: UInt64) {
        let head = Int(clients[i].queueHead) == 0 ? LoadLoop.backlogCapacity - 1 : Int(clients[i].queueHead) - 1
        clients[i].queueHead = Int32(head)
        backlog[Int(clients[i].slot) * LoadLoop.backlogCapacity + head] = due
        clients[i].queued += 1
    }

    // MARK: summary

    func cpuSeconds() -> Double { ProcessStats.rusageCPUSeconds() }

    func summary(measured: Double, cpu: Double) -> LoadSummary {
        var open = 0
        var served = 0
        for i in 0..<count {
            // Open, or opening again: the connections the run still holds.
            if clients[i].state == 1 || clients[i].state == 2 { open += 1 }
            if clients[i].served { served += 1 }
        }
        var s = LoadSummary(
            target: "\(config.target)", mode: config.rate == nil ? "closed" : "open",
            connections: open, active: activeCount, targetRPS: config.rate,
            durationS: (measured * 1000).rounded() / 1000, requests: requests, errors: errors, errorsTotal: errors.total,
            throughputRPS: measured > 0 ? (Double(requests) / measured * 10).rounded() / 10 : 0,
            latencyUs: LatencySummary(histogram), cpus: Placement.affinity().description,
            clientCPUSeconds: (cpu * 1000).rounded() / 1000, idleClosed: idleClosed,
            established: establishedCount, served: served)
        s.connectionsOpened = connectionsOpened
        s.closedByServer = closedByServer
        s.hangups = hangups
        if openLoop {
            s.slots = slots
            s.unsent = unsent
        }
        s.requestsPerConnection = requestsPerConnection
        s.processes = 1
        s.latencySamples = Int(histogram.totalCount)
        s.firstConnectError = firstConnectError
        return s
    }
}

/// Phase lines a self-timed `muxlab load --phases` prints, for a person or a script watching it.
public enum LoadPhase: String, Sendable {
    case connected
    case measure
    case done

    public var line: String { "phase \(rawValue)" }
}
