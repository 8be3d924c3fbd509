#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel
import Vocabulary

/// The reactor's variants: each option changes one rule of event-loop hygiene,
/// so the E claims can show what breaking it costs. Defaults are the correct rules.
public struct ReactorOptions: Sendable {
    // The modes' names and meanings are the vocabulary's (claims E1, E2, E4).
    public typealias WriteInterest = Vocabulary.WriteInterest
    public typealias EdgeRead = Vocabulary.EdgeRead
    public typealias EMFILEPolicy = Vocabulary.EMFILEPolicy

    public var writeInterest = ServerVariant.standard.writeInterest
    public var edgeRead = ServerVariant.standard.edgeRead
    public var emfile = ServerVariant.standard.emfile
    /// Leave accepted sockets blocking (claim E3: ET's read-until-EAGAIN then blocks the loop).
    public var blockingSockets = ServerVariant.standard.blockingSockets
    /// Bytes asked for per read(2), at most the buffer size.
    public var readSize = ServerVariant.standard.readSize
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
    /// A test's fault (hidden `--fault-bad-descriptor`): each accepted connection's descriptor number is made
    /// to name a write-only pipe end while epoll keeps watching the socket, so the loop's first read(2) on it
    /// fails with EBADF, the programmer error that must trap naming the call, never close as a peer's error.
    public var faultBadDescriptor = false

    public init() {}
}

/// The killer toggles (K1, K3, H2) on the path from a request to its answer. The defaults
/// are the fast path: one read buffer, pooled memory, the client closes first.
public struct RequestPath: Sendable {
    public var copy = ServerVariant.standard.copy
    public var alloc = ServerVariant.standard.alloc
    public var close = ServerVariant.standard.close
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
