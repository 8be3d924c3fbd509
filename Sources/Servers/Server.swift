#if canImport(Glibc)
import Glibc
#endif
import Kernel

/// How a server is built: the concurrency model, numbered as in the seed's list of ten.
public enum ServerModel: String, CaseIterable, Sendable {
    /// Model 1: accept, serve that one client to the end, accept the next.
    case iterative
    /// Model 2: a forked process per connection.
    case processPerConnection = "process-per-connection"
    /// Model 2: a thread per connection.
    case threadPerConnection = "thread-per-connection"
    /// Model 3: N processes forked up front share the listening socket (`--accept`, claim C3).
    case prefork
    /// Model 4: one thread, one readiness loop over non-blocking sockets.
    case reactor
    /// Model 5: the loop reads; each request is computed by a thread started for it.
    case reactorThreadPerRequest = "reactor-thread-per-request"
    /// Model 6: the loop reads; one worker thread computes every request.
    case reactorWorker = "reactor-worker"
    /// Model 7: the loop reads; a pool of `--workers` threads computes; the loop sends (claim C5).
    case reactorPool = "reactor-pool"
    /// Model 8: `--reactors` loops, one per thread (claim C6).
    case multiReactor = "multi-reactor"
    /// Model 9: `--reactors` loops sharing one pool of `--workers` threads (claim C7).
    case multiReactorPool = "multi-reactor-pool"
    /// Model 10: completions instead of readiness, on io_uring (claim C8).
    case proactor

    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// The model's number in the seed's list.
    public var number: Int {
        switch self {
        case .iterative: return 1
        case .processPerConnection, .threadPerConnection: return 2
        case .prefork: return 3
        case .reactor: return 4
        case .reactorThreadPerRequest: return 5
        case .reactorWorker: return 6
        case .reactorPool: return 7
        case .multiReactor: return 8
        case .multiReactorPool: return 9
        case .proactor: return 10
        }
    }

    /// The back-ends the model runs on; the first is its default.
    public var ioModes: [IOMode] {
        switch self {
        case .iterative, .processPerConnection, .threadPerConnection: return [.blocking]
        case .prefork: return [.blocking, .epollET, .epollLT, .poll, .select]
        case .proactor: return [.ioUring]
        default: return [.epollET, .epollLT, .poll, .select]
        }
    }

    /// Models whose requests are computed off the loop, by worker threads (`--workers`, `--queue`).
    public var hasPool: Bool { self == .reactorPool || self == .multiReactorPool }
    /// Models with more than one loop (`--reactors`).
    public var hasReactors: Bool { self == .multiReactor || self == .multiReactorPool }
}

