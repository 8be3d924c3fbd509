#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The one message type between the driver and every child it starts (`muxlab serve --control`,
/// `muxlab load --control`, a multi-process load's children): newline-delimited JSON, the driver
/// writing to the child's stdin and reading its stdout. The driver opens and closes each measured
/// window; each side takes its own counters at the edges and answers with them.
public enum ControlMessage: Codable, Equatable, Sendable {
    /// Server -> driver: accepting on `port`; `settings` is what is in force (model, io, cpus, ...).
    case ready(port: UInt16, pid: Int32, settings: [String: String])
    /// Load -> driver: every connection it could open is open (`established`); the warm-up runs.
    case connected(established: Int)
    /// Driver -> load: window `id` starts now: count from here.
    case open(window: Int)
    /// Driver -> child: window `id` ends now.
    case close(window: Int)
    /// Server -> driver: its own cumulative counters (requests answered, bytes written, accepts, ...),
    /// on SIGUSR1 or at exit (`window` nil; at a window's edge the driver reads its counters file).
    case counters(window: Int?, values: [String: UInt64])
    /// Load -> driver: what window `id` measured. `histogram` is the HdrHistogram behind the
    /// percentiles, JSON-encoded: a child's parent adds it exactly; the driver keeps it in the run.
    case window(id: Int, summary: LoadSummary, histogram: String?)
    /// Driver -> child: finish and exit (the load closes its connections). To `muxlab agent`: stop every
    /// child it started, then exit.
    case stop

    // `muxlab agent` (another host, reached over ssh): it starts children there and passes their own
    // control lines through unchanged, each tagged with the driver's number for that child.

    /// Agent -> driver, its first line: its `muxlab --version` line and pid. The driver refuses another version.
    case hello(version: String, pid: Int32)
    /// Driver -> agent: start `muxlab ARGUMENTS` there as child `child`, with a control channel. `counters`:
    /// "server" (its counters file, by environment) or "load" (`--counters PATH` appended), read at each
    /// edge; `cpu`: account its CPU in a cgroup of its own, read at each edge.
    case spawn(child: Int, arguments: [String], counters: String?, cpu: Bool)
    /// Agent -> driver: child `child` runs as `pid` on the agent's host; `cpuSource`: how its CPU is accounted
    /// (cgroup-v1, cgroup-v2, proc-tree; nil: not asked).
    case spawned(child: Int, pid: Int32, cpuSource: String?)
    /// Either way: one control line to (driver -> agent) or from (agent -> driver) child `child`, as it is.
    case relay(child: Int, line: String)
    /// Driver -> agent: end child `child` (SIGTERM to its group, SIGKILL 2 s later); `exited` follows.
    case end(child: Int)
    /// Driver -> agent: attach the kernel probes to child `child`'s process tree there (no allocation uprobes).
    case attach(child: Int)
    /// Agent -> driver: the probes on child `child` are attached; `status` as a row's probe_status says it
    /// ("ok", or "ok except ..." naming what did not attach). A sampler that cannot start answers `failed`.
    case attached(child: Int, status: String)
    /// Driver -> agent: read every child's counters and CPU now, as edge `id`.
    case edge(id: Int)
    /// Agent -> driver: edge `id`, read between its clock's `from` and `at` (CLOCK_REALTIME ns, for the
    /// offset between the hosts' clocks); keys "CHILD.NAME": a server's counters, a load's "completed",
    /// "cpu_ns" where accounted; `kernel`: by child, the probes' snapshot where attached (its wire text).
    case edgeRead(id: Int, from: UInt64, at: UInt64, values: [String: UInt64], kernel: [String: String])
    /// Agent -> driver: child `child` ended (`status` as ExitStatus prints it), with its last stderr lines.
    case exited(child: Int, status: String, stderr: [String])
    /// Agent -> driver: what it was asked could not be done (`child`: the child it concerns, if any).
    case failed(child: Int?, reason: String)

