#if canImport(Glibc)
import Glibc
#endif
import Kernel

/// Shared by the test suites: where the built muxlab is, and a server child for a test.
public enum TestSupport {
    /// The package root, found from this file's path.
    public static var packageRoot: String {
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)  // Tests/TestSupport/TestSupport.swift
        return parts.joined(separator: "/")
    }

    /// The release binary `make test` builds before running the tests.
    public static var muxlab: String {
        get throws {
            let path = packageRoot + "/.build/release/muxlab"
            guard access(path, X_OK) == 0 else {
                throw ValueError("\(path) is missing: run `make test`, which builds it before the tests")
            }
            return path
        }
    }

    /// Starts `muxlab serve` with `arguments` on a free port and waits for its ready line.
    public static func startServer(_ arguments: [String]) throws -> (ChildProcess, Endpoint) {
        let (child, endpoint, _) = try startServerWithReadyLine(arguments)
        return (child, endpoint)
    }

    /// `startServer`, also handing back the ready line (the variant in force).
    public static func startServerWithReadyLine(_ arguments: [String]) throws -> (server: ChildProcess, endpoint: Endpoint, ready: String) {
        let child = try ChildProcess(executable: try muxlab, arguments: ["serve", "--port", "0"] + arguments,
                                     stderrPath: "/tmp/muxlab-test-\(getpid())-\(monotonicNanos()).err")
        guard let line = child.readLine(timeout: 10), line.hasPrefix("ready "),
              let port = keyValues(line)["port"].flatMap({ UInt16($0) }) else {
            child.stop()
            throw ValueError("server \(arguments) did not print a ready line: \(child.stderrTail(3))")
        }
        return (child, Endpoint(host: "127.0.0.1", port: port), line)
    }

    /// A command run to its end: how it ended, its stdout lines and its stderr.
    public struct Finished {
        public let status: ExitStatus
        public let stdout: [String]
        public let stderr: String
    }

    /// Runs `executable` (never through a shell), reads its stdout until it closes or `timeout` passes,
    /// waits for it, and ends it by pid if it outlives that; stderr goes through a file, removed after.
    public static func runToEnd(_ executable: String, _ arguments: [String], timeout: Double) throws -> Finished {
        let errPath = "/tmp/muxlab-test-\(getpid())-\(monotonicNanos()).err"
        let child = try ChildProcess(executable: executable, arguments: arguments, stderrPath: errPath)
        let stdout = child.readRemaining(timeout: timeout)
        let status = child.wait(timeout: 10) ?? child.stop()
        let stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        unlink(errPath)
        return Finished(status: status, stdout: stdout, stderr: stderr)
    }

    /// The `key=value` pairs of a `ready ...` or `stats ...` line.
    /// The server's counters now: stale lines are drained, then SIGUSR1 (to the server's pid alone, not its
    /// children) asks for one `stats ...` line, up to `attempts` times, `timeout` seconds each.
    public static func serverStats(_ server: ChildProcess, attempts: Int = 1, timeout: Double = 5) throws -> [String: Int] {
        while server.readLine(timeout: 0.01) != nil {}
        for _ in 0..<attempts {
            kill(server.pid, SIGUSR1)
            if let line = server.readLine(timeout: timeout), line.hasPrefix("stats ") {
                return keyValues(line).compactMapValues { Int($0) }
            }
        }
        throw ValueError("no stats line from the server after SIGUSR1: \(server.stderrTail(3))")
    }

    public static func keyValues(_ line: String) -> [String: String] {
        var out: [String: String] = [:]
        for part in line.split(separator: " ").dropFirst() {
            let kv = part.split(separator: "=", maxSplits: 1)
            if kv.count == 2 { out[String(kv[0])] = String(kv[1]) }
        }
        return out
    }

    /// Bytes that arrive within `ms` milliseconds, up to `max`.
    public static func readWithin(_ fd: Int32, ms: Int32, max: Int = 4096) -> [UInt8] {
        var out: [UInt8] = []
        let end = monotonicNanos() + UInt64(ms) * 1_000_000
        while out.count < max {
            let now = monotonicNanos()
            guard now < end else { break }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, Int32((end - now) / 1_000_000) + 1) > 0 else { break }
            var buf = [UInt8](repeating: 0, count: max - out.count)
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return out
    }

    /// True once `condition` holds, checked every 10 ms for up to `seconds`.
    public static func eventually(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let end = monotonicNanos() + UInt64(seconds * 1e9)
        while true {
            if try condition() { return true }
            if monotonicNanos() >= end { return false }
            usleep(10_000)
        }
    }

    /// A connected blocking TCP client socket.
    public static func connect(_ endpoint: Endpoint) throws -> Int32 {
        let (fd, inProgress) = try Sockets.startConnect(to: endpoint)
        if inProgress {
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&pfd, 1, 5000)
            let err = Sockets.pendingError(fd)
            if err != 0 { close(fd); throw SystemError("connect", errno: err) }
        }
        try Sockets.setNonBlocking(fd, false)
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    /// Reads exactly `count` bytes (or fewer at end of stream / timeout).
    public static func readExactly(_ fd: Int32, _ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = out.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, count - got) }
            if n <= 0 { break }
            got += n
        }
        return Array(out[0..<got])
    }

    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + sent, bytes.count - sent) }
            if n <= 0 { return false }
            sent += n
        }
        return true
    }
}
