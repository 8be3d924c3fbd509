#if canImport(Glibc)
import Glibc
#endif
@_exported import CSampler
import Foundation
import Kernel

/// The sampler could not start at all (not root, BPF refused, programs rejected).
public struct ProbeError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A probe that did not attach, and why: its columns stay empty, never zero.
public struct ProbeFailure: Equatable, Sendable, CustomStringConvertible {
    public let probe: String
    public let reason: String
    public var description: String { "\(probe): \(reason)" }
}

/// Cumulative kernel counters for a process tree at one instant.
public struct KernelSnapshot {
    public var counters: mux_counters
    public var syscalls: [Int: mux_syscall_stat]
    public let takenAt: UInt64

    public init(counters: mux_counters, syscalls: [Int: mux_syscall_stat] = [:], takenAt: UInt64) {
        self.counters = counters
        self.syscalls = syscalls
        self.takenAt = takenAt
    }
}

/// The eBPF sampler attached to a process tree (the pid, its threads, and every
/// process it forks). Kernel programs aggregate; this reads maps at snapshots only.
public final class KernelSampler {
    private let handle: OpaquePointer
    public let rootPID: Int32
    private var libcMissing: ProbeFailure?
    private var seeded = Set<Int32>()

    /// - Parameter allocations: attach the libc malloc/free uprobes (a trap per call: costly).
    public init(pid: Int32, allocations: Bool = true) throws {
        guard kill(pid, 0) == 0 || errno == EPERM else {
            throw ProbeError("probe: no process with pid \(pid)")
        }
        rootPID = pid
        allocationsRequested = allocations
        let libc = allocations ? KernelSampler.libcPath(of: pid) : nil
        var err = [CChar](repeating: 0, count: 512)
        var out: OpaquePointer?
        let rc: Int32 = (libc ?? "").withCString { path in
            var opts = mux_sampler_opts()
            opts.root_pid = pid
            opts.libc_path = libc == nil ? nil : path
            // Per target: other processes (the load generator, the driver) never take the uprobe trap.
            opts.want_uprobes = libc == nil ? Int32(MUX_UPROBES_OFF) : Int32(MUX_UPROBES_PER_TARGET)
            return mux_sampler_open(&opts, &out, &err, err.count)
        }
        guard rc == 0, let out else {
            let detail = String(cString: err)
            let hint = geteuid() == 0 ? "" : " (eBPF needs root: run as root, or use --probes off)"
            throw ProbeError("probe: cannot start the eBPF sampler: \(detail.isEmpty ? String(cString: strerror(-rc)) : detail)\(hint)")
        }
        handle = out
        seeded.insert(pid)
        if allocations && libc == nil {
            libcMissing = ProbeFailure(probe: "uprobe:malloc", reason: "libc not found in /proc/\(pid)/maps")
        }
        addTree()
    }

    deinit {
        mux_sampler_close(handle)
    }

    /// Adds every descendant process that exists now (forks after this are followed by the kernel side).
    public func addTree() {
        for p in ProcessStats.processTree(rootPID) where !seeded.contains(p) {
            if mux_sampler_add_target(handle, p) == 0 { seeded.insert(p) }
        }
    }

    /// Probes that did not attach, with the kernel's or libbpf's reason.
    public var failures: [ProbeFailure] {
        let attached = (0..<mux_sampler_status_count(handle)).map {
            ProbeFailure(probe: String(cString: mux_sampler_status_probe(handle, $0)),
                         reason: String(cString: mux_sampler_status_reason(handle, $0)))
        }
        return (libcMissing.map { [$0] } ?? []) + attached
    }

    /// Allocation uprobes asked for and attached (so mallocs can be read from this sampler).
    public var countsAllocations: Bool {
        allocationsRequested && !failures.contains { $0.probe.hasPrefix("uprobe:") }
    }
    private let allocationsRequested: Bool

    public func snapshot() throws -> KernelSnapshot {
        var c = mux_counters()
        let rc = mux_sampler_read(handle, &c)
        if rc != 0 { throw ProbeError("probe: reading counters failed: \(String(cString: strerror(-rc)))") }
        var stats = [mux_syscall_stat](repeating: mux_syscall_stat(), count: Int(MUX_MAX_SYSCALLS))
        let n = stats.withUnsafeMutableBufferPointer { mux_sampler_read_syscalls(handle, $0.baseAddress, Int32($0.count)) }
        if n < 0 { throw ProbeError("probe: reading syscall counts failed: \(String(cString: strerror(-n)))") }
        var table: [Int: mux_syscall_stat] = [:]
        for s in stats.prefix(Int(n)) { table[Int(s.id)] = s }
        return KernelSnapshot(counters: c, syscalls: table, takenAt: monotonicNanos())
    }

    /// The libc a process maps (for the allocation uprobes), from /proc/PID/maps.
    public static func libcPath(of pid: Int32) -> String? {
        guard let maps = readSmallFile("/proc/\(pid)/maps", limit: 8 << 20) else { return nil }
        for line in maps.split(separator: "\n") {
            guard let slash = line.firstIndex(of: "/") else { continue }
            let path = String(line[slash...])
            let file = path.split(separator: "/").last ?? ""
            if file.hasPrefix("libc.so") || (file.hasPrefix("libc-") && file.hasSuffix(".so")) {
                // The path as the target sees it; through /proc/PID/root when it lives in another mount namespace.
                return access(path, R_OK) == 0 ? path : "/proc/\(pid)/root\(path)"
            }
        }
        return nil
    }
}

extension KernelSnapshot {
    /// The snapshot as text for the control channel (an agent on another host sends it at each edge): the C
    /// structs' bytes, base64. Both ends run the same build (the agent's hello is checked), so the layout is
    /// the same; a length that differs is refused rather than misread.
    public var wireText: String {
        var bytes: [UInt8] = []
        withUnsafeBytes(of: counters) { bytes += $0 }
        withUnsafeBytes(of: takenAt) { bytes += $0 }
        for (_, stat) in syscalls.sorted(by: { $0.key < $1.key }) { withUnsafeBytes(of: stat) { bytes += $0 } }
        return Data(bytes).base64EncodedString()
    }

    public init(wireText: String) throws {
        guard let data = Data(base64Encoded: wireText) else { throw ValueError("a kernel snapshot that is not base64") }
        let head = MemoryLayout<mux_counters>.size + MemoryLayout<UInt64>.size
        let each = MemoryLayout<mux_syscall_stat>.size
        guard data.count >= head, (data.count - head) % each == 0 else {
            throw ValueError("a kernel snapshot of \(data.count) bytes: not this build's layout (\(head) + n x \(each))")
        }
        let bytes = [UInt8](data)
        func load<T>(_ type: T.Type, at offset: Int) -> T {
            bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
        }
        var syscalls: [Int: mux_syscall_stat] = [:]
        for offset in stride(from: head, to: bytes.count, by: each) {
            let stat = load(mux_syscall_stat.self, at: offset)
            syscalls[Int(stat.id)] = stat
        }
        self.init(counters: load(mux_counters.self, at: 0), syscalls: syscalls,
                  takenAt: load(UInt64.self, at: MemoryLayout<mux_counters>.size))
    }
}
