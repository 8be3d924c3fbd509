#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// Echo framing: every chunk read is a request, and its own answer.
extension Reactor {
    func readEcho(_ fd: Int32) {
        let bufferSize = pool.bufferSize
        while true {
            let room = bufferSize - connections[Int(fd)].pendingOutput
            if room == 0 { pauseReading(fd); return }
            let asked = min(room, readSize)
            guard let n = readOnce(fd, into: scratch, max: asked) else { return }
            let micros = computeMicros(fd)
            if micros != 0 { Work.compute(micros: micros) }
            answer(fd, request: scratch, n, reply: scratch, n)
            if !connections[Int(fd)].open || !drainOnReport || drained(n, asked) { return }
        }
    }

    /// Echo off the loop: each chunk read is one task, read straight into a pool buffer that
    /// carries it to the answer (the worker never touches the bytes).
    func readEchoTask(_ fd: Int32) {
        // One chunk at a time, and only once the last answer is out: order and backpressure.
        if connections[Int(fd)].owesOutput { pauseReading(fd); return }
        let b = pool.acquire()
        guard let n = readOnce(fd, into: pool.base(b), max: readSize) else {
            pool.release(b)
            return
        }
        connections[Int(fd)].taskBuffer = b
        connections[Int(fd)].taskLength = n
        dispatch(fd)
    }
}
