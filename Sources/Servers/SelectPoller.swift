#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// select(2): the interest set lives in user space and is copied in and out on
/// every call; the result is found by scanning every descriptor up to the highest.
public final class SelectPoller: Poller {
    public let edgeTriggered = false
    public let maxDescriptor: Int32? = Int32(MUX_FD_SETSIZE) - 1
    public private(set) var stats = PollerStats()

    private let wantRead = UnsafeMutablePointer<fd_set>.allocate(capacity: 1)
    private let wantWrite = UnsafeMutablePointer<fd_set>.allocate(capacity: 1)
    private let readyRead = UnsafeMutablePointer<fd_set>.allocate(capacity: 1)
    private let readyWrite = UnsafeMutablePointer<fd_set>.allocate(capacity: 1)
    private var highest: Int32 = -1
    private var watched = [Bool](repeating: false, count: Int(MUX_FD_SETSIZE))

    public init() {
        mux_fd_zero(wantRead)
        mux_fd_zero(wantWrite)
    }

    deinit {
        wantRead.deallocate(); wantWrite.deallocate(); readyRead.deallocate(); readyWrite.deallocate()
    }

    public func add(_ fd: Int32, _ interest: Interest) throws {
        guard fd >= 0, fd < Int32(MUX_FD_SETSIZE) else { throw DescriptorOutOfRange(fd: fd, limit: Int32(MUX_FD_SETSIZE)) }
        watched[Int(fd)] = true
        if fd > highest { highest = fd }
        try modify(fd, interest)
    }

    public func modify(_ fd: Int32, _ interest: Interest) throws {
        guard fd >= 0, fd < Int32(MUX_FD_SETSIZE) else { throw DescriptorOutOfRange(fd: fd, limit: Int32(MUX_FD_SETSIZE)) }
        if interest.contains(.read) { mux_fd_set(fd, wantRead) } else { mux_fd_clr(fd, wantRead) }
        if interest.contains(.write) { mux_fd_set(fd, wantWrite) } else { mux_fd_clr(fd, wantWrite) }
    }

    public func remove(_ fd: Int32) throws {
        guard fd >= 0, fd < Int32(MUX_FD_SETSIZE) else { return }
        mux_fd_clr(fd, wantRead)
        mux_fd_clr(fd, wantWrite)
        watched[Int(fd)] = false
        while highest >= 0 && !watched[Int(highest)] { highest -= 1 }
    }

    public func wait(_ events: UnsafeMutableBufferPointer<ReadyEvent>, timeoutMs: Int32) throws -> Int {
        readyRead.pointee = wantRead.pointee
        readyWrite.pointee = wantWrite.pointee
        var tv = timeval(tv_sec: Int(timeoutMs / 1000), tv_usec: Int(timeoutMs % 1000) * 1000)
        let nfds = highest + 1
        stats.waits &+= 1
        let r = timeoutMs < 0
            ? Glibc.select(nfds, readyRead, readyWrite, nil, nil)
            : Glibc.select(nfds, readyRead, readyWrite, nil, &tv)
        if r < 0 {
            if errno == EINTR { return 0 }
            throw SystemError("select", errno: errno)
        }
        if r == 0 { return 0 }
        // The rescan claim M3 is about: every watched descriptor is examined.
        var n = 0
        var fd: Int32 = 0
        while fd < nfds && n < events.count {
            let rd = mux_fd_isset(fd, readyRead) != 0
            let wr = mux_fd_isset(fd, readyWrite) != 0
            if rd || wr {
                events[n] = ReadyEvent(fd: fd, readable: rd, writable: wr, failed: false)
                n += 1
            }
            fd += 1
        }
        stats.scanned &+= UInt64(fd)
        stats.events &+= UInt64(n)
        return n
    }

    public func close() {}
}
