#if canImport(Glibc)
import Glibc
#endif
import Kernel

/// The server's CPU over a window, counting every task that ran in it: threads and processes that
/// started and exited inside the window included. A per-cell cgroup does that without a probe:
/// cgroup v1 `cpuacct.usage` (this machine) or v2 `cpu.stat` usage_usec (current distributions),
/// detected at run time. Without a usable cgroup (not root, none mounted) the fallback sums
/// /proc of the tasks alive at each edge, and `server_cpu_source` says so.
public final class CellCPU {
    public enum Source: String {
        case cgroupV1 = "cgroup-v1"
        case cgroupV2 = "cgroup-v2"
        case procTree = "proc-tree"
    }

    public let source: Source
    public let root: Int32
    /// The cgroup directory this cell made; nil with the /proc fallback.
    private let directory: String?
    /// Why there is no cgroup, when there is none.
    public let fallbackReason: String?

    /// Makes the cgroup `name` and moves `pid` and every descendant it has into it (later forks
    /// and threads are born there). `only`: that kind of hierarchy and no other (tests).
    public init(name: String, pid: Int32, only: Source? = nil) {
        root = pid
        var reason = "no cgroup hierarchy with CPU accounting found"
        for (source, base) in CellCPU.hierarchies() where only == nil || only == source {
            let dir = base + "/" + name
            guard mkdir(dir, 0o755) == 0 || errno == EEXIST else {
                reason = "cannot create \(dir): \(String(cString: strerror(errno)))"
                continue
            }
            let moved = ([pid] + ProcessStats.processTree(pid).filter { $0 != pid }).allSatisfy {
                writeControlFile(dir + "/cgroup.procs", "\($0)\n")
            }
            if moved && CellCPU.usage(source, dir) != nil {
                self.source = source
                directory = dir
                fallbackReason = nil
                return
            }
            reason = "cannot move pid \(pid) into \(dir)"
            CellCPU.evacuate(dir, to: base)
            rmdir(dir)
        }
        source = .procTree
        directory = nil
        fallbackReason = reason
    }

    /// CPU nanoseconds so far (cumulative), or nil when it cannot be read.
    public func nanos() -> UInt64? {
        guard let directory else { return ProcessStats.cpuNanos(tree: root) }
        return CellCPU.usage(source, directory)
    }

    /// Removes the cgroup (its tasks have exited; any left go back to the parent group first).
    public func remove() {
        guard let directory else { return }
        CellCPU.evacuate(directory, to: parentDirectory(directory))
        rmdir(directory)
    }

    /// Hierarchies that account CPU, v1 first where both exist: (source, mount point).
    public static func hierarchies() -> [(Source, String)] {
        var found: [(Source, String)] = []
        guard let mounts = readSmallFile("/proc/self/mounts") else { return found }
        for line in mounts.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count >= 4 else { continue }
            let point = String(f[1]), type = f[2], options = f[3].split(separator: ",")
            if type == "cgroup" && options.contains("cpuacct") { found.insert((.cgroupV1, point), at: 0) }
            if type == "cgroup2" { found.append((.cgroupV2, point)) }
        }
        return found
    }

    static func usage(_ source: Source, _ dir: String) -> UInt64? {
        switch source {
        case .cgroupV1:
            return readSmallFile(dir + "/cpuacct.usage").flatMap { UInt64($0.trimmingCharacters(in: " \n")) }
        case .cgroupV2:
            // usage_usec is there without the cpu controller enabled (the core's own accounting).
            guard let stat = readSmallFile(dir + "/cpu.stat") else { return nil }
            for line in stat.split(separator: "\n") where line.hasPrefix("usage_usec ") {
                return UInt64(line.dropFirst("usage_usec ".count)).map { $0 * 1000 }
            }
            return nil
        case .procTree:
            return nil
        }
    }

    /// Moves whatever is still in `dir` to `parent`, so the directory can go.
    static func evacuate(_ dir: String, to parent: String) {
        guard let procs = readSmallFile(dir + "/cgroup.procs") else { return }
        for pid in procs.split(separator: "\n") { _ = writeControlFile(parent + "/cgroup.procs", "\(pid)\n") }
    }
}

/// Writes one short value to a cgroup control file; false when the kernel refuses it.
func writeControlFile(_ path: String, _ text: String) -> Bool {
    let fd = open(path, O_WRONLY | O_CLOEXEC)
    if fd < 0 { return false }
    defer { close(fd) }
    let bytes = Array(text.utf8)
    return bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == bytes.count
}

func parentDirectory(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
    return String(path[..<slash])
}
