#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// Pipelining (`--pipeline N`, closed loop): each active connection keeps N requests in flight, written
/// back to back, and its answers are taken in order as they arrive (several may come in one read), each
/// timed from its own send. N = 1 never comes here: the plain path is `startRequest` / `answered`.
extension LoadLoop {
    /// The closed loop's next request(s) on an open connection: one, or the pipeline topped up.
    @inline(__always)
    func beginClosedLoop(_ i: Int, now: UInt64) {
        if pipeline > 1 { fillPipeline(i, now: now) } else { startRequest(i, origin: now) }
    }

    /// Tops client `i` up to `pipeline` requests in flight, each timed from `now`, and writes them.
    func fillPipeline(_ i: Int, now: UInt64) {
        guard clients[i].state == 2 else { return }
        let slot = Int(clients[i].slot)
        if clients[i].inFlight == 0 {
            // A fresh start (or a new connection): the first answer to come is for the next request to go.
            clients[i].received = 0
            clients[i].recvIndex = clients[i].requestIndex
            if config.wire == .http { parsers[slot].reset(headOnly: requestHeadOnly[Int(clients[i].recvIndex)]) }
            clients[i].sentAt = now
        }
        guard Int(clients[i].inFlight) < pipeline else { return }
        let base = slot * pipeline
        while Int(clients[i].inFlight) < pipeline {
            pipeTimes[base + (Int(clients[i].pipeHead) + Int(clients[i].inFlight)) % pipeline] = now
            clients[i].inFlight += 1
            clients[i].toWrite += 1
        }
        clients[i].busy = true
        writePipeline(i)
    }

    /// Writes what waits to be written: with one request, all of it in one write (`pipelineBytes` holds it
    /// `pipeline` times); with several, one request a write, in turn. `sent` is the bytes of the first not yet whole.
    func writePipeline(_ i: Int) {
        let fd = clients[i].fd
        while clients[i].toWrite > 0 {
            let k = Int(clients[i].requestIndex)
            let length = requestOffsets[k + 1] - requestOffsets[k]
            let one = requestCount == 1
            let from = (one ? pipelineBytes : request + requestOffsets[k]) + clients[i].sent
            let total = (one ? Int(clients[i].toWrite) * length : length) - clients[i].sent
            do {
                switch try FD.write(fd, from, total) {
                case .wouldBlock:
                    if !clients[i].wantWrite {
                        clients[i].wantWrite = true
                        _ = mux_epoll_ctl(epfd, MUX_EPOLL_CTL_MOD, fd, readInterest | MUX_EPOLLOUT)
                    }
                    return
                case .done(let n):
                    var written = clients[i].sent + n
                    while clients[i].toWrite > 0 {
                        let whole = requestOffsets[Int(clients[i].requestIndex) + 1] - requestOffsets[Int(clients[i].requestIndex)]
                        guard written >= whole else { break }
                        written -= whole
                        clients[i].toWrite -= 1
                        if requestCount > 1 { clients[i].requestIndex = (clients[i].requestIndex + 1) % Int32(requestCount) }
                    }
                    clients[i].sent = written
                }
            } catch {
                if measuring { errors.write += 1 }
                drop(i)
                return
            }
        }
        if clients[i].wantWrite {
            clients[i].wantWrite = false
            _ = mux_epoll_ctl(epfd, MUX_EPOLL_CTL_MOD, fd, readInterest)
        }
    }

    /// `n` bytes read on a pipelined connection: every answer they complete is timed, in order; then the
    /// pipeline is topped up (once per read, so answers arriving together are answered with one write).
    func onPipelinedBytes(_ i: Int, _ n: Int, flags: UInt32) {
        let slot = Int(clients[i].slot)
        let bytes = scratch.assumingMemoryBound(to: UInt8.self)
        var at = 0
        var closing = false
        let now = monotonicNanos()
        while at < n {
            guard clients[i].inFlight > 0, !closing else {
                wrong(i, "\(n - at) bytes after the answers to every request in flight")
                return
            }
            let used: Int
            var whole = false
            switch config.wire {
            case .echo:
                let length = requestOffsets[1]
                used = min(length - clients[i].received, n - at)
                guard memcmp(bytes + at, request + clients[i].received, used) == 0 else {
                    wrong(i, "echo bytes differ from the request's")
                    return
                }
                clients[i].received += used
                whole = clients[i].received == length
            case .http:
                let step = parsers[slot].feed(bytes + at, n - at, line: headers + slot * LoadLoop.headerCapacity,
                                              limit: LoadLoop.headerCapacity, pattern: bodyPattern)
                switch step {
                case .needMore:
                    used = n - at
                case .complete(let consumed):
                    used = consumed
                    whole = true
                    guard parsers[slot].accepted(expectStatus: expectStatus) else {
                        wrong(i, answerFault(parsers[slot], extra: 0))
                        return
                    }
                    closing = parsers[slot].close
                case .malformed(let e):
                    wrong(i, "HTTP: \(e)\(e == .headerTooLong ? " (\(LoadLoop.headerCapacity) bytes)" : "")")
                    return
                }
                clients[i].received += used
            }
            at += used
            if whole { pipelinedAnswer(i, now: now) }
        }
        if closing || flags & (MUX_EPOLLRDHUP | MUX_EPOLLHUP) != 0 {
            // The server closes after its answer (`Connection: close`, or its FIN came with the bytes): what is still
            // in flight on this connection goes again on the next one, with new send times.
            closedByServer += 1
            reopen(i)
        } else {
            fillPipeline(i, now: now)
        }
    }

    /// The oldest request in flight on client `i` was answered in full: timed from its own send.
    func pipelinedAnswer(_ i: Int, now: UInt64) {
        let slot = Int(clients[i].slot)
        let base = slot * pipeline
        let sentAt = pipeTimes[base + Int(clients[i].pipeHead)]
        clients[i].pipeHead = (clients[i].pipeHead + 1) % Int32(pipeline)
        clients[i].inFlight -= 1
        clients[i].received = 0
        clients[i].served = true
        clients[i].answeredOnConnection += 1
        completed &+= 1
        published?.publish(.completed, completed)
        if measuring {
            requests += 1
            _ = histogram.record(now > sentAt ? now - sentAt : 0)
        }
        if clients[i].inFlight > 0 {
            clients[i].sentAt = pipeTimes[base + Int(clients[i].pipeHead)]
            if requestCount > 1 { clients[i].recvIndex = (clients[i].recvIndex + 1) % Int32(requestCount) }
            if config.wire == .http { parsers[slot].reset(headOnly: requestHeadOnly[Int(clients[i].recvIndex)]) }
        } else {
            clients[i].busy = false
            if requestCount > 1 { clients[i].recvIndex = clients[i].requestIndex }
        }
    }
}
