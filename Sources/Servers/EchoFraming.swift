#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// A wire protocol's framing: where the requests end in the bytes a connection has sent. The reactor's, the
/// proactor's and the blocking sessions' read paths all ask it, so a new protocol is one conforming type
/// (and its `WireProtocol` case). Static members of an enum: each use is specialised at compile time,
/// nothing is dispatched per request.
public protocol Framing {
    /// The complete requests at the front of bytes[0..<length], at most `limit` of them: how many, and the
    /// bytes they take. What follows them is a partial request, kept until more arrives.
    static func complete(_ bytes: UnsafeRawPointer, _ length: Int, limit: Int) -> (requests: Int, bytes: Int)
}

/// Echo: every chunk read is one request, answered by its own bytes.
public enum EchoFraming: Framing {
    @inline(__always)
    public static func complete(_ bytes: UnsafeRawPointer, _ length: Int, limit: Int) -> (requests: Int, bytes: Int) {
        length > 0 && limit > 0 ? (1, length) : (0, 0)
    }
}

/// Echo on the reactor: each chunk is answered from the scratch buffer it was read into.
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
            let request = EchoFraming.complete(scratch, n, limit: 1)
            answer(fd, request: scratch, request.bytes, reply: scratch, request.bytes)
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
