#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// Model 2 (claim C2): an accept loop forks one process per connection; the child serves it with
/// blocking calls and exits. The parent reaps each child as it ends and, on stop, kills the rest by pid.
public enum ProcessPerConnectionServer {
    public static func run(_ context: ServerContext) throws {
        let counters = try BlockingSession.prepare(context)
        let config = context.config
        let listenFD = context.listenFD
        let children = try ForkedChildren()
        let parent = getpid()
        try startThread(stackBytes: BlockingSession.stackBytes) {
            // Made once here, inherited by every child: a child allocates nothing to serve.
            let session = BlockingSession(config: config, counters: counters, slot: 0)
            var acceptor = BlockingAcceptor(listenFD: listenFD, counters: counters, slot: 0)
            var refusalNotice = RefusalNotice()
            while true {
                let fd = acceptor.next()
                do {
                    let pid = try children.fork(number: -1) {
                        // PDEATHSIG follows the forking thread, which lives as long as the server.
                        _ = mux_set_pdeathsig(SIGKILL)
                        if getppid() != parent { _exit(0) }
                        FD.close(listenFD)
                        session.slot = Int(getpid())
                        session.serve(fd)
                        _exit(0)
                    }
                    if pid == nil { FD.close(fd); return }  // stopping: the process is about to exit
                    counters.add(.accepted, slot: 0)
                } catch {
                    counters.add(.refused, slot: 0)
                    refusalNotice.say("\(error)")
                }
                FD.close(fd)
            }
        }
        ServerOutput.ready(Server.readyLine(config, port: context.port))
        Supervisor.wait(stats: { counters.statsLine(BlockingSession.statsFields, extra: "children=\(children.count)") },
                        stop: { children.stopAll() })
    }
}

/// The processes a server forked, by pid. A thread reaps each as it ends; `stopAll` kills and reaps
/// the rest. Forks, reaping and kills all hold one lock, so a pid is recorded before it can be
/// reaped, and never signalled once reaped (when it could already belong to someone else).
final class ForkedChildren: @unchecked Sendable {
    private let lock: UnsafeMutablePointer<pthread_mutex_t>
    /// Posted when a child appears where there was none: the reaper sleeps on it instead of spinning on ECHILD.
    private let appeared: UnsafeMutablePointer<sem_t>
    /// Live pid -> its number (prefork child index; -1 for a connection's child).
    private var live: [Int32: Int] = [:]
    private var stopping = false
    /// Called, under the lock, for a child that ended before `stopAll`.
    private let onExit: ((_ pid: Int32, _ number: Int, _ status: ExitStatus) -> Void)?

    init(onExit: ((_ pid: Int32, _ number: Int, _ status: ExitStatus) -> Void)? = nil) throws {
        self.onExit = onExit
        lock = .allocate(capacity: 1)
        pthread_mutex_init(lock, nil)
        appeared = .allocate(capacity: 1)
        sem_init(appeared, 0, 0)
        try startThread(stackBytes: 128 << 10) { [self] in reap() }
    }

    /// Children alive now.
    var count: Int {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return live.count
    }

    var pids: [Int32] {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return Array(live.keys)
    }

    /// Forks a child that runs `body` (which ends with _exit); the parent gets its pid, or nil once stopping.
    func fork(number: Int, _ body: () -> Never) throws -> Int32? {
        pthread_mutex_lock(lock)
        if stopping {
            pthread_mutex_unlock(lock)
            return nil
        }
        let wasEmpty = live.isEmpty
        let pid = Glibc.fork()
        if pid == 0 { body() }
        if pid < 0 {
            let e = errno
            pthread_mutex_unlock(lock)
            throw SystemError("fork", errno: e)
        }
        live[pid] = number
        pthread_mutex_unlock(lock)
        if wasEmpty { sem_post(appeared) }
        return pid
    }

    /// Kills every live child by pid (SIGKILL) and reaps it; later forks are refused.
    func stopAll() {
        pthread_mutex_lock(lock)
        stopping = true
        for pid in live.keys { kill(pid, SIGKILL) }
        for pid in live.keys {
            var st: Int32 = 0
            while waitpid(pid, &st, 0) < 0 && errno == EINTR {}
        }
        live.removeAll()
        pthread_mutex_unlock(lock)
    }

    /// The reaper thread: waits for any child to end without reaping it (WNOWAIT), then reaps under the lock.
    private func reap() {
        while true {
            var info = siginfo_t()
            if waitid(P_ALL, 0, &info, WEXITED | WNOWAIT) != 0 {
                if errno == ECHILD { sem_wait(appeared) }
                continue
            }
            pthread_mutex_lock(lock)
            var st: Int32 = 0
            while true {
                let pid = waitpid(-1, &st, WNOHANG)
                if pid <= 0 { break }
                if let number = live.removeValue(forKey: pid), !stopping {
                    let sig = st & 0x7f
                    onExit?(pid, number, sig == 0 ? .exited((st >> 8) & 0xff) : .signaled(sig))
                }
            }
            pthread_mutex_unlock(lock)
        }
    }
}
