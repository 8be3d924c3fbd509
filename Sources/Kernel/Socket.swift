#if canImport(Glibc)
import Glibc
#endif
import CShims

/// An IPv4 or IPv6 endpoint, parsed from "HOST:PORT" ("127.0.0.1:8080", "[::1]:8080").
public struct Endpoint: Equatable, CustomStringConvertible, Sendable {
    public let host: String
    public let port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    public init(parsing text: String) throws {
        var hostPart: Substring
        var portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw ValueError("target '\(text)' is not HOST:PORT (IPv6 as [::1]:8080)")
            }
            hostPart = text[text.index(after: text.startIndex)..<close]
            portPart = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw ValueError("target '\(text)' is not HOST:PORT, e.g. 127.0.0.1:8080")
            }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
        }
        guard let port = UInt16(portPart), port > 0 else {
            throw ValueError("target '\(text)': port '\(portPart)' must be 1-65535")
        }
        let host = hostPart == "localhost" ? "127.0.0.1" : String(hostPart)
        guard Endpoint.isNumeric(host) else {
            throw ValueError("target '\(text)': host '\(host)' must be a numeric IPv4 or IPv6 address (e.g. 127.0.0.1)")
        }
        self.init(host: host, port: port)
    }

    public var isIPv6: Bool { host.contains(":") }
    public var description: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Loopback: 127.0.0.0/8 or ::1.
    public var isLoopback: Bool {
        if isIPv6 { return host == "::1" }
        var addr = in_addr()
        guard inet_pton(AF_INET, host, &addr) == 1 else { return false }
        return (UInt32(bigEndian: addr.s_addr) >> 24) == 127
    }

    static func isNumeric(_ host: String) -> Bool {
        var a4 = in_addr()
        var a6 = in6_addr()
        return inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1
    }

    /// Calls body with a sockaddr for this endpoint.
    public func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) rethrows -> R {
        if isIPv6 {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = port.bigEndian
            _ = inet_pton(AF_INET6, host, &sa.sin6_addr)
            return try withUnsafePointer(to: &sa) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        _ = inet_pton(AF_INET, host, &sa.sin_addr)
        return try withUnsafePointer(to: &sa) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }
}

/// Socket set-up calls. Data-path reads and writes are in `FD`.
public enum Sockets {
    /// A non-blocking listening TCP socket; returns the descriptor and the bound port (port 0 picks one).
    public static func listen(on endpoint: Endpoint, backlog: Int32 = 4096, reusePort: Bool = false) throws -> (fd: Int32, port: UInt16) {
        let family = endpoint.isIPv6 ? AF_INET6 : AF_INET
        let fd = try syscallOrThrow("socket") { socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        do {
            try setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1, name: "setsockopt(SO_REUSEADDR)")
            if reusePort { try setOption(fd, SOL_SOCKET, SO_REUSEPORT, 1, name: "setsockopt(SO_REUSEPORT)") }
            let rc = endpoint.withSockAddr { bind(fd, $0, $1) }
            if rc != 0 {
                let e = errno
                if e == EADDRINUSE {
                    throw ValueError("port \(endpoint.port) on \(endpoint.host) is already in use: pick another with --port, or --port 0 for a free one")
                }
                throw SystemError("bind(\(endpoint))", errno: e)
            }
            try syscallOrThrow("listen") { Glibc.listen(fd, backlog) }
            return (fd, try localPort(fd))
        } catch {
            close(fd)
            throw error
        }
    }

    public static func localPort(_ fd: Int32) throws -> UInt16 {
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &ss) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        if rc != 0 { throw SystemError("getsockname", errno: errno) }
        let family = ss.ss_family
        return withUnsafePointer(to: &ss) { p in
            if family == sa_family_t(AF_INET6) {
                return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
            }
            return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        }
    }

    /// Starts a non-blocking connect; `.wouldBlock` means in progress (wait for writable, then `connectResult`).
    public static func startConnect(to endpoint: Endpoint, from source: String? = nil) throws -> (fd: Int32, inProgress: Bool) {
        let family = endpoint.isIPv6 ? AF_INET6 : AF_INET
        let fd = try syscallOrThrow("socket") { socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        if let source {
            // Let connect() pick the port, so each source address gets its own ephemeral range.
            try? setOption(fd, Int32(IPPROTO_IP), 24 /* IP_BIND_ADDRESS_NO_PORT */, 1, name: "setsockopt(IP_BIND_ADDRESS_NO_PORT)")
            let rc = Endpoint(host: source, port: 0).withSockAddr { bind(fd, $0, $1) }
            if rc != 0 { let e = errno; close(fd); throw SystemError("bind(\(source))", errno: e) }
        }
        let rc = endpoint.withSockAddr { connect(fd, $0, $1) }
        if rc == 0 { return (fd, false) }
        let e = errno
        if e == EINPROGRESS { return (fd, true) }
        close(fd)
        throw SystemError("connect(\(endpoint))", errno: e)
    }

    /// The pending error of a non-blocking connect (0 when it succeeded).
    public static func pendingError(_ fd: Int32) -> Int32 {
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 { return errno }
        return err
    }

    public static func setOption(_ fd: Int32, _ level: Int32, _ option: Int32, _ value: Int32, name: StaticString) throws {
        var v = value
        try syscallOrThrow(name) { setsockopt(fd, level, option, &v, socklen_t(MemoryLayout<Int32>.size)) }
    }

    public static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    public static func setNonBlocking(_ fd: Int32, _ on: Bool) throws {
        let flags = try syscallOrThrow("fcntl(F_GETFL)") { fcntl(fd, F_GETFL) }
        try syscallOrThrow("fcntl(F_SETFL)") { fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK) }
    }
}

/// Data-path calls on a descriptor. Each returns `.wouldBlock` on EAGAIN and throws `SystemError` otherwise.
public enum FD {
    @inline(__always)
    public static func read(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ count: Int) throws -> IOResult<Int> {
        try syscall("read") { Glibc.read(fd, buf, count) }
    }

    @inline(__always)
    public static func write(_ fd: Int32, _ buf: UnsafeRawPointer, _ count: Int) throws -> IOResult<Int> {
        try syscall("write") { Glibc.write(fd, buf, count) }
    }

    @inline(__always)
    public static func accept(_ fd: Int32) throws -> IOResult<Int32> {
        try syscall("accept4") { mux_accept4_nonblock(fd) }
    }

    @inline(__always)
    public static func close(_ fd: Int32) {
        _ = Glibc.close(fd)  // Linux releases the descriptor even when close reports EINTR: never retry.
    }
}
