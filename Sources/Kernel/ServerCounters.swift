#if canImport(Glibc)
import Glibc
#endif
import CShims

/// The counters every muxlab server keeps (the `stats` keys), in the order of the C layout
/// (MUX_CTR_* in muxshims.h): one vocabulary for the servers that write them and the driver that reads them.
public enum ServerCounter: Int32, CaseIterable, Sendable {
    case accepted, refused, closed, reads, readsEAGAIN, writes, writesEAGAIN, requests, acceptEMFILE
    case idleClosed, waits, events, scanned, acceptEAGAIN, tasks, threads, bytesOut

    /// The key in the `stats` line (the same keys as the single reactor's).
    public var key: String {
        switch self {
        case .accepted: return "accepted"
        case .refused: return "refused"
        case .closed: return "closed"
        case .reads: return "reads"
        case .readsEAGAIN: return "reads_eagain"
        case .writes: return "writes"
        case .writesEAGAIN: return "writes_eagain"
        case .requests: return "http_requests"
        case .acceptEMFILE: return "accept_emfile"
        case .idleClosed: return "idle_closed"
        case .waits: return "waits"
        case .events: return "events"
        case .scanned: return "scanned"
        case .acceptEAGAIN: return "accept_eagain"
        case .tasks: return "tasks"
        case .threads: return "threads_started"
        case .bytesOut: return "bytes_out"
        }
    }
}

/// A server's counters as the driver sees them: a file under /dev/shm the driver makes and the server
/// maps (MUXLAB_SERVER_COUNTERS), read by the driver itself at a window's edges: no signal, no answer
/// to wait for, nothing allocated in the server.
public final class ServerCounterFile {
    public let path: String
    private let base: UnsafeMutablePointer<UInt64>

    /// Makes the zeroed file `/dev/shm/muxlab-counters-<driver pid>-<tag>`.
    public init(tag: String) throws {
        path = "/dev/shm/muxlab-counters-\(getpid())-\(tag)"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError("open(\(path))", errno: errno) }
        defer { close(fd) }
        guard ftruncate(fd, off_t(mux_counters_bytes())) == 0 else {
            let e = errno
            unlink(path)
            throw SystemError("ftruncate(\(path))", errno: e)
        }
        guard let p = mux_counters_map(path, 0) else {
            let e = errno
            unlink(path)
            throw SystemError("mmap(\(path))", errno: e)
        }
        base = p
    }

    deinit {
        munmap(base, mux_counters_bytes())
        unlink(path)
    }

    /// The environment entry that hands the file to a server.
    public var environmentEntry: String { "MUXLAB_SERVER_COUNTERS=\(path)" }

    /// Every counter summed over the slots, by its `stats` key.
    public func read() -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for field in ServerCounter.allCases { out[field.key] = mux_counter_sum(base, field.rawValue) }
        return out
    }
}
