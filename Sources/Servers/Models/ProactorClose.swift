#if canImport(Glibc)
import Glibc
#endif
import CShims
import CUring
import Kernel

/// Closing a proactor connection once nothing of it is in flight in the kernel.
extension Proactor {
    /// Ends a connection: in-flight operations are ended by a shutdown on the ring,
    /// and the descriptor is closed once the last of them has completed.
    func beginClose(_ fd: Int32) {
        var c = connections[Int(fd)]
        guard c.open && !c.closing else { return }
        c.closing = true
        if c.inFlight && !c.shutdownPending {
            if mux_uring_shutdown(ring, fd, Int32(SHUT_RDWR), tag(.shutdown, fd, c.generation)) == 0 {
                c.shutdownPending = true
            } else {
                Glibc.shutdown(fd, Int32(SHUT_RDWR))
            }
        }
        connections[Int(fd)] = c
        finishCloseIfIdle(fd)
    }

    func finishCloseIfIdle(_ fd: Int32) {
        var c = connections[Int(fd)]
        guard c.open && c.closing && !c.inFlight else { return }
        FD.close(fd)
        var b = c.outFirst
        while b >= 0 {
            let next = b == c.outLast ? -1 : poolNext[Int(b)]
            pool.release(b)
            b = next
        }
        if c.inBuffer >= 0 { pool.release(c.inBuffer) }
        let generation = c.generation
        c = ProactorConnection()
        c.generation = generation
        connections[Int(fd)] = c
        stats.closed &+= 1
        if acceptWaitsForDescriptor {
            acceptWaitsForDescriptor = false
            if !acceptArmed { armAccept() }
        }
    }

    /// A recv or send on connection `fd` completed with `errno`: a programmer error traps naming the call,
    /// the peer's trouble is counted by errno and the connection closed (as the reactor sorts them).
    @inline(never)
    func failed(_ fd: Int32, call: String, errno e: Int32) {
        stats.peerErrors.record(call: call, errno: e, fd: fd)
        beginClose(fd)
    }
}
