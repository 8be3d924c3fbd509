#if canImport(Glibc)
import Glibc
#endif
import CShims
import CUring
import Kernel
import Vocabulary

/// Model 10: completions instead of readiness (claim C8). One thread, one io_uring.
/// The loop never asks "is this socket ready?": it submits the operation and is told when it is done.
///
/// Kernel features used (all present on this 6.18 kernel; the probe at startup reports them):
/// - multishot accept (5.19): one SQE accepts every client; re-armed only when a CQE lacks F_MORE.
///   Falls back to re-armed single-shot accept if the kernel answers EINVAL.
/// - multishot recv (6.0) with a provided-buffer ring (5.19, `io_uring_register_buf_ring`):
///   one SQE per connection for its whole life, the kernel picks a buffer per completion,
///   so idle connections hold no buffer; each is handed back as soon as its completion is handled
///   (echo bytes are copied to the connection's pooled output first). Falls back to single-shot
///   buffer-select recv on EINVAL.
///   No buffer ring (kernel < 5.19): refused at startup with the errno.
/// - IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN (6.1): completions are posted only inside our
///   io_uring_enter, so one enter per loop turn submits and reaps; COOP_TASKRUN or none on older kernels.
/// - IORING_OP_SHUTDOWN (5.11) to end a connection's in-flight recv/send without a syscall,
///   IORING_OP_TIMEOUT as the idle-timeout clock, signals through a signalfd read on the ring.
/// Not used: registered (fixed) files and buffers, send zero-copy, SQPOLL (a second CPU spinning).
public enum ProactorServer {
    public static func run(_ context: ServerContext) throws {
        let proactor = try Proactor(context)
        // A driver reads the counters itself at its windows' edges: the loop publishes every turn.
        if SharedCounters.driverReads { proactor.published = try SharedCounters() }
        ServerOutput.ready(Server.readyLine(context.config, port: context.port, extra: proactor.readyExtra))
        try proactor.run()
        ServerOutput.stats(proactor.statsLine)
    }

    /// The one line for a ring that cannot be created: the errno and its likely cause.
    public static func setupFailure(errno e: Int32, disabledSysctl: Int?) -> String {
        var line = "--model proactor: io_uring_setup failed: \(String(cString: strerror(e))) (errno \(e))"
        switch e {
        case EPERM where (disabledSysctl ?? 0) != 0:
            line += "; io_uring is disabled by sysctl kernel.io_uring_disabled=\(disabledSysctl!) (0 allows it; 1 allows only root and io_uring_group)"
        case EPERM:
            line += "; a seccomp filter or LSM policy forbids io_uring in this process"
        case ENOSYS:
            line += "; this kernel has no io_uring (CONFIG_IO_URING off, or older than 5.1)"
        case ENOMEM:
            line += "; the locked-memory limit (ulimit -l, RLIMIT_MEMLOCK) is too low for the rings"
        default:
            break
        }
        return line
    }
}

/// What a completion was for: the top byte of its user_data.
enum ProactorOp: UInt64 {
    case accept = 1, recv, send, signal, shutdown, cancel, tick
}

/// Per-connection state, indexed by descriptor. A connection's descriptor is closed only once
/// none of its operations is in flight, so no completion can arrive for a reused number
/// (the generation in user_data checks that anyway: `stale` counts any that do).
struct ProactorConnection {
    var open = false
    /// Bumped at each accept on this descriptor; kept across closes.
    var generation: UInt32 = 0
    /// A recv (multishot or single) is in flight.
    var recvArmed = false
    /// Reading stopped because output is backed up (the recv was cancelled); resumes once it drains.
    var recvPaused = false
    /// The recv ended with ENOBUFS: re-armed when provided buffers come back.
    var recvStalled = false
    var sending = false
    var shutdownPending = false
    /// The peer sent its last byte: close once owed output is sent.
    var peerClosed = false
    var closing = false
    /// Echo output: a chain of pool buffers linked through `poolNext`, bytes [outHead, outTail)
    /// from the first to the last. Received bytes are copied here so provided buffers go back at once.
    var outFirst: Int32 = -1
    var outLast: Int32 = -1
    var outHead: Int32 = 0
    var outTail: Int32 = 0
    var queued = 0
    /// Bytes asked of the send in flight (a completion with fewer is a short send).
    var sendBytes: Int32 = 0
    /// HTTP output: responses owed, and the batch being sent (bytes of the response block).
    var owed = 0
    var batchBytes: Int32 = 0
    var batchSent: Int32 = 0
    /// A partial HTTP request carried to the next recv (a BufferPool index, -1 when none).
    var inBuffer: Int32 = -1
    var inLength: Int32 = 0
    /// When a byte last moved either way (ns); only the idle sweep reads it.
    var lastActive: UInt64 = 0

