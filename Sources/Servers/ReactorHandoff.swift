#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// Hand-off to workers (models 5-9): the inbox of adopted connections and completions, requests sent
/// to a worker, and the answer the loop sends when one comes back (claim C5: the loop does all the I/O).
extension Reactor {
    /// Everything other threads sent since the last wake-up: adopted connections and completions.
    func takeInbox() {
        guard let inbox else { return }
        inbox.rearm()
        var message: UInt64 = 0
        while inbox.take(&message) {
            if message & LoopMessage.adoptFlag != 0 {
                adopt(LoopMessage.fd(message))
            } else {
                complete(message)
            }
        }
    }

    /// Hands the connection's pending request to a worker; reading waits for the answer.
    func dispatch(_ fd: Int32) {
        connections[Int(fd)].taskInFlight = true
        connections[Int(fd)].readPaused = true
        // Level-triggered back-ends would report the unread socket on every wait meanwhile.
        if !poller.edgeTriggered { setInterest(fd, []) }
        tasksSent &+= 1
        tasks!.submit(LoopMessage.task(fd: fd, loop: loopIndex, generation: connections[Int(fd)].generation))
    }

    /// A worker finished a request: the loop, not the worker, sends the answer (claim C5).
    func complete(_ message: UInt64) {
        let fd = LoopMessage.fd(message)
        guard fd >= 0, Int(fd) < capacity else { return }
        let c = connections[Int(fd)]
        // The connection closed while its request was out (perhaps reopened on the same descriptor).
        guard c.open, c.taskInFlight, c.generation == LoopMessage.generation(message) else { return }
        connections[Int(fd)].taskInFlight = false
        if splicing {
            flushPipe(fd)
        } else if wire == .echo {
            let b = c.taskBuffer
            connections[Int(fd)].taskBuffer = -1
            let chunk = pool.base(b)
            answer(fd, request: chunk, c.taskLength, reply: chunk, c.taskLength)
            pool.release(b)
        } else {
            let region = pool.base(c.inBuffer)
            stats.requests &+= 1
            answer(fd, request: region, c.taskLength, reply: response, responseLength)
            guard connections[Int(fd)].open else { return }
            keepPartialRequest(fd, region, from: c.taskLength, to: c.inLength)
        }
        guard connections[Int(fd)].open, !connections[Int(fd)].owesOutput else { return }
        // All sent: the next request (already buffered, or still in the socket) may go.
        connections[Int(fd)].readPaused = false
        setInterest(fd, acceptInterest)
        resumeReading(fd)
    }
}
