#if canImport(Glibc)
import Glibc
#endif
import CShims
import CUring
import Kernel

/// The proactor's sends: one send per answer, a short send completed from the connection's queue,
/// receiving paused while output waits.
extension Proactor {
    /// Submits the next piece of owed output, one send in flight per connection (keeps bytes in order).
    func sendNext(_ fd: Int32) {
        var c = connections[Int(fd)]
        guard !c.sending && !c.closing else { return }
        let data: UnsafeRawPointer
        let count: Int
        switch wire {
        case .echo:
            guard c.outFirst >= 0 else { drained(fd); return }
            let end = c.outFirst == c.outLast ? c.outTail : Int32(pool.bufferSize)
            data = UnsafeRawPointer(pool.base(c.outFirst)) + Int(c.outHead)
            count = Int(end - c.outHead)
            c.sendBytes = Int32(count)
        case .http:
            if c.batchBytes == 0 {
                guard c.owed > 0 else { drained(fd); return }
                c.batchBytes = Int32(min(c.owed, responsesPerBlock) * responseLength)
                c.batchSent = 0
            }
            data = UnsafeRawPointer(response) + Int(c.batchSent)
            count = Int(c.batchBytes - c.batchSent)
        }
        guard mux_uring_send(ring, fd, data, count, tag(.send, fd, c.generation)) == 0 else {
            connections[Int(fd)] = c
            beginClose(fd)
            return
        }
        c.sending = true
        connections[Int(fd)] = c
        stats.writes &+= 1
    }

    func onSend(_ fd: Int32, _ generation: UInt32, _ res: Int32) {
        guard current(fd, generation) else { stats.stale &+= 1; return }
        var c = connections[Int(fd)]
        c.sending = false
        if c.closing || res <= 0 {
            connections[Int(fd)] = c
            if c.closing {
                finishCloseIfIdle(fd)
            } else if res < 0 {
                failed(fd, call: "send (io_uring)", errno: -res)  // EPIPE, ECONNRESET
            } else {
                beginClose(fd)
            }
            return
        }
        stats.bytesOut &+= UInt64(res)
        if idleNanos != 0 { c.lastActive = now }
        var answered = false
        switch wire {
        case .echo:
            c.outHead += res
            c.queued -= Int(res)
            if res < c.sendBytes { stats.shortSends &+= 1 } else { answered = true }
            let first = c.outFirst
            if first == c.outLast && c.outHead == c.outTail {
                pool.release(first)
                c.outFirst = -1
                c.outLast = -1
                c.outHead = 0
                c.outTail = 0
            } else if first != c.outLast && c.outHead == Int32(pool.bufferSize) {
                c.outFirst = poolNext[Int(first)]
                c.outHead = 0
                pool.release(first)
            }
        case .http:
            c.batchSent += res
            if c.batchSent < c.batchBytes {
                stats.shortSends &+= 1
            } else {
                c.owed -= Int(c.batchBytes) / responseLength
                c.batchBytes = 0
                c.batchSent = 0
                answered = true
            }
        }
        connections[Int(fd)] = c
        if answered && closeAfterAnswer {
            beginClose(fd)  // claim H2: the server closes first and holds TIME_WAIT
            return
        }
        sendNext(fd)
    }

    /// Nothing left to send: close after the peer's end of stream, or resume a paused recv.
    func drained(_ fd: Int32) {
        let c = connections[Int(fd)]
        if c.peerClosed {
            beginClose(fd)
        } else if c.recvPaused {
            connections[Int(fd)].recvPaused = false
            if !c.recvArmed && !c.recvStalled { armRecv(fd) }
        }
    }
}