    var inFlight: Bool { recvArmed || sending || shutdownPending }
}

/// The proactor's own counters (the stats line).
struct ProactorStats {
    var accepted: UInt64 = 0
    var refused: UInt64 = 0
    var closed: UInt64 = 0
    /// Recv completions that carried data.
    var reads: UInt64 = 0
    /// Sends submitted.
    var writes: UInt64 = 0
    /// Sends that completed with fewer bytes than asked: the rest is submitted again.
    var shortSends: UInt64 = 0
    /// Bytes the sends completed with.
    var bytesOut: UInt64 = 0
    var requests: UInt64 = 0
    var acceptEMFILE: UInt64 = 0
    /// Recv SQEs submitted after the first one of each connection (multishot ended, pause, stall).
    var recvRearms: UInt64 = 0
    var acceptRearms: UInt64 = 0
    /// Recvs ended because the provided-buffer ring was empty.
    var enobufs: UInt64 = 0
    /// Recvs cancelled because the peer was not reading its answers.
    var pauses: UInt64 = 0
    /// Completions for a connection that no longer exists (expected 0).
    var stale: UInt64 = 0
    var idleClosed: UInt64 = 0
    var events: UInt64 = 0
    /// Connections closed because a recv or send failed for the peer's reason, by errno.
    var peerErrors = PeerErrors()
}

final class Proactor {
    let ring: OpaquePointer
    let listenFD: Int32
    let wire: WireProtocol
    let capacity: Int
    let computeMicros: Int
    let closeAfterAnswer: Bool
    let connections: UnsafeMutablePointer<ProactorConnection>
    /// The provided-buffer ring: `bufferCount` buffers of `bufferSize` bytes, group `bufferGroup`.
    let bufferGroup: UInt16 = 1
    let bufferCount: Int
    let bufferSize: Int
    /// Back-to-back copies of the HTTP response, so k answers are one send.
    let response: UnsafeMutableRawPointer
    let responseLength: Int
    let responsesPerBlock: Int
    /// Echo output chains and partial HTTP requests; grows only while more is backed up than ever before.
    let pool: BufferPool
    /// The next pool buffer in a connection's output chain, indexed by pool buffer.
    var poolNext: UnsafeMutablePointer<Int32>
    var poolNextCapacity = 64
    let cqes: UnsafeMutablePointer<mux_uring_cqe>
    let cqeBatch = 512
    /// Connections whose recv ended with ENOBUFS (one turn's completions outran the ring), re-armed at
    /// the end of the turn: no provided buffer is held past its completion, so by then all are back.
    let stalled: UnsafeMutablePointer<Int32>
    var stalledCount = 0
    /// Echo: pause reading when this many bytes wait to be sent; HTTP: when this many answers are owed.
    let maxQueued = 256 * 1024
    let maxOwed: Int
    let signalFD: Int32
    let signalInfo: UnsafeMutableRawPointer
    var multishotAccept = true
    var multishotRecv = true
    var acceptArmed = false
    /// EMFILE with no reserve descriptor to shed with: accept again only after a close frees one.
    var acceptWaitsForDescriptor = false
    var reserve = ReserveDescriptor()
    var refusalNotice = RefusalNotice()
    var stopRequested = false
    var statsRequested = false
    /// Idle timeout (claim H3) in ns, 0 when off; an IORING_OP_TIMEOUT wakes the loop every quarter of it.
    let idleNanos: UInt64
    let sweepNanos: UInt64
    var now: UInt64 = 0
    var highestFD: Int32 = -1
    var stats = ProactorStats()

