#if canImport(Glibc)
import Glibc
#endif
import CShims
import Foundation
import Histogram
import Kernel

/// Requests: sent in one write (or continued), answers read and checked (echo bytes or an HTTP
/// response), latency recorded; the timeout sweep.
extension LoadLoop {
    /// Sends a request whose latency counts from `origin` (open loop: its slot's intended time).
    @inline(__always)
    func startRequest(_ i: Int, origin: UInt64) {
        let now = monotonicNanos()
        clients[i].busy = true
        clients[i].sent = 0
        clients[i].received = 0
        clients[i].intended = origin
        // A batch may send a slot early: then from its send. A planned reconnect's connect time is not latency.
        let from = min(origin, now)
        clients[i].origin = clients[i].connectIsLatency ? from : max(from, clients[i].connectedAt)
        clients[i].sentAt = now
        if config.wire == .http { parsers[Int(clients[i].slot)].reset(headOnly: requestHeadOnly[Int(clients[i].requestIndex)]) }
        continueWrite(i)
    }

    func continueWrite(_ i: Int) {
        if pipeline > 1 { writePipeline(i); return }
        let fd = clients[i].fd
        let k = Int(clients[i].requestIndex)
        let start = request + requestOffsets[k], requestLength = requestOffsets[k + 1] - requestOffsets[k]
        while clients[i].sent < requestLength {
            do {
                switch try FD.write(fd, start + clients[i].sent, requestLength - clients[i].sent) {
                case .wouldBlock:
                    if !clients[i].wantWrite {
                        clients[i].wantWrite = true
                        _ = mux_epoll_ctl(epfd, MUX_EPOLL_CTL_MOD, fd, readInterest | MUX_EPOLLOUT)
                    }
                    return
                case .done(let n):
                    clients[i].sent += n
                }
            } catch {
                if measuring { errors.write += 1 }
                drop(i)
                return
            }
        }
        if hangUp {
            hangups += 1
            reopen(i)
            return
        }
        if clients[i].wantWrite {
            clients[i].wantWrite = false
            _ = mux_epoll_ctl(epfd, MUX_EPOLL_CTL_MOD, fd, readInterest)
        }
    }

    func onReadable(_ i: Int, flags: UInt32) {
        let n: Int
        do {
            switch try FD.read(clients[i].fd, scratch, scratchSize) {
            case .wouldBlock: return
            case .done(let got): n = got
            }
        } catch let e as SystemError where e.errno == ECONNRESET && crossedServerClose(i) {
            // The server closed with our request unread, so its kernel reset the connection: resend it, as below.
            closedByServer += 1
            resend(i)
            return
        } catch {
            if measuring || clients[i].busy { errors.read += 1 }
            drop(i)
            return
        }
        if n == 0 {
            onEndOfStream(i)
            return
        }
        guard clients[i].busy else {
            wrong(i, "\(n) bytes with no request outstanding")
            return
        }
        if pipeline > 1 {
            onPipelinedBytes(i, n, flags: flags)
            return
        }
        let complete: Bool
        switch config.wire {
        case .echo: complete = checkEcho(i, n)
        case .http: complete = checkHTTP(i, n)
        }
        guard clients[i].state == 2, complete else { return }
        let serverCloses = config.wire == .http && parsers[Int(clients[i].slot)].close
        answered(i, closing: serverCloses || flags & (MUX_EPOLLRDHUP | MUX_EPOLLHUP) != 0)
    }

    /// The request in flight was answered in full: timed, then the next goes out (or the connection is
    /// replaced when the server closes it, `Connection: close` or its FIN with the answer).
    func answered(_ i: Int, closing: Bool) {
        let now = monotonicNanos()
        clients[i].busy = false
        clients[i].served = true
        clients[i].answeredOnConnection += 1
        if requestCount > 1 { clients[i].requestIndex = (clients[i].requestIndex + 1) % Int32(requestCount) }
        completed &+= 1
        published?.publish(.completed, completed)
        if measuring {
            requests += 1
            _ = histogram.record(now > clients[i].origin ? now - clients[i].origin : 0)
        }
        if closing {
            // The server closed (or said it will close) right after this answer: do not send into a closing connection.
            closedByServer += 1
            reopen(i)
        } else if requestsPerConnection > 0 && clients[i].answeredOnConnection >= requestsPerConnection {
            reopen(i)
        } else if openLoop {
            if clients[i].queued > 0 { sendQueued(i) }
        } else {
            startRequest(i, origin: now)
        }
    }

    /// A request sent on a connection that had answered before, and not a byte of its answer back: the server
    /// may have closed after its previous answer before this request reached it.
    @inline(__always)
    func crossedServerClose(_ i: Int) -> Bool {
        clients[i].busy && clients[i].received == 0 && clients[i].answeredOnConnection > 0
    }

