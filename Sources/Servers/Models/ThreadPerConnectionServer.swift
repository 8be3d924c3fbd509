#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel
import Vocabulary

/// Model 2 (claim C2): an accept loop starts one detached thread per connection, which serves it
/// with blocking calls and ends with it. Threads, and the switches between them, grow with clients.
/// `--thread-stack` sets each thread's stack (claim T1: glibc's 8 MiB default is address space, not memory).
public enum ThreadPerConnectionServer {
    public static func run(_ context: ServerContext) throws {
        let counters = try BlockingSession.prepare(context)
        let config = context.config
        let listenFD = context.listenFD
        // 0 asks pthread_create for glibc's default.
        let sessionStack = config.threadStackBytes ?? BlockingSession.stackBytes
        try startThread(stackBytes: BlockingSession.stackBytes) {
            var acceptor = BlockingAcceptor(listenFD: listenFD, counters: counters, slot: 0)
            var refusalNotice = RefusalNotice()
            while true {
                let fd = acceptor.next()
                do {
                    try startThread(stackBytes: sessionStack) {
                        // Threads add into slot tid % slots: relaxed atomics, so sharing a slot is only slower.
                        let session = BlockingSession(config: config, counters: counters, slot: Int(mux_gettid()))
                        session.serve(fd)
                    }
                    counters.add(.accepted, slot: 0)
                    counters.add(.threads, slot: 0)
                } catch {
                    FD.close(fd)
                    counters.add(.refused, slot: 0)
                    refusalNotice.say("\(error)")
                }
            }
        }
        ServerOutput.ready(Server.readyLine(config, port: context.port))
        Supervisor.wait(stats: { counters.statsLine(BlockingSession.statsFields + [.threads]) })
    }
}

