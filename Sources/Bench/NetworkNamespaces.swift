#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Kernel

/// `topology = "netns"` (issue 7): one cell's server and load in two network namespaces of
/// their own, `muxlab-<driver pid>-<cell>-s` and `...-c`, joined by a veth pair on a private
/// /24 (server .1, client .2). Made before the server starts and removed when the cell ends,
/// whatever ends it: `measure` tears it down in a defer (success, a thrown error, the cell's
/// timeout, SIGINT/SIGTERM). A driver killed outright leaves it to the next run, which
/// removes namespaces whose driver is gone (`removeStaleNamespaces`).
///
/// The namespaces hold nothing but lo and the veth: no route leads out, so traffic in them
/// never leaves the machine, and `muxlab serve`/`load` accept the veth addresses there
/// without `--allow-non-loopback` (`NetworkNamespace.currentIsMuxlabCreated`).
public final class CellNetwork {
    let serverNamespace: String
    let clientNamespace: String
    let serverAddress: String
    let clientAddress: String
    let ip: IPCommand
    /// Namespaces made so far, removed in reverse order.
    private var made: [String] = []

    /// The veth ends, one per namespace (names are per namespace, so every cell can use the same).
    static let serverInterface = "mux-server"
    static let clientInterface = "mux-client"

    /// The names of cell `cell`'s namespaces under driver `driver`.
    static func names(driver: Int32, cell: Int) -> (server: String, client: String) {
        let stem = "\(NetworkNamespace.prefix)\(driver)-\(cell)"
        return (stem + "-s", stem + "-c")
    }

    /// Creates both namespaces, the veth pair between them and their addresses, and brings
    /// lo and the veth ends up. A step that fails removes what the steps before it made and
    /// throws, naming the command and ip's stderr.
    init(cell: Int, driver: Int32 = getpid(), ip: IPCommand) throws {
        (serverNamespace, clientNamespace) = CellNetwork.names(driver: driver, cell: cell)
        let subnet = "10.213.\(cell % 256)"
        serverAddress = subnet + ".1"
        clientAddress = subnet + ".2"
        self.ip = ip
        do {
            for namespace in [serverNamespace, clientNamespace] {
                try ip.run(["netns", "add", namespace])
                made.append(namespace)
            }
            try ip.run(["link", "add", CellNetwork.serverInterface, "netns", serverNamespace, "type", "veth",
                        "peer", "name", CellNetwork.clientInterface, "netns", clientNamespace])
            for (namespace, interface, address) in [(serverNamespace, CellNetwork.serverInterface, serverAddress),
                                                    (clientNamespace, CellNetwork.clientInterface, clientAddress)] {
                try ip.run(["-n", namespace, "addr", "add", address + "/24", "dev", interface])
                try ip.run(["-n", namespace, "link", "set", "lo", "up"])
                try ip.run(["-n", namespace, "link", "set", interface, "up"])
            }
        } catch {
            _ = remove()
            throw error
        }
    }

    /// Removes the namespaces (the veth pair goes with them); returns what could not be removed.
    /// Safe to call twice.
    func remove() -> [String] {
        var problems: [String] = []
        while let namespace = made.popLast() {
            do { try ip.run(["netns", "del", namespace]) } catch { problems.append("\(error)") }
        }
        return problems
    }

    /// `executable arguments` run inside `namespace` by `ip netns exec`, which execs it: the
    /// child's pid stays the program's own (the sampler and /proc readers rely on that).
    func command(in namespace: String, _ executable: String, _ arguments: [String]) -> (String, [String]) {
        (ip.path, ["netns", "exec", namespace, executable] + arguments)
    }

    /// Why netns cells cannot run on this machine, or nil when they can: they need root and `ip`.
    public static func unavailableReason() -> String? {
        if geteuid() != 0 {
            return "needs root to create network namespaces (this runs as uid \(geteuid())); use topology = \"loopback\" or run as root"
        }
        if IPCommand.locate() == nil { return IPCommand.missing }
        return nil
    }
}

/// iproute2's `ip`, run synchronously: each call waits for it to end and throws, naming the
/// command and ip's stderr, when it fails.
struct IPCommand {
    let path: String
    /// Where ip's stderr goes; rewritten by every call.
    let stderrPath: String
    /// The longest one call may take.
    static let timeout = 10.0

    static let missing = "needs `ip` (iproute2), which is not installed (not on PATH, /usr/sbin or /sbin): `make deps` installs it, or apt-get install -y iproute2"

    /// The `ip` executable, if there is one.
    static func locate() -> String? {
        executablesOnPath(named: "ip", extraDirectories: ["/usr/sbin", "/sbin"]).first
    }

    init(stderrPath: String) throws {
        guard let path = IPCommand.locate() else { throw CellFailure("topology = \"netns\" \(IPCommand.missing)") }
        self.path = path
        self.stderrPath = stderrPath
    }

