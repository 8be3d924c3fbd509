#if canImport(Glibc)
import Glibc
#endif
import CShims
import Foundation
import Histogram
import Kernel

/// The load's connections: opened at the start (from each source address in turn), established,
/// failed, dropped, and reopened after the server or the request count closed one.
extension LoadLoop {
    func connectAll() throws {
        let begin = monotonicNanos()
        let limit = LoadGenerator.connectLimit(connections: count, connectRate: config.connectRate)
        let deadline = begin + UInt64(limit * 1e9)
        var opened = 0
        var pending = 0
        while opened < count || pending > 0 {
            let now = monotonicNanos()
            if now > deadline {
                for i in 0..<count where clients[i].state == 1 { fail(i, connect: ETIMEDOUT) }
                // Connections the ramp never reached are failures too, not a smaller run.
                if opened < count {
                    if firstConnectError == nil {
                        firstConnectError = "\(count - opened) connections not yet opened when the connect deadline (\(Int(limit.rounded())) s) passed"
                    }
                    for i in opened..<count { fail(i, connect: ETIMEDOUT) }
                }
                break
            }
            let allowed = min(count, Int(Double(now - begin) / 1e9 * Double(config.connectRate)) + 1)
            while opened < allowed {
                let i = opened
                opened += 1
                let err = openConnection(i, source: min(sources.count - 1, i / LoadGenerator.connectionsPerSource))
                if err != 0 { fail(i, connect: err) } else { pending += 1 }
            }
            let n = mux_epoll_wait(epfd, events, maxEvents, opened < count ? 1 : 100)
            for e in 0..<Int(max(0, n)) {
                let i = Int(owner[Int(mux_epoll_event_fd(events, Int32(e)))])
                guard i >= 0, clients[i].state == 1 else { continue }
                pending -= 1
                let err = Sockets.pendingError(clients[i].fd)
                if err == 0 { established(i) } else { fail(i, connect: err) }
            }
        }
        if errors.connect == count {
            throw LoadError("cannot reach \(config.target): \(firstConnectError ?? "no connection succeeded")")
        }
    }

    /// Starts a non-blocking connect for client `i` from source number `source`; 0 or the errno that stopped it.
    /// Completion is always reported by epoll (writable), never handled here, so a reopening cannot recurse.
    func openConnection(_ i: Int, source: Int) -> Int32 {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { return errno }
        guard Int(fd) < ownerCapacity else { FD.close(fd); return EMFILE }
        if bindsSource {
            // Let connect() pick the port, so each source address gets its own ephemeral range.
            var one: Int32 = 1
            _ = setsockopt(fd, Int32(IPPROTO_IP), 24 /* IP_BIND_ADDRESS_NO_PORT */, &one, socklen_t(MemoryLayout<Int32>.size))
            let rc = UnsafeRawPointer(sourceAddresses + source).withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, sourceLength) }
            if rc != 0 { let e = errno; FD.close(fd); return e }
        }
        connectionsOpened += 1
        let rc = UnsafeRawPointer(targetAddress).withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, targetLength) }
        if rc != 0 && errno != EINPROGRESS && errno != EINTR { let e = errno; FD.close(fd); return e }
        clients[i].fd = fd
        clients[i].state = 1
        clients[i].connectAt = monotonicNanos()
        owner[Int(fd)] = Int32(i)
        _ = mux_epoll_ctl(epfd, MUX_EPOLL_CTL_ADD, fd, MUX_EPOLLOUT)
        return 0
    }

    func established(_ i: Int) {
        establishedCount += 1
        clients[i].state = 2
        clients[i].connectedAt = monotonicNanos()
        clients[i].answeredOnConnection = 0
        Sockets.setNoDelay(clients[i].fd)
        _ = mux_epoll_ctl(epfd, MUX_EPOLL_CTL_MOD, clients[i].fd, readInterest)
    }

    /// An initial connection failed: counted whether or not the window is open, and not replaced.
    func fail(_ i: Int, connect err: Int32) {
        errors.connect += 1
        if firstConnectError == nil { firstConnectError = "\(SystemError("connect(\(config.target))", errno: err))" }
        drop(i)
    }

    /// Closes a connection for good (it is not replaced); slots waiting for it will never be sent.
    func drop(_ i: Int) {
        release(i)
        clients[i].state = 3
        if measuring { unsent += Int(clients[i].queued) }
        clients[i].queued = 0
    }

    /// Closes client `i`'s descriptor; with `abort`, a FIN and then a reset (SO_LINGER 0): the reset meets the
    /// server's socket in CLOSE_WAIT, so its next write fails with EPIPE and raises SIGPIPE (after a reset
    /// alone it would fail with ECONNRESET, no signal). No TIME_WAIT is left behind.
    func release(_ i: Int, abort: Bool = false) {
        let fd = clients[i].fd
        if fd >= 0 {
            owner[Int(fd)] = -1
            if abort {
                _ = shutdown(fd, Int32(SHUT_WR))
                var lg = linger(l_onoff: 1, l_linger: 0)
                _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, socklen_t(MemoryLayout<linger>.size))
            }
            FD.close(fd)
        }
        clients[i].fd = -1
        clients[i].busy = false
        clients[i].wantWrite = false
        // What was in flight on it is gone with it (a pipelined connection's requests are sent again on the next).
        (clients[i].inFlight, clients[i].toWrite, clients[i].pipeHead, clients[i].sent, clients[i].received) = (0, 0, 0, 0, 0)
    }
}
