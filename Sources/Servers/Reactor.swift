#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel
import Vocabulary

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
    /// Busy polling: when the last poll without an event began (0: an event came).
    var lastEvent: UInt64 = 0
    /// The loop's clock: read once per wake-up, and only when the idle timeout is on (0 otherwise).
    var now: UInt64 = 0
    /// No open connection has a higher descriptor: bounds the idle sweep.
    var highestFD: Int32 = -1
    var refusalNotice = RefusalNotice()
    /// The listener is out of the interest set: this loop is at its back-end's descriptor limit.
    var listenerYielded = false
    public internal(set) var stats = ReactorStats()
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
    public internal(set) var tasksSent: UInt64 = 0

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

    deinit {
        connections.deallocate()
        scratch.deallocate()
        response.deallocate()
        events.deallocate()
        stagedRequest?.deallocate()
        stagedResponse?.deallocate()
    }

    /// Empties the wake-up pipe; the flags it woke us for are checked at the top of the loop.
    func drainWakeups() {
        var bytes: (UInt64, UInt64) = (0, 0)
        while withUnsafeMutableBytes(of: &bytes, { read(wakeFD, $0.baseAddress, $0.count) }) > 0 {}
    }

    /// Runs until SIGTERM/SIGINT: wait, dispatch each ready descriptor, sweep, publish. Without an idle
    /// timeout it waits forever: only sockets and signals wake it, and it reads no clock. With one, it wakes
    /// at least every quarter timeout to sweep. Either way its own wait count is exact (the probe
    /// cross-check relies on that).
    public func run() throws {
        if idleNanos != 0 { now = monotonicNanos(); nextSweep = now &+ sweepNanos }
        while reactorStopRequested == 0 {
            if reactorStatsRequested != 0 {
                reactorStatsRequested = 0
                ServerOutput.stats(statsLine)
            }
            guard let n = try waitForEvents() else { continue }
            if idleNanos != 0 { now = monotonicNanos() }
            for i in 0..<n { try handle(events[i]) }
            if idleNanos != 0 && now >= nextSweep { closeIdleConnections() }
            publishTurn()
        }
    }

    /// One wait. With busy polling: a non-blocking poll, and nil (poll again) until `busyPollMicros` have
    /// passed without an event; then a blocking wait.
    @inline(__always)
    func waitForEvents() throws -> Int? {
        guard busyPollNanos != 0 else { return try poller.wait(events, timeoutMs: waitTimeoutMs) }
        let n = try poller.wait(events, timeoutMs: 0)
        if n != 0 { lastEvent = 0; return n }
        if lastEvent == 0 { lastEvent = monotonicNanos() }
        if monotonicNanos() &- lastEvent < busyPollNanos { return nil }
        lastEvent = 0
        return try poller.wait(events, timeoutMs: waitTimeoutMs)
    }

    /// One ready descriptor: the listener, the wake-up pipe, the inbox, or a connection.
    @inline(__always)
    func handle(_ ev: ReadyEvent) throws {
        if ev.fd == listenFD { try acceptClients(); return }
        if ev.fd == wakeFD { drainWakeups(); return }
        if ev.fd == inboxFD { takeInbox(); return }
        // A peer that fails while its request is with a worker: nothing is owed to it, and
        // level-triggered back-ends report the error even with no interest registered.
        if ev.failed && connections[Int(ev.fd)].taskInFlight { close(ev.fd); return }
        // An error or hang-up goes to the writer too: with reading paused it is the only
        // handler that can meet the error, and LT would otherwise report it forever.
        if (ev.writable || ev.failed) && connections[Int(ev.fd)].open { onWritable(ev.fd) }
        if ev.readable && connections[Int(ev.fd)].open {
            readToEnd = ev.hungUp
            onReadable(ev.fd)
        }
    }

    /// A loop beside others publishes its counters once per wake-up (bytes_out and requests also per answer).
    @inline(__always)
    func publishTurn() {
        guard let publish else { return }
        publish.counters.publish(stats, poller.stats, slot: publish.slot)
        if offloading { publish.counters.publish(.tasks, tasksSent, slot: publish.slot) }
        if let buffersGauge { mux_gauge_store(buffersGauge, UInt64(pool.allocated)) }
    }
}