/// How the listening socket is shared (prefork, claim C3; multi-reactor).
public enum AcceptMode: String, CaseIterable, Sendable {
    /// Prefork: every process blocks in accept(2) on the one listener.
    case blocking
    /// Prefork and multi-reactor: every process (loop) has its own epoll watching the one listener (all wake
    /// per client, the first to accept wins: an idle loop pulls the next client, a busy one does not; claim L1).
    case sharedEpoll = "shared-epoll"
    /// Prefork and multi-reactor: the same, registered with EPOLLEXCLUSIVE.
    case epollExclusive = "epoll-exclusive"
    /// Prefork and multi-reactor: one listener per process/loop with SO_REUSEPORT; the kernel spreads clients.
    case reuseport
    /// Multi-reactor: one thread accepts and hands connections to the loops round-robin.
    case acceptor

    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

/// Killer K1: how a request's bytes reach the response.
public enum CopyMode: String, CaseIterable, Sendable {
    /// Read into one buffer, write from it.
    case direct
    /// Through two extra application buffers (request, then response) before the write.
    case staged
    /// splice(2) socket -> pipe -> socket: the bytes never enter user space (echo only).
    case splice
}

/// Killer K3: where per-request memory comes from.
public enum AllocMode: String, CaseIterable, Sendable {
    /// Pooled buffers, reused: no malloc per request in steady state.
    case pooled
    /// A fresh heap buffer per request, freed after the answer.
    case perRequest = "per-request"
}

/// Killer K4: how work reaches the pool's threads.
public enum QueueMode: String, CaseIterable, Sendable {
    /// One queue under one lock shared by every worker.
    case globalLock = "global-lock"
    /// One queue per worker; the loop deals requests round-robin.
    case perWorker = "per-worker"
}

/// Claim H1: what SIGPIPE does to the server.
public enum SigpipeMode: String, CaseIterable, Sendable {
    /// SIG_IGN: a write to a reset peer fails with EPIPE.
    case ignore
    /// The default action: the first such write kills the server.
    case `default`
}

/// Claim H2: who closes a connection first.
public enum CloseMode: String, CaseIterable, Sendable {
    /// The server closes only after the client has (the client holds TIME_WAIT).
    case clientFirst = "client-first"
    /// The server closes each connection after its first answer (the server holds TIME_WAIT).
    case serverFirst = "server-first"
}

/// Everything `muxlab serve` needs to start one server variant.
public struct ServerConfig: Sendable {
    public var model: ServerModel = .reactor
    public var io: IOMode = .epollET
    public var wire: WireProtocol = .echo
    public var listen = Endpoint(host: "127.0.0.1", port: 0)
    public var cpus: CPUList?
    public var numaNode: Int?
    public var backlog: Int32 = 4096
    public var reactor = ReactorOptions()
    /// Lower RLIMIT_NOFILE (soft) to this in the server only; nil raises it to the hard limit.
    public var fdLimit: Int?
    /// nil: the model's default (prefork: blocking with `--io blocking`, else shared-epoll; multi-reactor: acceptor).
    public var accept: AcceptMode?
    /// Loops for the multi-reactor models.
    public var reactors = 1
    /// Pool threads (reactor-pool, multi-reactor-pool) or processes (prefork); 0: the model's default.
    public var workers = 0
    /// CPU burnt per request, microseconds (claims C5, C9).
    public var computeMicros = 0
    /// Time a pool thread sleeps per request, microseconds: blocking work such as a database call (claim C9).
    public var blockMicros = 0
    public var copy: CopyMode = .direct
    public var alloc: AllocMode = .pooled
    public var queue: QueueMode = .globalLock
    public var sigpipe: SigpipeMode = .ignore
    public var close: CloseMode = .clientFirst
    /// Claim T1: each connection thread's stack (thread-per-connection); nil: `BlockingSession.stackBytes`
    /// (256 KiB), 0: glibc's default (`ThreadStack.glibcDefaultBytes`).
    public var threadStackBytes: Int?
    /// Claim L1: this share of connections (0-1), drawn per accepted connection, is heavy: each of its
    /// requests burns `heavyMicros` more CPU on the loop. The draw is blind to which loop it lands on.
    public var heavyShare = 0.0
    public var heavyMicros = 0

    public init() {}

    /// The stack in force for a connection's thread (0 means glibc's default, reported as its size).
    public var threadStackInForce: Int {
        guard let bytes = threadStackBytes else { return BlockingSession.stackBytes }
        return bytes == 0 ? ThreadStack.glibcDefaultBytes : bytes
    }

    /// The accept mode in force.
    public var acceptMode: AcceptMode {
        if let accept { return accept }
        switch model {
        case .prefork: return io == .blocking ? .blocking : .sharedEpoll
        case .multiReactor, .multiReactorPool: return .acceptor
        default: return .blocking
        }
    }

    /// Workers in force: the model's default when none was asked for.
    public var workerCount: Int {
        if workers > 0 { return workers }
        switch model {
        case .reactorWorker: return 1
        case .prefork, .reactorPool, .multiReactorPool: return 4
        default: return 0
        }
    }

