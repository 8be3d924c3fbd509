#if canImport(Glibc)
import Glibc
#endif

/// What procfs says about a running process tree: CPU time, threads, memory, descriptors.
public enum ProcessStats {
    /// On-CPU nanoseconds of every thread of `pid` and of its descendant processes
    /// (/proc/PID/task/TID/schedstat, first field), so prefork and thread models count whole.
    public static func cpuNanos(tree pid: Int32) -> UInt64 {
        var total: UInt64 = 0
        for p in processTree(pid) {
            for tid in taskIDs(p) {
                if let text = readSmallFile("/proc/\(p)/task/\(tid)/schedstat"),
                   let first = text.split(separator: " ").first, let ns = UInt64(first) {
                    total += ns
                }
            }
        }
        return total
    }

    /// User + system CPU seconds from getrusage: this process's own, or (`reapedChildren`) those of every
    /// child it has waited for.
    public static func rusageCPUSeconds(reapedChildren: Bool = false) -> Double {
        var ru = rusage()
        getrusage(reapedChildren ? RUSAGE_CHILDREN.rawValue : RUSAGE_SELF.rawValue, &ru)
        return Double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + Double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6
    }

    /// `pid` and every descendant process (through /proc/PID/task/*/children).
    public static func processTree(_ pid: Int32) -> [Int32] {
        var out: [Int32] = []
        var queue: [Int32] = [pid]
        while let p = queue.popLast() {
            out.append(p)
            for tid in taskIDs(p) {
                if let text = readSmallFile("/proc/\(p)/task/\(tid)/children") {
                    queue.append(contentsOf: text.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: " \n")) })
                }
            }
        }
        return out
    }

    public static func taskIDs(_ pid: Int32) -> [Int32] {
        guard let dir = opendir("/proc/\(pid)/task") else { return [] }
        defer { closedir(dir) }
        var ids: [Int32] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if let id = Int32(name) { ids.append(id) }
        }
        return ids
    }

    /// Resident set size in KiB, summed over the tree (VmRSS).
    public static func rssKB(tree pid: Int32) -> Int? {
        var total = 0
        var any = false
        for p in processTree(pid) {
            if let v = statusField(p, "VmRSS:") { total += v; any = true }
        }
        return any ? total : nil
    }

    /// Proportional set size in KiB over the tree (/proc/PID/smaps_rollup, "Pss:"): a page shared by
    /// several processes (prefork children) is split among them, so the total counts it once, where
    /// VmRSS counts it in every process.
    public static func pssKB(tree pid: Int32) -> Int? {
        var total = 0
        var any = false
        for p in processTree(pid) {
            if let v = keyedField(readSmallFile("/proc/\(p)/smaps_rollup"), "Pss:") { total += v; any = true }
        }
        return any ? total : nil
    }

    /// Memory mappings of an epoll instance over the tree: lines of /proc/PID/maps naming `[eventpoll]`
    /// (an mmap of an epoll descriptor shows as `anon_inode:[eventpoll]`). A ring of events shared with the
    /// kernel would have to appear here; nil when no maps file of the tree could be read.
    public static func eventpollMappings(tree pid: Int32) -> Int? {
        var total = 0
        var any = false
        for p in processTree(pid) {
            guard let maps = readSmallFile("/proc/\(p)/maps", limit: 64 << 20) else { continue }
            any = true
            total += maps.split(separator: "\n").filter { $0.contains("[eventpoll]") }.count
        }
        return any ? total : nil
    }

    /// The kernel's slab memory of the whole machine in KiB (/proc/meminfo "Slab:"): sockets, their
    /// inodes, files and epoll items live there, so its growth over a run is the kernel's side of it.
    public static func slabKB() -> Int? {
        keyedField(readSmallFile("/proc/meminfo"), "Slab:")
    }

    /// The first number after `key` on the line that starts with it ("Pss:   1234 kB").
    static func keyedField(_ text: String?, _ key: String) -> Int? {
        guard let text else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(key) {
            return line.dropFirst(key.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first.flatMap { Int($0) }
        }
        return nil
    }

    /// Threads over the tree.
    public static func threads(tree pid: Int32) -> Int? {
        let tree = processTree(pid)
        let n = tree.reduce(0) { $0 + taskIDs($1).count }
        return n > 0 ? n : nil
    }

    /// Open descriptors of one process (/proc/PID/fd entries).
    public static func openDescriptors(_ pid: Int32) -> Int? {
        guard let dir = opendir("/proc/\(pid)/fd") else { return nil }
        defer { closedir(dir) }
        var n = 0
        while readdir(dir) != nil { n += 1 }
        return max(0, n - 2)
    }

    /// Every process id in /proc.
    public static func allPIDs() -> [Int32] {
        guard let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var pids: [Int32] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if let pid = Int32(name) { pids.append(pid) }
        }
        return pids
    }

    /// Open descriptors summed over the process tree (prefork children, per-connection processes).
    public static func openDescriptors(tree pid: Int32) -> Int? {
        guard let own = openDescriptors(pid) else { return nil }
        return processTree(pid).filter { $0 != pid }.reduce(own) { $0 + (openDescriptors($1) ?? 0) }
    }

    /// One numeric field of /proc/PID/status, e.g. "VmRSS:" or "voluntary_ctxt_switches:".
    public static func statusField(_ pid: Int32, _ key: String) -> Int? {
        // "VmRSS:\t  21884 kB", "voluntary_ctxt_switches:\t5": the first token after the key.
        keyedField(readSmallFile("/proc/\(pid)/status"), key)
    }
}
