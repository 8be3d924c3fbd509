#if canImport(Glibc)
import Glibc
#endif
import CShims
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
    /// A request outstanding longer than this counts as a timeout and its connection is dropped.
    public var requestTimeout = 5.0
    /// Print `phase ...` lines on stdout (for the driver).
    public var printPhases = false
    public var allowNonLoopback = false

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
    /// 0 not opened, 1 connecting, 2 open, 3 dead.
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
    /// Requests started (open loop: this connection's m-th slot in the global schedule).
    var issued = 0
    /// Ordinal among active connections, -1 for idle ones.
    var slot: Int32 = -1
    // HTTP response parsing.
    var headerLength = 0
    var crlfMatched: UInt8 = 0
    var inBody = false
    var bodyLeft = 0
    /// Completed at least one request (warm-up included).
    var served = false
}

/// The load generator: one thread, one epoll loop, a fixed mix of idle and active connections.
public final class LoadGenerator {
    let config: LoadConfig
    let sources: [String?]

    public init(_ config: LoadConfig) throws {
        self.config = config
        guard config.target.isLoopback || config.allowNonLoopback else {
            throw LoadError("target \(config.target) is not a loopback address (127.0.0.0/8 or ::1); load goes elsewhere only with --allow-non-loopback")
        }
        guard config.active <= config.connections else {
            throw LoadError("--active \(config.active) is more than --connections \(config.connections): active connections are a subset")
        }
        let hard = DescriptorLimit.current().hard
        let reserve = 32
        if config.connections + reserve > hard {
            throw LoadError("--connections \(config.connections) needs \(config.connections + reserve) descriptors but one process may open at most \(hard) here (hard RLIMIT_NOFILE, cannot be raised); use at most \(hard - reserve) connections per load process (multi-process load does not exist yet)")
        }
        // Each source address has about 28k ephemeral ports towards one target.
        let perSource = 28_000
        if config.connections > perSource {
            guard !config.target.isIPv6, config.target.isLoopback else {
                throw LoadError("--connections \(config.connections) exceeds the ~\(perSource) ephemeral ports of one source address; more than that needs an IPv4 loopback target (extra sources 127.0.0.2, .3, ...)")
            }
            let n = (config.connections + perSource - 1) / perSource
            sources = (0..<n).map { "127.0.0.\($0 + 1)" }
        } else {
            sources = [nil]
        }
    }

    public func run() throws -> LoadSummary {
        if let cpus = config.cpus { try Placement.pin(cpus) }
        signal(SIGPIPE, SIG_IGN)
        DescriptorLimit.raiseToHard()
        let loop = try LoadLoop(config: config, sources: sources)
        defer { loop.closeAll() }
        return try loop.run()
    }
}

