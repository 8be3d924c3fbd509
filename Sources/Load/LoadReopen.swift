#if canImport(Glibc)
import Glibc
#endif
import CShims
import Foundation
import Histogram
import Kernel

/// Reopening a connection the server closed or that reached its request count, and resending
/// what it owed; a request that timed out.
extension LoadLoop {
    /// Ends an active connection's current connection and opens a new one in its place; its backlog waits for it.
    func reopen(_ i: Int, connectIsLatency: Bool = false) {
        release(i, abort: hangUp)
        clients[i].connectIsLatency = connectIsLatency
        let err = openConnection(i, source: nextSource)
        nextSource = nextSource + 1 == sources.count ? 0 : nextSource + 1
        if err != 0 { reopenFailed(i, err) }
    }

    /// Counted in the window like other errors; the timeout scan tries again (at most ten times a second).
    func reopenFailed(_ i: Int, _ err: Int32) {
        if measuring { errors.connect += 1 }
        if firstConnectError == nil { firstConnectError = "\(SystemError("connect(\(config.target))", errno: err))" }
        release(i)
        clients[i].state = 4
    }

    /// A reopened connection completed (or failed): send at once (closed loop) or its oldest waiting slot (open loop).
    func finishReopen(_ i: Int) {
        let err = Sockets.pendingError(clients[i].fd)
        if err != 0 { reopenFailed(i, err); return }
        established(i)
        if !openLoop { beginClosedLoop(i, now: clients[i].connectedAt) } else if clients[i].queued > 0 { sendQueued(i) }
    }

    /// The request in flight goes out again on a new connection (open loop: first in line, from its intended time).
    func resend(_ i: Int) {
        if openLoop { requeueFirst(i, clients[i].intended) }
        reopen(i)
    }

    /// A request unanswered past the timeout: counted, and its connection replaced so its later slots are still sent
    /// (a new connection, so a late answer to it cannot be taken for a later request's).
    func timedOut(_ i: Int) {
        if measuring { errors.timeout += 1 }
        reopen(i, connectIsLatency: true)
    }
}
