import CShims

/// How a server is built: the concurrency model, numbered as in the seed's list of ten.
///
/// The one definition of the models and of what each accepts: `muxlab serve` validates its flags with it,
/// the workload loader validates cells with it (so a workload that loads runs), and the claim rules read
/// the variant in force through `ServerVariant`.
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
    /// Models that take `--workers`: prefork's processes, the pools' threads, reactor-worker's one thread.
    public var takesWorkers: Bool { [.prefork, .reactorWorker, .reactorPool, .multiReactorPool].contains(self) }
    /// Models whose processes or loops share the listening socket (`--accept`).
    public var sharesListener: Bool { [.prefork, .multiReactor, .multiReactorPool].contains(self) }
    /// The readiness-loop models: the killer toggles `--copy` and `--alloc` apply to them.
    public var isReadinessLoop: Bool {
        [.reactor, .reactorThreadPerRequest, .reactorWorker, .reactorPool, .multiReactor, .multiReactorPool].contains(self)
    }
    /// Models that compute on their loops (`--heavy-us`, claim L1).
    public var computesOnLoop: Bool { self == .reactor || self == .multiReactor }

    /// Workers when none are asked for (`--workers 0`): prefork's processes and the pools' threads.
    public var defaultWorkers: Int {
        switch self {
        case .reactorWorker: return 1
        case .prefork, .reactorPool, .multiReactorPool: return 4
        default: return 0
        }
    }

    /// Processes the server runs as: prefork's workers, else one.
    public func processes(workers: Int) -> Int {
        self == .prefork ? (workers > 0 ? workers : defaultWorkers) : 1
    }

    /// The accept mode when none is asked for.
    public func defaultAccept(io: IOMode) -> AcceptMode {
        switch self {
        case .prefork: return io == .blocking ? .blocking : .sharedEpoll
        case .multiReactor, .multiReactorPool: return .acceptor
        default: return .blocking
        }
    }

    /// The accept modes the model takes on `io`; empty: `--accept` does not apply.
    public func acceptModes(io: IOMode) -> [AcceptMode] {
        let epoll = io == .epollET || io == .epollLT
        switch self {
        case .prefork:
            return io == .blocking ? [.blocking, .reuseport] : epoll ? [.sharedEpoll, .epollExclusive, .reuseport] : [.sharedEpoll, .reuseport]
        case .multiReactor, .multiReactorPool:
            return epoll ? [.acceptor, .reuseport, .sharedEpoll, .epollExclusive] : [.acceptor, .reuseport, .sharedEpoll]
        default: return []
        }
    }
}

/// select's fd_set holds descriptors 0 ..< this: glibc's FD_SETSIZE, from its header.
public let fdSetSize = Int(MUX_FD_SETSIZE)
