#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// Writing: answers sent at once where the socket takes them, the rest queued for writability; the
/// killer toggles on the way (K1 staged copies, K3 allocation per request, H2 server-first close); interest
/// changes and closing.
extension Reactor {
    /// The two counts a window compares with the load's, published as each answer's bytes go out, not
    /// only at the end of the wake-up: an edge-triggered loop reading until EAGAIN from a quick client,
    /// or draining its inbox while the worker keeps answering, can send many answers in one wake-up
    /// (20 in a CI run, read by the driver as the load counting 20 more). Two relaxed stores.
    @inline(__always)
    func publishAnswers() {
        guard let publish else { return }
        publish.counters.publish(.bytesOut, stats.bytesOut, slot: publish.slot)
        publish.counters.publish(.requests, stats.requests, slot: publish.slot)
    }

    /// Sends one answer. The default path is a plain `send`; the killer toggles copy it through
    /// staging buffers (K1), into a fresh heap buffer (K3), or close after it (H2).
    @inline(__always)
    func answer(_ fd: Int32, request: UnsafeRawPointer, _ requestLength: Int, reply: UnsafeRawPointer, _ replyLength: Int) {
        if plainAnswers {
            send(fd, reply, replyLength)
        } else {
            answerWithToggles(fd, request: request, requestLength, reply: reply, replyLength)
        }
    }

    @inline(never)
    func answerWithToggles(_ fd: Int32, request: UnsafeRawPointer, _ requestLength: Int, reply: UnsafeRawPointer, _ replyLength: Int) {
        var out = reply
        if let stagedRequest, let stagedResponse {
            // The request object, then the response built from it: two copies a framework makes.
            stagedRequest.copyMemory(from: request, byteCount: requestLength)
            stagedResponse.copyMemory(from: wire == .echo ? UnsafeRawPointer(stagedRequest) : reply, byteCount: replyLength)
            out = UnsafeRawPointer(stagedResponse)
        }
        if allocPerRequest {
            let fresh = UnsafeMutableRawPointer.allocate(byteCount: replyLength, alignment: 16)
            fresh.copyMemory(from: out, byteCount: replyLength)
            send(fd, fresh, replyLength)
            fresh.deallocate()
        } else {
            send(fd, out, replyLength)
        }
        if closeAfterAnswer && connections[Int(fd)].open && connections[Int(fd)].pendingOutput == 0 { close(fd) }
    }

    /// Writes now if nothing is queued (the direct path); whatever the socket does not take is queued.
    func send(_ fd: Int32, _ data: UnsafeRawPointer, _ count: Int) {
        var off = 0
        if connections[Int(fd)].pendingOutput == 0 {
            while off < count {
                stats.writes &+= 1
                do {
                    switch try FD.write(fd, data + off, count - off) {
                    case .wouldBlock:
                        stats.writesEAGAIN &+= 1
                        queue(fd, data + off, count - off)
                        return
                    case .done(let n):
                        stats.bytesOut &+= UInt64(n)
                        publishAnswers()
                        off += n
                        connections[Int(fd)].lastActive = now
                    }
                } catch {
                    failed(fd, error)
                    return
                }
            }
            return
        }
        queue(fd, data, count)
    }

    func queue(_ fd: Int32, _ data: UnsafeRawPointer, _ count: Int) {
        var c = connections[Int(fd)]
        if c.outBuffer < 0 { c.outBuffer = pool.acquire(); c.outHead = 0; c.outTail = 0 }
        let base = pool.base(c.outBuffer)
        if c.outTail + count > pool.bufferSize {
            // Compact: callers never queue more than the free room, so it fits after the move.
            base.copyMemory(from: base + c.outHead, byteCount: c.pendingOutput)
            c.outTail -= c.outHead
            c.outHead = 0
        }
        (base + c.outTail).copyMemory(from: data, byteCount: count)
        c.outTail += count
        connections[Int(fd)] = c
        // Ask for writability only while output waits: level-triggered back-ends would busy-loop otherwise.
        if options.writeInterest == .onDemand { setInterest(fd, c.readPaused ? .write : [.read, .write]) }
    }

    func onWritable(_ fd: Int32) {
        if splicing { onWritableSplice(fd); return }
        var c = connections[Int(fd)]
        guard c.outBuffer >= 0 else { return }
        let base = pool.base(c.outBuffer)
        while c.outHead < c.outTail {
            stats.writes &+= 1
            do {
                switch try FD.write(fd, base + c.outHead, c.outTail - c.outHead) {
                case .wouldBlock:
                    stats.writesEAGAIN &+= 1
                    connections[Int(fd)] = c
                    return
                case .done(let n):
                    stats.bytesOut &+= UInt64(n)
                    publishAnswers()
                    c.outHead += n
                    c.lastActive = now
                }
            } catch {
                failed(fd, error)
                return
            }
        }
        pool.release(c.outBuffer)
        c.outBuffer = -1
        c.outHead = 0
        c.outTail = 0
        let wasPaused = c.readPaused && !c.taskInFlight
        if !c.taskInFlight { c.readPaused = false }
        connections[Int(fd)] = c
        // The queued output was an answer: with server-first closing, the connection is done.
        if closeAfterAnswer { close(fd); return }
        setInterest(fd, c.taskInFlight ? [] : acceptInterest)
        if wasPaused { resumeReading(fd) }
    }

    func pauseReading(_ fd: Int32) {
        connections[Int(fd)].readPaused = true
        // Under ET a read interest left in place costs nothing: no edge comes until we read.
        if !poller.edgeTriggered { setInterest(fd, .write) }
    }

    /// After output drained: answer requests already buffered, then read again
    /// (under ET no new edge may come for bytes that arrived while paused).
    func resumeReading(_ fd: Int32) {
        guard connections[Int(fd)].open else { return }
        if wire == .http && connections[Int(fd)].inLength > 0 {
            let c = connections[Int(fd)]
            handleRequests(fd, pool.base(c.inBuffer), c.inLength)
            if !connections[Int(fd)].open || connections[Int(fd)].readPaused { return }
        }
        if poller.edgeTriggered {
            readToEnd = true
            onReadable(fd)
        }
    }

    @inline(__always)
    func setInterest(_ fd: Int32, _ interest: Interest) {
        guard connections[Int(fd)].interest != interest else { return }
        connections[Int(fd)].interest = interest
        do { try poller.modify(fd, interest) } catch { failed(fd, error) }
    }

    func close(_ fd: Int32) {
        var c = connections[Int(fd)]
        guard c.open else { return }
        try? poller.remove(fd)
        FD.close(fd)
        if c.inBuffer >= 0 { pool.release(c.inBuffer) }
        if c.outBuffer >= 0 { pool.release(c.outBuffer) }
        // A worker never touches the chunk: it can go back to the pool while the task is out.
        if c.taskBuffer >= 0 { pool.release(c.taskBuffer) }
        if c.pipeRead >= 0 { FD.close(c.pipeRead); FD.close(c.pipeWrite) }
        c = ConnectionState()
        connections[Int(fd)] = c
        stats.closed &+= 1
        resumeListener()
    }
}
