import ArgumentParser
import Glibc
import Kernel
import Servers

extension IOMode: ExpressibleByArgument {}
extension ServerModel: ExpressibleByArgument {}
extension WireProtocol: ExpressibleByArgument {}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one server variant in the foreground; prints `ready port=<port> pid=<pid> ...` once it accepts.",
        discussion: """
        Stops on SIGTERM or SIGINT and prints its own counters (`stats ...`).

        EXAMPLES:
          muxlab serve --model reactor --io poll --port 0
          muxlab serve --io epoll-et --protocol http --cpus 1 --port 8080
          muxlab serve --io select --cpus 1 --numa-node 0
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

    func validate() throws {
        try check(port, 0...65535, "--port")
        try check(backlog, 1...65535, "--backlog")
        if let numaNode { try check(numaNode, 0...1023, "--numa-node") }
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
        do {
            try Server.run(config)
        } catch let e as ValueError {
            throw ValidationError(e.description)
        }
    }
}
