#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// HTTP/1.1 as muxlab serves it: a request ends at its empty line (HTTPRequestScanner; no body), and each is
/// answered with `HTTPResponse`, pipelined ones back to back.
public enum HTTPFraming: Framing {
    @inline(__always)
    public static func complete(_ bytes: UnsafeRawPointer, _ length: Int, limit: Int) -> (requests: Int, bytes: Int) {
        var requests = 0
        var consumed = 0
        while requests < limit, let end = HTTPRequestScanner.endOfRequest(bytes + consumed, length - consumed) {
            consumed += end
            requests += 1
        }
        return (requests, consumed)
    }
}

/// HTTP on the reactor: complete requests are answered back to back where pipelined, and a partial one
/// waits in the connection's buffer.
extension Reactor {
    func readHTTP(_ fd: Int32) {
        let bufferSize = pool.bufferSize
        while true {
            if bufferSize - connections[Int(fd)].pendingOutput < responseLength { pauseReading(fd); return }
            let held = connections[Int(fd)].inLength
            let region = held > 0 ? pool.base(connections[Int(fd)].inBuffer) : scratch
            if held == bufferSize {
                close(fd)  // a request header larger than a buffer: not HTTP we serve
                return
            }
            let asked = min(bufferSize - held, readSize)
            guard let n = readOnce(fd, into: region + held, max: asked) else { return }
            handleRequests(fd, region, held + n)
            if !connections[Int(fd)].open || !drainOnReport || drained(n, asked) { return }
            if connections[Int(fd)].readPaused { return }
        }
    }

    /// HTTP off the loop: bytes gather in the connection's own buffer, where the request being
    /// computed stays until its answer is sent; one request per task.
    func readHTTPTask(_ fd: Int32) {
        let bufferSize = pool.bufferSize
        while true {
            if connections[Int(fd)].owesOutput { pauseReading(fd); return }
            var c = connections[Int(fd)]
            if c.inLength == bufferSize {
                close(fd)  // a request header larger than a buffer: not HTTP we serve
                return
            }
            if c.inBuffer < 0 {
                c.inBuffer = pool.acquire()
                c.inLength = 0
                connections[Int(fd)] = c
            }
            let region = pool.base(c.inBuffer)
            let asked = min(bufferSize - c.inLength, readSize)
            guard let n = readOnce(fd, into: region + c.inLength, max: asked) else {
                // Idle connections hold no buffer.
                if connections[Int(fd)].open && connections[Int(fd)].inLength == 0 {
                    keepPartialRequest(fd, region, from: 0, to: 0)
                }
                return
            }
            handleRequests(fd, region, c.inLength + n)
            if !connections[Int(fd)].open || !drainOnReport || connections[Int(fd)].readPaused || drained(n, asked) { return }
        }
    }

    /// Answers every complete request in region[0..<length] that output room allows; keeps the rest.
    /// Off the loop, hands the first complete request to a worker instead (region is then inBuffer).
    func handleRequests(_ fd: Int32, _ region: UnsafeMutableRawPointer, _ length: Int) {
        if offloading {
            let first = HTTPFraming.complete(region, length, limit: 1)
            if first.requests == 1 {
                connections[Int(fd)].inLength = length
                connections[Int(fd)].taskLength = first.bytes
                dispatch(fd)
            } else {
                keepPartialRequest(fd, region, from: 0, to: length)
            }
            return
        }
        var consumed = 0
        var outOfRoom = false
        while true {
            let room = (pool.bufferSize - connections[Int(fd)].pendingOutput) / responseLength
            let first = consumed
            let complete = HTTPFraming.complete(region + consumed, length - consumed, limit: room)
            let answers = complete.requests
            consumed += complete.bytes
            stats.requests &+= UInt64(answers)
            if answers > 0 {
                let micros = computeMicros(fd)
                if micros != 0 { Work.compute(micros: micros * answers) }
                answer(fd, request: region + first, consumed - first, reply: response, answers * responseLength)
                if !connections[Int(fd)].open { return }
            }
            if answers < room { break }
            // A buffer's worth of answers went out: go on while the socket took them all, else wait for
            // it to drain (pausing with nothing queued would wait for a writability that resumes nothing).
            if connections[Int(fd)].pendingOutput > 0 { outOfRoom = true; break }
        }
        keepPartialRequest(fd, region, from: consumed, to: length)
        if outOfRoom && consumed < length { pauseReading(fd) }
    }

    func keepPartialRequest(_ fd: Int32, _ region: UnsafeMutableRawPointer, from: Int, to: Int) {
        let left = to - from
        var c = connections[Int(fd)]
        if left == 0 {
            if c.inBuffer >= 0 { pool.release(c.inBuffer); c.inBuffer = -1 }
            c.inLength = 0
        } else {
            if c.inBuffer < 0 { c.inBuffer = pool.acquire() }
            let dst = pool.base(c.inBuffer)
            if dst != region || from > 0 { dst.copyMemory(from: region + from, byteCount: left) }
            c.inLength = left
        }
        connections[Int(fd)] = c
    }
}
