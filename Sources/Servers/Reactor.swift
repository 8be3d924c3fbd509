#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// Set by SIGTERM/SIGINT; the loop checks it after every wait (a signal ends the wait).
nonisolated(unsafe) public var reactorStopRequested: sig_atomic_t = 0
/// Set by SIGUSR1: print the counters line now and go on.
nonisolated(unsafe) public var reactorStatsRequested: sig_atomic_t = 0
/// Write end of the reactor's wake-up pipe; the signal handlers write a byte so that a signal
/// landing between the flag check and the wait still ends the wait (-1 until a reactor exists).
nonisolated(unsafe) public var reactorWakeFD: Int32 = -1

/// For the signal handlers: one byte into the wake-up pipe (write(2) is async-signal-safe).
public func wakeReactor() {
    guard reactorWakeFD >= 0 else { return }
    var byte: UInt8 = 1
    _ = write(reactorWakeFD, &byte, 1)
}

/// Per-connection state, indexed by descriptor. Buffers are pool indexes, -1 when none is held.
struct ConnectionState {
    var open = false
    var interest: Interest = []
    var readPaused = false
    /// A partial HTTP request carried to the next read.
    var inBuffer: Int32 = -1
    var inLength = 0
    /// Output the socket did not take yet: bytes [outHead, outTail) of outBuffer.
    var outBuffer: Int32 = -1
    var outHead = 0
    var outTail = 0
    /// When a byte last moved either way (the loop's clock, ns); only the idle sweep reads it.
    var lastActive: UInt64 = 0

    var pendingOutput: Int { outTail - outHead }
}

/// Counters the reactor keeps itself; printed at exit (and compared with the probe's).
public struct ReactorStats {
    public var accepted: UInt64 = 0
    public var refused: UInt64 = 0
    public var closed: UInt64 = 0
    public var reads: UInt64 = 0
    public var readsEAGAIN: UInt64 = 0
    public var writes: UInt64 = 0
    public var writesEAGAIN: UInt64 = 0
    public var requests: UInt64 = 0
    public var acceptEMFILE: UInt64 = 0
    /// Connections the idle sweep closed (also counted in `closed`).
    public var idleClosed: UInt64 = 0
}

/// The reactor's variants: each option changes one rule of event-loop hygiene,
/// so the E claims can show what breaking it costs. Defaults are the correct rules.
public struct ReactorOptions: Sendable {
    /// When write interest is registered.
    public enum WriteInterest: String, CaseIterable, Sendable {
        /// From accept on, for good: level-triggered back-ends then report every idle socket (claim E1).
        case always
        /// Only while output waits in the queue.
        case onDemand = "on-demand"
    }
    /// How an edge-triggered readiness report is consumed.
    public enum EdgeRead: String, CaseIterable, Sendable {
        /// Read until EAGAIN, as edge-triggered epoll requires.
        case untilEAGAIN = "until-eagain"
        /// One read per report: bytes left in the socket wait for an edge that never comes (claim E2).
        case once
    }
    /// What the loop does when accept fails with EMFILE.
    public enum EMFILEPolicy: String, CaseIterable, Sendable {
        /// Close a reserved descriptor, accept the client, close it, re-reserve (claim E4).
        case reserveFD = "reserve-fd"
        /// Nothing: LT reports the listener again at once (a busy loop), ET stays silent.
        case none
    }

    public var writeInterest: WriteInterest = .onDemand
    public var edgeRead: EdgeRead = .untilEAGAIN
    public var emfile: EMFILEPolicy = .reserveFD
    /// Leave accepted sockets blocking (claim E3: ET's read-until-EAGAIN then blocks the loop).
    public var blockingSockets = false
    /// Bytes asked for per read(2), at most the buffer size.
    public var readSize = 64 * 1024
    /// Seconds without a byte read or written after which a connection is closed (claim H3); nil: never.
    public var idleTimeout: Double?
    /// Register the listener with EPOLLEXCLUSIVE (prefork's epoll-exclusive accept, claim C3).
    public var exclusiveListener = false

    public init() {}
}

