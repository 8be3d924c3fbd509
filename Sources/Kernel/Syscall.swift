#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: the call's name and its errno.
public struct SystemError: Error, CustomStringConvertible, Equatable {
    public let call: String
    public let errno: Int32

    public init(_ call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var description: String {
        "\(call): \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// The outcome of a non-blocking call: done with a value, or it would block.
public enum IOResult<T: Equatable>: Equatable {
    case done(T)
    case wouldBlock
}

/// The one syscall wrapper: retries EINTR, turns EAGAIN into `.wouldBlock`,
/// throws `SystemError` naming the call otherwise. `@inline(__always)` so errno
/// is read right after the call, before anything else can touch it.
@inline(__always)
public func syscall<T: FixedWidthInteger>(_ name: StaticString, _ body: () -> T) throws -> IOResult<T> {
    while true {
        let r = body()
        if r >= 0 { return .done(r) }
        let e = errno
        if e == EINTR { continue }
        if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
        throw SystemError("\(name)", errno: e)
    }
}

/// For calls that never legitimately return EAGAIN (setup calls): EINTR retried, errors thrown.
@inline(__always)
@discardableResult
public func syscallOrThrow<T: FixedWidthInteger>(_ name: StaticString, _ body: () -> T) throws -> T {
    switch try syscall(name, body) {
    case .done(let v): return v
    case .wouldBlock: throw SystemError("\(name)", errno: EAGAIN)
    }
}

/// Monotonic clock in nanoseconds (CLOCK_MONOTONIC).
@inline(__always)
public func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Writes a whole line to a descriptor (stdout/stderr), bypassing stdio buffering
/// so the driver sees it at once.
public func writeLine(_ line: String, fd: Int32 = 1) {
    var text = line
    if !text.hasSuffix("\n") { text += "\n" }
    text.withCString { p in
        var left = strlen(p)
        var cursor = UnsafeRawPointer(p)
        while left > 0 {
            let n = Glibc.write(fd, cursor, left)
            if n < 0 { if errno == EINTR { continue } else { return } }
            left -= n
            cursor += n
        }
    }
}
