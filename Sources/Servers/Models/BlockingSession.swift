#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel
import Vocabulary

/// One connection served start to end with blocking read(2) and write(2): the unit of work of
/// models 1-3. It owns one buffer, allocated when the session is made; serving requests
/// allocates nothing. Counts go to a `SharedCounters` slot, so threads and forked children can share it.
final class BlockingSession {
    /// A session needs little stack; the 8 MiB default would only inflate the address space per client.
    static let stackBytes = 256 << 10

    /// How models 1 and 2 start: stop signals blocked before any thread or child exists, the
    /// counters they all share, the work rate measured, and the listener blocking for accept(2).
    static func prepare(_ context: ServerContext) throws -> SharedCounters {
        try Supervisor.blockSignals()
        let counters = try SharedCounters()
        Work.calibrate()
        try Sockets.setNonBlocking(context.listenFD, false)
        return counters
    }

    static let bufferSize = 64 * 1024
    /// The counters the blocking models report in their `stats` line (the single reactor's keys).
    static let statsFields: [SharedCounters.Field] = [
        .accepted, .refused, .closed, .reads, .readsEAGAIN, .writes, .writesEAGAIN, .requests, .acceptEMFILE, .idleClosed, .bytesOut,
    ]

    /// Back-to-back copies of the HTTP response, so k pipelined answers leave in one write (read-only, shared).
    static let responses: (base: UnsafeRawPointer, length: Int, perBlock: Int) = {
        let one = HTTPResponse.bytes.count
        let perBlock = max(1, bufferSize / one)
        let block = UnsafeMutableRawPointer.allocate(byteCount: perBlock * one, alignment: 16)
        HTTPResponse.bytes.withUnsafeBytes { bytes in
            for i in 0..<perBlock { (block + i * one).copyMemory(from: bytes.baseAddress!, byteCount: one) }
        }
        return (UnsafeRawPointer(block), one, perBlock)
    }()

    let wire: WireProtocol
    let readSize: Int
    let computeMicros: Int
    /// Claim H2: the server closes right after its first answer, so it holds the TIME_WAIT.
    let closeAfterFirstAnswer: Bool
    /// Claim H3: SO_RCVTIMEO / SO_SNDTIMEO; a read or write that waits this long closes the connection.
    let idleTimeout: timeval?
    let counters: SharedCounters
    /// Where this session counts; a forked child moves to its own.
    var slot: Int
    let buffer: UnsafeMutableRawPointer

    init(config: ServerConfig, counters: SharedCounters, slot: Int) {
        wire = config.wire
        readSize = max(1, min(config.reactor.readSize, Self.bufferSize))
        computeMicros = config.computeMicros
        closeAfterFirstAnswer = config.close == .serverFirst
        idleTimeout = config.reactor.idleTimeout.flatMap { t in
            guard t > 0 else { return nil }
            let micros = Int((t * 1e6).rounded(.up))
            return timeval(tv_sec: micros / 1_000_000, tv_usec: micros % 1_000_000)
        }
        self.counters = counters
        self.slot = slot
        buffer = .allocate(byteCount: Self.bufferSize, alignment: 16)
        _ = Self.responses  // build the shared answers now, not on a client's first request
    }

    deinit { buffer.deallocate() }

