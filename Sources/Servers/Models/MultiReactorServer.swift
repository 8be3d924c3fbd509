#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// Models 8 and 9: `--reactors` loops, one per thread, each with its own poller. With
/// `--accept acceptor` one thread accepts and deals connections round-robin to the loops
/// (the seed's mainReactor and subReactors); with `--accept reuseport` every loop has its own
/// SO_REUSEPORT listener and the kernel spreads clients; with `--accept shared-epoll` (or `epoll-exclusive`)
/// every loop watches the one listener and whichever is idle takes the next client (pull, claim L1). Model 9 adds one pool shared by all
/// loops, each loop with its own completion inbox (claims C6, C7).
public enum MultiReactorServer {
    public static func run(_ context: ServerContext) throws {
        let config = context.config
        let loops = config.reactors
        // Each loop publishes into its own counter slot; the acceptor and the pool use the next one.
        guard loops >= 1 && loops < SharedCounters.slots else {
            throw ValueError("--reactors \(loops) is out of range: 1-\(SharedCounters.slots - 1) loops")
        }
        try Supervisor.blockSignals()
        Work.calibrate()
        let counters = try SharedCounters()
        let inboxes = try (0..<loops).map { _ in try LoopInbox(capacity: context.capacity) }
        var pool: WorkPool?
        if config.model == .multiReactorPool {
            let workers = max(1, config.workerCount)
            let work = TaskWork(inboxes: inboxes, computeMicros: config.computeMicros, blockMicros: config.blockMicros)
            pool = try WorkPool(workers: workers, queue: config.queue, capacity: context.capacity, work: work)
            counters.add(.threads, UInt64(workers), slot: loops)
        }
        let acceptor = config.acceptMode == .acceptor
        let shared = config.acceptMode == .sharedEpoll || config.acceptMode == .epollExclusive
        var listeners: [Int32] = Array(repeating: -1, count: loops)
        var loopConfig = config
        if shared {
            // One listener in every loop's poller: the loops pull clients instead of being dealt them.
            listeners = Array(repeating: context.listenFD, count: loops)
            loopConfig.reactor.sharedListener = true
            loopConfig.reactor.exclusiveListener = config.acceptMode == .epollExclusive
        } else if !acceptor {
            // Every listener exists before the ready line, so the kernel spreads clients from the first.
            listeners[0] = context.listenFD
            for i in 1..<loops {
                listeners[i] = try Sockets.listen(on: Endpoint(host: config.listen.host, port: context.port),
                                                  backlog: config.backlog, reusePort: true).fd
            }
        }
        let buffers = LoopThreads.gauges(loops)
        for i in 0..<loops {
            let loop = try LoopThreads.makeLoop(loopConfig, listenFD: listeners[i], capacity: context.capacity,
                                                links: LoopLinks(index: i, inbox: inboxes[i], tasks: pool?.port()))
            loop.attach(counters: counters, slot: i, buffers: buffers + i)
            try LoopThreads.start(loop, index: i)
        }
        if acceptor {
            // The acceptor blocks in accept(2): one call per client, no readiness round trip.
            try Sockets.setNonBlocking(context.listenFD, false)
            let dealer = Acceptor(listenFD: context.listenFD, inboxes: inboxes, counters: counters, slot: loops)
            try startThread(stackBytes: 256 * 1024) { dealer.run() }
        }
        ServerOutput.ready(Server.readyLine(config, port: context.port))
        Supervisor.wait(stats: { LoopThreads.statsLine(counters, buffers: buffers, loops: loops) })
    }
}

/// The mainReactor: accepts every client and hands it to the next loop, round-robin.
final class Acceptor: @unchecked Sendable {
    let listenFD: Int32
    let inboxes: [LoopInbox]
    let counters: SharedCounters
    let slot: Int
    /// Held open so that under EMFILE one descriptor can be freed to accept and close a client.
    var reserve = ReserveDescriptor()

    init(listenFD: Int32, inboxes: [LoopInbox], counters: SharedCounters, slot: Int) {
        self.listenFD = listenFD
        self.inboxes = inboxes
        self.counters = counters
        self.slot = slot
    }

    func run() {
        var next = 0
        while true {
            let fd = mux_accept4_nonblock(listenFD)
            if fd >= 0 {
                inboxes[next].post(LoopMessage.adopt(fd: fd))
                next = next + 1 == inboxes.count ? 0 : next + 1
                continue
            }
            let e = errno
            switch e {
            case EINTR, EAGAIN:
                continue
            case EMFILE, ENFILE:
                counters.add(.acceptEMFILE, slot: slot)
                if let shed = reserve.shed(accepting: { mux_accept4_nonblock(listenFD) }) {
                    if shed { counters.add(.refused, slot: slot) }
                } else {
                    usleep(1000)  // nothing to free: do not spin
                }
            case let e where isClientAcceptError(e):
                // The client's trouble, not the listener's.
                continue
            default:
                writeLine("muxlab serve: acceptor: \(SystemError("accept4", errno: e))", fd: 2)
                exit(1)
            }
        }
    }
}
