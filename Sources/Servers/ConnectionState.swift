#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// Per-connection state, indexed by descriptor. Buffers are pool indexes, -1 when none is held.
struct ConnectionState {
    var open = false
    var interest: Interest = []
    var readPaused = false
    /// A partial HTTP request carried to the next read.
    var inBuffer: Int32 = -1
    var inLength = 0
    /// Output the socket did not take yet: bytes [outHead, outTail) of outBuffer.
    var outBuffer: Int32 = -1
    var outHead = 0
    var outTail = 0
    /// When a byte last moved either way (the loop's clock, ns); only the idle sweep reads it.
    var lastActive: UInt64 = 0
    /// Tells this connection from an earlier one on the same descriptor: a late completion is dropped.
    var generation: UInt32 = 0
    /// A request of this connection is with a worker (reading waits, so answers keep their order).
    var taskInFlight = false
    /// Echo off the loop: the chunk the task answers (a pool index, -1 when none), and its length
    /// (HTTP: the request's length at the front of inBuffer).
    var taskBuffer: Int32 = -1
    var taskLength = 0
    /// `--copy splice`: the connection's pipe and the bytes waiting in it for the socket.
    var pipeRead: Int32 = -1
    var pipeWrite: Int32 = -1
    var pipeBytes = 0
    /// Claim L1: this connection's requests burn `RequestPath.heavyMicros` more (drawn when it is adopted).
    var heavy = false

    var pendingOutput: Int { outTail - outHead }
    /// Output owed to the peer, in the pool buffer or in the splice pipe.
    var owesOutput: Bool { outTail > outHead || pipeBytes > 0 }
}
