#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// epoll(7): the interest set lives in the kernel; epoll_wait copies out only
/// the ready events (12 bytes each, claim M6). Level- or edge-triggered.
public final class EpollPoller: Poller {
    public let edgeTriggered: Bool
    public let maxDescriptor: Int32? = nil
    public private(set) var stats = PollerStats()

    private let epfd: Int32
    private let buffer: UnsafeMutablePointer<mux_epoll_event>
    private let bufferSize: Int32 = 1024

    public init(edgeTriggered: Bool) throws {
        self.edgeTriggered = edgeTriggered
        epfd = try syscallOrThrow("epoll_create1") { mux_epoll_create() }
        buffer = mux_epoll_events_alloc(bufferSize)
    }

    deinit {
        mux_epoll_events_free(buffer)
    }

    private func flags(_ interest: Interest) -> UInt32 {
        var f: UInt32 = 0
        if interest.contains(.read) { f |= MUX_EPOLLIN | MUX_EPOLLRDHUP }
        if interest.contains(.write) { f |= MUX_EPOLLOUT }
        if edgeTriggered { f |= MUX_EPOLLET }
        return f
    }

    public func add(_ fd: Int32, _ interest: Interest) throws {
        try syscallOrThrow("epoll_ctl(ADD)") { mux_epoll_ctl(epfd, MUX_EPOLL_CTL_ADD, fd, flags(interest)) }
    }

    /// A listener shared with other processes, registered with EPOLLEXCLUSIVE when asked
    /// (claim C3: then one waiter, not all, is woken per connection).
    public func addListener(_ fd: Int32, exclusive: Bool) throws {
        // EPOLLEXCLUSIVE allows only IN/OUT/ERR/HUP/WAKEUP/ET beside it (EPOLLRDHUP: EINVAL); a listener needs IN.
        let f = exclusive ? MUX_EPOLLIN | (edgeTriggered ? MUX_EPOLLET : 0) | MUX_EPOLLEXCLUSIVE : flags(.read)
        try syscallOrThrow("epoll_ctl(ADD, EPOLLEXCLUSIVE)") { mux_epoll_ctl(epfd, MUX_EPOLL_CTL_ADD, fd, f) }
    }

    public func modify(_ fd: Int32, _ interest: Interest) throws {
        try syscallOrThrow("epoll_ctl(MOD)") { mux_epoll_ctl(epfd, MUX_EPOLL_CTL_MOD, fd, flags(interest)) }
    }

    public func remove(_ fd: Int32) throws {
        try syscallOrThrow("epoll_ctl(DEL)") { mux_epoll_ctl(epfd, MUX_EPOLL_CTL_DEL, fd, 0) }
    }

    public func wait(_ events: UnsafeMutableBufferPointer<ReadyEvent>, timeoutMs: Int32) throws -> Int {
        stats.waits &+= 1
        let r = mux_epoll_wait(epfd, buffer, min(bufferSize, Int32(events.count)), timeoutMs)
        if r < 0 {
            if errno == EINTR { return 0 }
            throw SystemError("epoll_wait", errno: errno)
        }
        let n = Int(r)
        for i in 0..<n {
            let f = mux_epoll_event_flags(buffer, Int32(i))
            let failed = f & (MUX_EPOLLERR | MUX_EPOLLHUP) != 0
            events[i] = ReadyEvent(fd: mux_epoll_event_fd(buffer, Int32(i)),
                                   readable: f & (MUX_EPOLLIN | MUX_EPOLLRDHUP) != 0 || failed,
                                   writable: f & MUX_EPOLLOUT != 0, failed: failed,
                                   hungUp: f & MUX_EPOLLRDHUP != 0)
        }
        stats.scanned &+= UInt64(n)
        stats.events &+= UInt64(n)
        return n
    }

    public func close() {
        FD.close(epfd)
    }
}