/// Model 4: one thread, non-blocking sockets, one readiness loop.
/// Generic over the back-end so each loop is specialised (no dynamic dispatch per event).
public final class Reactor<P: Poller> {
    let poller: P
    let listenFD: Int32
    let wire: WireProtocol
    let capacity: Int
    let connections: UnsafeMutablePointer<ConnectionState>
    let pool: BufferPool
    let scratch: UnsafeMutableRawPointer
    let response: UnsafeMutableRawPointer
    let responseLength: Int
    let events: UnsafeMutableBufferPointer<ReadyEvent>
    let options: ReactorOptions
    /// Read end of the wake-up pipe the signal handlers write to.
    var wakeFD: Int32 = -1
    /// Bytes per read(2): `options.readSize`, capped by the buffer.
    let readSize: Int
    /// Read until EAGAIN after each report (edge-triggered, unless the lazy variant is asked for).
    let drainOnReport: Bool
    /// Interest a fresh connection starts with.
    let acceptInterest: Interest
    /// Held open so that under EMFILE one descriptor can be freed to accept and close a client.
    var reserveFD: Int32
    /// Idle timeout in ns, 0 when off; the wait timeout and sweep period derive from it.
    let idleNanos: UInt64
    let waitTimeoutMs: Int32
    let sweepNanos: UInt64
    var nextSweep: UInt64 = 0
    /// The loop's clock: read once per wake-up, and only when the idle timeout is on (0 otherwise).
    var now: UInt64 = 0
    /// No open connection has a higher descriptor: bounds the idle sweep.
    var highestFD: Int32 = -1
    var loggedRefusal = false
    var loggedEMFILE = false
    public private(set) var stats = ReactorStats()
    /// Where a loop running beside others (prefork children, multi-reactor threads) publishes
    /// its counters after every wake-up, for the supervisor's `stats` line.
    public var publish: (counters: SharedCounters, slot: Int)?

