#if canImport(Glibc)
import Glibc
#endif
import Kernel

/// Models 5, 6 and 7: one I/O thread runs the reactor; each request (HTTP: each complete
/// request; echo: each chunk read) is computed off the loop, by a thread started for it (5),
/// by the one worker (6) or by a pool of `--workers` (7), and the answer comes back through
/// the loop's inbox for the loop to send (claim C5: workers never write to sockets).
public enum PooledReactorServer {
    public static func run(_ context: ServerContext) throws {
        let config = context.config
        // Before any thread exists, so that no loop or worker is ever interrupted by a signal.
        try Supervisor.blockSignals()
        Work.calibrate()
        let counters = try SharedCounters()
        let inbox = try LoopInbox(capacity: context.capacity)
        let work = TaskWork(inboxes: [inbox], computeMicros: config.computeMicros, blockMicros: config.blockMicros)
        // Slot 0 is the loop's (running totals); slot 1 counts threads.
        let sink: TaskSink
        if config.model == .reactorThreadPerRequest {
            sink = ThreadPerTask(work: work, counters: counters, slot: 1)
        } else {
            let workers = config.model == .reactorWorker ? 1 : max(1, config.workerCount)
            let pool = try WorkPool(workers: workers, queue: config.queue, capacity: context.capacity, work: work)
            counters.add(.threads, UInt64(workers), slot: 1)
            sink = pool.port()
        }
        let loop = try LoopThreads.makeLoop(config, listenFD: context.listenFD, capacity: context.capacity,
                                            links: LoopLinks(index: 0, inbox: inbox, tasks: sink))
        let buffers = LoopThreads.gauges(1)
        loop.attach(counters: counters, slot: 0, buffers: buffers)
        try LoopThreads.start(loop, index: 0)
        ServerOutput.ready(Server.readyLine(config, port: context.port))
        Supervisor.wait(stats: { LoopThreads.statsLine(counters, buffers: buffers, loops: 1) })
    }
}
