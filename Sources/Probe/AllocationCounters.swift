#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// Allocation calls counted by libMuxAllocCounter.so, summed over the processes of one region.
/// `mallocs` means what KernelCounters' `mallocs` means (every allocation call, of the four kinds),
/// so `mallocs_per_req` is the same figure whichever way it was counted.
public struct AllocationTotals: Equatable, Sendable {
    public var mallocCalls: UInt64 = 0
    public var callocCalls: UInt64 = 0
    /// realloc and reallocarray (realloc(NULL, n) included: one call, counted once).
    public var reallocCalls: UInt64 = 0
    /// posix_memalign, aligned_alloc, memalign, valloc, pvalloc.
    public var memalignCalls: UInt64 = 0
    /// free() of a non-NULL pointer.
    public var frees: UInt64 = 0
    /// Bytes requested by every allocation call.
    public var bytes: UInt64 = 0
    /// Slots in use: one per process image that loaded the library (an exec'd program, a fork child).
    public var processes = 0
    /// Processes that found every slot taken and counted nothing: the totals are short while > 0.
    public var droppedProcesses = 0
    /// Processes whose malloc is another library's (an earlier preload, a linked-in allocator):
    /// their calls never reach the counter.
    public var notInterposedPIDs: [Int32] = []

    public init() {}

    /// Every allocation call.
    public var mallocs: UInt64 { mallocCalls + callocCalls + reallocCalls + memalignCalls }

    /// The calls made after `earlier` (a reading of the same region); the process figures stay
    /// this reading's, cumulative: a process dropped or not interposed at any time taints the window.
    public func since(_ earlier: AllocationTotals) -> AllocationTotals {
        var d = self
        d.mallocCalls = mallocCalls &- earlier.mallocCalls
        d.callocCalls = callocCalls &- earlier.callocCalls
        d.reallocCalls = reallocCalls &- earlier.reallocCalls
        d.memalignCalls = memalignCalls &- earlier.memalignCalls
        d.frees = frees &- earlier.frees
        d.bytes = bytes &- earlier.bytes
        return d
    }

    /// Why these counts are not the processes' whole truth, or nil when they are: a caller leaves
    /// its allocation columns empty (never 0) and says this instead.
    public var incompleteReason: String? {
        var reasons: [String] = []
        if processes == 0 { reasons.append("no process loaded the allocation counter (a static binary, or LD_PRELOAD refused)") }
        if droppedProcesses > 0 { reasons.append("\(droppedProcesses) processes found the counter's slots full and were not counted") }
        if !notInterposedPIDs.isEmpty {
            reasons.append("pids \(notInterposedPIDs.map(String.init).joined(separator: ", ")) use another malloc than the counter's")
        }
        return reasons.isEmpty ? nil : reasons.joined(separator: "; ")
    }
}

/// One process's slot of the region.
public struct AllocationSlot: Equatable, Sendable {
    public let pid: Int32
    /// Claimed in a fork child (pthread_atfork), not when a program started.
    public let forked: Bool
    public let interposed: Bool
    public let totals: AllocationTotals
}

/// A shared-memory region that libMuxAllocCounter.so, preloaded into the processes the driver
/// starts, counts allocation calls into: one slot per process (fork children take their own, and
/// slots of exited processes keep their counts), read here at window edges. A counting call is a
/// relaxed atomic add in the process itself, nanoseconds, where a libc uprobe costs a trap.
/// The file is removed when this object goes away.
public final class AllocationCounters {
    /// The library's file name, built by `swift build` beside the muxlab executable.
    public static let libraryName = "libMuxAllocCounter.so"
    public static let defaultSlots = 256
    public static let slotRange = 1...65_536
    /// Region files are `muxlab-alloc-<driver pid>-<tag>` here.
    public static let directory = "/dev/shm"
    static let prefix = "muxlab-alloc-"

    public let path: String
    public let slots: Int
    /// The libMuxAllocCounter.so children preload.
    public let library: String
    private let region: UnsafeMutableRawPointer
    private let regionBytes: Int

