#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// Counters the reactor keeps itself; printed at exit (and compared with the probe's).
public struct ReactorStats {
    public var accepted: UInt64 = 0
    public var refused: UInt64 = 0
    public var closed: UInt64 = 0
    public var reads: UInt64 = 0
    public var readsEAGAIN: UInt64 = 0
    public var writes: UInt64 = 0
    public var writesEAGAIN: UInt64 = 0
    /// Bytes the server wrote to its clients (an echo's requests answered: this over the message size).
    public var bytesOut: UInt64 = 0
    public var requests: UInt64 = 0
    public var acceptEMFILE: UInt64 = 0
    /// Connections the idle sweep closed (also counted in `closed`).
    public var idleClosed: UInt64 = 0
    /// Connections closed because a call on them failed for the peer's reason (also counted in `closed`).
    public var peerErrors = PeerErrors()
}

extension Reactor {
    /// One line of counters for the driver (and the probe cross-check).
    public var statsLine: String {
        let p = poller.stats
        return "stats waits=\(p.waits) scanned=\(p.scanned) events=\(p.events) accepted=\(stats.accepted) refused=\(stats.refused) closed=\(stats.closed) reads=\(stats.reads) reads_eagain=\(stats.readsEAGAIN) writes=\(stats.writes) writes_eagain=\(stats.writesEAGAIN) bytes_out=\(stats.bytesOut) http_requests=\(stats.requests) accept_emfile=\(stats.acceptEMFILE) buffers=\(pool.allocated) idle_closed=\(stats.idleClosed) \(stats.peerErrors.statsFields)"
    }
}
