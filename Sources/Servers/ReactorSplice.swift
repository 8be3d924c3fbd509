#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// `--copy splice` (claim K1, echo only): socket -> pipe -> socket, no byte copied through user space.
extension Reactor {
    /// socket -> pipe -> socket: the kernel moves page references, no byte enters user space (K1).
    func readSplice(_ fd: Int32) {
        while true {
            let c = connections[Int(fd)]
            // The last chunk still waits for the socket: its bytes stay in the pipe, reading pauses.
            if c.pipeBytes > 0 || c.pendingOutput > 0 { pauseReading(fd); return }
            stats.reads &+= 1
            let n = mux_splice_move(fd, c.pipeWrite, readSize)
            if n < 0 {
                let e = errno
                if e == EINTR { continue }
                if e == EAGAIN { stats.readsEAGAIN &+= 1; return }
                failed(fd, call: "splice (socket to pipe)", errno: e)
                return
            }
            if n == 0 { endOfInput(fd); return }
            connections[Int(fd)].pipeBytes = n
            connections[Int(fd)].lastActive = now
            if offloading { dispatch(fd); return }
            flushPipe(fd)
            if !connections[Int(fd)].open || !drainOnReport || connections[Int(fd)].pipeBytes > 0 { return }
        }
    }

    /// Moves the pipe's bytes to the socket; what the socket does not take waits in the pipe
    /// for writability (nothing is lost on EAGAIN).
    func flushPipe(_ fd: Int32) {
        while connections[Int(fd)].pipeBytes > 0 {
            stats.writes &+= 1
            let n = mux_splice_move(connections[Int(fd)].pipeRead, fd, connections[Int(fd)].pipeBytes)
            if n < 0 {
                let e = errno
                if e == EINTR { continue }
                if e == EAGAIN {
                    stats.writesEAGAIN &+= 1
                    connections[Int(fd)].readPaused = true
                    setInterest(fd, .write)
                    return
                }
                failed(fd, call: "splice (pipe to socket)", errno: e)
                return
            }
            connections[Int(fd)].pipeBytes -= n
            stats.bytesOut &+= UInt64(n)
            publishAnswers()
            connections[Int(fd)].lastActive = now
        }
        if closeAfterAnswer { close(fd) }
    }

    func onWritableSplice(_ fd: Int32) {
        guard connections[Int(fd)].pipeBytes > 0, !connections[Int(fd)].taskInFlight else { return }
        flushPipe(fd)
        guard connections[Int(fd)].open, connections[Int(fd)].pipeBytes == 0 else { return }
        connections[Int(fd)].readPaused = false
        setInterest(fd, acceptInterest)
        resumeReading(fd)
    }
}
