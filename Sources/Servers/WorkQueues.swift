#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel
import Vocabulary

/// One word per message between threads, so no queue allocates: the descriptor (bits 0-31),
/// the loop it belongs to (32-43), the connection's generation (44-62), and bit 63 set when
/// the message hands over a freshly accepted connection rather than a request.
public enum LoopMessage {
    static let adoptFlag: UInt64 = 1 << 63
    /// Generations wrap within 19 bits; a stale completion must meet the same descriptor
    /// reopened half a million times over while it was out to be taken for a live one.
    static let generationMask: UInt32 = (1 << 19) - 1
    /// Loops a message can name (12 bits).
    public static let maxLoops = 4096

    @inline(__always)
    static func task(fd: Int32, loop: Int, generation: UInt32) -> UInt64 {
        UInt64(UInt32(bitPattern: fd)) | UInt64(loop & 0xFFF) << 32 | UInt64(generation & generationMask) << 44
    }

    @inline(__always)
    static func adopt(fd: Int32) -> UInt64 { UInt64(UInt32(bitPattern: fd)) | adoptFlag }

    @inline(__always)
    static func fd(_ m: UInt64) -> Int32 { Int32(bitPattern: UInt32(truncatingIfNeeded: m)) }

    @inline(__always)
    static func loop(_ m: UInt64) -> Int { Int((m >> 32) & 0xFFF) }

    @inline(__always)
    static func generation(_ m: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: m >> 44) & generationMask }
}

/// A loop's inbox: completions from workers and connections from the acceptor, in a lock-free
/// ring, plus the eventfd the loop's poller watches. Producers write the eventfd only when no
/// wake-up is pending, so a busy loop is not woken once per message.
public final class LoopInbox: @unchecked Sendable {
    let raw: OpaquePointer
    public let fd: Int32

    /// `capacity`: the most messages that can wait at once (every descriptor of the process bounds it).
    public init(capacity: Int) throws {
        guard let b = mux_inbox_create(UInt32(clamping: capacity)) else { throw SystemError("eventfd (loop inbox)", errno: errno) }
        raw = b
        fd = mux_inbox_fd(b)
    }

    @inline(__always)
    func post(_ message: UInt64) { LoopInbox.post(raw, message) }

    /// For threads that hold the raw inbox (no reference counting on the hot path).
    @inline(__always)
    static func post(_ raw: OpaquePointer, _ message: UInt64) {
        // Cannot stay full: the ring holds more entries than the process has descriptors.
        while mux_inbox_post(raw, message) == 0 { sched_yield() }
    }

    @inline(__always)
    func rearm() { mux_inbox_rearm(raw) }

    @inline(__always)
    func take(_ message: inout UInt64) -> Bool { mux_inbox_take(raw, &message) != 0 }
}

/// Where a loop sends a request to be computed off the loop (models 5, 6, 7, 9).
public protocol TaskSink: AnyObject {
    func submit(_ task: UInt64)
}

/// What a request costs off the loop, then its trip home: compute, block, post to the loop's inbox.
/// Trivial (pointers and integers) so worker threads share it without reference counting.
struct TaskWork {
    let inboxes: UnsafeMutablePointer<OpaquePointer>
    let loops: Int
    let computeMicros: Int
    let blockMicros: Int

    init(inboxes: [LoopInbox], computeMicros: Int, blockMicros: Int) {
        self.inboxes = .allocate(capacity: max(1, inboxes.count))
        for (i, b) in inboxes.enumerated() { self.inboxes[i] = b.raw }
        loops = inboxes.count
        self.computeMicros = computeMicros
        self.blockMicros = blockMicros
    }

    @inline(__always)
    func run(_ task: UInt64) {
        Work.compute(micros: computeMicros)
        Work.block(micros: blockMicros)
        // Workers never write to sockets: the answer goes back to the loop that owns the connection.
        LoopInbox.post(inboxes[LoopMessage.loop(task)], task)
    }
}

/// K4's contended design: one ring under one pthread mutex, every worker sleeping on one
/// condition variable (a plain futex mutex, so contention shows as FUTEX_WAIT; not
/// Synchronization.Mutex, which waits with FUTEX_LOCK_PI).
final class LockedTaskQueue: @unchecked Sendable {
    let mutex: UnsafeMutablePointer<pthread_mutex_t>
    let nonEmpty: UnsafeMutablePointer<pthread_cond_t>
    let ring: UnsafeMutablePointer<UInt64>
    let mask: Int
    /// head, tail, sleeping workers: touched only under the mutex.
    let cursors: UnsafeMutablePointer<Int>

