/// The modes a server variant is made of, each with the names `muxlab serve`, workload files, the ready
/// message and results.csv spell it by (the raw values). Defaults are in `ServerVariant`.

/// The I/O back-end.
public enum IOMode: String, CaseIterable, Sendable {
    case blocking
    case select
    case poll
    case epollLT = "epoll-lt"
    case epollET = "epoll-et"
    case ioUring = "io_uring"

    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// epoll, level- or edge-triggered.
    public var isEpoll: Bool { self == .epollLT || self == .epollET }
    /// select and poll: the whole interest set crosses into the kernel and is scanned on every call (M2, M3).
    public var scansInterestSet: Bool { self == .select || self == .poll }
}

/// What travels on a connection.
public enum WireProtocol: String, CaseIterable, Codable, Sendable {
    /// The response is every byte of the request, back.
    case echo
    /// HTTP/1.1 keep-alive: each request (ended by an empty line) gets one fixed 200 response.
    case http

    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
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

/// Claim E1: when write interest is registered.
public enum WriteInterest: String, CaseIterable, Sendable {
    /// From accept on, for good: level-triggered back-ends then report every idle socket.
    case always
    /// Only while output waits in the queue.
    case onDemand = "on-demand"
}

/// Claim E2: how an edge-triggered readiness report is consumed.
public enum EdgeRead: String, CaseIterable, Sendable {
    /// Read until EAGAIN, as edge-triggered epoll requires.
    case untilEAGAIN = "until-eagain"
    /// Until a read returns fewer bytes than asked: the socket was empty at that moment, and bytes
    /// arriving later raise a new edge, so the EAGAIN read is saved (nginx does the same). A report
    /// that carries a hang-up still reads on to the end of stream.
    case untilShort = "until-short"
    /// One read per report: bytes left in the socket wait for an edge that never comes.
    case once
}

/// Claim E4: what the loop does when accept fails with EMFILE.
public enum EMFILEPolicy: String, CaseIterable, Sendable {
    /// Close a reserved descriptor, accept the client, close it, re-reserve.
    case reserveFD = "reserve-fd"
    /// Nothing: LT reports the listener again at once (a busy loop), ET stays silent.
    case none
}
