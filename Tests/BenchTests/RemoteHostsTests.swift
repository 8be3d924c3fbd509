#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import Bench
import Kernel

/// The workload's `[hosts]` and the check every host passes before a load starts. The hosts here are
/// 127.0.0.1 ports: one where nothing listens, one that accepts and never speaks SSH. The ready and
/// version-mismatch answers need a real sshd: AgentTests checks them against its test hosts.
@Suite("remote hosts: [hosts], server_host, load_hosts, the ssh check")
struct RemoteHostsTests {
    private func load(_ text: String) throws -> Workload {
        let scratch = try ScratchDirectory()
        return try Workload.load(path: try scratch.write("w.toml", text))
    }

    private func loadError(_ text: String) throws -> String {
        let scratch = try ScratchDirectory()
        do {
            _ = try Workload.load(path: try scratch.write("w.toml", text))
            Issue.record("expected a WorkloadError")
            return ""
        } catch let error as WorkloadError {
            return error.description.replacingOccurrences(of: scratch.path + "/", with: "")
        }
    }

    private let twoHosts = """
        [hosts.a]
        ssh = "root@10.77.0.2"
        [hosts.b]
        ssh = "bench@[fd00::3]:2222"
        ssh_options = ["-i", "/root/.ssh/bench key"]
        muxlab = "/opt/muxlab/bin/muxlab"

        """

    @Test("ssh = \"[user@]address[:port]\", IPv6 in brackets")
    func sshSpec() throws {
        let a = try RemoteHost(name: "a", ssh: "root@10.77.0.2")
        #expect(a.user == "root" && a.address == "10.77.0.2" && a.port == nil && a.shown == "root@10.77.0.2")
        let b = try RemoteHost(name: "b", ssh: "[fd00::3]:2222")
        #expect(b.user == nil && b.address == "fd00::3" && b.port == 2222 && b.shown == "[fd00::3]:2222")
        #expect(try RemoteHost(name: "c", ssh: "bench-2:22").address == "bench-2")
        for (bad, why) in [("root@", "needs an address"), ("@host", "the user before @"), ("host:0", "port \"0\" must be a number in 1-65535"),
                           ("host:x", "port \"x\""), ("fd00::3", "an IPv6 address goes in brackets"), ("[fd00::3", "lacks its ]"),
                           ("a b", "needs an address"), ("", "needs an address")] {
            #expect(throws: WorkloadError.self) { try RemoteHost(name: "h", ssh: bad) }
            do { _ = try RemoteHost(name: "h", ssh: bad) } catch let e as WorkloadError {
                #expect(e.description.contains(why), "\(bad): \(e)")
                #expect(e.description.hasPrefix("[hosts.h]: ssh = \"\(bad)\""))
            }
        }
    }

    @Test("cells name hosts: server_host and load_hosts, in the cell and its label")
    func cellsNameHosts() throws {
        let workload = try load(twoHosts + """
            [[experiment]]
            id = "x"
            [experiment.base]
            server_host = "a"
            connections = 4
            [experiment.matrix]
            load_hosts = [["b"], []]
            """)
        let cells = workload.cells()
        #expect(cells.map(\.serverHost) == ["a", "a"])
        #expect(cells.map(\.loadHosts) == [["b"], []])
        #expect(cells.map(\.remote) == [true, true])
        #expect(cells[0].label == "load_hosts=[b]" && cells[1].label == "load_hosts=local")
        #expect(workload.hostsInUse.map(\.name) == ["a", "b"])
        #expect(workload.hosts["b"]?.sshOptions == ["-i", "/root/.ssh/bench key"])
        #expect(workload.hosts["b"]?.muxlab == "/opt/muxlab/bin/muxlab")
        let local = try load(twoHosts + "[[experiment]]\nid = \"y\"\n")
        #expect(local.hostsInUse.isEmpty && !local.cells()[0].remote)
    }