    init(capacity: Int) {
        var n = 2
        while n < capacity { n <<= 1 }
        mask = n - 1
        ring = .allocate(capacity: n)
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        nonEmpty = .allocate(capacity: 1)
        pthread_cond_init(nonEmpty, nil)
        cursors = .allocate(capacity: 3)
        cursors.initialize(repeating: 0, count: 3)
    }

    func push(_ task: UInt64) {
        pthread_mutex_lock(mutex)
        // Cannot stay full: the ring holds more entries than the process has descriptors.
        while cursors[1] - cursors[0] > mask {
            pthread_mutex_unlock(mutex)
            sched_yield()
            pthread_mutex_lock(mutex)
        }
        ring[cursors[1] & mask] = task
        cursors[1] += 1
        if cursors[2] > 0 { pthread_cond_signal(nonEmpty) }
        pthread_mutex_unlock(mutex)
    }

    func pop() -> UInt64 {
        pthread_mutex_lock(mutex)
        while cursors[0] == cursors[1] {
            cursors[2] += 1
            pthread_cond_wait(nonEmpty, mutex)
            cursors[2] -= 1
        }
        let task = ring[cursors[0] & mask]
        cursors[0] += 1
        pthread_mutex_unlock(mutex)
        return task
    }
}

/// Models 6, 7, 9: a fixed set of worker threads fed through `--queue global-lock` (one locked
/// queue) or `--queue per-worker` (a lock-free ring per worker, dealt round-robin by each loop).
public final class WorkPool: @unchecked Sendable {
    let workers: Int
    let shared: LockedTaskQueue?
    let perWorker: UnsafeMutablePointer<OpaquePointer>?
    let work: TaskWork

    init(workers: Int, queue: QueueMode, capacity: Int, work: TaskWork) throws {
        self.workers = workers
        self.work = work
        switch queue {
        case .globalLock:
            shared = LockedTaskQueue(capacity: capacity)
            perWorker = nil
        case .perWorker:
            shared = nil
            let rings = UnsafeMutablePointer<OpaquePointer>.allocate(capacity: workers)
            for i in 0..<workers {
                guard let q = mux_parked_ring_create(UInt32(clamping: capacity)) else { throw SystemError("malloc (worker queue)", errno: errno) }
                rings[i] = q
            }
            perWorker = rings
        }
        for i in 0..<workers {
            let work = self.work
            if let shared {
                try startThread(stackBytes: 256 * 1024) { while true { work.run(shared.pop()) } }
            } else if let perWorker {
                let mine = perWorker[i]
                try startThread(stackBytes: 256 * 1024) { while true { work.run(mux_parked_ring_pop_wait(mine)) } }
            }
        }
    }

    /// A loop's entrance to the pool; each loop deals to the workers from its own cursor.
    public func port() -> TaskSink { PoolPort(self) }
}

final class PoolPort: TaskSink {
    let pool: WorkPool
    var next = 0

    init(_ pool: WorkPool) { self.pool = pool }

    @inline(__always)
    func submit(_ task: UInt64) {
        if let shared = pool.shared {
            shared.push(task)
            return
        }
        let q = pool.perWorker![next]
        next = next + 1 == pool.workers ? 0 : next + 1
        // Cannot stay full: the ring holds more entries than the process has descriptors.
        while mux_parked_ring_push(q, task) == 0 { sched_yield() }
    }
}

/// Model 5: a thread started for every request; it computes, posts the answer home and ends.
final class ThreadPerTask: TaskSink {
    let counters: SharedCounters
    let slot: Int
    /// Read by the threads' C entry point, which can capture nothing.
    nonisolated(unsafe) static var work: TaskWork?

    init(work: TaskWork, counters: SharedCounters, slot: Int) {
        ThreadPerTask.work = work
        self.counters = counters
        self.slot = slot
    }

    func submit(_ task: UInt64) {
        // The task word itself is the thread's argument: nothing is allocated for it.
        let rc = mux_thread_start({ arg in
            ThreadPerTask.work!.run(UInt64(UInt(bitPattern: arg)))
            return nil
        }, UnsafeMutableRawPointer(bitPattern: UInt(task)), 256 * 1024)
        if rc == 0 {
            counters.add(.threads, slot: slot)
        } else {
            // Out of threads (EAGAIN): the loop computes this one itself rather than drop it.
            ThreadPerTask.work!.run(task)
        }
    }
}
