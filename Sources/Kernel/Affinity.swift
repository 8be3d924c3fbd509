#if canImport(Glibc)
import Glibc
#endif
import CShims

/// CPU placement: which CPUs exist, pinning with sched_setaffinity, NUMA binding with libnuma.
public enum Placement {
    /// CPUs the kernel reports online (/sys/devices/system/cpu/online).
    public static func onlineCPUs() -> CPUList {
        if let text = readSmallFile("/sys/devices/system/cpu/online"),
           let list = try? CPUList(parsing: text.trimmingCharacters(in: " \n")) {
            return list
        }
        return CPUList(Array(0..<max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))))
    }

    /// Pins `pid` (0: the calling thread's process) to `cpus`. Every CPU must be online.
    public static func pin(_ cpus: CPUList, pid: Int32 = 0, name: String = "--cpus") throws {
        let online = onlineCPUs()
        if let missing = cpus.cpus.first(where: { !online.cpus.contains($0) }) {
            throw ValueError("\(name) \(cpus): CPU \(missing) does not exist; this machine has CPUs \(online)")
        }
        let rc = cpus.cpus.map(Int32.init).withUnsafeBufferPointer { mux_set_affinity(pid, $0.baseAddress, Int32($0.count)) }
        if rc != 0 { throw SystemError("sched_setaffinity(\(cpus))", errno: -rc) }
    }

    /// The CPUs `pid` may run on now.
    public static func affinity(pid: Int32 = 0) -> CPUList {
        var buf = [Int32](repeating: 0, count: 1024)
        let n = buf.withUnsafeMutableBufferPointer { mux_get_affinity(pid, $0.baseAddress, 1024) }
        return n > 0 ? CPUList(buf[0..<Int(n)].map(Int.init)) : CPUList([])
    }

    /// Number of NUMA nodes libnuma sees (1 when NUMA is unavailable).
    public static var numaNodeCount: Int {
        mux_numa_available() < 0 ? 1 : Int(mux_numa_max_node()) + 1
    }

    /// Binds this process's memory to `node` (numa_set_membind).
    public static func bindMemory(toNode node: Int) throws {
        let count = numaNodeCount
        guard node >= 0, node < count else {
            throw ValueError("--numa-node \(node) does not exist: this machine has NUMA node\(count == 1 ? " 0" : "s 0-\(count - 1)")")
        }
        let rc = mux_numa_bind_memory(Int32(node))
        if rc != 0 { throw SystemError("numa_set_membind(\(node))", errno: -rc) }
    }

    /// The node the memory policy binds to, or nil when no policy binds.
    public static var boundNode: Int? {
        let n = mux_numa_preferred_node()
        return n < 0 ? nil : Int(n)
    }

    /// The node a CPU belongs to (from sysfs), or nil when unknown.
    public static func node(ofCPU cpu: Int) -> Int? {
        for node in 0..<numaNodeCount {
            if let text = readSmallFile("/sys/devices/system/node/node\(node)/cpulist"),
               let list = try? CPUList(parsing: text.trimmingCharacters(in: " \n")), list.cpus.contains(cpu) {
                return node
            }
        }
        return nil
    }
}

/// RLIMIT_NOFILE: what a process may open.
public enum DescriptorLimit {
    public static func current() -> (soft: Int, hard: Int) {
        var rl = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
        return (Int(clamping: rl.rlim_cur), Int(clamping: rl.rlim_max))
    }

    /// Raises the soft limit to the hard limit; returns the new soft limit.
    @discardableResult
    public static func raiseToHard() -> Int {
        var rl = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
        rl.rlim_cur = rl.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
        return current().soft
    }

    /// Lowers the soft limit (E4's low-limit server).
    public static func setSoft(_ n: Int) throws {
        var rl = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
        guard n >= 8, rlim_t(n) <= rl.rlim_max else {
            throw ValueError("--fd-limit \(n): must be 8-\(rl.rlim_max) (the hard RLIMIT_NOFILE)")
        }
        rl.rlim_cur = rlim_t(n)
        try syscallOrThrow("setrlimit(RLIMIT_NOFILE)") { setrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) }
    }
}

/// Reads a small text file (procfs, sysfs) in one go; nil when it cannot be read.
public func readSmallFile(_ path: String, limit: Int = 1 << 20) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 8192)
    while bytes.count < limit {
        let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if n < 0 { if errno == EINTR { continue }; return nil }
        if n == 0 { break }
        bytes.append(contentsOf: chunk[0..<n])
    }
    return String(decoding: bytes, as: UTF8.self)
}