    /// Creates the region file at `path` (which must not exist) with room for `slots` processes.
    public init(path: String, slots: Int = AllocationCounters.defaultSlots, library: String) throws {
        guard AllocationCounters.slotRange.contains(slots) else {
            throw ValueError("allocation counter slots \(slots) is out of range: allowed \(AllocationCounters.slotRange.lowerBound)...\(AllocationCounters.slotRange.upperBound)")
        }
        // ld.so splits LD_PRELOAD at spaces and colons.
        guard !library.contains(" "), !library.contains(":") else {
            throw ValueError("allocation counter library path '\(library)' contains a space or a colon, which LD_PRELOAD cannot carry")
        }
        guard access(library, R_OK) == 0 else {
            throw ValueError("allocation counter library \(library) is missing: `swift build -c release` (make build) builds it beside muxlab")
        }
        let bytes = Int(mux_alloc_region_bytes(UInt32(slots)))
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError("open(\(path))", errno: errno) }
        defer { close(fd) }
        guard ftruncate(fd, off_t(bytes)) == 0 else {
            let e = errno
            unlink(path)
            throw SystemError("ftruncate(\(path), \(bytes))", errno: e)
        }
        // MAP_FAILED is ((void *) -1), a macro Swift does not import.
        guard let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != UnsafeMutableRawPointer(bitPattern: -1) else {
            let e = errno
            unlink(path)
            throw SystemError("mmap(\(path))", errno: e)
        }
        mux_alloc_region_init(p, UInt32(slots))
        region = p
        regionBytes = bytes
        self.path = path
        self.slots = slots
        self.library = library
    }

    /// A region at `/dev/shm/muxlab-alloc-<this pid>-<tag>`, preloading `library` (default: the one beside muxlab).
    public static func create(tag: String, slots: Int = defaultSlots, library: String? = nil) throws -> AllocationCounters {
        guard !tag.isEmpty, !tag.contains("/") else {
            throw ValueError("allocation counter tag '\(tag)' must be a non-empty name without '/'")
        }
        return try AllocationCounters(path: "\(directory)/\(prefix)\(getpid())-\(tag)", slots: slots,
                                      library: try library ?? libraryPath())
    }

    deinit {
        munmap(region, regionBytes)
        unlink(path)
    }

    /// libMuxAllocCounter.so in the directory of `executable` (muxlab, or the test runner beside it).
    public static func libraryPath(besideExecutable executable: String = currentExecutablePath()) throws -> String {
        let directory = executable.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        let path = (directory.isEmpty ? "." : directory) + "/" + libraryName
        guard access(path, R_OK) == 0 else {
            throw ValueError("allocation counter library \(path) is missing: `swift build -c release` (make build) builds it beside muxlab")
        }
        return path
    }

    /// The entries to add to a child's environment: LD_PRELOAD (this driver's own LD_PRELOAD, if
    /// any, then the library) and MUXLAB_ALLOC_COUNTS naming the region.
    public var environment: [String] {
        [preloadEntry(existing: getenv("LD_PRELOAD").map { String(cString: $0) }), "\(MUX_ALLOC_ENV)=\(path)"]
    }

    /// `base` (by default this process's environment) with those entries in place: the library is
    /// appended to an LD_PRELOAD already there, and an earlier MUXLAB_ALLOC_COUNTS is replaced.
    /// Pass the result as ChildProcess's `environment:`.
    public func childEnvironment(_ base: [String] = ChildProcess.currentEnvironmentList()) -> [String] {
        let preload = "LD_PRELOAD=", variable = "\(MUX_ALLOC_ENV)="
        let existing = base.last(where: { $0.hasPrefix(preload) }).map { String($0.dropFirst(preload.count)) }
        return base.filter { !$0.hasPrefix(preload) && !$0.hasPrefix(variable) }
            + [preloadEntry(existing: existing), variable + path]
    }

    private func preloadEntry(existing: String?) -> String {
        let listed = (existing ?? "").split(whereSeparator: { $0 == ":" || $0 == " " }).map(String.init)
        if listed.contains(library) { return "LD_PRELOAD=\(existing!)" }
        return "LD_PRELOAD=" + (listed + [library]).joined(separator: ":")
    }

    /// Slots claimed so far (at most `slots`).
    private var claimedSlots: UInt32 { min(mux_alloc_claimed(region), UInt32(slots)) }

    /// The counts now, summed over every slot (processes still running and processes that exited).
    public func read() -> AllocationTotals {
        var t = AllocationTotals()
        for slot in processSlots() {
            t.mallocCalls &+= slot.totals.mallocCalls
            t.callocCalls &+= slot.totals.callocCalls
            t.reallocCalls &+= slot.totals.reallocCalls
            t.memalignCalls &+= slot.totals.memalignCalls
            t.frees &+= slot.totals.frees
            t.bytes &+= slot.totals.bytes
            if !slot.interposed { t.notInterposedPIDs.append(slot.pid) }
        }
        t.processes = Int(claimedSlots)
        t.droppedProcesses = Int(mux_alloc_dropped(region))
        return t
    }

    /// Each claimed slot, in the order processes claimed them.
    public func processSlots() -> [AllocationSlot] {
        (0..<claimedSlots).map { i in
            var t = AllocationTotals()
            t.mallocCalls = mux_alloc_slot_calls(region, i, Int32(MUX_ALLOC_MALLOC))
            t.callocCalls = mux_alloc_slot_calls(region, i, Int32(MUX_ALLOC_CALLOC))
            t.reallocCalls = mux_alloc_slot_calls(region, i, Int32(MUX_ALLOC_REALLOC))
            t.memalignCalls = mux_alloc_slot_calls(region, i, Int32(MUX_ALLOC_MEMALIGN))
            t.frees = mux_alloc_slot_frees(region, i)
            t.bytes = mux_alloc_slot_bytes(region, i)
            t.processes = 1
            let flags = mux_alloc_slot_flags(region, i)
            return AllocationSlot(pid: mux_alloc_slot_pid(region, i),
                                  forked: flags & UInt32(MUX_ALLOC_SLOT_FORKED) != 0,
                                  interposed: flags & UInt32(MUX_ALLOC_SLOT_NOT_INTERPOSED) == 0,
                                  totals: t)
        }
    }

    /// Removes region files of drivers that no longer run (a driver killed with SIGKILL cannot
    /// clean up); returns the paths removed. A running driver's files are left alone.
    @discardableResult
    public static func removeStaleRegions() -> [String] { removeStaleDriverFiles(in: directory, prefixes: [prefix]) }
}
