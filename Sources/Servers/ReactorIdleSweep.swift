#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// The idle sweep (claim H3): connections that moved no byte for longer than the timeout are closed.
extension Reactor {
    /// Closes every connection that moved no byte for longer than the idle timeout (claim H3).
    func closeIdleConnections() {
        nextSweep = now &+ sweepNanos
        var highest: Int32 = -1
        var fd: Int32 = 0
        while fd <= highestFD {
            if connections[Int(fd)].open {
                if now &- connections[Int(fd)].lastActive > idleNanos {
                    close(fd)
                    stats.idleClosed &+= 1
                } else {
                    highest = fd
                }
            }
            fd += 1
        }
        highestFD = highest
    }
}
