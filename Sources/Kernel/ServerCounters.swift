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

/// A child's counters as the driver sees them: a file under /dev/shm the driver makes and the child
/// maps (a server through MUXLAB_SERVER_COUNTERS, the load through `--counters`), read by the driver
/// itself at a window's edges: no signal, no answer to wait for, nothing allocated in the child.
public final class ServerCounterFile {
    public let path: String
    private let base: UnsafeMutablePointer<UInt64>

    /// Makes the zeroed file `/dev/shm/muxlab-<kind>-<driver pid>-<tag>` (kind: counters, the server's; load).
    public init(tag: String, kind: String = "counters") throws {
        path = "/dev/shm/muxlab-\(kind)-\(getpid())-\(tag)"
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

    /// Counters files (servers' and loads') of drivers that no longer run: a driver killed with SIGKILL
    /// cannot remove them. Returns the paths removed; a running driver's files are left alone.
    @discardableResult
    public static func removeStale(in directory: String = "/dev/shm") -> [String] {
        removeStaleDriverFiles(in: directory, prefixes: ["muxlab-counters-", "muxlab-load-"])
    }

    /// The environment entry that hands the file to a server.
    public var environmentEntry: String { "MUXLAB_SERVER_COUNTERS=\(path)" }

    /// A load's count summed over its processes' slots (plain relaxed loads: µs for all of them).
    public func sum(_ field: LoadCounter) -> UInt64 { mux_counter_sum(base, field.rawValue) }

    /// Every counter summed over the slots, by its `stats` key.
    public func read() -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for field in ServerCounter.allCases { out[field.key] = mux_counter_sum(base, field.rawValue) }
        return out
    }
}

/// What a `muxlab load` process publishes in its slot of the driver's file (`--counters`), so that
/// the driver reads the load's count and the server's at one instant.
public enum LoadCounter: Int32, Sendable {
    /// Answers received whole and checked, in or out of a window: a running total.
    case completed = 0
}

/// The load side of the file: the process's own slot, mapped writable.
public struct LoadCounterSlot {
    let base: UnsafeMutablePointer<UInt64>
    let slot: Int32
    /// Slots in the file: one per load process, and one the parent of several leaves unused.
    public static let slots = Int(MUX_CTR_SLOTS)

    /// Maps the driver's file at `path` (a counters file of this layout, else the error names it).
    public init(path: String, slot: Int) throws {
        guard let p = mux_counters_map(path, 1) else { throw SystemError("mmap(load counters \(path))", errno: errno) }
        base = p
        self.slot = Int32(slot)
    }

    /// The running total, stored as is (this process is the slot's one writer).
    @inline(__always)
    public func publish(_ field: LoadCounter, _ value: UInt64) { mux_counter_store(base, slot, field.rawValue, value) }
}

/// Removes the files in `directory` named `<prefix><driver pid>-...` whose driver no longer runs
/// (kill(pid, 0) says ESRCH); returns the paths removed.
public func removeStaleDriverFiles(in directory: String, prefixes: [String]) -> [String] {
    guard let dir = opendir(directory) else { return [] }
    defer { closedir(dir) }
    var removed: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        guard let prefix = prefixes.first(where: { name.hasPrefix($0) }),
              let dash = name.dropFirst(prefix.count).firstIndex(of: "-"),
              let pid = Int32(name[name.index(name.startIndex, offsetBy: prefix.count)..<dash]), pid > 0,
              kill(pid, 0) != 0 && errno == ESRCH else { continue }
        if unlink("\(directory)/\(name)") == 0 { removed.append("\(directory)/\(name)") }
    }
    return removed
}