    /// One line of JSON, newline included.
    public func encodedLine() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Encoding a value of this enum cannot fail: every payload is plain data.
        var bytes = [UInt8]((try? encoder.encode(self)) ?? Data())
        bytes.append(10)
        return bytes
    }

    public static func decode(_ line: some StringProtocol) throws -> ControlMessage {
        do {
            return try JSONDecoder().decode(ControlMessage.self, from: Data(line.utf8))
        } catch {
            throw ValueError("not a control message (\(error)): \(line.prefix(200))")
        }
    }
}

/// The `key=value` pairs after the first word of a `ready ...` or `stats ...` line.
public func lineKeyValues(_ line: String) -> [String: String] {
    var out: [String: String] = [:]
    for part in line.split(separator: " ").dropFirst() {
        let kv = part.split(separator: "=", maxSplits: 1)
        if kv.count == 2 { out[String(kv[0])] = String(kv[1]) }
    }
    return out
}

/// Newline-delimited control messages over a pair of descriptors. Reading is non-blocking and
/// buffered; writing is one write of the whole line (pipes keep lines under PIPE_BUF atomic).
public final class ControlChannel: @unchecked Sendable {
    public let input: Int32
    public let output: Int32
    private var pending: [UInt8] = []
    private var eof = false
    private let lock = NSLock()

    public init(input: Int32, output: Int32) {
        self.input = input
        self.output = output
    }

    /// A child's channel: stdin from the driver, stdout to it.
    public static let standard = ControlChannel(input: 0, output: 1)

    /// Sends one message; from any thread (one line at a time).
    public func send(_ message: ControlMessage) {
        write(message.encodedLine())
    }

    private func write(_ line: [UInt8]) {
        lock.lock()
        defer { lock.unlock() }
        var off = 0
        while off < line.count {
            let n = line.withUnsafeBytes { Glibc.write(output, $0.baseAddress! + off, $0.count - off) }
            if n > 0 { off += n; continue }
            if n < 0 && errno == EINTR { continue }
            return  // the reader is gone: nothing left to tell it
        }
    }

    /// Sends one line as it is (a newline appended): a line relayed between a remote child and the driver.
    public func send(line: String) {
        var bytes = Array(line.utf8)
        bytes.append(10)
        write(bytes)
    }

    /// True once the other side closed its end and every buffered message has been taken.
    public var closed: Bool { eof && !pending.contains(10) }

    /// The next complete message, waiting up to `timeout` seconds (0: only what is already there).
    /// nil on timeout or end of stream; a line that is not a message throws.
    public func receive(timeout: Double) throws -> ControlMessage? {
        let deadline = monotonicNanos() + UInt64(max(0, timeout) * 1e9)
        while true {
            if let line = takeLine() {
                if line.isEmpty { continue }
                return try ControlMessage.decode(line)
            }
            if eof { return nil }
            let now = monotonicNanos()
            var p = pollfd(fd: input, events: Int16(POLLIN), revents: 0)
            let ms = now >= deadline ? 0 : Int32(min(1000, (deadline - now + 999_999) / 1_000_000))
            let r = Glibc.poll(&p, 1, ms)
            if r < 0 && errno != EINTR { eof = true; return nil }
            if r > 0 { fill() } else if now >= deadline { return nil }
        }
    }

    /// Reads what the descriptor has now (call when it polled readable); false at end of stream.
    @discardableResult
    public func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 16384)
        let n = chunk.withUnsafeMutableBytes { Glibc.read(input, $0.baseAddress, $0.count) }
        if n > 0 {
            pending.append(contentsOf: chunk[0..<n])
            return true
        }
        if n == 0 || (errno != EINTR && errno != EAGAIN) { eof = true }
        return !eof
    }

    /// A buffered line as it is, if a whole one is there (no read): what an agent relays without decoding.
    public func bufferedLine() -> String? {
        while let line = takeLine() {
            if !line.isEmpty { return line }
        }
        return nil
    }

    /// A buffered message, if a whole line is there (no read).
    public func buffered() throws -> ControlMessage? {
        while let line = takeLine() {
            if !line.isEmpty { return try ControlMessage.decode(line) }
        }
        return nil
    }

    private func takeLine() -> String? {
        guard let nl = pending.firstIndex(of: 10) else { return nil }
        let line = String(decoding: pending[..<nl], as: UTF8.self)
        pending.removeSubrange(...nl)
        return line
    }
}
