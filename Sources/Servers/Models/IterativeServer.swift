#if canImport(Glibc)
import Glibc
#endif
import Kernel

/// Model 1 (claim C1): one thread accepts a client, serves it to the end, then accepts the next.
/// A second client waits in the listen backlog for as long as the first stays connected.
public enum IterativeServer {
    public static func run(_ context: ServerContext) throws {
        let counters = try BlockingSession.prepare(context)
        let config = context.config
        let listenFD = context.listenFD
        // Off the main thread, which stays free to answer SIGUSR1 while a client is being served.
        try startThread(stackBytes: BlockingSession.stackBytes) {
            let session = BlockingSession(config: config, counters: counters, slot: 0)
            var acceptor = BlockingAcceptor(listenFD: listenFD, counters: counters, slot: 0)
            while true {
                let fd = acceptor.next()
                counters.add(.accepted, slot: 0)
                session.serve(fd)
            }
        }
        ServerOutput.ready(Server.readyLine(config, port: context.port))
        Supervisor.wait(stats: { counters.statsLine(BlockingSession.statsFields) })
    }
}
