#if canImport(Glibc)
import Glibc
#endif
import CShims
import CUring
import Kernel

/// The proactor's receives: multishot recv into the provided-buffer ring, each completion framed
/// (echo or HTTP) and answered; ENOBUFS and re-arming.
extension Proactor {
    func armRecv(_ fd: Int32, first: Bool = false) {
        let g = connections[Int(fd)].generation
        guard mux_uring_recv_select(ring, fd, bufferGroup, multishotRecv ? 1 : 0, tag(.recv, fd, g)) == 0 else {
            beginClose(fd)
            return
        }
        connections[Int(fd)].recvArmed = true
        if !first { stats.recvRearms &+= 1 }
    }

    func onRecv(_ fd: Int32, _ generation: UInt32, _ res: Int32, _ flags: UInt32) {
        let bid: Int32 = flags & MUX_CQE_F_BUFFER != 0 ? Int32(flags >> MUX_CQE_BUFFER_SHIFT) : -1
        guard current(fd, generation) else {
            if bid >= 0 { recycle(bid) }
            stats.stale &+= 1
            return
        }
        if flags & MUX_CQE_F_MORE == 0 { connections[Int(fd)].recvArmed = false }
        if connections[Int(fd)].closing {
            if bid >= 0 { recycle(bid) }
            finishCloseIfIdle(fd)
            return
        }
        if res > 0 && bid >= 0 {
            stats.reads &+= 1
            if idleNanos != 0 { connections[Int(fd)].lastActive = now }
            switch wire {
            case .echo: received(fd, echo: bid, Int(res))
            case .http: received(fd, http: bid, Int(res))
            }
            guard connections[Int(fd)].open && !connections[Int(fd)].closing else { return }
        } else if res == 0 {
            connections[Int(fd)].peerClosed = true
        } else if res < 0 {
            if bid >= 0 { recycle(bid) }
            switch -res {
            case ENOBUFS:
                stats.enobufs &+= 1
                stall(fd)
            case ECANCELED:
                break  // our pause: reading resumes when the output drains
            case EINVAL where multishotRecv:
                multishotRecv = false  // a kernel before 6.0: one recv per SQE
            default:
                failed(fd, call: "recv (io_uring)", errno: -res)  // ECONNRESET and the like
                return
            }
        }
        let c = connections[Int(fd)]
        if !c.recvArmed && !c.recvPaused && !c.recvStalled && !c.peerClosed { armRecv(fd) }
        if !c.sending { sendNext(fd) }
    }

    /// Echo: the bytes are copied to the connection's output chain and the provided buffer goes back
    /// at once: a peer that does not read its echo can then never starve the others of provided buffers.
    func received(_ fd: Int32, echo bid: Int32, _ n: Int) {
        Work.compute(micros: computeMicros)
        var c = connections[Int(fd)]
        var from = UnsafeRawPointer(mux_uring_buffer(ring, UInt16(bid))!)
        var left = n
        let size = Int32(pool.bufferSize)
        while left > 0 {
            if c.outLast < 0 || c.outTail == size {
                let b = acquireLinked()
                if c.outLast >= 0 { poolNext[Int(c.outLast)] = b } else { c.outFirst = b; c.outHead = 0 }
                c.outLast = b
                c.outTail = 0
            }
            let k = min(left, Int(size - c.outTail))
            (pool.base(c.outLast) + Int(c.outTail)).copyMemory(from: from, byteCount: k)
            c.outTail += Int32(k)
            from += k
            left -= k
        }
        c.queued += n
        recycle(bid)
        connections[Int(fd)] = c
        if c.queued >= maxQueued { pauseRecv(fd) }
    }

    /// A pool buffer with room for its chain link (the link table grows with the pool, rarely).
    func acquireLinked() -> Int32 {
        let b = pool.acquire()
        if Int(b) >= poolNextCapacity {
            let bigger = UnsafeMutablePointer<Int32>.allocate(capacity: poolNextCapacity * 2)
            bigger.update(from: poolNext, count: poolNextCapacity)
            poolNext.deallocate()
            poolNext = bigger
            poolNextCapacity *= 2
        }
        poolNext[Int(b)] = -1
        return b
    }

    /// HTTP: answers every complete request (pipelined ones too); a partial one is kept for the next recv.
    func received(_ fd: Int32, http bid: Int32, _ n: Int) {
        var c = connections[Int(fd)]
        let data = mux_uring_buffer(ring, UInt16(bid))!
        let region: UnsafeMutableRawPointer
        let length: Int
        if c.inLength > 0 {
            let held = Int(c.inLength)
            guard held + n <= pool.bufferSize else {
                recycle(bid)
                beginClose(fd)  // a request header larger than a buffer: not HTTP we serve
                return
            }
            region = pool.base(c.inBuffer)
            (region + held).copyMemory(from: data, byteCount: n)
            recycle(bid)
            length = held + n
        } else {
            region = data
            length = n
        }
        let (answers, consumed) = HTTPFraming.complete(region, length, limit: .max)
        let left = length - consumed
        if left > 0 {
            if c.inBuffer < 0 { c.inBuffer = pool.acquire() }
            let dst = pool.base(c.inBuffer)
            if dst != region || consumed > 0 { memmove(dst, region + consumed, left) }
        } else if c.inBuffer >= 0 {
            pool.release(c.inBuffer)
            c.inBuffer = -1
        }
        c.inLength = Int32(left)
        if region == data { recycle(bid) }
        c.owed += answers
        connections[Int(fd)] = c
        stats.requests &+= UInt64(answers)
        Work.compute(micros: computeMicros * answers)
        if c.owed >= maxOwed { pauseRecv(fd) }
    }

    /// Backpressure: the peer is not reading its answers, so stop taking its requests.
    func pauseRecv(_ fd: Int32) {
        let c = connections[Int(fd)]
        guard c.recvArmed && !c.recvPaused else { return }
        connections[Int(fd)].recvPaused = true
        stats.pauses &+= 1
        _ = mux_uring_cancel(ring, tag(.recv, fd, c.generation), tag(.cancel, fd, c.generation))
    }

    func stall(_ fd: Int32) {
        guard !connections[Int(fd)].recvStalled else { return }
        // Only a close and re-accept of the same descriptor within one turn can repeat an entry.
        guard stalledCount < capacity else { beginClose(fd); return }
        connections[Int(fd)].recvStalled = true
        stalled[stalledCount] = fd
        stalledCount += 1
    }

    func rearmStalled() {
        let n = stalledCount
        stalledCount = 0
        for i in 0..<n {
            let fd = stalled[i]
            guard connections[Int(fd)].open && connections[Int(fd)].recvStalled else { continue }
            connections[Int(fd)].recvStalled = false
            let c = connections[Int(fd)]
            if !c.closing && !c.recvArmed && !c.recvPaused && !c.peerClosed { armRecv(fd) }
        }
    }

    @inline(__always)
    func recycle(_ bid: Int32) {
        mux_uring_buffer_recycle(ring, UInt16(truncatingIfNeeded: bid))
    }
}
