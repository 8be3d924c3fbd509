#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// The reactor's variants: each option changes one rule of event-loop hygiene,
/// so the E claims can show what breaking it costs. Defaults are the correct rules.
public struct ReactorOptions: Sendable {
    /// When write interest is registered.
    public enum WriteInterest: String, CaseIterable, Sendable {
        /// From accept on, for good: level-triggered back-ends then report every idle socket (claim E1).
        case always
        /// Only while output waits in the queue.
        case onDemand = "on-demand"
    }
    /// How an edge-triggered readiness report is consumed.
    public enum EdgeRead: String, CaseIterable, Sendable {
        /// Read until EAGAIN, as edge-triggered epoll requires.
        case untilEAGAIN = "until-eagain"
        /// Until a read returns fewer bytes than asked: the socket was empty at that moment, and bytes
        /// arriving later raise a new edge, so the EAGAIN read is saved (nginx does the same). A report
        /// that carries a hang-up still reads on to the end of stream.
        case untilShort = "until-short"
        /// One read per report: bytes left in the socket wait for an edge that never comes (claim E2).
        case once
    }
    /// What the loop does when accept fails with EMFILE.
    public enum EMFILEPolicy: String, CaseIterable, Sendable {
        /// Close a reserved descriptor, accept the client, close it, re-reserve (claim E4).
        case reserveFD = "reserve-fd"
        /// Nothing: LT reports the listener again at once (a busy loop), ET stays silent.
        case none
    }

    public var writeInterest: WriteInterest = .onDemand
    public var edgeRead: EdgeRead = .untilEAGAIN
    public var emfile: EMFILEPolicy = .reserveFD
    /// Leave accepted sockets blocking (claim E3: ET's read-until-EAGAIN then blocks the loop).
    public var blockingSockets = false
    /// Bytes asked for per read(2), at most the buffer size.
    public var readSize = 64 * 1024
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

    public init() {}
}

/// The killer toggles (K1, K3, H2) on the path from a request to its answer. The defaults
/// are the fast path: one read buffer, pooled memory, the client closes first.
public struct RequestPath: Sendable {
    public var copy: CopyMode = .direct
    public var alloc: AllocMode = .pooled
    public var close: CloseMode = .clientFirst
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