    /// Serves `fd` until the peer closes, an error, the idle timeout or (server-first) the first
    /// answer; then closes it.
    func serve(_ fd: Int32) {
        Sockets.setNoDelay(fd)
        if var tv = idleTimeout {
            let size = socklen_t(MemoryLayout<timeval>.size)
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, size)
            _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, size)
        }
        switch wire {
        case .echo: serveEcho(fd)
        case .http: serveHTTP(fd)
        }
        FD.close(fd)
        counters.add(.closed, slot: slot)
    }

    func serveEcho(_ fd: Int32) {
        while let n = readOnce(fd, into: buffer, max: readSize) {
            Work.compute(micros: computeMicros)
            guard writeAll(fd, buffer, n) else { return }
            if closeAfterFirstAnswer { return }
        }
    }

    /// Answers every complete request in each read; a partial one waits at the buffer's start for the rest.
    func serveHTTP(_ fd: Int32) {
        let size = Self.bufferSize
        var held = 0
        while true {
            if held == size { return }  // a request header larger than the buffer: not HTTP we serve
            guard let n = readOnce(fd, into: buffer + held, max: min(size - held, readSize)) else { return }
            let length = held + n
            let (answers, consumed) = HTTPFraming.complete(buffer, length, limit: closeAfterFirstAnswer ? 1 : .max)
            if answers > 0 {
                counters.add(.requests, UInt64(answers), slot: slot)
                for _ in 0..<answers { Work.compute(micros: computeMicros) }
                guard sendResponses(fd, answers) else { return }
                if closeAfterFirstAnswer { return }
            }
            held = length - consumed
            if held > 0 && consumed > 0 { memmove(buffer, buffer + consumed, held) }
        }
    }

    /// One read(2): nil at end of stream, on an error, or when the idle timeout expires (counted).
    @inline(__always)
    func readOnce(_ fd: Int32, into buf: UnsafeMutableRawPointer, max: Int) -> Int? {
        counters.add(.reads, slot: slot)
        do {
            switch try FD.read(fd, buf, max) {
            case .wouldBlock:
                // A blocking socket reports EAGAIN only when SO_RCVTIMEO expires: the client is idle.
                counters.add(.readsEAGAIN, slot: slot)
                counters.add(.idleClosed, slot: slot)
                return nil
            case .done(0): return nil
            case .done(let n): return n
            }
        } catch {
            return nil
        }
    }

    func sendResponses(_ fd: Int32, _ count: Int) -> Bool {
        let r = Self.responses
        var left = count
        while left > 0 {
            let k = min(left, r.perBlock)
            guard writeAll(fd, r.base, k * r.length) else { return false }
            left -= k
        }
        return true
    }

    /// Writes every byte; false when the peer is gone or (SO_SNDTIMEO) took nothing for the idle timeout.
    func writeAll(_ fd: Int32, _ data: UnsafeRawPointer, _ count: Int) -> Bool {
        var off = 0
        while off < count {
            counters.add(.writes, slot: slot)
            do {
                switch try FD.write(fd, data + off, count - off) {
                case .wouldBlock:
                    counters.add(.writesEAGAIN, slot: slot)
                    counters.add(.idleClosed, slot: slot)
                    return false
                case .done(let n):
                    counters.add(.bytesOut, UInt64(n), slot: slot)
                    off += n
                }
            } catch {
                return false
            }
        }
        return true
    }
}

/// accept(2) on a blocking listener, for the accept loops of models 1-3: the client's own errors
/// are skipped, EMFILE sheds the client with a reserve descriptor, and a listener that fails for
/// good ends the process (an accept loop that cannot accept has nothing left to do).
struct BlockingAcceptor {
    let listenFD: Int32
    let counters: SharedCounters
    let slot: Int
    /// Held open so that under EMFILE one descriptor can be freed to accept and close a client.
    var reserve = ReserveDescriptor()

    init(listenFD: Int32, counters: SharedCounters, slot: Int) {
        self.listenFD = listenFD
        self.counters = counters
        self.slot = slot
    }

    /// The next client, a blocking socket (accept(2) does not pass the listener's flags on).
    mutating func next() -> Int32 {
        while true {
            do {
                // EAGAIN only if someone made the shared listener non-blocking: try again.
                if case .done(let fd) = try syscall("accept", { accept(listenFD, nil, nil) }) { return fd }
            } catch let e as SystemError {
                switch e.errno {
                case EMFILE, ENFILE:
                    counters.add(.acceptEMFILE, slot: slot)
                    shedWithReserveDescriptor()
                // The client's trouble, not the listener's: accept(2) hands on the new connection's network errors.
                case let e where isClientAcceptError(e):
                    continue
                default:
                    writeLine("muxlab serve: \(e) on listener \(listenFD); stopping", fd: 2)
                    _exit(1)
                }
            } catch {
                _exit(1)  // syscall throws only SystemError
            }
        }
    }

    /// Frees the reserve, accepts the waiting client and closes it at once, re-reserves.
    mutating func shedWithReserveDescriptor() {
        let listener = listenFD
        guard let shed = reserve.shed(accepting: { accept(listener, nil, nil) }) else {
            usleep(1000)  // nothing to free: do not spin on a listener we cannot serve
            return
        }
        if shed { counters.add(.refused, slot: slot) }
    }
}
