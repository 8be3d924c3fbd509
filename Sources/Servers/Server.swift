#if canImport(Glibc)
import Glibc
#endif
import Kernel

/// How a server is built: the concurrency model.
public enum ServerModel: String, CaseIterable, Sendable {
    /// Model 4: one thread, one readiness loop over non-blocking sockets.
    case reactor

    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
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

    public init() {}
}

/// Starts the server described by `config`, prints the ready line, serves until SIGTERM/SIGINT,
/// then prints its own counters (also on SIGUSR1, without stopping).
public enum Server {
    public static func run(_ config: ServerConfig) throws {
        signal(SIGPIPE, SIG_IGN)
        installStopHandlers()
        if let cpus = config.cpus { try Placement.pin(cpus) }
        if let node = config.numaNode { try Placement.bindMemory(toNode: node) }
        let fdLimit: Int
        if let limit = config.fdLimit {
            try DescriptorLimit.setSoft(limit)
            fdLimit = limit
        } else {
            fdLimit = DescriptorLimit.raiseToHard()
        }
        let (fd, port) = try Sockets.listen(on: config.listen, backlog: config.backlog)
        let capacity = fdLimit + 64
        switch (config.model, config.io) {
        case (.reactor, .select):
            try serve(Reactor(poller: SelectPoller(), listenFD: fd, wire: config.wire, capacity: capacity, options: config.reactor), config, port)
        case (.reactor, .poll):
            try serve(Reactor(poller: PollPoller(capacity: capacity), listenFD: fd, wire: config.wire, capacity: capacity, options: config.reactor), config, port)
        case (.reactor, .epollLT):
            try serve(Reactor(poller: EpollPoller(edgeTriggered: false), listenFD: fd, wire: config.wire, capacity: capacity, options: config.reactor), config, port)
        case (.reactor, .epollET):
            try serve(Reactor(poller: EpollPoller(edgeTriggered: true), listenFD: fd, wire: config.wire, capacity: capacity, options: config.reactor), config, port)
        case (.reactor, .ioUring):
            throw ValueError("--io io_uring needs a completion-based model (the proactor); --model reactor takes: select, poll, epoll-lt, epoll-et")
        }
    }

    static func serve<P: Poller>(_ reactor: Reactor<P>, _ config: ServerConfig, _ port: UInt16) throws {
        writeLine(readyLine(config, port: port))
        try reactor.run()
        writeLine(reactor.statsLine)
    }

    /// `ready port=<port> pid=<pid>` plus what is actually in force.
    static func readyLine(_ config: ServerConfig, port: UInt16) -> String {
        let node = Placement.boundNode.map(String.init) ?? "none"
        return "ready port=\(port) pid=\(getpid()) model=\(config.model.rawValue) io=\(config.io.rawValue) protocol=\(config.wire.rawValue) cpus=\(Placement.affinity()) numa_node=\(node) fd_limit=\(DescriptorLimit.current().soft) epollout=\(config.reactor.writeInterest.rawValue) et_read=\(config.reactor.edgeRead.rawValue) read_size=\(config.reactor.readSize) blocking=\(config.reactor.blockingSockets) emfile=\(config.reactor.emfile.rawValue) idle_timeout=\(config.reactor.idleTimeout.map { "\($0)" } ?? "off")"
    }

    static func installStopHandlers() {
        let handler: @convention(c) (Int32) -> Void = { _ in reactorStopRequested = 1; wakeReactor() }
        signal(SIGTERM, handler)
        signal(SIGINT, handler)
        let stats: @convention(c) (Int32) -> Void = { _ in reactorStatsRequested = 1; wakeReactor() }
        signal(SIGUSR1, stats)
    }
}
