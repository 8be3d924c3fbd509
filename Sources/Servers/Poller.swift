import Kernel
import Vocabulary

// How a server waits for I/O (`IOMode`, in Vocabulary): a readiness multiplexer (select, poll, epoll LT
// or ET), plain blocking calls (models 1-3), or io_uring completions (the proactor).

/// What a descriptor is waited for.
public struct Interest: OptionSet, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let read = Interest(rawValue: 1)
    public static let write = Interest(rawValue: 2)
}

/// One ready descriptor as a back-end reports it.
public struct ReadyEvent: Equatable {
    public var fd: Int32
    public var readable: Bool
    public var writable: Bool
    /// Error or hang-up: the reactor reads to find out which.
    public var failed: Bool
    /// The peer shut down its side (EPOLLRDHUP) or failed: the end of stream waits behind any bytes,
    /// so a reader that stops at a short read must read on to meet it.
    public var hungUp: Bool

    public init(fd: Int32, readable: Bool, writable: Bool, failed: Bool, hungUp: Bool = false) {
        self.fd = fd
        self.readable = readable
        self.writable = writable
        self.failed = failed
        self.hungUp = hungUp || failed
    }
}

/// User-space counters each back-end keeps (claim M3's rescans, the probe cross-check).
public struct PollerStats: Equatable {
    public var waits: UInt64 = 0
    /// Descriptors examined in user space after the waits returned.
    public var scanned: UInt64 = 0
    public var events: UInt64 = 0
    public init() {}
}

/// A readiness back-end. One per file; edge- vs level-triggered is a mode of epoll.
public protocol Poller: AnyObject {
    /// True when readiness is reported once per edge: the reactor must drain to EAGAIN.
    var edgeTriggered: Bool { get }
    /// Highest descriptor the back-end can watch (select: FD_SETSIZE - 1), nil when unbounded.
    var maxDescriptor: Int32? { get }
    var stats: PollerStats { get }

    func add(_ fd: Int32, _ interest: Interest) throws
    /// The listening socket; `exclusive` asks for EPOLLEXCLUSIVE (epoll only, claim C3).
    func addListener(_ fd: Int32, exclusive: Bool) throws
    func modify(_ fd: Int32, _ interest: Interest) throws
    func remove(_ fd: Int32) throws
    /// Waits up to `timeoutMs` (-1: forever) and fills `events`; returns how many.
    /// A signal ends the wait early with 0 events.
    func wait(_ events: UnsafeMutableBufferPointer<ReadyEvent>, timeoutMs: Int32) throws -> Int
    func close()
}

extension Poller {
    public func addListener(_ fd: Int32, exclusive: Bool) throws {
        if exclusive { throw ValueError("EPOLLEXCLUSIVE needs an epoll back-end") }
        try add(fd, .read)
    }
}

/// Refusal of a descriptor a back-end cannot watch (claim M1).
public struct DescriptorOutOfRange: Error, CustomStringConvertible {
    public let fd: Int32
    public let limit: Int32
    public var description: String {
        "select can watch descriptors 0-\(limit - 1) only (FD_SETSIZE = \(limit)); descriptor \(fd) refused: use --io poll or epoll for more connections"
    }
}

/// The factory: one back-end per io mode, `capacity` = the highest descriptor + 1 to expect.
public func makePoller(_ mode: IOMode, capacity: Int) throws -> any Poller {
    switch mode {
    case .select: return SelectPoller()
    case .poll: return PollPoller(capacity: capacity)
    case .epollLT: return try EpollPoller(edgeTriggered: false)
    case .epollET: return try EpollPoller(edgeTriggered: true)
    case .ioUring: throw ValueError("--io io_uring is a proactor, not a readiness poller: use --model proactor")
    case .blocking: throw ValueError("--io blocking has no poller: it is for iterative, process-per-connection, thread-per-connection and prefork")
    }
}
