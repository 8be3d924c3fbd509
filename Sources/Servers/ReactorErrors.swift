#if canImport(Glibc)
import Glibc
#endif
import Kernel

/// Failed calls on a connection, sorted as swift-nio and muduo sort them. The peer's or the network's
/// trouble (a reset, a broken pipe, a timeout) closes that connection and is counted by errno in the
/// stats line; a programmer error (a descriptor, buffer or argument the loop got wrong on a call that
/// cannot fail otherwise) traps with the call's name, so a bug never reads as a client that went away.
public enum ConnectionErrno {
    /// EBADF, EFAULT, ENOTSOCK, EINVAL: the loop's own mistake on read, write, splice or epoll_ctl.
    public static func isProgrammerError(_ e: Int32) -> Bool {
        e == EBADF || e == EFAULT || e == ENOTSOCK || e == EINVAL
    }
}

/// Connections closed because a call on them failed for the peer's reason, by errno.
public struct PeerErrors: Equatable, Sendable {
    /// ECONNRESET: the peer reset the connection (closed with unread data, or SO_LINGER 0).
    public var resets: UInt64 = 0
    /// EPIPE: written to after the peer closed its end.
    public var brokenPipes: UInt64 = 0
    /// ETIMEDOUT: the kernel gave up retransmitting or keep-alive probes.
    public var timeouts: UInt64 = 0
    /// Any other errno that is not a programmer error (ECONNABORTED, EHOSTUNREACH, ENOTCONN, ENOBUFS ...).
    public var other: UInt64 = 0

    public init() {}

    public mutating func count(_ e: Int32) {
        switch e {
        case ECONNRESET: resets &+= 1
        case EPIPE: brokenPipes &+= 1
        case ETIMEDOUT: timeouts &+= 1
        default: other &+= 1
        }
    }

    /// A failed call on connection `fd`: traps on a programmer error, naming the call and the descriptor;
    /// counts the peer's errno otherwise (the caller then closes the connection).
    public mutating func record(call: String, errno e: Int32, fd: Int32) {
        if ConnectionErrno.isProgrammerError(e) {
            fatalError("muxlab serve: \(SystemError(call, errno: e)) on connection descriptor \(fd): a programmer error, not the peer's")
        }
        count(e)
    }

    /// `peer_resets=0 peer_broken_pipes=0 peer_timeouts=0 peer_other_errors=0` for the stats line.
    public var statsFields: String {
        "peer_resets=\(resets) peer_broken_pipes=\(brokenPipes) peer_timeouts=\(timeouts) peer_other_errors=\(other)"
    }
}

extension Reactor {
    /// A call on connection `fd` failed: trap on a programmer error, else count the errno and close.
    @inline(never)
    func failed(_ fd: Int32, _ error: Error) {
        guard let e = error as? SystemError else {
            stats.peerErrors.other &+= 1
            close(fd)
            return
        }
        failed(fd, call: e.call, errno: e.errno)
    }

    /// The same for a call made without the wrapper (splice), from its errno.
    @inline(never)
    func failed(_ fd: Int32, call: String, errno e: Int32) {
        stats.peerErrors.record(call: call, errno: e, fd: fd)
        close(fd)
    }
}
