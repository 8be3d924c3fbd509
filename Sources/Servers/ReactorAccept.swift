#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// Accepting: taking clients off the listener (or from an acceptor thread) into the connection table,
/// and stepping back from the listener where a back-end is full and siblings share it (claims M1, M8, L1).
extension Reactor {
    func acceptClients() throws {
        // LT may leave clients for the next wake-up; ET must drain the queue.
        var budget = poller.edgeTriggered ? Int.max : options.sharedListener ? 1 : 64
        while budget > 0 && !listenerYielded {
            budget -= 1
            let fd: Int32
            do {
                switch try FD.accept(listenFD) {
                case .wouldBlock: return
                case .done(let c): fd = c
                }
            } catch let e as SystemError {
                switch e.errno {
                case EMFILE, ENFILE:
                    stats.acceptEMFILE &+= 1
                    // ET must go on until EAGAIN: clients still queued raise no new edge.
                    if options.emfile == .reserveFD && shedWithReserveDescriptor() { continue }
                    return
                // The client's trouble, not the listener's: accept(2) hands pending network errors
                // of the new connection to the caller, who should go on as after EAGAIN.
                case let e where isClientAcceptError(e):
                    continue
                default:
                    throw e
                }
            }
            adopt(fd)
        }
    }

    /// Takes a freshly accepted descriptor into the loop (from accept(2) or from the acceptor thread).
    func adopt(_ fd: Int32) {
        if let max = poller.maxDescriptor, fd > max {
            refuse(fd, DescriptorOutOfRange(fd: fd, limit: max + 1).description)
            yieldListener()
            return
        }
        if Int(fd) >= capacity {
            refuse(fd, "descriptor \(fd) is beyond the connection table (\(capacity))")
            return
        }
        Sockets.setNoDelay(fd)
        if options.blockingSockets { try? Sockets.setNonBlocking(fd, false) }
        var state = ConnectionState(open: true, interest: acceptInterest, lastActive: now)
        if splicing {
            var ends: (Int32, Int32) = (-1, -1)
            let rc = withUnsafeMutableBytes(of: &ends) { mux_pipe_nonblock($0.baseAddress!.assumingMemoryBound(to: Int32.self)) }
            if rc != 0 {
                refuse(fd, "\(SystemError("pipe2 (--copy splice)", errno: errno))")
                return
            }
            state.pipeRead = ends.0
            state.pipeWrite = ends.1
        }
        do {
            try poller.add(fd, acceptInterest)
        } catch {
            if state.pipeRead >= 0 { FD.close(state.pipeRead); FD.close(state.pipeWrite) }
            refuse(fd, "\(error)")
            return
        }
        // Never 0, and wrapping within the bits a task word carries.
        lastGeneration = lastGeneration >= LoopMessage.generationMask ? 1 : lastGeneration &+ 1
        state.generation = lastGeneration
        if heavyCompute != 0 { state.heavy = drawHeavy() }
        connections[Int(fd)] = state
        if fd > highestFD { highestFD = fd }
        stats.accepted &+= 1
        if options.faultBadDescriptor { misplaceDescriptor(fd) }
        if options.yieldListenerAtLimit, let max = poller.maxDescriptor, !roomAbove(fd, limit: max) { yieldListener() }
    }

    /// accept(2) returns the lowest free descriptor: after `fd`, the next one comes from above it, so the
    /// back-end has room for another client while some descriptor up to `limit` is free in the kernel's
    /// table. A slot with no connection may still hold another descriptor (the reserve, re-opened after a
    /// shed, lands high): F_GETFD tells (one call per adoption, on prefork's select path only).
    func roomAbove(_ fd: Int32, limit: Int32) -> Bool {
        var next = Int(fd) + 1
        while next <= Int(limit) && next < capacity {
            if !connections[next].open && fcntl(Int32(next), F_GETFD) == -1 && errno == EBADF { return true }
            next += 1
        }
        return false
    }

    /// Stops watching the listener while the back-end is full (only where siblings share it).
    func yieldListener() {
        guard options.yieldListenerAtLimit, listenFD >= 0, !listenerYielded else { return }
        try? poller.remove(listenFD)
        listenerYielded = true
    }

    /// A descriptor below the limit is free again: watch the listener again.
    func resumeListener() {
        guard listenerYielded else { return }
        listenerYielded = false
        do {
            try poller.addListener(listenFD, exclusive: options.exclusiveListener)
        } catch {
            writeLine("muxlab serve: cannot watch the listener again: \(error)", fd: 2)
        }
    }

    /// Whether the next adopted connection is heavy: a SplitMix64 hash of (loop, adoption number) below the
    /// share. Deterministic, and blind to placement: the acceptor's round-robin cannot see it coming.
    func drawHeavy() -> Bool {
        adoptions &+= 1
        var z = (UInt64(loopIndex) << 40 | adoptions) &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Double(z >> 11) / Double(1 << 53) < heavyShare
    }

    /// CPU to burn per request of `fd`: the path's, plus the heavy share's on a heavy connection.
    @inline(__always) func computeMicros(_ fd: Int32) -> Int {
        connections[Int(fd)].heavy ? inlineCompute + heavyCompute : inlineCompute
    }
}

extension Reactor {
    /// The `--fault-bad-descriptor` fault: a dup keeps the socket (and so its epoll registration, which
    /// reports `fd`) alive, and `fd` itself becomes a pipe's write end, where read(2) fails with EBADF.
    /// The kept socket and the pipe's read end are never closed: the process is meant to trap.
    func misplaceDescriptor(_ fd: Int32) {
        var ends: (Int32, Int32) = (-1, -1)
        let made = withUnsafeMutableBytes(of: &ends) { mux_pipe_nonblock($0.baseAddress!.assumingMemoryBound(to: Int32.self)) }
        guard made == 0, dup(fd) >= 0, dup2(ends.1, fd) == fd else {
            fatalError("muxlab serve: --fault-bad-descriptor could not set up its fault: \(SystemError("pipe2/dup/dup2", errno: errno))")
        }
    }
}