    func run(_ arguments: [String]) throws {
        let shown = (["ip"] + arguments).joined(separator: " ")
        let child: ChildProcess
        do {
            child = try ChildProcess(executable: path, arguments: arguments, stderrPath: stderrPath)
        } catch {
            throw CellFailure("`\(shown)` could not start: \(error)")
        }
        _ = child.readRemaining(timeout: IPCommand.timeout)
        guard let status = child.wait(timeout: IPCommand.timeout) else {
            child.stop()
            throw CellFailure("`\(shown)` did not finish within \(formatSeconds(IPCommand.timeout)): \(child.stderrTail(3).joined(separator: " | "))")
        }
        guard status.succeeded else {
            let said = child.stderrTail(3).joined(separator: " | ")
            throw CellFailure("`\(shown)` failed (\(status)): \(said.isEmpty ? "no message on stderr" : said)")
        }
    }
}

/// Which namespace a child of a netns cell runs in.
enum NetworkSide {
    case server, client
}

extension BenchRunner {
    /// Makes the cell's namespaces when it asks for them (`topology = "netns"`); the caller
    /// tears them down in a defer with `tearDownNetwork`.
    func setUpNetwork(_ cell: Cell, tag: String) throws {
        guard cell.topology == .netns else { return }
        let ip = try IPCommand(stderrPath: "\(logDirectory)/\(tag)-ip.err")
        network = try CellNetwork(cell: cell.index, ip: ip)
    }

    /// Removes the current cell's namespaces, if it has any; a failure is said on stderr.
    func tearDownNetwork() {
        guard let network else { return }
        self.network = nil
        for problem in network.remove() {
            progress("muxlab bench: cannot remove a network namespace of \(network.serverNamespace.dropLast(2)): \(problem)")
        }
    }

    /// The address the server listens on and the load targets.
    var serverHost: String { network?.serverAddress ?? "127.0.0.1" }

    /// `--listen` for `muxlab serve` in a netns cell; nothing on loopback (serve's default).
    var listenArguments: [String] { network.map { ["--listen", $0.serverAddress] } ?? [] }

    /// Starts a child of the cell on its side: in that side's namespace in a netns cell.
    func spawn(_ side: NetworkSide, executable: String, arguments: [String], stderrPath: String,
               environment: [String]? = nil, control: Bool = false) throws -> ChildProcess {
        guard let network else {
            return try ChildProcess(executable: executable, arguments: arguments, stderrPath: stderrPath,
                                    environment: environment, control: control)
        }
        let namespace = side == .server ? network.serverNamespace : network.clientNamespace
        let (ip, argv) = network.command(in: namespace, executable, arguments)
        return try ChildProcess(executable: ip, arguments: argv, stderrPath: stderrPath, environment: environment, control: control)
    }

    /// Runs `body` where the load runs: in the driver's thread on loopback, on a thread in
    /// the client namespace in a netns cell (the verification round trip, readiness checks).
    func onClientSide<T>(_ body: () throws -> T) throws -> T {
        guard let network else { return try body() }
        return try NetworkNamespace.run(in: network.clientNamespace, body)
    }

    /// TIME_WAIT sockets at the server's port (claim H2). On loopback both ends share one table;
    /// in a netns cell the server's sockets are in its namespace (/proc/PID/net) and the
    /// clients' in theirs (read from a thread there).
    func timeWait(port: UInt16, server: Int32) -> (local: Int, remote: Int)? {
        guard network != nil else { return TCPTable.timeWait(port: port) }
        guard let serverSide = TCPTable.timeWait(port: port, procNet: "/proc/\(server)/net"),
              let clientSide = try? onClientSide({ TCPTable.timeWait(port: port, procNet: "/proc/thread-self/net") })
        else { return nil }
        return (serverSide.local, clientSide.remote)
    }

    /// Removes `muxlab-<pid>-*` namespaces whose driver pid no longer runs (a driver killed
    /// with SIGKILL cannot clean up), saying so on stderr. A namespace of a running driver
    /// is left alone, whoever that driver is.
    func removeStaleNamespaces() {
        let stale = NetworkNamespace.muxlabNamespaces().filter { name in
            guard let pid = BenchRunner.driverPID(ofNamespace: name) else { return false }
            return kill(pid, 0) != 0 && errno == ESRCH
        }
        guard !stale.isEmpty else { return }
        let ip: IPCommand
        do {
            ip = try IPCommand(stderrPath: "\(logDirectory)/stale-netns-ip.err")
        } catch {
            progress("muxlab bench: cannot remove stale network namespaces \(stale.joined(separator: ", ")): \(error)")
            return
        }
        for name in stale {
            do {
                try ip.run(["netns", "del", name])
                progress("muxlab bench: removed stale network namespace \(name) (its driver, pid \(BenchRunner.driverPID(ofNamespace: name)!), is gone)")
            } catch {
                progress("muxlab bench: cannot remove stale network namespace \(name): \(error)")
            }
        }
    }

    /// The driver pid in `muxlab-<pid>-...`, or nil for a name of another shape.
    static func driverPID(ofNamespace name: String) -> Int32? {
        guard name.hasPrefix(NetworkNamespace.prefix) else { return nil }
        let rest = name.dropFirst(NetworkNamespace.prefix.count)
        guard let dash = rest.firstIndex(of: "-"), let pid = Int32(rest[..<dash]), pid > 0 else { return nil }
        return pid
    }
}