    /// Refuses combinations the model cannot run, naming the value and what is allowed.
    public func validate() throws {
        guard model.ioModes.contains(io) else {
            throw ValueError("--model \(model.rawValue) runs on --io \(model.ioModes.map(\.rawValue).joined(separator: "|")), not \(io.rawValue)")
        }
        if let accept {
            let allowed: [AcceptMode]
            switch model {
            case .prefork: allowed = io == .blocking ? [.blocking, .reuseport]
                : io == .epollET || io == .epollLT ? [.sharedEpoll, .epollExclusive, .reuseport] : [.sharedEpoll, .reuseport]
            case .multiReactor, .multiReactorPool: allowed = io == .epollET || io == .epollLT
                ? [.acceptor, .reuseport, .sharedEpoll, .epollExclusive] : [.acceptor, .reuseport, .sharedEpoll]
            default: allowed = []
            }
            guard allowed.contains(accept) else {
                throw ValueError(allowed.isEmpty
                    ? "--accept applies to prefork, multi-reactor and multi-reactor-pool, not --model \(model.rawValue)"
                    : "--accept \(accept.rawValue) does not apply to --model \(model.rawValue) --io \(io.rawValue); allowed: \(allowed.map(\.rawValue).joined(separator: ", "))")
            }
        }
        if reactors != 1 && !model.hasReactors {
            throw ValueError("--reactors \(reactors) applies to multi-reactor and multi-reactor-pool only, not --model \(model.rawValue)")
        }
        let takesWorkers: [ServerModel] = [.prefork, .reactorWorker, .reactorPool, .multiReactorPool]
        if workers != 0 && !takesWorkers.contains(model) {
            throw ValueError("--workers \(workers) applies to \(takesWorkers.map(\.rawValue).joined(separator: ", ")), not --model \(model.rawValue)")
        }
        if model == .reactorWorker && workers > 1 {
            throw ValueError("--model reactor-worker has exactly one worker thread (--workers 1); use reactor-pool for \(workers)")
        }
        let readiness: [ServerModel] = [.reactor, .reactorThreadPerRequest, .reactorWorker, .reactorPool, .multiReactor, .multiReactorPool]
        if (copy != .direct || alloc != .pooled) && !readiness.contains(model) {
            throw ValueError("--copy and --alloc are killer toggles of the reactor models (\(readiness.map(\.rawValue).joined(separator: ", "))), not --model \(model.rawValue)")
        }
        if queue != .globalLock && !model.hasPool {
            throw ValueError("--queue applies to reactor-pool and multi-reactor-pool, not --model \(model.rawValue)")
        }
        if copy == .splice && wire != .echo {
            throw ValueError("--copy splice moves bytes socket to socket: it needs --protocol echo, not \(wire.rawValue)")
        }
        if threadStackBytes != nil && model != .threadPerConnection {
            throw ValueError("--thread-stack applies to thread-per-connection, not --model \(model.rawValue)")
        }
        if (heavyShare > 0) != (heavyMicros > 0) {
            throw ValueError("--heavy-share \(heavyShare) and --heavy-us \(heavyMicros) go together: a share above 0 of connections, each request of which burns the microseconds")
        }
        let computesOnLoop: [ServerModel] = [.reactor, .multiReactor]
        if heavyMicros > 0 && !computesOnLoop.contains(model) {
            throw ValueError("--heavy-us applies to the models that compute on their loops (\(computesOnLoop.map(\.rawValue).joined(separator: ", "))), not --model \(model.rawValue)")
        }
    }
}

/// Starts the server described by `config`, prints the ready line, serves until SIGTERM/SIGINT,
/// then prints its own counters (also on SIGUSR1, without stopping).
public enum Server {
    public static func run(_ config: ServerConfig) throws {
        try config.validate()
        if config.sigpipe == .ignore { signal(SIGPIPE, SIG_IGN) }
        if let cpus = config.cpus { try Placement.pin(cpus) }
        if let node = config.numaNode { try Placement.bindMemory(toNode: node) }
        let fdLimit: Int
        if let limit = config.fdLimit {
            try DescriptorLimit.setSoft(limit)
            fdLimit = limit
        } else {
            fdLimit = DescriptorLimit.raiseToHard()
        }
        let reusePort = config.acceptMode == .reuseport
        let (fd, port) = try Sockets.listen(on: config.listen, backlog: config.backlog, reusePort: reusePort)
        let context = ServerContext(config: config, listenFD: fd, port: port, capacity: fdLimit + 64)
        switch config.model {
        case .reactor:
            installStopHandlers()
            try runReactor(context)
        case .iterative: try IterativeServer.run(context)
        case .processPerConnection: try ProcessPerConnectionServer.run(context)
        case .threadPerConnection: try ThreadPerConnectionServer.run(context)
        case .prefork: try PreforkServer.run(context)
        case .reactorThreadPerRequest, .reactorWorker, .reactorPool: try PooledReactorServer.run(context)
        case .multiReactor, .multiReactorPool: try MultiReactorServer.run(context)
        case .proactor: try ProactorServer.run(context)
        }
    }

