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
    /// Tells this connection from an earlier one on the same descriptor: a late completion is dropped.
    var generation: UInt32 = 0
    /// A request of this connection is with a worker (reading waits, so answers keep their order).
    var taskInFlight = false
    /// Echo off the loop: the chunk the task answers (a pool index, -1 when none), and its length
    /// (HTTP: the request's length at the front of inBuffer).
    var taskBuffer: Int32 = -1
    var taskLength = 0
    /// `--copy splice`: the connection's pipe and the bytes waiting in it for the socket.
    var pipeRead: Int32 = -1
    var pipeWrite: Int32 = -1
    var pipeBytes = 0
    /// Claim L1: this connection's requests burn `RequestPath.heavyMicros` more (drawn when it is adopted).
    var heavy = false

    var pendingOutput: Int { outTail - outHead }
    /// Output owed to the peer, in the pool buffer or in the splice pipe.
    var owesOutput: Bool { outTail > outHead || pipeBytes > 0 }
}

/// The killer toggles (K1, K3, H2) on the path from a request to its answer. The defaults
/// are the fast path: one read buffer, pooled memory, the client closes first.
public struct RequestPath: Sendable {
    public var copy: CopyMode = .direct
    public var alloc: AllocMode = .pooled
    public var close: CloseMode = .clientFirst
    /// CPU burnt per request on the loop itself (models 4 and 8, prefork's loops; claim C5):
    /// the pool models hand it to their workers instead.
    public var computeMicros = 0
    /// Claim L1: the share of connections that are heavy, and the CPU each of their requests burns on top.
    public var heavyShare = 0.0
    public var heavyMicros = 0

    public init() {}

    public init(_ config: ServerConfig) {
        copy = config.copy
        alloc = config.alloc
        close = config.close
        computeMicros = config.computeMicros
        heavyShare = config.heavyShare
        heavyMicros = config.heavyMicros
    }
}

/// How a loop that runs beside other threads is wired to them (models 5-9); model 4 has none.
public struct LoopLinks {
    /// The loop's number: its counter slot and the field completions are routed by.
    public var index: Int
    /// Completions from workers and connections from the acceptor arrive here.
    public var inbox: LoopInbox
    /// Where requests go to be computed; nil: answered on the loop (model 8).
    public var tasks: TaskSink?

    public init(index: Int, inbox: LoopInbox, tasks: TaskSink?) {
        self.index = index
        self.inbox = inbox
        self.tasks = tasks
    }
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
    /// Bytes the server wrote to its clients (an echo's requests answered: this over the message size).
    public var bytesOut: UInt64 = 0
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
        /// Until a read returns fewer bytes than asked: the socket was empty at that moment, and bytes
        /// arriving later raise a new edge, so the EAGAIN read is saved (nginx does the same). A report
        /// that carries a hang-up still reads on to the end of stream.
        case untilShort = "until-short"
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
    /// The listener is shared with other loops' pollers (multi-reactor `--accept shared-epoll|epoll-exclusive`):
    /// level-triggered, take one client per report, so a loop busy with its connections leaves the next client to
    /// an idle one (the loops pull, claim L1). Edge-triggered still drains: queued clients raise no new edge.
    public var sharedListener = false
    /// Prefork siblings on one listener: a loop whose back-end cannot watch the next descriptor (select at
    /// FD_SETSIZE) stops watching the listener until a connection closes, leaving new clients to the
    /// others (claim M8); off, it accepts and refuses them (claim M1).
    public var yieldListenerAtLimit = false
    /// Busy polling: after the last event, poll without sleeping for this many microseconds before a
    /// blocking wait. A loop that does not sleep needs no wake-up, so the peer's sends skip waking
    /// it (cheaper for the client's CPU); the loop's own CPU then runs near 1.0. 0: off.
    public var busyPollMicros = 0

    public init() {}
}

