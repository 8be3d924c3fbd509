#if canImport(Glibc)
import Glibc
#endif
import Kernel
import Servers
import Testing
import Vocabulary

/// A connected socketpair, closed at the end of the test.
func withSocketPair(_ body: (Int32, Int32) throws -> Void) throws {
    var fds: [Int32] = [0, 0]
    #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0)
    defer { close(fds[0]); close(fds[1]) }
    try body(fds[0], fds[1])
}

func waitOnce(_ poller: any Poller, timeoutMs: Int32 = 50) throws -> [ReadyEvent] {
    let buf = UnsafeMutableBufferPointer<ReadyEvent>.allocate(capacity: 64)
    defer { buf.deallocate() }
    let n = try poller.wait(buf, timeoutMs: timeoutMs)
    return Array(buf[0..<n])
}

@Suite("Poller back-ends on socketpairs")
struct PollerTests {
    static let levelTriggered: [IOMode] = [.select, .poll, .epollLT]

    @Test("level-triggered back-ends report an unread ready descriptor again (M7 for poll)", arguments: levelTriggered)
    func levelTriggeredReportsAgain(mode: IOMode) throws {
        try withSocketPair { a, b in
            let poller = try makePoller(mode, capacity: 64)
            defer { poller.close() }
            try poller.add(a, .read)
            #expect(try waitOnce(poller).isEmpty)
            #expect(write(b, "x", 1) == 1)
            let first = try waitOnce(poller)
            #expect(first == [ReadyEvent(fd: a, readable: true, writable: false, failed: false)])
            // Nothing read: the next wait must report it again.
            let second = try waitOnce(poller)
            #expect(second.map(\.fd) == [a])
            #expect(poller.stats.waits == 3)
        }
    }

    @Test("edge-triggered epoll reports an unread descriptor once, and again only on new data")
    func edgeTriggeredReportsOnce() throws {
        try withSocketPair { a, b in
            let poller = try makePoller(.epollET, capacity: 64)
            defer { poller.close() }
            #expect(poller.edgeTriggered)
            try poller.add(a, .read)
            #expect(write(b, "x", 1) == 1)
            #expect(try waitOnce(poller).map(\.fd) == [a])
            #expect(try waitOnce(poller).isEmpty)
            #expect(write(b, "y", 1) == 1)
            #expect(try waitOnce(poller).map(\.fd) == [a])
        }
    }

    @Test("write interest reports writability; removing it stops the reports", arguments: [IOMode.select, .poll, .epollLT])
    func writeInterest(mode: IOMode) throws {
        try withSocketPair { a, _ in
            let poller = try makePoller(mode, capacity: 64)
            defer { poller.close() }
            try poller.add(a, [.read, .write])
            #expect(try waitOnce(poller) == [ReadyEvent(fd: a, readable: false, writable: true, failed: false)])
            try poller.modify(a, .read)
            #expect(try waitOnce(poller).isEmpty)
            try poller.remove(a)
            #expect(try waitOnce(poller).isEmpty)
        }
    }

    @Test("select refuses a descriptor at or past FD_SETSIZE with an error naming the limit (M1)")
    func selectRefusesPastFDSetSize() throws {
        let poller = SelectPoller()
        #expect(poller.maxDescriptor == 1023)
        #expect(throws: DescriptorOutOfRange.self) { try poller.add(1024, .read) }
        do {
            try poller.add(5000, .read)
        } catch let e as DescriptorOutOfRange {
            #expect(e.description.contains("FD_SETSIZE = 1024"))
            #expect(e.description.contains("5000"))
        }
    }

    @Test("select and poll scan every watched descriptor per wake-up (M3); epoll only the ready ones")
    func scanCost() throws {
        var pairs: [(Int32, Int32)] = []
        defer { for (a, b) in pairs { close(a); close(b) } }
        for _ in 0..<50 {
            var fds: [Int32] = [0, 0]
            #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
            pairs.append((fds[0], fds[1]))
        }
        for mode in [IOMode.select, .poll, .epollLT] {
            let poller = try makePoller(mode, capacity: 4096)
            defer { poller.close() }
            for (a, _) in pairs { try poller.add(a, .read) }
            // The last descriptor ready: select and poll must walk past all the idle ones to find it.
            let (last, peer) = pairs[pairs.count - 1]
            #expect(write(peer, "x", 1) == 1)
            #expect(try waitOnce(poller).map(\.fd) == [last])
            var byte: UInt8 = 0
            #expect(read(last, &byte, 1) == 1)
            if mode == .epollLT {
                #expect(poller.stats.scanned == 1)
            } else {
                #expect(poller.stats.scanned >= 50)
            }
        }
    }

    @Test("io_uring is refused as a readiness back-end with a message naming the proactor")
    func ioUringIsNotAPoller() {
        #expect(throws: ValueError.self) { try makePoller(.ioUring, capacity: 16) }
    }
}
