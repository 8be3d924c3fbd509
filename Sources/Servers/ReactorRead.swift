#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// Reading: which framing a readable connection goes to, one read(2) and what its result means.
extension Reactor {
    func onReadable(_ fd: Int32) {
        if offloading && connections[Int(fd)].taskInFlight { return }
        if splicing { readSplice(fd); return }
        switch wire {
        case .echo: offloading ? readEchoTask(fd) : readEcho(fd)
        case .http: offloading ? readHTTPTask(fd) : readHTTP(fd)
        }
    }

    /// Under `until-short`, a read that filled less than it asked emptied the socket.
    @inline(__always)
    func drained(_ n: Int, _ asked: Int) -> Bool {
        shortReadEnds && n < asked && !readToEnd
    }

    /// One read(2): nil on EAGAIN, end of stream or error (the connection is closed on an error,
    /// and at end of stream once its queued output is sent).
    @inline(__always)
    func readOnce(_ fd: Int32, into buf: UnsafeMutableRawPointer, max: Int) -> Int? {
        stats.reads &+= 1
        do {
            switch try FD.read(fd, buf, max) {
            case .wouldBlock:
                stats.readsEAGAIN &+= 1
                return nil
            case .done(0):
                endOfInput(fd)
                return nil
            case .done(let n):
                connections[Int(fd)].lastActive = now
                return n
            }
        } catch {
            failed(fd, error)
            return nil
        }
    }

    /// The peer sent its last byte. Output still queued is owed to it (a half-closed client reads on):
    /// reading pauses, and the end of stream is met again, and closes, once the queue has drained.
    func endOfInput(_ fd: Int32) {
        if !connections[Int(fd)].owesOutput { close(fd) } else { pauseReading(fd) }
    }
}
