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
        clients[i].headerLength = 0
        clients[i].crlfMatched = 0
        clients[i].inBody = false
        continueWrite(i)
    }

    func continueWrite(_ i: Int) {
        let fd = clients[i].fd
        while clients[i].sent < requestLength {
            do {
                switch try FD.write(fd, request + clients[i].sent, requestLength - clients[i].sent) {
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
            wrong(i)  // bytes nobody asked for
            return
        }
        let complete: Bool
        switch config.wire {
        case .echo: complete = checkEcho(i, n)
        case .http: complete = checkHTTP(i, n)
        }
        guard clients[i].state == 2, complete else { return }
        let now = monotonicNanos()
        clients[i].busy = false
        clients[i].served = true
        clients[i].answeredOnConnection += 1
        completed &+= 1
        published?.publish(.completed, completed)
        if measuring {
            requests += 1
            _ = histogram.record(now > clients[i].origin ? now - clients[i].origin : 0)
        }
        if flags & (MUX_EPOLLRDHUP | MUX_EPOLLHUP) != 0 {
            // The server closed right after this answer: do not send into a closing connection.
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
        clients[i].busy && clients[i].received == 0 && clients[i].headerLength == 0 && clients[i].answeredOnConnection > 0
    }

    /// The server closed the connection: the end of it after a complete answer, an error with an answer owed.
    func onEndOfStream(_ i: Int) {
        if clients[i].busy {
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
        if at + n > requestLength || memcmp(scratch, request + at, n) != 0 {
            wrong(i)
            return false
        }
        clients[i].received = at + n
        return at + n == requestLength
    }

    /// HTTP: status 200, a Content-Length, exactly that many body bytes, nothing after.
    func checkHTTP(_ i: Int, _ n: Int) -> Bool {
        let bytes = scratch.assumingMemoryBound(to: UInt8.self)
        let header = headers + Int(clients[i].slot) * headerCapacity
        var k = 0
        while k < n {
            if clients[i].inBody {
                let take = min(clients[i].bodyLeft, n - k)
                clients[i].bodyLeft -= take
                k += take
                if clients[i].bodyLeft == 0 { break }
                continue
            }
            let b = bytes[k]
            k += 1
            guard clients[i].headerLength < headerCapacity else { wrong(i); return false }
            header.storeBytes(of: b, toByteOffset: clients[i].headerLength, as: UInt8.self)
            clients[i].headerLength += 1
            let m = clients[i].crlfMatched
            clients[i].crlfMatched = (b == (m % 2 == 0 ? 13 : 10)) ? m + 1 : (b == 13 ? 1 : 0)
            if clients[i].crlfMatched == 4 {
                guard let length = LoadLoop.contentLength(ofOKResponse: header, clients[i].headerLength) else { wrong(i); return false }
                clients[i].inBody = true
                clients[i].bodyLeft = length
                if length == 0 { break }
            }
        }
        let done = clients[i].inBody && clients[i].bodyLeft == 0
        if k < n || (done && k != n) { wrong(i); return false }
        return done
    }

    static let statusPrefix: [UInt8] = Array("HTTP/1.".utf8)
    static let lengthKey: [UInt8] = Array("content-length:".utf8)

    /// Content-Length of a "HTTP/1.x 200" header block, nil when either is missing.
    static func contentLength(ofOKResponse p: UnsafeRawPointer, _ len: Int) -> Int? {
        let b = p.assumingMemoryBound(to: UInt8.self)
        let status = statusPrefix
        guard len > 12 else { return nil }
        for j in 0..<status.count where b[j] != status[j] { return nil }
        guard b[9] == 50, b[10] == 48, b[11] == 48 else { return nil }  // "200"
        let key = lengthKey
        var line = 0
        while line < len {
            var end = line
            while end < len && b[end] != 10 { end += 1 }
            if end - line > key.count {
                var match = true
                for j in 0..<key.count where (b[line + j] | 0x20) != key[j] { match = false; break }
                if match {
                    var v = 0
                    var j = line + key.count
                    while j < end && b[j] == 32 { j += 1 }
                    var digits = 0
                    while j < end && b[j] >= 48 && b[j] <= 57 { v = v * 10 + Int(b[j] - 48); j += 1; digits += 1 }
                    return digits > 0 ? v : nil
                }
            }
            line = end + 1
        }
        return nil
    }

    func wrong(_ i: Int) {
        if measuring { errors.wrongResponse += 1 }
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
