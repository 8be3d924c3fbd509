#if canImport(Glibc)
import Glibc
#endif
import CShims

/// How a child ended.
public enum ExitStatus: Equatable, CustomStringConvertible, Sendable {
    case exited(Int32)
    case signaled(Int32)

    public var description: String {
        switch self {
        case .exited(let code): return "exit code \(code)"
        case .signaled(let sig): return "killed by signal \(sig) (\(String(cString: strsignal(sig))))"
        }
    }

    public var succeeded: Bool { self == .exited(0) }
}

/// A child process of the driver: its own process group, dies with the driver
/// (PR_SET_PDEATHSIG), stdout through a pipe we read line by line, stderr to a file.
public final class ChildProcess {
    public let pid: Int32
    public let stderrPath: String?
    private let stdoutFD: Int32
    private var pending: [UInt8] = []
    private var stdoutClosed = false
    public private(set) var status: ExitStatus?
    /// The control channel (stdin and stdout) of a child started with `control: true`.
    public let channel: ControlChannel?

    /// Spawns `executable` with `arguments` (argv[1...]); never through a shell.
    /// - Parameter control: the child's stdin is a pipe from us and `channel` speaks the control
    ///   protocol over it and stdout (then read messages with `channel`, not `readLine`).
    public init(executable: String, arguments: [String], stderrPath: String? = nil, environment: [String]? = nil,
                control: Bool = false) throws {
        var fds: [Int32] = [0, 0]
        try syscallOrThrow("pipe2") { mux_pipe_cloexec(&fds) }
        var inFDs: [Int32] = [-1, -1]
        if control {
            do { try syscallOrThrow("pipe2") { mux_pipe_cloexec(&inFDs) } } catch { close(fds[0]); close(fds[1]); throw error }
        }
        var errFD: Int32 = -1
        if let stderrPath {
            errFD = open(stderrPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            if errFD < 0 {
                let e = errno
                close(fds[0]); close(fds[1])
                if control { close(inFDs[0]); close(inFDs[1]) }
                throw SystemError("open(\(stderrPath))", errno: e)
            }
        }
        let argv = [executable] + arguments
        let env = environment ?? ChildProcess.currentEnvironmentList()
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup($0) } + [nil]
        defer {
            cArgs.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        let rc = mux_spawn(executable, cArgs, cEnv, inFDs[0], fds[1], errFD >= 0 ? errFD : 2, 1)
        close(fds[1])
        if control { close(inFDs[0]) }
        if errFD >= 0 { close(errFD) }
        if rc < 0 {
            close(fds[0])
            if control { close(inFDs[1]) }
            throw SystemError("fork(\(executable))", errno: -rc)
        }
        pid = rc
        stdoutFD = fds[0]
        channel = control ? ControlChannel(input: fds[0], output: inFDs[1]) : nil
        self.stderrPath = stderrPath
        ChildRegistry.shared.add(pid)
    }

    deinit {
        close(stdoutFD)
        if let channel { close(channel.output) }
    }

    public static func currentEnvironmentList() -> [String] {
        var out: [String] = []
        var p = environ
        while let s = p.pointee {
            out.append(String(cString: s))
            p += 1
        }
        return out
    }

    /// The next stdout line, or nil at end of file or when `timeout` seconds pass.
    public func readLine(timeout: Double) -> String? {
        let deadline = monotonicNanos() + UInt64(max(0, timeout) * 1e9)
        while true {
            if let nl = pending.firstIndex(of: 10) {
                let line = String(decoding: pending[..<nl], as: UTF8.self)
                pending.removeSubrange(...nl)
                return line
            }
            if stdoutClosed { return nil }
            let now = monotonicNanos()
            // Past the deadline (at once for timeout 0) the pipe is still drained of what is there: a caller
            // polling with timeout 0 while the child writes more than a pipe holds (wrk's one-line report
            // of 7,000 latency values) must not leave it blocked in write(2) forever.
            let ms = now >= deadline ? 0 : Int32(min(1000, (deadline - now) / 1_000_000 + 1))
            var pfd = pollfd(fd: stdoutFD, events: Int16(POLLIN), revents: 0)
            let r = Glibc.poll(&pfd, 1, ms)
            if r < 0 && errno != EINTR { return nil }
            if r <= 0 {
                if now >= deadline { return nil }
                continue
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { Glibc.read(stdoutFD, $0.baseAddress, $0.count) }
            if n > 0 {
                pending.append(contentsOf: chunk[0..<n])
            } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                stdoutClosed = true
                if !pending.isEmpty {
                    let line = String(decoding: pending, as: UTF8.self)
                    pending.removeAll()
                    return line
                }
            }
        }
    }

    /// Reads all remaining stdout until EOF or timeout.
    public func readRemaining(timeout: Double) -> [String] {
        var lines: [String] = []
        let deadline = monotonicNanos() + UInt64(timeout * 1e9)
        while monotonicNanos() < deadline, let line = readLine(timeout: Double(deadline - monotonicNanos()) / 1e9) {
            lines.append(line)
        }
        return lines
    }

    /// Non-blocking check; records and returns the status once the child has ended.
    @discardableResult
    public func poll() -> ExitStatus? {
        if let status { return status }
        var st: Int32 = 0
        let r = waitpid(pid, &st, WNOHANG)
        if r == pid {
            status = ChildProcess.decode(st)
            ChildRegistry.shared.remove(pid)
        } else if r < 0 && errno == ECHILD {
            status = .exited(-1)
            ChildRegistry.shared.remove(pid)
        }
        return status
    }

    /// Waits up to `timeout` seconds for the child to end.
    public func wait(timeout: Double) -> ExitStatus? {
        let deadline = monotonicNanos() + UInt64(timeout * 1e9)
        while true {
            if let s = poll() { return s }
            if monotonicNanos() >= deadline { return nil }
            usleep(2000)
        }
    }

    /// Sends `signal` to the child's process group (its own children too).
    public func signal(_ sig: Int32) {
        guard status == nil else { return }
        // Once, to the group; to the pid alone only while the group does not exist yet (just forked).
        if kill(-pid, sig) != 0 { _ = kill(pid, sig) }
    }

    /// SIGTERM, then SIGKILL after `grace` seconds; returns the final status.
    @discardableResult
    public func stop(grace: Double = 2) -> ExitStatus {
        if let s = poll() { return s }
        signal(SIGTERM)
        if let s = wait(timeout: grace) { return s }
        signal(SIGKILL)
        return wait(timeout: 5) ?? .signaled(SIGKILL)
    }

    /// The last `count` lines the child wrote to stderr.
    public func stderrTail(_ count: Int = 5) -> [String] {
        guard let stderrPath, let text = readSmallFile(stderrPath, limit: 4 << 20) else { return [] }
        return Array(text.split(separator: "\n").suffix(count).map(String.init))
    }

    static func decode(_ st: Int32) -> ExitStatus {
        let sig = st & 0x7f
        return sig == 0 ? .exited((st >> 8) & 0xff) : .signaled(sig)
    }
}

/// Every live child of this process, so a signal handler path can stop them all.
public final class ChildRegistry: @unchecked Sendable {
    public static let shared = ChildRegistry()
    private var pids = Set<Int32>()
    private var lock = pthread_mutex_t()

    init() { pthread_mutex_init(&lock, nil) }

    func add(_ pid: Int32) { pthread_mutex_lock(&lock); pids.insert(pid); pthread_mutex_unlock(&lock) }
    func remove(_ pid: Int32) { pthread_mutex_lock(&lock); pids.remove(pid); pthread_mutex_unlock(&lock) }

    public var live: [Int32] {
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        return Array(pids)
    }

    /// Kills every child process group we started (by pid), then reaps them.
    public func killAll() {
        for pid in live {
            _ = kill(-pid, SIGKILL)
            _ = kill(pid, SIGKILL)
            var st: Int32 = 0
            _ = waitpid(pid, &st, 0)
            remove(pid)
        }
    }
}

/// The path of the running executable (/proc/self/exe).
public func currentExecutablePath() -> String {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    return n > 0 ? String(cString: buf) : CommandLine.arguments[0]
}

/// Every executable `name` in the directories of PATH (then `extraDirectories`), in that order.
public func executablesOnPath(named name: String, extraDirectories: [String] = []) -> [String] {
    let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
    return (path.split(separator: ":").map(String.init) + extraDirectories)
        .map { "\($0)/\(name)" }.filter { access($0, X_OK) == 0 }
}
