#if canImport(Glibc)
import Glibc
#endif
import Kernel
import Vocabulary

/// Everything `muxlab serve` needs to start one server variant.
public struct ServerConfig: Sendable {
    public var model = ServerVariant.standard.model
    public var io = ServerVariant.standard.io
    public var wire = ServerVariant.standard.wire
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
    public var copy = ServerVariant.standard.copy
    public var alloc = ServerVariant.standard.alloc
    public var queue = ServerVariant.standard.queue
    public var sigpipe = ServerVariant.standard.sigpipe
    public var close = ServerVariant.standard.close
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

    /// The variant as asked for: what the vocabulary's combination rules judge.
    public var asked: ServerVariant {
        var v = ServerVariant(model: model, io: io, wire: wire)
        v.accept = accept
        v.reactors = reactors
        v.workers = workers
        v.copy = copy
        v.alloc = alloc
        v.queue = queue
        v.sigpipe = sigpipe
        v.close = close
        v.writeInterest = reactor.writeInterest
        v.edgeRead = reactor.edgeRead
        v.emfile = reactor.emfile
        v.blockingSockets = reactor.blockingSockets
        v.readSize = reactor.readSize
        v.idleTimeout = reactor.idleTimeout
        v.fdLimit = fdLimit
        v.computeMicros = computeMicros
        v.blockMicros = blockMicros
        v.threadStack = threadStackBytes
        v.heavyShare = heavyShare
        v.heavyMicros = heavyMicros
        return v
    }

    /// The variant in force, as the ready message reports it: defaults resolved, the descriptor limit and
    /// thread stack as they are in the process.
    public var inForce: ServerVariant {
        asked.inForce(threadStack: threadStackInForce, fdLimit: DescriptorLimit.current().soft)
    }

    /// The accept mode in force.
    public var acceptMode: AcceptMode { asked.acceptInForce }

    /// Workers in force: the model's default when none was asked for.
    public var workerCount: Int { asked.workersInForce }

    /// Refuses combinations the model cannot run, naming the value and what is allowed (the vocabulary's rules).
    public func validate() throws {
        if let problem = asked.problems(ServerVariant.flagSpelling).first { throw ValueError(problem.text) }
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

    /// `ready port=<port> pid=<pid>` plus what is actually in force: the placement and the variant's fields.
    public static func readyLine(_ config: ServerConfig, port: UInt16, extra: String = "") -> String {
        let node = Placement.boundNode.map(String.init) ?? "none"
        var line = "ready port=\(port) pid=\(getpid()) cpus=\(Placement.affinity()) numa_node=\(node) "
        line += config.inForce.readyFields.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
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
