#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// Model 3 (claim C3): `--workers` processes forked up front share the listening port, by `--accept`:
/// blocking accept(2) on one listener, an epoll (or poll/select) per process on it, the same with
/// EPOLLEXCLUSIVE, or one SO_REUSEPORT listener per process. The parent only supervises.
public enum PreforkServer {
    public static func run(_ context: ServerContext) throws {
        try Supervisor.blockSignals()
        let config = context.config
        let counters = try SharedCounters()
        Work.calibrate()  // before forking: every child inherits the rate
        let mode = config.acceptMode
        // O_NONBLOCK lives on the open file, which every child shares: set it once, here.
        if config.io == .blocking && mode != .reuseport { try Sockets.setNonBlocking(context.listenFD, false) }
        var ready: [Int32] = [-1, -1]
        guard mux_pipe_cloexec(&ready) == 0 else { throw SystemError("pipe2", errno: errno) }
        let children = try ForkedChildren { pid, number, status in
            writeLine("muxlab serve: prefork child \(number) (pid \(pid)) died: \(status)", fd: 2)
        }
        let parent = getpid()
        for number in 0..<config.workerCount {
            do {
                _ = try children.fork(number: number) {
                    _ = mux_set_pdeathsig(SIGKILL)
                    if getppid() != parent { _exit(0) }
                    FD.close(ready[0])
                    runChild(number, context, counters, readyFD: ready[1])
                }
            } catch {
                FD.close(ready[0])
                FD.close(ready[1])
                children.stopAll()
                throw error
            }
        }
        FD.close(ready[1])
        let up = awaitChildren(ready[0], count: config.workerCount, timeoutMs: 10_000)
        FD.close(ready[0])
        guard up == config.workerCount else {
            children.stopAll()
            throw ValueError("prefork: \(up) of \(config.workerCount) children came up (see the lines above)")
        }
        // Every child has its own reuseport listener now; the kernel would still hash clients to this one.
        if mode == .reuseport { FD.close(context.listenFD) }
        ServerOutput.ready(Server.readyLine(config, port: context.port))
        var fields = BlockingSession.statsFields
        if config.io != .blocking { fields += [.waits, .events, .scanned] }
        Supervisor.wait(stats: { counters.statsLine(fields, extra: "children=\(children.count)") },
                        stop: { children.stopAll() })
    }

    /// Reads one byte per child that is ready to accept; fewer when some die first or time runs out.
    static func awaitChildren(_ fd: Int32, count: Int, timeoutMs: Int) -> Int {
        let deadline = monotonicNanos() + UInt64(timeoutMs) * 1_000_000
        var up = 0
        var bytes = [UInt8](repeating: 0, count: 256)
        while up < count {
            let now = monotonicNanos()
            guard now < deadline else { break }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, Int32((deadline - now) / 1_000_000) + 1) < 0 && errno != EINTR { break }
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, min($0.count, count - up)) }
            if n == 0 { break }  // every child has either reported or died
            if n > 0 { up += n }
        }
        return up
    }

    /// A child: takes its listener, tells the parent it is ready, serves until killed.
    static func runChild(_ number: Int, _ context: ServerContext, _ counters: SharedCounters, readyFD: Int32) -> Never {
        let config = context.config
        do {
            var listenFD = context.listenFD
            if config.acceptMode == .reuseport {
                listenFD = try Sockets.listen(on: Endpoint(host: config.listen.host, port: context.port),
                                              backlog: config.backlog, reusePort: true).fd
                FD.close(context.listenFD)
                if config.io == .blocking { try Sockets.setNonBlocking(listenFD, false) }
            }
            var options = config.reactor
            options.exclusiveListener = config.acceptMode == .epollExclusive
            // A full select child leaves clients to its siblings instead of refusing them (claim M8).
            options.yieldListenerAtLimit = config.acceptMode != .reuseport
            switch config.io {
            case .blocking:
                let session = BlockingSession(config: config, counters: counters, slot: number)
                var acceptor = BlockingAcceptor(listenFD: listenFD, counters: counters, slot: number)
                signalReady(readyFD, number)
                while true {
                    let fd = acceptor.next()
                    counters.add(.accepted, slot: number)
                    session.serve(fd)
                }
            default:
                try ReactorFactory.build(config, listenFD: listenFD, capacity: context.capacity, options: options,
                                         ChildLoop(number: number, counters: counters, readyFD: readyFD))
            }
        } catch {
            writeLine("muxlab serve: prefork child \(number): \(error)", fd: 2)
            _exit(1)
        }
        _exit(0)
    }

    /// A child's own loop (its poller made here, after the fork), publishing into the child's slot.
    struct ChildLoop: ReactorUse {
        let number: Int
        let counters: SharedCounters
        let readyFD: Int32
        func use<P: Poller>(_ reactor: Reactor<P>) throws {
            reactor.publish = (counters, number)
            signalReady(readyFD, number)
            try reactor.run()
        }
    }

    static func signalReady(_ fd: Int32, _ number: Int) {
        var byte = UInt8(truncatingIfNeeded: number)
        _ = write(fd, &byte, 1)
        FD.close(fd)
    }
}
