import ArgumentParser
import Glibc
import Kernel
import Servers

extension IOMode: ExpressibleByArgument {}
extension ServerModel: ExpressibleByArgument {}
extension WireProtocol: ExpressibleByArgument {}
extension ReactorOptions.WriteInterest: ExpressibleByArgument {}
extension ReactorOptions.EdgeRead: ExpressibleByArgument {}
extension ReactorOptions.EMFILEPolicy: ExpressibleByArgument {}

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

        VARIANTS (each breaks one rule, for the E claims; the defaults are the correct rules):
          muxlab serve --io epoll-lt --epollout always          # E1: LT busy-loops on idle sockets
          muxlab serve --io epoll-et --et-read once --read-size 16   # E2: lazy ET strands bytes
          muxlab serve --io epoll-et --blocking                 # E3: the loop blocks in read
          muxlab serve --io epoll-lt --fd-limit 64 --emfile none     # E4: accept busy-loops on EMFILE
        """
    )

    @Option(help: "Concurrency model: \(ServerModel.names).")
    var model: ServerModel = .reactor

    @Option(help: "Readiness back-end: \(IOMode.names).")
    var io: IOMode = .epollET

    @Option(name: .customLong("protocol"), help: "Wire protocol: \(WireProtocol.names).")
    var wire: WireProtocol = .echo

    @Option(help: "TCP port, 0-65535 (0 picks a free one).")
    var port: Int = 0

    @Option(help: "Address to listen on (loopback unless --allow-non-loopback).")
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

    @Option(help: "Edge-triggered reads per report: until-eagain (correct) or once (loses data).")
    var etRead: ReactorOptions.EdgeRead = .untilEAGAIN

    @Flag(help: "Leave accepted sockets blocking (with --io epoll-et the loop then blocks in read).")
    var blocking = false

    @Option(help: "Bytes asked for per read(2), 1-65536.")
    var readSize: Int = 65536

    @Option(help: "Lower the server's descriptor limit (RLIMIT_NOFILE) to N, 8 up to the hard limit.")
    var fdLimit: Int?

    @Option(help: "On accept EMFILE: reserve-fd (shed the client with a reserved descriptor) or none.")
    var emfile: ReactorOptions.EMFILEPolicy = .reserveFD

    @Option(help: "Close a connection after this long without a byte read or written, 0.01s-86400s; off unless given.")
    var idleTimeout: DurationArgument?

    func validate() throws {
        try check(port, 0...65535, "--port")
        try check(backlog, 1...65535, "--backlog")
        try check(readSize, 1...65536, "--read-size")
        if let fdLimit { try check(fdLimit, 8...DescriptorLimit.current().hard, "--fd-limit") }
        if let numaNode { try check(numaNode, 0...1023, "--numa-node") }
        if let idleTimeout { try check(idleTimeout.seconds, 0.01...86400, "--idle-timeout", unit: " s") }
    }

    func run() throws {
        var config = ServerConfig()
        config.model = model
        config.io = io
        config.wire = wire
        config.listen = Endpoint(host: listen == "localhost" ? "127.0.0.1" : listen, port: UInt16(port))
        guard config.listen.isLoopback || allowNonLoopback else {
            throw ValidationError("--listen \(listen) is not a loopback address (127.0.0.0/8 or ::1); add --allow-non-loopback to listen there")
        }
        config.cpus = cpus
        config.numaNode = numaNode
        config.backlog = Int32(backlog)
        config.fdLimit = fdLimit
        config.reactor.writeInterest = epollout
        config.reactor.edgeRead = etRead
        config.reactor.blockingSockets = blocking
        config.reactor.readSize = readSize
        config.reactor.emfile = emfile
        config.reactor.idleTimeout = idleTimeout?.seconds
        do {
            try Server.run(config)
        } catch let e as ValueError {
            // A runtime refusal (port in use, CPU or NUMA node missing): one line, no usage text.
            writeLine("muxlab serve: \(e)", fd: 2)
            throw ExitCode(2)
        }
    }
}
