import ArgumentParser
import Glibc
import Kernel
import Servers
import Vocabulary

extension IOMode: ExpressibleByArgument {}
extension ServerModel: ExpressibleByArgument {}
extension WireProtocol: ExpressibleByArgument {}
extension ReactorOptions.WriteInterest: ExpressibleByArgument {}
extension ReactorOptions.EdgeRead: ExpressibleByArgument {}
extension ReactorOptions.EMFILEPolicy: ExpressibleByArgument {}
extension AcceptMode: ExpressibleByArgument {}
extension CopyMode: ExpressibleByArgument {}
extension AllocMode: ExpressibleByArgument {}
extension QueueMode: ExpressibleByArgument {}
extension SigpipeMode: ExpressibleByArgument {}
extension CloseMode: ExpressibleByArgument {}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one server variant in the foreground; prints `ready port=<port> pid=<pid> ...` once it accepts.",
        discussion: """
        Stops on SIGTERM or SIGINT and prints its own counters (`stats ...`).

        EXAMPLES:
          muxlab serve --model reactor --io poll --port 0
          muxlab serve --io epoll-et --protocol http --cpus 1 --port 8080
          muxlab serve --io select --cpus 1 --numa-node 0
          muxlab serve --io epoll-et --idle-timeout 30s         # H3: close connections idle for 30 s

        MODELS (the seed's ten; --io defaults to the model's first back-end):
          muxlab serve --model iterative                        # 1: one client at a time (--io blocking)
          muxlab serve --model thread-per-connection            # 2 (also process-per-connection)
          muxlab serve --model prefork --workers 4 --io epoll-et --accept epoll-exclusive   # 3, claim C3
          muxlab serve --model reactor --io poll                # 4
          muxlab serve --model reactor-thread-per-request --compute-us 200   # 5
          muxlab serve --model reactor-worker --compute-us 200  # 6: one worker thread
          muxlab serve --model reactor-pool --workers 4 --compute-us 200 --queue per-worker   # 7, C5, K4
          muxlab serve --model multi-reactor --reactors 2 --accept reuseport   # 8, C6
          muxlab serve --model thread-per-connection --thread-stack default   # T1: glibc's 8 MiB stacks
          muxlab serve --model multi-reactor --reactors 2 --io epoll-lt --accept shared-epoll --heavy-share 0.1 --heavy-us 2000   # L1: loops pull
          muxlab serve --model multi-reactor-pool --reactors 2 --workers 4     # 9, C7
          muxlab serve --model proactor                         # 10: io_uring, C8

        VARIANTS (each breaks one rule, for the E claims; the defaults are the correct rules):
          muxlab serve --io epoll-lt --epollout always          # E1: LT busy-loops on idle sockets
          muxlab serve --io epoll-et --et-read once --read-size 16   # E2: lazy ET strands bytes
          muxlab serve --io epoll-et --blocking                 # E3: the loop blocks in read
          muxlab serve --io epoll-lt --fd-limit 64 --emfile none     # E4: accept busy-loops on EMFILE
          muxlab serve --copy staged                            # K1: two extra buffer copies per request
          muxlab serve --copy splice                            # K1: socket -> pipe -> socket, no user copy
          muxlab serve --alloc per-request                      # K3: a malloc and free per request
          muxlab serve --sigpipe default                        # H1: dies on a write to a reset peer
          muxlab serve --protocol http --close server-first     # H2: the server holds TIME_WAIT
        """
    )

    @Option(help: "Concurrency model: \(ServerModel.names).")
    var model: ServerModel = .reactor

    @Option(help: "I/O back-end: \(IOMode.names) (default: the model's first; blocking for models 1-2, io_uring for the proactor).")
    var io: IOMode?

    @Option(name: .customLong("protocol"), help: "Wire protocol: \(WireProtocol.names).")
    var wire: WireProtocol = .echo

    @Option(help: "TCP port, 0-65535 (0 picks a free one).")
    var port: Int = 0

    @Option(help: "Address to listen on (loopback unless --allow-non-loopback or inside a network namespace muxlab created).")
    var listen: String = "127.0.0.1"

    @Flag(help: "Allow --listen on an address outside 127.0.0.0/8 and ::1.")
    var allowNonLoopback = false

    @Option(help: "CPUs to pin the server to, e.g. 1 or 0-1.")
    var cpus: CPUList?

    @Option(help: "NUMA node to bind the server's memory to (libnuma).")
    var numaNode: Int?

    @Option(help: "listen(2) backlog, 1-65535.")
    var backlog: Int = 4096

    @Option(help: "When to register write interest: always (from accept on) or on-demand (while output waits).")
    var epollout: ReactorOptions.WriteInterest = .onDemand

    @Option(help: "Edge-triggered reads per report: until-eagain (correct), until-short (stops at a short read, reads on after a hang-up: saves the EAGAIN read) or once (loses data).")
    var etRead: ReactorOptions.EdgeRead = .untilEAGAIN

    @Flag(help: "Leave accepted sockets blocking (with --io epoll-et the loop then blocks in read).")
    var blocking = false

    @Option(help: "Bytes asked for per read(2), 1-65536.")
    var readSize: Int = 65536

    @Option(help: "Busy-poll for N microseconds after the last event before sleeping in the wait, 0-100000 (0: off). The loop then needs no wake-ups, which saves the client's CPU; its own CPU runs near 1.0.")
    var busyPollUs: Int = 0

    @Option(help: "Lower the server's descriptor limit (RLIMIT_NOFILE) to N, 8 up to the hard limit.")
    var fdLimit: Int?

    @Option(help: "On accept EMFILE: reserve-fd (shed the client with a reserved descriptor) or none.")
    var emfile: ReactorOptions.EMFILEPolicy = .reserveFD

    @Option(help: "Close a connection after this long without a byte read or written, 0.01s-86400s; off unless given.")
    var idleTimeout: DurationArgument?

    @Option(help: "How the listener is shared: \(AcceptMode.names) (prefork: blocking|shared-epoll|epoll-exclusive|reuseport; multi-reactor: acceptor (round-robin push)|reuseport|shared-epoll|epoll-exclusive (every loop watches the one listener: the idle ones pull, claim L1)).")
    var accept: AcceptMode?

    @Option(help: "Event loops for multi-reactor and multi-reactor-pool, 1-64.")
    var reactors: Int = 1

    @Option(help: "Pool threads (reactor-pool, multi-reactor-pool; default 4), processes (prefork; default 4), 1 for reactor-worker; 1-256.")
    var workers: Int = 0

    @Option(help: "CPU burnt per request in microseconds, 0-1000000 (claims C5, C9).")
    var computeUs: Int = 0

    @Option(help: "T1, thread-per-connection: each connection thread's stack: \(ThreadStack.allowedText). Default: 256K.")
    var threadStack: String?

    @Option(help: "L1: the share of connections, 0-1, drawn heavy per accepted connection (with --heavy-us; reactor, multi-reactor).")
    var heavyShare: Double = 0

    @Option(help: "L1: extra CPU per request of a heavy connection in microseconds, 0-1000000 (with --heavy-share).")
    var heavyUs: Int = 0

    @Option(help: "Sleep per request in a pool thread, microseconds, 0-1000000: blocking work (claim C9).")
    var blockUs: Int = 0

    @Option(help: "K1: direct, staged (two extra buffer copies) or splice (echo only, no user-space copy).")
    var copy: CopyMode = .direct

    @Option(help: "K3: pooled buffers or per-request (a malloc and free per request).")
    var alloc: AllocMode = .pooled

    @Option(help: "K4: the pool's work queue: global-lock (one shared queue) or per-worker.")
    var queue: QueueMode = .globalLock

    @Option(help: "H1: ignore SIGPIPE (writes to reset peers fail with EPIPE) or default (such a write kills the server).")
    var sigpipe: SigpipeMode = .ignore

    @Option(help: "H2: client-first (the server waits for the client to close) or server-first (closes after each answer).")
    var close: CloseMode = .clientFirst

    /// The driver's control channel: the ready line and the counters go out as messages on stdout,
    /// window edges come in on stdin.
    @Flag(help: .hidden)
    var control = false

    /// A test's fault: every accepted descriptor is swapped for a write-only pipe end, so the loop's first
    /// read fails with EBADF and must trap naming read(2) (reactor models on epoll; `ReactorOptions`).
    @Flag(name: .customLong("fault-bad-descriptor"), help: .hidden)
    var faultBadDescriptor = false

    func validate() throws {
        try check(reactors, 1...64, "--reactors")
        if workers != 0 { try check(workers, 1...256, "--workers") }
        try check(computeUs, 0...1_000_000, "--compute-us")
        try check(blockUs, 0...1_000_000, "--block-us")
        try check(heavyShare, 0...1, "--heavy-share")
        try check(heavyUs, 0...1_000_000, "--heavy-us")
        if let threadStack, ThreadStack.parse(threadStack) == nil {
            throw ValidationError("--thread-stack \(threadStack) is not allowed: \(ThreadStack.allowedText)")
        }
        try check(port, 0...65535, "--port")
        try check(backlog, 1...65535, "--backlog")
        try check(readSize, 1...65536, "--read-size")
        try check(busyPollUs, 0...100_000, "--busy-poll-us")
        if let fdLimit { try check(fdLimit, 8...DescriptorLimit.current().hard, "--fd-limit") }
        if let numaNode { try check(numaNode, 0...1023, "--numa-node") }
        if let idleTimeout { try check(idleTimeout.seconds, 0.01...86400, "--idle-timeout", unit: " s") }
    }

    func run() throws {
        var config = ServerConfig()
        config.model = model
        config.io = io ?? model.ioModes[0]
        config.wire = wire
        config.listen = Endpoint(host: listen == "localhost" ? "127.0.0.1" : listen, port: UInt16(port))
        // Inside a namespace muxlab created (topology = "netns") only its veth twin is reachable.
        guard config.listen.isLoopback || allowNonLoopback || NetworkNamespace.currentIsMuxlabCreated() else {
            throw ValidationError("--listen \(listen) is not a loopback address (127.0.0.0/8 or ::1) and this process does not run in a network namespace muxlab created (\(NetworkNamespace.directory)/\(NetworkNamespace.prefix)*); add --allow-non-loopback to listen there")
        }
        config.cpus = cpus
        config.numaNode = numaNode
        config.backlog = Int32(backlog)
        config.fdLimit = fdLimit
        config.reactor.writeInterest = epollout
        config.reactor.edgeRead = etRead
        config.reactor.blockingSockets = blocking
        config.reactor.readSize = readSize
        config.reactor.busyPollMicros = busyPollUs
        config.reactor.faultBadDescriptor = faultBadDescriptor
        config.reactor.emfile = emfile
        config.reactor.idleTimeout = idleTimeout?.seconds
        config.accept = accept
        config.reactors = reactors
        config.workers = workers
        config.computeMicros = computeUs
        config.blockMicros = blockUs
        config.copy = copy
        config.alloc = alloc
        config.queue = queue
        config.sigpipe = sigpipe
        config.close = close
        config.threadStackBytes = threadStack.flatMap(ThreadStack.parse)
        config.heavyShare = heavyShare
        config.heavyMicros = heavyUs
        do {
            if control { try ServerOutput.startControl() }
            try Server.run(config)
        } catch let e as ValueError {
            // A runtime refusal (port in use, CPU or NUMA node missing): one line, no usage text.
            writeLine("muxlab serve: \(e)", fd: 2)
            throw ExitCode(2)
        }
    }
}