    init(_ context: ServerContext) throws {
        let config = context.config
        listenFD = context.listenFD
        wire = config.wire
        capacity = context.capacity
        computeMicros = config.computeMicros
        closeAfterAnswer = config.close == .serverFirst
        if computeMicros > 0 { Work.calibrate() }
        if let t = config.reactor.idleTimeout, t > 0 {
            idleNanos = UInt64(t * 1e9)
            sweepNanos = max(1_000_000, idleNanos / 4)
        } else {
            idleNanos = 0
            sweepNanos = 0
        }

        // Signals arrive as completions of a read on a signalfd: no handler, no wake-up pipe.
        let sfd = mux_uring_stop_signalfd()
        guard sfd >= 0 else { throw SystemError("signalfd", errno: -sfd) }
        signalFD = sfd

        var err: Int32 = 0
        guard let r = mux_uring_create(2048, 16384, &err) else {
            throw ValueError(ProactorServer.setupFailure(errno: -err, disabledSysctl: Proactor.ioUringDisabled()))
        }
        ring = r

        // Provided buffers: a 64 MiB budget split into buffers of --read-size bytes (a power-of-two count).
        bufferSize = max(1, min(config.reactor.readSize, 65536))
        var count = 256
        while count < 8192 && count * 2 * bufferSize <= 64 << 20 { count *= 2 }
        bufferCount = count
        let rc = mux_uring_buffers_create(r, UInt32(count), UInt32(bufferSize), bufferGroup)
        guard rc == 0 else {
            mux_uring_destroy(r)
            throw ValueError("--model proactor: io_uring_register_buf_ring(\(count) x \(bufferSize) bytes) failed: \(String(cString: strerror(-rc))) (errno \(-rc)); provided-buffer rings need Linux 5.19 or later")
        }

        connections = .allocate(capacity: capacity)
        connections.initialize(repeating: ProactorConnection(), count: capacity)
        let blockBytes = 64 * 1024
        let one = HTTPResponse.bytes.count
        let block = UnsafeMutableRawPointer.allocate(byteCount: blockBytes, alignment: 16)
        var off = 0
        while off + one <= blockBytes {
            HTTPResponse.bytes.withUnsafeBytes { (block + off).copyMemory(from: $0.baseAddress!, byteCount: one) }
            off += one
        }
        response = block
        responsesPerBlock = blockBytes / one
        responseLength = one
        maxOwed = responsesPerBlock * 4
        pool = BufferPool(bufferSize: 64 * 1024)
        poolNext = .allocate(capacity: poolNextCapacity)
        cqes = .allocate(capacity: cqeBatch)
        stalled = .allocate(capacity: capacity)
        signalInfo = .allocate(byteCount: Int(MUX_SIGINFO_SIZE), alignment: 8)

        armSignals()
        armAccept()
        if idleNanos != 0 { armTick() }
    }

    deinit {
        mux_uring_destroy(ring)
        connections.deallocate()
        poolNext.deallocate()
        response.deallocate()
        cqes.deallocate()
        stalled.deallocate()
        signalInfo.deallocate()
    }

