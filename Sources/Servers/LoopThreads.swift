#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// A reactor of any back-end as the multi-thread servers hold it: one call to run (the loop
/// itself stays specialised), and where to publish its counters.
protocol EventLoop: AnyObject {
    func run() throws
    func attach(counters: SharedCounters, slot: Int, buffers: UnsafeMutablePointer<UInt64>)
}

extension Reactor: EventLoop {
    func attach(counters: SharedCounters, slot: Int, buffers: UnsafeMutablePointer<UInt64>) {
        publish = (counters, slot)
        buffersGauge = buffers
    }
}

/// What models 5-9 share: the loops' construction, threads, and the summed `stats` line.
enum LoopThreads {
    /// One reactor on `config.io`, wired to its inbox (and to workers when `links.tasks` is set).
    static func makeLoop(_ config: ServerConfig, listenFD: Int32, capacity: Int, links: LoopLinks) throws -> EventLoop {
        try ReactorFactory.build(config, listenFD: listenFD, capacity: capacity, options: config.reactor, links: links, AsEventLoop())
    }

    struct AsEventLoop: ReactorUse {
        func use<P: Poller>(_ reactor: Reactor<P>) -> EventLoop { reactor }
    }

    /// Runs `loop` on its own thread; a loop that fails ends the server (its clients would hang).
    static func start(_ loop: EventLoop, index: Int) throws {
        try startThread {
            do {
                try loop.run()
            } catch {
                writeLine("muxlab serve: loop \(index): \(error)", fd: 2)
                exit(1)
            }
        }
    }

    /// The keys of the single reactor's line, summed over the loops, plus tasks and threads.
    static let fields: [SharedCounters.Field] = [
        .waits, .scanned, .events, .accepted, .refused, .closed, .reads, .readsEAGAIN, .writes, .writesEAGAIN,
        .requests, .acceptEMFILE, .idleClosed, .tasks, .threads, .bytesOut,
    ]

    static func statsLine(_ counters: SharedCounters, buffers: UnsafeMutablePointer<UInt64>, loops: Int) -> String {
        var total: UInt64 = 0
        for i in 0..<loops { total &+= mux_gauge_load(buffers + i) }
        return counters.statsLine(fields, extra: "buffers=\(total)")
    }

    /// One zeroed gauge per loop.
    static func gauges(_ loops: Int) -> UnsafeMutablePointer<UInt64> {
        let g = UnsafeMutablePointer<UInt64>.allocate(capacity: loops)
        g.initialize(repeating: 0, count: loops)
        return g
    }
}