    public init(poller: P, listenFD: Int32, wire: WireProtocol, capacity: Int, options: ReactorOptions = ReactorOptions(),
                bufferSize: Int = 64 * 1024) throws {
        self.poller = poller
        self.options = options
        readSize = max(1, min(options.readSize, bufferSize))
        drainOnReport = poller.edgeTriggered && options.edgeRead == .untilEAGAIN
        acceptInterest = options.writeInterest == .always ? [.read, .write] : .read
        if let t = options.idleTimeout, t > 0 {
            idleNanos = UInt64(t * 1e9)
            // Sweep four times per timeout: a connection is closed within 1.25 timeouts of its last byte.
            let periodMs = max(1, min(Double(Int32.max), (t * 1000 / 4).rounded(.down)))
            waitTimeoutMs = Int32(periodMs)
            sweepNanos = UInt64(periodMs) * 1_000_000
        } else {
            idleNanos = 0
            waitTimeoutMs = -1
            sweepNanos = 0
        }
        self.listenFD = listenFD
        self.wire = wire
        self.capacity = capacity
        connections = .allocate(capacity: capacity)
        connections.initialize(repeating: ConnectionState(), count: capacity)
        pool = BufferPool(bufferSize: bufferSize)
        scratch = .allocate(byteCount: bufferSize, alignment: 16)
        let one = HTTPResponse.bytes.count
        let staged = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 16)
        // Fill the staging area with back-to-back responses so k pipelined requests are one write.
        var off = 0
        while off + one <= bufferSize {
            HTTPResponse.bytes.withUnsafeBytes { (staged + off).copyMemory(from: $0.baseAddress!, byteCount: one) }
            off += one
        }
        responseLength = one
        response = staged
        events = .allocate(capacity: 1024)
        reserveFD = open("/dev/null", O_RDONLY | O_CLOEXEC)
        try poller.addListener(listenFD, exclusive: options.exclusiveListener)
        var pipe: [Int32] = [-1, -1]
        guard mux_pipe_cloexec(&pipe) == 0 else { throw SystemError("pipe2", errno: errno) }
        try Sockets.setNonBlocking(pipe[0], true)
        try Sockets.setNonBlocking(pipe[1], true)
        wakeFD = pipe[0]
        reactorWakeFD = pipe[1]
        try poller.add(wakeFD, .read)
    }

    /// Empties the wake-up pipe; the flags it woke us for are checked at the top of the loop.
    func drainWakeups() {
        var bytes: (UInt64, UInt64) = (0, 0)
        while withUnsafeMutableBytes(of: &bytes, { read(wakeFD, $0.baseAddress, $0.count) }) > 0 {}
    }

    deinit {
        connections.deallocate()
        scratch.deallocate()
        response.deallocate()
        events.deallocate()
    }

    /// Runs until SIGTERM/SIGINT. Without an idle timeout it waits forever: only sockets and
    /// signals wake it, and it reads no clock. With one, it wakes at least every quarter timeout
    /// to sweep. Either way its own wait count is exact (the probe cross-check relies on that).
    public func run() throws {
        if idleNanos != 0 { now = monotonicNanos(); nextSweep = now &+ sweepNanos }
        while reactorStopRequested == 0 {
            if reactorStatsRequested != 0 {
                reactorStatsRequested = 0
                writeLine(statsLine)
            }
            let n = try poller.wait(events, timeoutMs: waitTimeoutMs)
            if idleNanos != 0 { now = monotonicNanos() }
            for i in 0..<n {
                let ev = events[i]
                if ev.fd == listenFD {
                    try acceptClients()
                    continue
                }
                if ev.fd == wakeFD {
                    drainWakeups()
                    continue
                }
                // An error or hang-up goes to the writer too: with reading paused it is the only
                // handler that can meet the error, and LT would otherwise report it forever.
                if (ev.writable || ev.failed) && connections[Int(ev.fd)].open { onWritable(ev.fd) }
                if ev.readable && connections[Int(ev.fd)].open { onReadable(ev.fd) }
            }
            if idleNanos != 0 && now >= nextSweep { closeIdleConnections() }
            if let publish { publish.counters.publish(stats, poller.stats, slot: publish.slot) }
        }
    }

    /// Closes every connection that moved no byte for longer than the idle timeout (claim H3).
    func closeIdleConnections() {
        nextSweep = now &+ sweepNanos
        var highest: Int32 = -1
        var fd: Int32 = 0
        while fd <= highestFD {
            if connections[Int(fd)].open {
                if now &- connections[Int(fd)].lastActive > idleNanos {
                    close(fd)
                    stats.idleClosed &+= 1
                } else {
                    highest = fd
                }
            }
            fd += 1
        }
        highestFD = highest
    }

    // MARK: accept

    func acceptClients() throws {
        // LT may leave clients for the next wake-up; ET must drain the queue.
        var budget = poller.edgeTriggered ? Int.max : 64
        while budget > 0 {
            budget -= 1
            let fd: Int32
            do {
                switch try FD.accept(listenFD) {
                case .wouldBlock: return
                case .done(let c): fd = c
                }
            } catch let e as SystemError {
                switch e.errno {
                case EMFILE, ENFILE:
                    stats.acceptEMFILE &+= 1
                    // ET must go on until EAGAIN: clients still queued raise no new edge.
                    if options.emfile == .reserveFD && shedWithReserveDescriptor() { continue }
                    return
                // The client's trouble, not the listener's: accept(2) hands pending network errors
                // of the new connection to the caller, who should go on as after EAGAIN.
                case ECONNABORTED, EPROTO, EPERM, ENOBUFS, ENOMEM,
                     ENETDOWN, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH:
                    continue
                default:
                    throw e
                }
            }
            if let max = poller.maxDescriptor, fd > max {
                refuse(fd, DescriptorOutOfRange(fd: fd, limit: max + 1).description)
                continue
            }
            if Int(fd) >= capacity {
                refuse(fd, "descriptor \(fd) is beyond the connection table (\(capacity))")
                continue
            }
            Sockets.setNoDelay(fd)
            if options.blockingSockets { try? Sockets.setNonBlocking(fd, false) }
            let interest = acceptInterest
            do {
                try poller.add(fd, interest)
            } catch {
                refuse(fd, "\(error)")
                continue
            }
            connections[Int(fd)] = ConnectionState(open: true, interest: interest, lastActive: now)
            if fd > highestFD { highestFD = fd }
            stats.accepted &+= 1
        }
    }

    func refuse(_ fd: Int32, _ why: String) {
        FD.close(fd)
        stats.refused &+= 1
        if !loggedRefusal {
            loggedRefusal = true
            writeLine("muxlab serve: refusing connections: \(why)", fd: 2)
        }
    }

    /// The reserve-descriptor trick: free one slot, accept the waiting client, close it, re-reserve.
    /// True when a client was shed (more may be queued).
    func shedWithReserveDescriptor() -> Bool {
        if !loggedEMFILE {
            loggedEMFILE = true
            writeLine("muxlab serve: out of descriptors (EMFILE); shedding new clients with the reserve descriptor", fd: 2)
        }
        guard reserveFD >= 0 else { return false }
        FD.close(reserveFD)
        let c = mux_accept4_nonblock(listenFD)
        if c >= 0 { FD.close(c); stats.refused &+= 1 }
        reserveFD = open("/dev/null", O_RDONLY | O_CLOEXEC)
        return c >= 0
    }

    // MARK: read

    func onReadable(_ fd: Int32) {
        switch wire {
        case .echo: readEcho(fd)
        case .http: readHTTP(fd)
        }
    }

    func readEcho(_ fd: Int32) {
        let bufferSize = pool.bufferSize
        while true {
            let room = bufferSize - connections[Int(fd)].pendingOutput
            if room == 0 { pauseReading(fd); return }
            guard let n = readOnce(fd, into: scratch, max: min(room, readSize)) else { return }
            send(fd, scratch, n)
            if !connections[Int(fd)].open || !drainOnReport { return }
        }
    }

    func readHTTP(_ fd: Int32) {
        let bufferSize = pool.bufferSize
        while true {
            if bufferSize - connections[Int(fd)].pendingOutput < responseLength { pauseReading(fd); return }
            let held = connections[Int(fd)].inLength
            let region = held > 0 ? pool.base(connections[Int(fd)].inBuffer) : scratch
            if held == bufferSize {
                close(fd)  // a request header larger than a buffer: not HTTP we serve
                return
            }
            guard let n = readOnce(fd, into: region + held, max: min(bufferSize - held, readSize)) else { return }
            handleRequests(fd, region, held + n)
            if !connections[Int(fd)].open || !drainOnReport { return }
            if connections[Int(fd)].readPaused { return }
        }
    }

    /// One read(2): nil on EAGAIN, end of stream or error (the connection is closed on an error,
    /// and at end of stream once its queued output is sent).
    @inline(__always)
    func readOnce(_ fd: Int32, into buf: UnsafeMutableRawPointer, max: Int) -> Int? {
        stats.reads &+= 1
        do {
            switch try FD.read(fd, buf, max) {
            case .wouldBlock:
                stats.readsEAGAIN &+= 1
                return nil
            case .done(0):
                endOfInput(fd)
                return nil
            case .done(let n):
                connections[Int(fd)].lastActive = now
                return n
            }
        } catch {
            close(fd)
            return nil
        }
    }

    /// The peer sent its last byte. Output still queued is owed to it (a half-closed client reads on):
    /// reading pauses, and the end of stream is met again, and closes, once the queue has drained.
    func endOfInput(_ fd: Int32) {
        if connections[Int(fd)].pendingOutput == 0 { close(fd) } else { pauseReading(fd) }
    }

    /// Answers every complete request in region[0..<length] that output room allows; keeps the rest.
    func handleRequests(_ fd: Int32, _ region: UnsafeMutableRawPointer, _ length: Int) {
        var consumed = 0
        var outOfRoom = false
        while true {
            let room = (pool.bufferSize - connections[Int(fd)].pendingOutput) / responseLength
            var answers = 0
            while answers < room, let end = HTTPRequestScanner.endOfRequest(region + consumed, length - consumed) {
                consumed += end
                answers += 1
            }
            stats.requests &+= UInt64(answers)
            if answers > 0 {
                send(fd, response, answers * responseLength)
                if !connections[Int(fd)].open { return }
            }
            if answers < room { break }
            // A buffer's worth of answers went out: go on while the socket took them all, else wait for
            // it to drain (pausing with nothing queued would wait for a writability that resumes nothing).
            if connections[Int(fd)].pendingOutput > 0 { outOfRoom = true; break }
        }
        keepPartialRequest(fd, region, from: consumed, to: length)
        if outOfRoom && consumed < length { pauseReading(fd) }
    }

    func keepPartialRequest(_ fd: Int32, _ region: UnsafeMutableRawPointer, from: Int, to: Int) {
        let left = to - from
        var c = connections[Int(fd)]
        if left == 0 {
            if c.inBuffer >= 0 { pool.release(c.inBuffer); c.inBuffer = -1 }
            c.inLength = 0
        } else {
            if c.inBuffer < 0 { c.inBuffer = pool.acquire() }
            let dst = pool.base(c.inBuffer)
            if dst != region || from > 0 { dst.copyMemory(from: region + from, byteCount: left) }
            c.inLength = left
        }
        connections[Int(fd)] = c
    }

    // MARK: write

    /// Writes now if nothing is queued (the direct path); whatever the socket does not take is queued.
    func send(_ fd: Int32, _ data: UnsafeRawPointer, _ count: Int) {
        var off = 0
        if connections[Int(fd)].pendingOutput == 0 {
            while off < count {
                stats.writes &+= 1
                do {
                    switch try FD.write(fd, data + off, count - off) {
                    case .wouldBlock:
                        stats.writesEAGAIN &+= 1
                        queue(fd, data + off, count - off)
                        return
                    case .done(let n):
                        off += n
                        connections[Int(fd)].lastActive = now
                    }
                } catch {
                    close(fd)
                    return
                }
            }
            return
        }
        queue(fd, data, count)
    }

    func queue(_ fd: Int32, _ data: UnsafeRawPointer, _ count: Int) {
        var c = connections[Int(fd)]
        if c.outBuffer < 0 { c.outBuffer = pool.acquire(); c.outHead = 0; c.outTail = 0 }
        let base = pool.base(c.outBuffer)
        if c.outTail + count > pool.bufferSize {
            // Compact: callers never queue more than the free room, so it fits after the move.
            base.copyMemory(from: base + c.outHead, byteCount: c.pendingOutput)
            c.outTail -= c.outHead
            c.outHead = 0
        }
        (base + c.outTail).copyMemory(from: data, byteCount: count)
        c.outTail += count
        connections[Int(fd)] = c
        // Ask for writability only while output waits: level-triggered back-ends would busy-loop otherwise.
        if options.writeInterest == .onDemand { setInterest(fd, c.readPaused ? .write : [.read, .write]) }
    }

    func onWritable(_ fd: Int32) {
        var c = connections[Int(fd)]
        guard c.outBuffer >= 0 else { return }
        let base = pool.base(c.outBuffer)
        while c.outHead < c.outTail {
            stats.writes &+= 1
            do {
                switch try FD.write(fd, base + c.outHead, c.outTail - c.outHead) {
                case .wouldBlock:
                    stats.writesEAGAIN &+= 1
                    connections[Int(fd)] = c
                    return
                case .done(let n):
                    c.outHead += n
                    c.lastActive = now
                }
            } catch {
                close(fd)
                return
            }
        }
        pool.release(c.outBuffer)
        c.outBuffer = -1
        c.outHead = 0
        c.outTail = 0
        let wasPaused = c.readPaused
        c.readPaused = false
        connections[Int(fd)] = c
        setInterest(fd, acceptInterest)
        if wasPaused { resumeReading(fd) }
    }

    func pauseReading(_ fd: Int32) {
        connections[Int(fd)].readPaused = true
        // Under ET a read interest left in place costs nothing: no edge comes until we read.
        if !poller.edgeTriggered { setInterest(fd, .write) }
    }

    /// After output drained: answer requests already buffered, then read again
    /// (under ET no new edge may come for bytes that arrived while paused).
    func resumeReading(_ fd: Int32) {
        guard connections[Int(fd)].open else { return }
        if wire == .http && connections[Int(fd)].inLength > 0 {
            let c = connections[Int(fd)]
            handleRequests(fd, pool.base(c.inBuffer), c.inLength)
            if !connections[Int(fd)].open || connections[Int(fd)].readPaused { return }
        }
        if poller.edgeTriggered { onReadable(fd) }
    }

    @inline(__always)
    func setInterest(_ fd: Int32, _ interest: Interest) {
        guard connections[Int(fd)].interest != interest else { return }
        connections[Int(fd)].interest = interest
        do { try poller.modify(fd, interest) } catch { close(fd) }
    }

    func close(_ fd: Int32) {
        var c = connections[Int(fd)]
        guard c.open else { return }
        try? poller.remove(fd)
        FD.close(fd)
        if c.inBuffer >= 0 { pool.release(c.inBuffer) }
        if c.outBuffer >= 0 { pool.release(c.outBuffer) }
        c = ConnectionState()
        connections[Int(fd)] = c
        stats.closed &+= 1
    }

    /// One line of counters for the driver (and the probe cross-check).
    public var statsLine: String {
        let p = poller.stats
        return "stats waits=\(p.waits) scanned=\(p.scanned) events=\(p.events) accepted=\(stats.accepted) refused=\(stats.refused) closed=\(stats.closed) reads=\(stats.reads) reads_eagain=\(stats.readsEAGAIN) writes=\(stats.writes) writes_eagain=\(stats.writesEAGAIN) http_requests=\(stats.requests) accept_emfile=\(stats.acceptEMFILE) buffers=\(pool.allocated) idle_closed=\(stats.idleClosed)"
    }
}