/// The event loop proper; allocation-free once connected.
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
    var histogram = Histogram<UInt64>(highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three)
    var errors = ErrorCounts()
    var requests = 0
    var idleClosed = 0
    var establishedCount = 0
    var measuring = false
    var firstConnectError: String?
    /// Phase lines built before the loop, so announcing a phase allocates nothing inside the window.
    let phaseLines: [LoadPhase: [UInt8]] = Dictionary(uniqueKeysWithValues: [LoadPhase.connected, .measure, .done].map {
        ($0, Array(($0.line + "\n").utf8))
    })

    init(config: LoadConfig, sources: [String?]) throws {
        self.config = config
        self.sources = sources
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
    }

    deinit {
        mux_epoll_events_free(events)
        clients.deallocate(); owner.deallocate(); activeIndex.deallocate()
        request.deallocate(); scratch.deallocate(); headers.deallocate()
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
        let start = monotonicNanos()
        let measureAt = start + UInt64(config.warmup * 1e9)
        let endAt = measureAt + UInt64(config.duration * 1e9)
        let timeoutNs = UInt64(config.requestTimeout * 1e9)
        let interval = config.rate.map { 1e9 / Double($0) } ?? 0
        var released = 0          // open loop: schedule slots released so far
        var nextTimeoutScan = start + 100_000_000
        var cpuAtMeasure = 0.0
        var measuredFrom = measureAt

        if config.rate == nil {
            for j in 0..<activeCount { startRequest(Int(activeIndex[j]), origin: start) }
        }
        while true {
            let now = monotonicNanos()
            if !measuring && now >= measureAt {
                measuring = true
                measuredFrom = now
                cpuAtMeasure = cpuSeconds()
                announce(.measure)
            }
            if now >= endAt { break }
            var wakeAt = min(endAt, measuring ? endAt : measureAt)
            if config.rate != nil && activeCount > 0 {
                // Release every schedule slot that is due; a busy connection picks its slot up when it frees.
                while true {
                    let due = start + UInt64(Double(released) * interval)
                    if due > now { wakeAt = min(wakeAt, due); break }
                    let j = released % activeCount
                    let i = Int(activeIndex[j])
                    if !clients[i].busy && clients[i].state == 2 { startRequest(i, origin: due) }
                    released += 1
                }
            }
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
                let flags = mux_epoll_event_flags(events, Int32(e))
                let i = Int(owner[Int(fd)])
                if i < 0 { continue }
                if flags & MUX_EPOLLOUT != 0 && clients[i].wantWrite { continueWrite(i) }
                if flags & (MUX_EPOLLIN | MUX_EPOLLERR | MUX_EPOLLHUP) != 0 && clients[i].state == 2 { onReadable(i, interval: interval, start: start) }
            }
        }
        let finished = monotonicNanos()
        announce(.done)
        // Building the summary allocates; give a driver that snapshots on "phase done" time to do so first.
        if config.printPhases { usleep(50_000) }
        let measured = Double(finished - measuredFrom) / 1e9
        return summary(measured: measured, cpu: cpuSeconds() - cpuAtMeasure)
    }

    func announce(_ phase: LoadPhase) {
        guard config.printPhases, let bytes = phaseLines[phase] else { return }
        bytes.withUnsafeBytes { _ = Glibc.write(1, $0.baseAddress, $0.count) }
    }

    // MARK: connect

    func connectAll() throws {
        let begin = monotonicNanos()
        let deadline = begin + UInt64((10 + Double(count) / Double(config.connectRate)) * 1e9)
        var opened = 0
        var pending = 0
        while opened < count || pending > 0 {
            let now = monotonicNanos()
            if now > deadline {
                for i in 0..<count where clients[i].state == 1 { fail(i, connect: "connect timed out") }
                break
            }
            let allowed = min(count, Int(Double(now - begin) / 1e9 * Double(config.connectRate)) + 1)
            while opened < allowed {
                let i = opened
                opened += 1
                let source = sources[min(sources.count - 1, i / 28_000)]
                do {
                    let (fd, inProgress) = try Sockets.startConnect(to: config.target, from: source)
                    guard Int(fd) < ownerCapacity else { FD.close(fd); fail(i, connect: "descriptor \(fd) beyond the table"); continue }
                    clients[i].fd = fd
                    owner[Int(fd)] = Int32(i)
                    if inProgress {
                        clients[i].state = 1
                        pending += 1
                        _ = mux_epoll_ctl(epfd, MUX_EPOLL_CTL_ADD, fd, MUX_EPOLLOUT)
                    } else {
                        established(i)
                    }
                } catch {
                    fail(i, connect: "\(error)")
                }
            }
            let n = mux_epoll_wait(epfd, events, maxEvents, opened < count ? 1 : 100)
            for e in 0..<Int(max(0, n)) {
                let i = Int(owner[Int(mux_epoll_event_fd(events, Int32(e)))])
                guard i >= 0, clients[i].state == 1 else { continue }
                pending -= 1
                let err = Sockets.pendingError(clients[i].fd)
                if err == 0 {
                    _ = mux_epoll_ctl(epfd, MUX_EPOLL_CTL_DEL, clients[i].fd, 0)
                    established(i)
                } else {
                    fail(i, connect: "\(SystemError("connect(\(config.target))", errno: err))")
                }
            }
        }
        if errors.connect == count {
            throw LoadError("cannot reach \(config.target): \(firstConnectError ?? "no connection succeeded")")
        }
    }

    func established(_ i: Int) {
        establishedCount += 1
        clients[i].state = 2
        Sockets.setNoDelay(clients[i].fd)
        _ = mux_epoll_ctl(epfd, MUX_EPOLL_CTL_ADD, clients[i].fd, MUX_EPOLLIN)
    }

    func fail(_ i: Int, connect reason: String) {
        errors.connect += 1
        if firstConnectError == nil { firstConnectError = reason }
        drop(i)
    }

    /// Closes a connection for good (it is not replaced).
    func drop(_ i: Int) {
        let fd = clients[i].fd
        if fd >= 0 {
            owner[Int(fd)] = -1
            FD.close(fd)
        }
        clients[i].fd = -1
        clients[i].state = 3
        clients[i].busy = false
    }

    // MARK: requests

    @inline(__always)
    func startRequest(_ i: Int, origin: UInt64) {
        clients[i].busy = true
        clients[i].sent = 0
        clients[i].received = 0
        clients[i].origin = origin
        clients[i].sentAt = monotonicNanos()
        clients[i].issued += 1
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
                        _ = mux_epoll_ctl(epfd, MUX_EPOLL_CTL_MOD, fd, MUX_EPOLLIN | MUX_EPOLLOUT)
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
        if clients[i].wantWrite {
            clients[i].wantWrite = false
            _ = mux_epoll_ctl(epfd, MUX_EPOLL_CTL_MOD, fd, MUX_EPOLLIN)
        }
    }

    func onReadable(_ i: Int, interval: Double, start: UInt64) {
        let n: Int
        do {
            switch try FD.read(clients[i].fd, scratch, scratchSize) {
            case .wouldBlock: return
            case .done(let got): n = got
            }
        } catch {
            if measuring || clients[i].busy { errors.read += 1 }
            drop(i)
            return
        }
        if n == 0 {
            if clients[i].busy { errors.read += 1 } else if !clients[i].active { idleClosed += 1 } else { errors.read += 1 }
            drop(i)
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
        if measuring {
            requests += 1
            _ = histogram.record(now > clients[i].origin ? now - clients[i].origin : 0)
        }
        if config.rate == nil {
            startRequest(i, origin: now)
        } else {
            // Open loop: the next slot of this connection, if it is already due (its latency counts from then).
            let k = Int(clients[i].slot) + clients[i].issued * activeCount
            let due = start + UInt64(Double(k) * interval)
            if due <= now { startRequest(i, origin: due) }
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

    func scanTimeouts(now: UInt64, limit: UInt64) {
        for j in 0..<activeCount {
            let i = Int(activeIndex[j])
            if clients[i].busy && clients[i].state == 2 && now > clients[i].sentAt && now - clients[i].sentAt > limit {
                errors.timeout += 1
                drop(i)
            }
        }
    }

    // MARK: summary

    func cpuSeconds() -> Double {
        var ru = rusage()
        getrusage(RUSAGE_SELF.rawValue, &ru)
        return Double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + Double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6
    }

    func summary(measured: Double, cpu: Double) -> LoadSummary {
        var lat = LatencySummary()
        if histogram.totalCount > 0 {
            let us = { (ns: UInt64) in (Double(ns) / 1000 * 1000).rounded() / 1000 }
            lat.p50 = us(histogram.valueAtPercentile(50))
            lat.p90 = us(histogram.valueAtPercentile(90))
            lat.p99 = us(histogram.valueAtPercentile(99))
            lat.p999 = us(histogram.valueAtPercentile(99.9))
            lat.max = us(histogram.max)
            lat.mean = (histogram.mean / 1000 * 1000).rounded() / 1000
        }
        var open = 0
        var served = 0
        for i in 0..<count {
            if clients[i].state == 2 { open += 1 }
            if clients[i].served { served += 1 }
        }
        return LoadSummary(
            target: "\(config.target)", mode: config.rate == nil ? "closed" : "open",
            connections: open, active: activeCount, targetRPS: config.rate,
            durationS: (measured * 1000).rounded() / 1000, requests: requests, errors: errors, errorsTotal: errors.total,
            throughputRPS: measured > 0 ? (Double(requests) / measured * 10).rounded() / 10 : 0,
            latencyUs: lat, cpus: Placement.affinity().description,
            clientCPUSeconds: (cpu * 1000).rounded() / 1000, idleClosed: idleClosed,
            established: establishedCount, served: served)
    }
}