/// Model 4: one thread, non-blocking sockets, one readiness loop.
/// Generic over the back-end so each loop is specialised (no dynamic dispatch per event).
/// The same loop is the I/O thread of models 5-9: with `LoopLinks` it takes connections and
/// completions from an inbox and hands requests to workers, but still does all the sending.
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
    /// `--et-read until-short`: a short read ends the draining, unless `readToEnd` is set.
    let shortReadEnds: Bool
    /// The report being handled carried a hang-up, or reading resumes after a pause (an edge may
    /// have gone by): read until EAGAIN or end of stream even when short reads end the draining.
    var readToEnd = false
    /// Interest a fresh connection starts with.
    let acceptInterest: Interest
    /// Held open so that under EMFILE one descriptor can be freed to accept and close a client.
    var reserve = ReserveDescriptor()
    /// Idle timeout in ns, 0 when off; the wait timeout and sweep period derive from it.
    let idleNanos: UInt64
    let waitTimeoutMs: Int32
    /// `busyPollMicros` in ns; 0 when off.
    let busyPollNanos: UInt64
    let sweepNanos: UInt64
    var nextSweep: UInt64 = 0
    /// The loop's clock: read once per wake-up, and only when the idle timeout is on (0 otherwise).
    var now: UInt64 = 0
    /// No open connection has a higher descriptor: bounds the idle sweep.
    var highestFD: Int32 = -1
    var loggedRefusal = false
    /// The listener is out of the interest set: this loop is at its back-end's descriptor limit.
    var listenerYielded = false
    public private(set) var stats = ReactorStats()
    /// µs of CPU burnt per request on this loop; 0 when workers compute (or nothing is asked).
    let inlineCompute: Int
    /// Extra CPU per request of a heavy connection (on the loop), and the share drawn heavy (claim L1).
    let heavyCompute: Int
    let heavyShare: Double
    /// Connections adopted so far: with the loop's index, the seed of each one's heavy draw.
    var adoptions: UInt64 = 0
    /// Where a loop running beside others (prefork children, multi-reactor threads) publishes
    /// its counters after every wake-up, for the supervisor's `stats` line.
    public var publish: (counters: SharedCounters, slot: Int)?
    /// Where such a loop publishes how many pool buffers it has (the `buffers` key).
    public var buffersGauge: UnsafeMutablePointer<UInt64>?

    // The killer toggles, read once: the default path tests one flag per answer.
    let path: RequestPath
    let plainAnswers: Bool
    let staged: Bool
    let allocPerRequest: Bool
    let splicing: Bool
    let closeAfterAnswer: Bool
    /// `--copy staged`: the request object and the response object a framework would build.
    let stagedRequest: UnsafeMutableRawPointer?
    let stagedResponse: UnsafeMutableRawPointer?

    /// Models 5-9: the inbox (completions, adopted connections), its eventfd, where tasks go.
    let inbox: LoopInbox?
    let inboxFD: Int32
    let tasks: TaskSink?
    let offloading: Bool
    let loopIndex: Int
    var lastGeneration: UInt32 = 0
    /// Requests handed to workers (the `tasks` key).
    public private(set) var tasksSent: UInt64 = 0

    public init(poller: P, listenFD: Int32, wire: WireProtocol, capacity: Int, options: ReactorOptions = ReactorOptions(),
                bufferSize: Int = 64 * 1024, path: RequestPath = RequestPath(), links: LoopLinks? = nil) throws {
        self.poller = poller
        self.options = options
        readSize = max(1, min(options.readSize, bufferSize))
        busyPollNanos = UInt64(max(0, options.busyPollMicros)) * 1000
        drainOnReport = poller.edgeTriggered && options.edgeRead != .once
        shortReadEnds = poller.edgeTriggered && options.edgeRead == .untilShort
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
        if path.copy == .splice && wire != .echo {
            throw ValueError("--copy splice moves bytes socket to socket: it needs --protocol echo, not \(wire.rawValue)")
        }
        self.path = path
        staged = path.copy == .staged
        splicing = path.copy == .splice
        allocPerRequest = path.alloc == .perRequest
        closeAfterAnswer = path.close == .serverFirst
        inlineCompute = links?.tasks == nil ? path.computeMicros : 0
        heavyCompute = links?.tasks == nil ? path.heavyMicros : 0
        heavyShare = path.heavyShare
        if inlineCompute != 0 || heavyCompute != 0 { Work.calibrate() }
        plainAnswers = !staged && !allocPerRequest && !closeAfterAnswer
        stagedRequest = staged ? .allocate(byteCount: bufferSize, alignment: 16) : nil
        stagedResponse = staged ? .allocate(byteCount: bufferSize, alignment: 16) : nil
        inbox = links?.inbox
        inboxFD = links?.inbox.fd ?? -1
        tasks = links?.tasks
        offloading = links?.tasks != nil
        loopIndex = links?.index ?? 0
        self.listenFD = listenFD
        self.wire = wire
        self.capacity = capacity
        connections = .allocate(capacity: capacity)
        connections.initialize(repeating: ConnectionState(), count: capacity)
        pool = BufferPool(bufferSize: bufferSize)
        scratch = .allocate(byteCount: bufferSize, alignment: 16)
        let one = HTTPResponse.bytes.count
        let staging = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 16)
        // Fill the staging area with back-to-back responses so k pipelined requests are one write.
        var off = 0
        while off + one <= bufferSize {
            HTTPResponse.bytes.withUnsafeBytes { (staging + off).copyMemory(from: $0.baseAddress!, byteCount: one) }
            off += one
        }
        responseLength = one
        response = staging
        events = .allocate(capacity: 1024)
        // A loop fed by an acceptor has no listener of its own.
        if listenFD >= 0 { try poller.addListener(listenFD, exclusive: options.exclusiveListener) }
        if let inbox {
            // Signals go to the supervising thread (sigwait); this loop only hears its inbox.
            try poller.add(inbox.fd, .read)
        } else {
            var pipe: [Int32] = [-1, -1]
            guard mux_pipe_cloexec(&pipe) == 0 else { throw SystemError("pipe2", errno: errno) }
            try Sockets.setNonBlocking(pipe[0], true)
            try Sockets.setNonBlocking(pipe[1], true)
            wakeFD = pipe[0]
            reactorWakeFD = pipe[1]
            try poller.add(wakeFD, .read)
        }
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
        stagedRequest?.deallocate()
        stagedResponse?.deallocate()
    }

    /// Runs until SIGTERM/SIGINT. Without an idle timeout it waits forever: only sockets and
    /// signals wake it, and it reads no clock. With one, it wakes at least every quarter timeout
    /// to sweep. Either way its own wait count is exact (the probe cross-check relies on that).
    public func run() throws {
        if idleNanos != 0 { now = monotonicNanos(); nextSweep = now &+ sweepNanos }
        var lastEvent: UInt64 = 0
        while reactorStopRequested == 0 {
            if reactorStatsRequested != 0 {
                reactorStatsRequested = 0
                ServerOutput.stats(statsLine)
            }
            var n: Int
            if busyPollNanos != 0 {
                n = try poller.wait(events, timeoutMs: 0)
                if n == 0 {
                    if lastEvent == 0 { lastEvent = monotonicNanos() }
                    if monotonicNanos() &- lastEvent < busyPollNanos { continue }
                    n = try poller.wait(events, timeoutMs: waitTimeoutMs)
                }
                lastEvent = 0
            } else {
                n = try poller.wait(events, timeoutMs: waitTimeoutMs)
            }
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
                if ev.fd == inboxFD {
                    takeInbox()
                    continue
                }
                // A peer that fails while its request is with a worker: nothing is owed to it, and
                // level-triggered back-ends report the error even with no interest registered.
                if ev.failed && connections[Int(ev.fd)].taskInFlight {
                    close(ev.fd)
                    continue
                }
                // An error or hang-up goes to the writer too: with reading paused it is the only
                // handler that can meet the error, and LT would otherwise report it forever.
                if (ev.writable || ev.failed) && connections[Int(ev.fd)].open { onWritable(ev.fd) }
                if ev.readable && connections[Int(ev.fd)].open {
                    readToEnd = ev.hungUp
                    onReadable(ev.fd)
                }
            }
            if idleNanos != 0 && now >= nextSweep { closeIdleConnections() }
            if let publish {
                publish.counters.publish(stats, poller.stats, slot: publish.slot)
                if offloading { publish.counters.publish(.tasks, tasksSent, slot: publish.slot) }
                if let buffersGauge { mux_gauge_store(buffersGauge, UInt64(pool.allocated)) }
            }
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
        var budget = poller.edgeTriggered ? Int.max : options.sharedListener ? 1 : 64
        while budget > 0 && !listenerYielded {
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
                case let e where isClientAcceptError(e):
                    continue
                default:
                    throw e
                }
            }
            adopt(fd)
        }
    }

    /// Takes a freshly accepted descriptor into the loop (from accept(2) or from the acceptor thread).
    func adopt(_ fd: Int32) {
        if let max = poller.maxDescriptor, fd > max {
            refuse(fd, DescriptorOutOfRange(fd: fd, limit: max + 1).description)
            yieldListener()
            return
        }
        if Int(fd) >= capacity {
            refuse(fd, "descriptor \(fd) is beyond the connection table (\(capacity))")
            return
        }
        Sockets.setNoDelay(fd)
        if options.blockingSockets { try? Sockets.setNonBlocking(fd, false) }
        var state = ConnectionState(open: true, interest: acceptInterest, lastActive: now)
        if splicing {
            var ends: (Int32, Int32) = (-1, -1)
            let rc = withUnsafeMutableBytes(of: &ends) { mux_pipe_nonblock($0.baseAddress!.assumingMemoryBound(to: Int32.self)) }
            if rc != 0 {
                refuse(fd, "\(SystemError("pipe2 (--copy splice)", errno: errno))")
                return
            }
            state.pipeRead = ends.0
            state.pipeWrite = ends.1
        }
        do {
            try poller.add(fd, acceptInterest)
        } catch {
            if state.pipeRead >= 0 { FD.close(state.pipeRead); FD.close(state.pipeWrite) }
            refuse(fd, "\(error)")
            return
        }
        // Never 0, and wrapping within the bits a task word carries.
        lastGeneration = lastGeneration >= LoopMessage.generationMask ? 1 : lastGeneration &+ 1
        state.generation = lastGeneration
        if heavyCompute != 0 { state.heavy = drawHeavy() }
        connections[Int(fd)] = state
        if fd > highestFD { highestFD = fd }
        stats.accepted &+= 1
        if options.yieldListenerAtLimit, let max = poller.maxDescriptor, !roomAbove(fd, limit: max) { yieldListener() }
    }

    /// accept(2) returns the lowest free descriptor: after `fd`, the next one comes from above it, so the
    /// back-end has room for another client while some descriptor up to `limit` is free in the kernel's
    /// table. A slot with no connection may still hold another descriptor (the reserve, re-opened after a
    /// shed, lands high): F_GETFD tells (one call per adoption, on prefork's select path only).
    func roomAbove(_ fd: Int32, limit: Int32) -> Bool {
        var next = Int(fd) + 1
        while next <= Int(limit) && next < capacity {
            if !connections[next].open && fcntl(Int32(next), F_GETFD) == -1 && errno == EBADF { return true }
            next += 1
        }
        return false
    }

    /// Stops watching the listener while the back-end is full (only where siblings share it).
    func yieldListener() {
        guard options.yieldListenerAtLimit, listenFD >= 0, !listenerYielded else { return }
        try? poller.remove(listenFD)
        listenerYielded = true
    }

    /// A descriptor below the limit is free again: watch the listener again.
    func resumeListener() {
        guard listenerYielded else { return }
        listenerYielded = false
        do {
            try poller.addListener(listenFD, exclusive: options.exclusiveListener)
        } catch {
            writeLine("muxlab serve: cannot watch the listener again: \(error)", fd: 2)
        }
    }

    /// Whether the next adopted connection is heavy: a SplitMix64 hash of (loop, adoption number) below the
    /// share. Deterministic, and blind to placement: the acceptor's round-robin cannot see it coming.
    func drawHeavy() -> Bool {
        adoptions &+= 1
        var z = (UInt64(loopIndex) << 40 | adoptions) &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Double(z >> 11) / Double(1 << 53) < heavyShare
    }

    /// CPU to burn per request of `fd`: the path's, plus the heavy share's on a heavy connection.
    @inline(__always) func computeMicros(_ fd: Int32) -> Int {
        connections[Int(fd)].heavy ? inlineCompute + heavyCompute : inlineCompute
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
        let shed = reserve.shed { mux_accept4_nonblock(listenFD) } ?? false
        if shed { stats.refused &+= 1 }
        return shed
    }

    // MARK: inbox (models 5-9)

    /// Everything other threads sent since the last wake-up: adopted connections and completions.
    func takeInbox() {
        guard let inbox else { return }
        inbox.rearm()
        var message: UInt64 = 0
        while inbox.take(&message) {
            if message & LoopMessage.adoptFlag != 0 {
                adopt(LoopMessage.fd(message))
            } else {
                complete(message)
            }
        }
    }

    /// Hands the connection's pending request to a worker; reading waits for the answer.
    func dispatch(_ fd: Int32) {
        connections[Int(fd)].taskInFlight = true
        connections[Int(fd)].readPaused = true
        // Level-triggered back-ends would report the unread socket on every wait meanwhile.
        if !poller.edgeTriggered { setInterest(fd, []) }
        tasksSent &+= 1
        tasks!.submit(LoopMessage.task(fd: fd, loop: loopIndex, generation: connections[Int(fd)].generation))
    }

    /// A worker finished a request: the loop, not the worker, sends the answer (claim C5).
    func complete(_ message: UInt64) {
        let fd = LoopMessage.fd(message)
        guard fd >= 0, Int(fd) < capacity else { return }
        let c = connections[Int(fd)]
        // The connection closed while its request was out (perhaps reopened on the same descriptor).
        guard c.open, c.taskInFlight, c.generation == LoopMessage.generation(message) else { return }
        connections[Int(fd)].taskInFlight = false
        if splicing {
            flushPipe(fd)
        } else if wire == .echo {
            let b = c.taskBuffer
            connections[Int(fd)].taskBuffer = -1
            let chunk = pool.base(b)
            answer(fd, request: chunk, c.taskLength, reply: chunk, c.taskLength)
            pool.release(b)
        } else {
            let region = pool.base(c.inBuffer)
            stats.requests &+= 1
            answer(fd, request: region, c.taskLength, reply: response, responseLength)
            guard connections[Int(fd)].open else { return }
            keepPartialRequest(fd, region, from: c.taskLength, to: c.inLength)
        }
        guard connections[Int(fd)].open, !connections[Int(fd)].owesOutput else { return }
        // All sent: the next request (already buffered, or still in the socket) may go.
        connections[Int(fd)].readPaused = false
        setInterest(fd, acceptInterest)
        resumeReading(fd)
    }

    // MARK: read

    func onReadable(_ fd: Int32) {
        if offloading && connections[Int(fd)].taskInFlight { return }
        if splicing { readSplice(fd); return }
        switch wire {
        case .echo: offloading ? readEchoTask(fd) : readEcho(fd)
        case .http: offloading ? readHTTPTask(fd) : readHTTP(fd)
        }
    }

    func readEcho(_ fd: Int32) {
        let bufferSize = pool.bufferSize
        while true {
            let room = bufferSize - connections[Int(fd)].pendingOutput
            if room == 0 { pauseReading(fd); return }
            let asked = min(room, readSize)
            guard let n = readOnce(fd, into: scratch, max: asked) else { return }
            let micros = computeMicros(fd)
            if micros != 0 { Work.compute(micros: micros) }
            answer(fd, request: scratch, n, reply: scratch, n)
            if !connections[Int(fd)].open || !drainOnReport || drained(n, asked) { return }
        }
    }

    /// Echo off the loop: each chunk read is one task, read straight into a pool buffer that
    /// carries it to the answer (the worker never touches the bytes).
    func readEchoTask(_ fd: Int32) {
        // One chunk at a time, and only once the last answer is out: order and backpressure.
        if connections[Int(fd)].owesOutput { pauseReading(fd); return }
        let b = pool.acquire()
        guard let n = readOnce(fd, into: pool.base(b), max: readSize) else {
            pool.release(b)
            return
        }
        connections[Int(fd)].taskBuffer = b
        connections[Int(fd)].taskLength = n
        dispatch(fd)
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
            let asked = min(bufferSize - held, readSize)
            guard let n = readOnce(fd, into: region + held, max: asked) else { return }
            handleRequests(fd, region, held + n)
            if !connections[Int(fd)].open || !drainOnReport || drained(n, asked) { return }
            if connections[Int(fd)].readPaused { return }
        }
    }

    /// HTTP off the loop: bytes gather in the connection's own buffer, where the request being
    /// computed stays until its answer is sent; one request per task.
    func readHTTPTask(_ fd: Int32) {
        let bufferSize = pool.bufferSize
        while true {
            if connections[Int(fd)].owesOutput { pauseReading(fd); return }
            var c = connections[Int(fd)]
            if c.inLength == bufferSize {
                close(fd)  // a request header larger than a buffer: not HTTP we serve
                return
            }
            if c.inBuffer < 0 {
                c.inBuffer = pool.acquire()
                c.inLength = 0
                connections[Int(fd)] = c
            }
            let region = pool.base(c.inBuffer)
            let asked = min(bufferSize - c.inLength, readSize)
            guard let n = readOnce(fd, into: region + c.inLength, max: asked) else {
                // Idle connections hold no buffer.
                if connections[Int(fd)].open && connections[Int(fd)].inLength == 0 {
                    keepPartialRequest(fd, region, from: 0, to: 0)
                }
                return
            }
            handleRequests(fd, region, c.inLength + n)
            if !connections[Int(fd)].open || !drainOnReport || connections[Int(fd)].readPaused || drained(n, asked) { return }
        }
    }

    /// Under `until-short`, a read that filled less than it asked emptied the socket.
    @inline(__always)
    func drained(_ n: Int, _ asked: Int) -> Bool {
        shortReadEnds && n < asked && !readToEnd
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
        if !connections[Int(fd)].owesOutput { close(fd) } else { pauseReading(fd) }
    }

    /// Answers every complete request in region[0..<length] that output room allows; keeps the rest.
    /// Off the loop, hands the first complete request to a worker instead (region is then inBuffer).
    func handleRequests(_ fd: Int32, _ region: UnsafeMutableRawPointer, _ length: Int) {
        if offloading {
            if let end = HTTPRequestScanner.endOfRequest(region, length) {
                connections[Int(fd)].inLength = length
                connections[Int(fd)].taskLength = end
                dispatch(fd)
            } else {
                keepPartialRequest(fd, region, from: 0, to: length)
            }
            return
        }
        var consumed = 0
        var outOfRoom = false
        while true {
            let room = (pool.bufferSize - connections[Int(fd)].pendingOutput) / responseLength
            var answers = 0
            let first = consumed
            while answers < room, let end = HTTPRequestScanner.endOfRequest(region + consumed, length - consumed) {
                consumed += end
                answers += 1
            }
            stats.requests &+= UInt64(answers)
            if answers > 0 {
                let micros = computeMicros(fd)
                if micros != 0 { Work.compute(micros: micros * answers) }
                answer(fd, request: region + first, consumed - first, reply: response, answers * responseLength)
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

    // MARK: splice (--copy splice, echo only)

    /// socket -> pipe -> socket: the kernel moves page references, no byte enters user space (K1).
    func readSplice(_ fd: Int32) {
        while true {
            let c = connections[Int(fd)]
            // The last chunk still waits for the socket: its bytes stay in the pipe, reading pauses.
            if c.pipeBytes > 0 || c.pendingOutput > 0 { pauseReading(fd); return }
            stats.reads &+= 1
            let n = mux_splice_move(fd, c.pipeWrite, readSize)
            if n < 0 {
                let e = errno
                if e == EINTR { continue }
                if e == EAGAIN { stats.readsEAGAIN &+= 1; return }
                close(fd)
                return
            }
            if n == 0 { endOfInput(fd); return }
            connections[Int(fd)].pipeBytes = n
            connections[Int(fd)].lastActive = now
            if offloading { dispatch(fd); return }
            flushPipe(fd)
            if !connections[Int(fd)].open || !drainOnReport || connections[Int(fd)].pipeBytes > 0 { return }
        }
    }

    /// Moves the pipe's bytes to the socket; what the socket does not take waits in the pipe
    /// for writability (nothing is lost on EAGAIN).
    func flushPipe(_ fd: Int32) {
        while connections[Int(fd)].pipeBytes > 0 {
            stats.writes &+= 1
            let n = mux_splice_move(connections[Int(fd)].pipeRead, fd, connections[Int(fd)].pipeBytes)
            if n < 0 {
                let e = errno
                if e == EINTR { continue }
                if e == EAGAIN {
                    stats.writesEAGAIN &+= 1
                    connections[Int(fd)].readPaused = true
                    setInterest(fd, .write)
                    return
                }
                close(fd)
                return
            }
            connections[Int(fd)].pipeBytes -= n
            stats.bytesOut &+= UInt64(n)
            publishAnswers()
            connections[Int(fd)].lastActive = now
        }
        if closeAfterAnswer { close(fd) }
    }

    // MARK: write

    /// The two counts a window compares with the load's, published as each answer's bytes go out, not
    /// only at the end of the wake-up: an edge-triggered loop reading until EAGAIN from a quick client,
    /// or draining its inbox while the worker keeps answering, can send many answers in one wake-up
    /// (20 in a CI run, read by the driver as the load counting 20 more). Two relaxed stores.
    @inline(__always)
    func publishAnswers() {
        guard let publish else { return }
        publish.counters.publish(.bytesOut, stats.bytesOut, slot: publish.slot)
        publish.counters.publish(.requests, stats.requests, slot: publish.slot)
    }

    /// Sends one answer. The default path is a plain `send`; the killer toggles copy it through
    /// staging buffers (K1), into a fresh heap buffer (K3), or close after it (H2).
    @inline(__always)
    func answer(_ fd: Int32, request: UnsafeRawPointer, _ requestLength: Int, reply: UnsafeRawPointer, _ replyLength: Int) {
        if plainAnswers {
            send(fd, reply, replyLength)
        } else {
            answerWithToggles(fd, request: request, requestLength, reply: reply, replyLength)
        }
    }

    @inline(never)
    func answerWithToggles(_ fd: Int32, request: UnsafeRawPointer, _ requestLength: Int, reply: UnsafeRawPointer, _ replyLength: Int) {
        var out = reply
        if let stagedRequest, let stagedResponse {
            // The request object, then the response built from it: two copies a framework makes.
            stagedRequest.copyMemory(from: request, byteCount: requestLength)
            stagedResponse.copyMemory(from: wire == .echo ? UnsafeRawPointer(stagedRequest) : reply, byteCount: replyLength)
            out = UnsafeRawPointer(stagedResponse)
        }
        if allocPerRequest {
            let fresh = UnsafeMutableRawPointer.allocate(byteCount: replyLength, alignment: 16)
            fresh.copyMemory(from: out, byteCount: replyLength)
            send(fd, fresh, replyLength)
            fresh.deallocate()
        } else {
            send(fd, out, replyLength)
        }
        if closeAfterAnswer && connections[Int(fd)].open && connections[Int(fd)].pendingOutput == 0 { close(fd) }
    }

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
                        stats.bytesOut &+= UInt64(n)
                        publishAnswers()
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
        if splicing { onWritableSplice(fd); return }
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
                    stats.bytesOut &+= UInt64(n)
                    publishAnswers()
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
        let wasPaused = c.readPaused && !c.taskInFlight
        if !c.taskInFlight { c.readPaused = false }
        connections[Int(fd)] = c
        // The queued output was an answer: with server-first closing, the connection is done.
        if closeAfterAnswer { close(fd); return }
        setInterest(fd, c.taskInFlight ? [] : acceptInterest)
        if wasPaused { resumeReading(fd) }
    }

    func onWritableSplice(_ fd: Int32) {
        guard connections[Int(fd)].pipeBytes > 0, !connections[Int(fd)].taskInFlight else { return }
        flushPipe(fd)
        guard connections[Int(fd)].open, connections[Int(fd)].pipeBytes == 0 else { return }
        connections[Int(fd)].readPaused = false
        setInterest(fd, acceptInterest)
        resumeReading(fd)
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
        if poller.edgeTriggered {
            readToEnd = true
            onReadable(fd)
        }
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
        // A worker never touches the chunk: it can go back to the pool while the task is out.
        if c.taskBuffer >= 0 { pool.release(c.taskBuffer) }
        if c.pipeRead >= 0 { FD.close(c.pipeRead); FD.close(c.pipeWrite) }
        c = ConnectionState()
        connections[Int(fd)] = c
        stats.closed &+= 1
        resumeListener()
    }

    /// One line of counters for the driver (and the probe cross-check).
    public var statsLine: String {
        let p = poller.stats
        return "stats waits=\(p.waits) scanned=\(p.scanned) events=\(p.events) accepted=\(stats.accepted) refused=\(stats.refused) closed=\(stats.closed) reads=\(stats.reads) reads_eagain=\(stats.readsEAGAIN) writes=\(stats.writes) writes_eagain=\(stats.writesEAGAIN) bytes_out=\(stats.bytesOut) http_requests=\(stats.requests) accept_emfile=\(stats.acceptEMFILE) buffers=\(pool.allocated) idle_closed=\(stats.idleClosed)"
    }
}