    /// kernel.io_uring_disabled (6.6+), nil when the sysctl does not exist.
    static func ioUringDisabled() -> Int? {
        let fd = open("/proc/sys/kernel/io_uring_disabled", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var bytes = [UInt8](repeating: 0, count: 16)
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        return Int(String(decoding: bytes[0..<n], as: UTF8.self).trimmingCharacters(in: " \n"))
    }

    /// What the ready line adds: the ring's setup and which multishot features are in force.
    var readyExtra: String {
        let flags = mux_uring_setup_flags(ring)
        var setup: [String] = []
        if flags & MUX_SETUP_SINGLE_ISSUER != 0 { setup.append("single_issuer") }
        if flags & MUX_SETUP_DEFER_TASKRUN != 0 { setup.append("defer_taskrun") }
        if flags & MUX_SETUP_COOP_TASKRUN != 0 { setup.append("coop_taskrun") }
        return "uring_setup=\(setup.isEmpty ? "none" : setup.joined(separator: ",")) uring_accept=\(multishotAccept ? "multishot" : "single") uring_recv=\(multishotRecv ? "multishot" : "single")+buf_ring provided_buffers=\(bufferCount)x\(bufferSize)"
    }

    // MARK: user_data

    @inline(__always)
    func tag(_ op: ProactorOp, _ fd: Int32, _ generation: UInt32) -> UInt64 {
        op.rawValue << 56 | UInt64(generation & 0xFF_FFFF) << 32 | UInt64(UInt32(bitPattern: fd))
    }

    // MARK: the loop

    /// Runs until SIGTERM/SIGINT: one io_uring_enter per turn submits everything queued and waits.
    func run() throws {
        if idleNanos != 0 { now = monotonicNanos() }
        while !stopRequested {
            let rc = mux_uring_submit_and_wait(ring)
            if rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME {
                throw SystemError("io_uring_enter", errno: -rc)
            }
            if idleNanos != 0 { now = monotonicNanos() }
            while true {
                let n = Int(mux_uring_reap(ring, cqes, UInt32(cqeBatch)))
                if n == 0 { break }
                stats.events &+= UInt64(n)
                for i in 0..<n { dispatch(cqes[i]) }
            }
            if stalledCount > 0 { rearmStalled() }
            if acceptWaitsForDescriptor == false && !acceptArmed { armAccept() }
            if let published { publish(published) }
            if statsRequested {
                statsRequested = false
                ServerOutput.stats(statsLine)
            }
        }
    }

    @inline(__always)
    func dispatch(_ cqe: mux_uring_cqe) {
        let fd = Int32(truncatingIfNeeded: cqe.user_data & 0xFFFF_FFFF)
        let generation = UInt32(truncatingIfNeeded: (cqe.user_data >> 32) & 0xFF_FFFF)
        switch ProactorOp(rawValue: cqe.user_data >> 56) {
        case .recv: onRecv(fd, generation, cqe.res, cqe.flags)
        case .send: onSend(fd, generation, cqe.res)
        case .accept: onAccept(cqe.res, cqe.flags)
        case .shutdown:
            guard current(fd, generation) else { stats.stale &+= 1; return }
            connections[Int(fd)].shutdownPending = false
            finishCloseIfIdle(fd)
        case .signal: onSignal(cqe.res)
        case .tick: onTick()
        case .cancel, .none: break
        }
    }

    @inline(__always)
    func current(_ fd: Int32, _ generation: UInt32) -> Bool {
        fd >= 0 && Int(fd) < capacity && connections[Int(fd)].open
            && connections[Int(fd)].generation & 0xFF_FFFF == generation
    }

    // MARK: signals and the idle clock

    func armSignals() {
        _ = mux_uring_read(ring, signalFD, signalInfo, MUX_SIGINFO_SIZE, tag(.signal, signalFD, 0))
    }

    func onSignal(_ res: Int32) {
        if res == Int32(MUX_SIGINFO_SIZE) {
            let sig = Int32(bitPattern: signalInfo.load(as: UInt32.self))
            if sig == SIGUSR1 { statsRequested = true } else if sig == SIGTERM || sig == SIGINT { stopRequested = true }
        }
        armSignals()
    }

    func armTick() {
        _ = mux_uring_timeout(ring, sweepNanos, tag(.tick, -1, 0))
    }

    /// Closes every connection that moved no byte for longer than the idle timeout (claim H3).
    func onTick() {
        var highest: Int32 = -1
        var fd: Int32 = 0
        while fd <= highestFD {
            let c = connections[Int(fd)]
            if c.open {
                if !c.closing && now &- c.lastActive > idleNanos {
                    stats.idleClosed &+= 1
                    beginClose(fd)
                }
                highest = fd
            }
            fd += 1
        }
        highestFD = highest
        armTick()
    }

    // MARK: stats

    /// Where the loop publishes its running totals for a driver (slot 0: one owner).
    var published: SharedCounters?

    func publish(_ c: SharedCounters) {
        c.publish(.accepted, stats.accepted, slot: 0)
        c.publish(.refused, stats.refused, slot: 0)
        c.publish(.closed, stats.closed, slot: 0)
        c.publish(.reads, stats.reads, slot: 0)
        c.publish(.writes, stats.writes, slot: 0)
        c.publish(.bytesOut, stats.bytesOut, slot: 0)
        c.publish(.requests, stats.requests, slot: 0)
        c.publish(.acceptEMFILE, stats.acceptEMFILE, slot: 0)
        c.publish(.idleClosed, stats.idleClosed, slot: 0)
        c.publish(.events, stats.events, slot: 0)
        c.publish(.waits, mux_uring_get_counters(ring).waits, slot: 0)
    }

    /// One line of counters for the driver: `waits` are io_uring_enter calls that waited,
    /// `events` the completions reaped.
    var statsLine: String {
        let k = mux_uring_get_counters(ring)
        return "stats waits=\(k.waits) flushes=\(k.flushes) sqes=\(k.sqes) events=\(stats.events) accepted=\(stats.accepted) refused=\(stats.refused) closed=\(stats.closed) reads=\(stats.reads) writes=\(stats.writes) bytes_out=\(stats.bytesOut) short_sends=\(stats.shortSends) http_requests=\(stats.requests) accept_emfile=\(stats.acceptEMFILE) accept_arms=\(stats.acceptRearms) recv_rearms=\(stats.recvRearms) enobufs=\(stats.enobufs) pauses=\(stats.pauses) stale=\(stats.stale) buffers=\(pool.allocated) idle_closed=\(stats.idleClosed) \(stats.peerErrors.statsFields)"
    }
}