    /// Model 4 on the main thread (the stall watchdog watches this thread).
    static func runReactor(_ context: ServerContext) throws {
        try ReactorFactory.build(context.config, listenFD: context.listenFD, capacity: context.capacity,
                                 options: context.config.reactor, ServeOnMainThread(context: context))
    }

    struct ServeOnMainThread: ReactorUse {
        let context: ServerContext
        func use<P: Poller>(_ reactor: Reactor<P>) throws { try Server.serve(reactor, context) }
    }

    static func serve<P: Poller>(_ reactor: Reactor<P>, _ context: ServerContext) throws {
        // A driver reads the counters itself at its windows' edges: the loop publishes every turn.
        if SharedCounters.driverReads { reactor.publish = (try SharedCounters(), 0) }
        ServerOutput.ready(readyLine(context.config, port: context.port))
        try reactor.run()
        ServerOutput.stats(reactor.statsLine)
    }

    /// `ready port=<port> pid=<pid>` plus what is actually in force.
    public static func readyLine(_ config: ServerConfig, port: UInt16, extra: String = "") -> String {
        let node = Placement.boundNode.map(String.init) ?? "none"
        var line = "ready port=\(port) pid=\(getpid()) model=\(config.model.rawValue) io=\(config.io.rawValue) protocol=\(config.wire.rawValue) cpus=\(Placement.affinity()) numa_node=\(node) fd_limit=\(DescriptorLimit.current().soft) epollout=\(config.reactor.writeInterest.rawValue) et_read=\(config.reactor.edgeRead.rawValue) read_size=\(config.reactor.readSize) blocking=\(config.reactor.blockingSockets) emfile=\(config.reactor.emfile.rawValue) idle_timeout=\(config.reactor.idleTimeout.map { "\($0)" } ?? "off")"
        let sharesListener = [ServerModel.prefork, .multiReactor, .multiReactorPool].contains(config.model)
        line += " accept=\(sharesListener ? config.acceptMode.rawValue : "none") reactors=\(config.reactors) workers=\(config.workerCount) compute_us=\(config.computeMicros) block_us=\(config.blockMicros) copy=\(config.copy.rawValue) alloc=\(config.alloc.rawValue) queue=\(config.queue.rawValue) sigpipe=\(config.sigpipe.rawValue) close=\(config.close.rawValue)"
        if config.model == .threadPerConnection { line += " thread_stack=\(config.threadStackInForce)" }
        if config.heavyMicros > 0 { line += " heavy_share=\(config.heavyShare) heavy_us=\(config.heavyMicros)" }
        if !extra.isEmpty { line += " " + extra }
        return line
    }

    static func installStopHandlers() {
        let handler: @convention(c) (Int32) -> Void = { _ in reactorStopRequested = 1; wakeReactor() }
        signal(SIGTERM, handler)
        signal(SIGINT, handler)
        let stats: @convention(c) (Int32) -> Void = { _ in reactorStatsRequested = 1; wakeReactor() }
        signal(SIGUSR1, stats)
    }
}

/// What every model's entry point gets: the validated config and the listening socket.
public struct ServerContext {
    public let config: ServerConfig
    /// Bound and listening (with SO_REUSEPORT when the accept mode is reuseport, so more can join).
    public let listenFD: Int32
    public let port: UInt16
    /// Highest descriptor + 1 to expect (the descriptor limit plus slack): connection tables' size.
    public let capacity: Int
}