    @Test("bad hosts and references: an error naming the value and what is allowed")
    func badInput() throws {
        let cell = "[[experiment]]\nid = \"x\"\n[experiment.base]\n"
        #expect(try loadError(twoHosts + cell + "server_host = \"c\"\n")
                == "w.toml: experiment \"x\": server_host = \"c\": \"c\" is not in [hosts] (defined: a, b)")
        #expect(try loadError(cell + "load_hosts = [\"a\"]\n")
                == "w.toml: experiment \"x\": load_hosts = [\"a\"]: \"a\" is not in [hosts] (this workload defines no hosts: add [hosts.a] with ssh = \"user@address\")")
        #expect(try loadError(twoHosts + cell + "load_hosts = [\"a\", \"a\"]\n")
                == "w.toml: experiment \"x\": load_hosts = [\"a\", \"a\"]: names \"a\" twice")
        #expect(try loadError(twoHosts + cell + "load_hosts = [\"a\", \"b\"]\nconnections = 1\n")
                == "w.toml: experiment \"x\": load_hosts = [\"a\", \"b\"]: 2 hosts for connections = 1: each needs at least one connection")
        #expect(try loadError(twoHosts + cell + "server_host = \"a\"\ntopology = \"netns\"\n").contains("topology = \"netns\": is for cells on this machine"))
        #expect(try loadError(twoHosts + cell + "load_hosts = [\"b\"]\n")
                == "w.toml: experiment \"x\": load_hosts = [\"b\"]: needs server_host: a load targets only its cell's server host, and a server on this machine listens on loopback only")
        #expect(try loadError(twoHosts + cell + "server_host = \"a\"\nload_hosts = [\"b\"]\nload = \"wrk\"\nprotocol = \"http\"\n").contains("load = \"wrk\": runs on this machine only"))
        #expect(try loadError(twoHosts + cell + "server_host = \"a\"\nserver_command = [\"srv\", \"{port}\"]\n").contains("server_command: runs on this machine only in this build"))
        #expect(try loadError("[hosts.A]\nssh = \"h\"\n") == "w.toml: [hosts.A]: a host name must match [a-z0-9-]+ (lowercase letters, digits, dashes)")
        #expect(try loadError("[hosts.a]\nuser = \"root\"\n").contains("[hosts.a]"))
        #expect(try loadError("[hosts.a]\nssh_options = [\"-v\"]\n") == "w.toml: [hosts.a]: missing ssh = \"user@address[:port]\"")
        #expect(try loadError("[hosts.a]\nssh = 22\n").hasPrefix("w.toml: [hosts.a]: ssh = 22: must be a string"))
        #expect(try loadError("[hosts.a]\nssh = \"h\"\nmuxlab = \"bin/muxlab\"\n").contains("must be an absolute path on that host"))
        #expect(try loadError("[hosts.a]\nssh = \"h\"\nssh_options = \"-v\"\n").contains("ssh_options = \"-v\": must be an array of strings"))
        #expect(try loadError("hosts = 1\n").contains("hosts = 1: must be tables"))
        #expect(try loadError("[hosts.a]\nssh = \"h:99999\"\n") == "w.toml: [hosts.a]: ssh = \"h:99999\": port \"99999\" must be a number in 1-65535")
    }

    @Test("the ssh command: no prompt, a bounded connect, options as given, the remote words quoted")
    func sshCommand() throws {
        let host = try RemoteHost(name: "b", ssh: "bench@[fd00::3]:2222", sshOptions: ["-i", "/k"])
        #expect(host.sshCommand(["/opt/mux lab/muxlab", "--version"]) == [
            "ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "ControlMaster=no", "-o", "ControlPath=none",
            "-p", "2222", "-i", "/k", "bench@fd00::3", "'/opt/mux lab/muxlab' --version"])
        let shared = host.sshCommand(["true"], controlDirectory: "/run/m")
        #expect(shared.contains("ControlPath=/run/m/%C") && shared.contains("ControlMaster=no") && !shared.contains("ControlPersist"))
        #expect(host.sshCommand(["echo", "it's"]).last == "echo 'it'\\''s'")
    }

    @Test("a host where nothing listens: one line naming it, its address and ssh's reason")
    func refused() throws {
        // A port that was free a moment ago: bound, its number read, closed.
        let (fd, port) = try Sockets.listen(on: Endpoint(host: "127.0.0.1", port: 0))
        close(fd)
        let host = try RemoteHost(name: "gone", ssh: "root@127.0.0.1:\(port)")
        let results = HostCheck.problems([host], localVersion: "muxlab 0.9.0 (commit abc)", localExecutable: "/usr/bin/true")
        let problem = try #require(results.first?.problem)
        #expect(problem == "host gone (root@127.0.0.1:\(port)): ssh failed: ssh: connect to host 127.0.0.1 port \(port): Connection refused")
    }

    @Test("a host that accepts and never speaks SSH: given up on after ConnectTimeout, named")
    func silent() throws {
        let (fd, port) = try Sockets.listen(on: Endpoint(host: "127.0.0.1", port: 0))
        defer { close(fd) }
        let host = try RemoteHost(name: "mute", ssh: "root@127.0.0.1:\(port)")
        let start = monotonicNanos()
        let results = HostCheck.problems([host], localVersion: "muxlab 0.9.0 (commit abc)", localExecutable: "/usr/bin/true")
        let seconds = Double(monotonicNanos() - start) / 1e9
        let problem = try #require(results.first?.problem)
        #expect(problem.hasPrefix("host mute (root@127.0.0.1:\(port)): ssh failed: "), "\(problem)")
        #expect(problem.contains("banner exchange") || problem.contains("timed out"), "\(problem)")
        #expect(seconds < 15, "ConnectTimeout=5 bounds the handshake: \(seconds) s")
    }
}
