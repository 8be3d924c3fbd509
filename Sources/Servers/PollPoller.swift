#if canImport(Glibc)
import Glibc
#endif
import Kernel

/// poll(2): an array of pollfd passed in and out whole on every call, and
/// scanned whole for revents afterwards. Level-triggered (claim M7).
public final class PollPoller: Poller {
    public let edgeTriggered = false
    public let maxDescriptor: Int32? = nil
    public private(set) var stats = PollerStats()

    private let capacity: Int
    private let fds: UnsafeMutablePointer<pollfd>
    /// fd -> index in `fds`, -1 when not watched.
    private let slot: UnsafeMutablePointer<Int32>
    private var count = 0

    public init(capacity: Int) {
        self.capacity = max(capacity, 16)
        fds = .allocate(capacity: self.capacity)
        slot = .allocate(capacity: self.capacity)
        slot.initialize(repeating: -1, count: self.capacity)
    }

    deinit {
        fds.deallocate()
        slot.deallocate()
    }

    private static func mask(_ interest: Interest) -> Int16 {
        var m: Int16 = 0
        if interest.contains(.read) { m |= Int16(POLLIN) }
        if interest.contains(.write) { m |= Int16(POLLOUT) }
        return m
    }

    public func add(_ fd: Int32, _ interest: Interest) throws {
        guard fd >= 0, Int(fd) < capacity else { throw SystemError("poll: descriptor \(fd) beyond table of \(capacity)", errno: EMFILE) }
        if slot[Int(fd)] >= 0 { return try modify(fd, interest) }
        fds[count] = pollfd(fd: fd, events: PollPoller.mask(interest), revents: 0)
        slot[Int(fd)] = Int32(count)
        count += 1
    }

    public func modify(_ fd: Int32, _ interest: Interest) throws {
        guard fd >= 0, Int(fd) < capacity, slot[Int(fd)] >= 0 else { return try add(fd, interest) }
        fds[Int(slot[Int(fd)])].events = PollPoller.mask(interest)
    }

    public func remove(_ fd: Int32) throws {
        guard fd >= 0, Int(fd) < capacity else { return }
        let i = Int(slot[Int(fd)])
        guard i >= 0 else { return }
        count -= 1
        if i != count {
            fds[i] = fds[count]
            slot[Int(fds[i].fd)] = Int32(i)
        }
        slot[Int(fd)] = -1
    }

    public func wait(_ events: UnsafeMutableBufferPointer<ReadyEvent>, timeoutMs: Int32) throws -> Int {
        stats.waits &+= 1
        let r = Glibc.poll(fds, nfds_t(count), timeoutMs)
        if r < 0 {
            if errno == EINTR { return 0 }
            throw SystemError("poll", errno: errno)
        }
        if r == 0 { return 0 }
        var n = 0
        var i = 0
        let ready = Int(r)
        // Scan the whole array, as every poll user must, but stop once all ready ones are found.
        while i < count && n < ready && n < events.count {
            let re = fds[i].revents
            if re != 0 {
                let failed = re & Int16(POLLERR | POLLHUP | POLLNVAL) != 0
                events[n] = ReadyEvent(fd: fds[i].fd, readable: re & Int16(POLLIN) != 0 || failed,
                                       writable: re & Int16(POLLOUT) != 0, failed: failed)
                n += 1
            }
            i += 1
        }
        stats.scanned &+= UInt64(i)
        stats.events &+= UInt64(n)
        return n
    }

    public func close() {}
}