    /// The server closed the connection: the end of it after a complete answer, an error with an answer owed.
    func onEndOfStream(_ i: Int) {
        if clients[i].busy && config.wire == .http && parsers[Int(clients[i].slot)].endOfStream() {
            // A body without a length ends with the stream: that answer is whole.
            let parser = parsers[Int(clients[i].slot)]
            if !parser.accepted(expectStatus: expectStatus) {
                wrong(i, answerFault(parser, extra: 0))
            } else if pipeline > 1 {
                pipelinedAnswer(i, now: monotonicNanos())
                closedByServer += 1
                reopen(i)
            } else {
                answered(i, closing: true)
            }
        } else if clients[i].busy {
            if crossedServerClose(i) {
                // Our request crossed the FIN the server sent after its previous answer: resend it on a new connection
                // (as HTTP clients retry on a reused connection closed before any byte of the answer).
                closedByServer += 1
                resend(i)
            } else {
                errors.read += 1
                drop(i)
            }
        } else if !clients[i].active {
            // An idle connection the server reaped (its idle timeout): not replaced.
            closedByServer += 1
            idleClosed += 1
            drop(i)
        } else {
            closedByServer += 1
            reopen(i)
        }
    }

    /// Echo: the bytes must be exactly the request's, in order, and no more.
    @inline(__always)
    func checkEcho(_ i: Int, _ n: Int) -> Bool {
        let at = clients[i].received
        let requestLength = requestOffsets[1]
        if at + n > requestLength || memcmp(scratch, request + at, n) != 0 {
            wrong(i, at + n > requestLength ? "echo longer than the \(requestLength)-byte request" : "echo bytes differ from the request's")
            return false
        }
        clients[i].received = at + n
        return at + n == requestLength
    }

    /// HTTP: a whole response (status line, headers, a body by Content-Length, chunks or the stream's end;
    /// 1xx skipped) with the expected status (any 2xx by default) and body substring, and nothing after it.
    func checkHTTP(_ i: Int, _ n: Int) -> Bool {
        clients[i].received += n
        let slot = Int(clients[i].slot)
        let step = parsers[slot].feed(scratch.assumingMemoryBound(to: UInt8.self), n,
                                      line: headers + slot * LoadLoop.headerCapacity, limit: LoadLoop.headerCapacity,
                                      pattern: bodyPattern)
        switch step {
        case .needMore:
            return false
        case .complete(let consumed):
            // Bytes beyond the answer were not asked for (one request is in flight per connection).
            guard consumed == n, parsers[slot].accepted(expectStatus: expectStatus) else {
                wrong(i, answerFault(parsers[slot], extra: n - consumed))
                return false
            }
            return true
        case .malformed(let e):
            wrong(i, "HTTP: \(e)\(e == .headerTooLong ? " (\(LoadLoop.headerCapacity) bytes)" : "")")
            return false
        }
    }

    /// Why a whole answer is not accepted.
    func answerFault(_ parser: HTTPResponseParser, extra: Int) -> String {
        let statusOK = expectStatus.map { parser.status == $0 } ?? (200...299).contains(parser.status)
        if !statusOK {
            return "status \(parser.status) (expected \(expectStatus.map(String.init) ?? "any 2xx"))"
        }
        if !parser.found { return "the body (\(parser.bodyBytes) bytes) does not hold \"\(config.http.expectBody ?? "")\"" }
        return "\(extra) bytes after a whole answer, with no request outstanding"
    }

    /// A wrong answer: counted in the window, its connection dropped; the first one's reason kept (built
    /// once, so a stream of wrong answers allocates nothing more).
    func wrong(_ i: Int, _ why: @autoclosure () -> String = "bytes nobody asked for") {
        if measuring { errors.wrongResponse += 1 }
        // Kept from the warm-up too: a server wrong from its first answer leaves no connection for the window.
        if firstWrongResponse == nil { firstWrongResponse = why() }
        drop(i)
    }

    /// Requests outstanding too long time out; connects of reopened connections too long or failed are tried again.
    func scanTimeouts(now: UInt64, limit: UInt64) {
        for j in 0..<activeCount {
            let i = Int(activeIndex[j])
            switch clients[i].state {
            case 2 where clients[i].busy && now > clients[i].sentAt && now - clients[i].sentAt > limit:
                timedOut(i)
            case 1 where now > clients[i].connectAt && now - clients[i].connectAt > limit:
                reopenFailed(i, ETIMEDOUT)
            case 4:
                let err = openConnection(i, source: nextSource)
                nextSource = nextSource + 1 == sources.count ? 0 : nextSource + 1
                if err != 0 { reopenFailed(i, err) }
            default:
                break
            }
        }
    }
}
