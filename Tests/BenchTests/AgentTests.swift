#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Histogram
import Testing
@testable import Bench
import Kernel
import Load
import TestSupport

/// `muxlab agent` and the driver's session with it: first over plain pipes on this machine, then over real
/// OpenSSH to test hosts (network namespaces on a bridge, each with its own sshd and a key made for the test):
/// the server on one host, the load on two others, one window across them; then each fault, checking by pid
/// that nothing is left on any host and that the namespaces are gone.
@Suite("muxlab agent: children on another host over ssh, one window, every fault")
struct AgentTests {
    /// Load arguments against `target` for a cell of `connections` (`--counters` is the agent's to add).
    static func loadArguments(_ target: String, connections: Int) -> [String] {
        ["load", "--target", target, "--connections", String(connections), "--protocol", "echo", "--message-size", "64",
         "--duration", "60s", "--warmup", "0s", "--control", "--allow-non-loopback"]
    }

    static let serveArguments = ["serve", "--model", "reactor", "--io", "epoll-et", "--protocol", "echo", "--port", "0", "--control"]

    /// Waits for a control message of child `child` matching `match`.
    static func await(_ session: AgentSession, child: Int, timeout: Double = 15,
                      _ match: (ControlMessage) -> Bool) throws -> ControlMessage {
        let deadline = monotonicNanos() + UInt64(timeout * 1e9)
        while monotonicNanos() < deadline {
            if let m = try session.receive(child: child, timeout: 0.5), match(m) { return m }
        }
        throw ValueError("\(session.named): child \(child) sent nothing expected within \(timeout) s")
    }

    static func alive(_ pid: Int32) -> Bool { kill(pid, 0) == 0 || errno != ESRCH }

    @Test("over pipes: hello with this build's version, a server and a load started, relayed, edges read, all ended on stop")
    func overPipes() throws {
        let agent = try ChildProcess(executable: try TestSupport.muxlab, arguments: ["agent"],
                                     stderrPath: "/tmp/muxlab-test-agent-\(getpid()).err", control: true)
        defer { agent.stop(grace: 1) }
        let channel = try #require(agent.channel)
        guard case .hello(let version, let pid)? = try channel.receive(timeout: 10) else {
            Issue.record("no hello: \(agent.stderrTail(3))"); return
        }
        #expect(version.hasPrefix("muxlab ") && pid == agent.pid)
        channel.send(.spawn(child: 1, arguments: Self.serveArguments, counters: "server", cpu: true))
        var serverPID: Int32 = 0, port: UInt16 = 0
        while port == 0, let m = try channel.receive(timeout: 10) {
            if case .spawned(1, let p, _) = m { serverPID = p }
            if case .relay(1, let line) = m, case .ready(let p, _, _) = try ControlMessage.decode(line) { port = p }
        }
        #expect(serverPID > 0 && port > 0)
        channel.send(.spawn(child: 2, arguments: Self.loadArguments("127.0.0.1:\(port)", connections: 4), counters: "load", cpu: false))
        var loadPID: Int32 = 0, connected = false
        while !connected, let m = try channel.receive(timeout: 10) {
            if case .spawned(2, let p, _) = m { loadPID = p }
            if case .relay(2, let line) = m, case .connected = try ControlMessage.decode(line) { connected = true }
        }
        #expect(loadPID > 0 && connected)
        channel.send(.relay(child: 2, line: String(decoding: ControlMessage.open(window: 1).encodedLine().dropLast(), as: UTF8.self)))
        usleep(300_000)
        channel.send(.edge(id: 7))
        guard case .edgeRead(7, let from, let at, let values, _)? = try channel.receive(timeout: 5) else {
            Issue.record("no edge read"); return
        }
        #expect(from <= at && (values["2.completed"] ?? 0) > 0 && (values["1.writes"] ?? 0) > 0 && (values["1.cpu_ns"] ?? 0) > 0, "\(values)")
        channel.send(.spawn(child: 1, arguments: ["serve"], counters: nil, cpu: false))
        var refused: String?
        while refused == nil, let m = try channel.receive(timeout: 5) { if case .failed(.some(1), let why) = m { refused = why } }
        #expect(refused == "child 1 was started already")
        channel.send(.stop)
        #expect(agent.wait(timeout: 10) == .exited(0))
        #expect(!Self.alive(serverPID) && !Self.alive(loadPID))
    }

    @Test("over ssh: the server on host a, the load split over b and c, one window, histograms merged exactly, nothing left")
    func acrossHosts() throws {
        if let reason = TestHosts.unavailableReason() { Issue.record("not run: \(reason); make test runs as root with openssh-server installed"); return }
        let hosts = try TestHosts(["a", "b", "c"], net: 1)
        let logs = try ScratchDirectory()
        let muxlab = try TestSupport.muxlab
        let version = try TestSupport.runToEnd(muxlab, ["--version"], timeout: 20).stdout.first ?? ""
        func session(_ name: String) throws -> AgentSession {
            try AgentSession(host: try RemoteHost(name: name, ssh: "root@\(hosts.addresses[name]!)", sshOptions: hosts.sshOptions),
                             localVersion: version, localExecutable: muxlab, logDirectory: logs.path)
        }
        let a = try session("a"), b = try session("b"), c = try session("c")
        let server = try a.spawn(child: 1, arguments: Self.serveArguments + ["--listen", hosts.addresses["a"]!], counters: "server", cpu: true).pid
        guard case .ready(let port, _, _) = try Self.await(a, child: 1, { if case .ready = $0 { true } else { false } }) else { return }
        let target = "\(hosts.addresses["a"]!):\(port)"
        let loads = try [b, c].map { try $0.spawn(child: 2, arguments: Self.loadArguments(target, connections: 5), counters: "load").pid }
        for s in [b, c] { _ = try Self.await(s, child: 2) { if case .connected = $0 { true } else { false } } }
        for name in ["a", "b", "c"] { #expect(hosts.processes(in: name).count >= 2, "host \(name): its agent and its child run there") }

        let open = try [a, b, c].map { try $0.edge() }
        for s in [b, c] { s.send(child: 2, .open(window: 1)) }
        usleep(1_000_000)
        let close = try [a, b, c].map { try $0.edge() }
        for s in [b, c] { s.send(child: 2, .close(window: 1)) }
        var merged = LoadGenerator.newHistogram()
        var requests = 0
        for s in [b, c] {
            guard case .window(1, let summary, let text?) = try Self.await(s, child: 2, { if case .window = $0 { true } else { false } }) else { continue }
            let h = try JSONDecoder().decode(Histogram<UInt64>.self, from: Data(text.utf8))
            #expect(Int(h.totalCount) == summary.requests && summary.requests > 0)
            merged.add(h)
            requests += summary.requests
        }
        #expect(Int(merged.totalCount) == requests)
        // The server's count over the driver's edges against both loads' counts over theirs.
        // An echo server writes once per answer (64 B): its writes count the requests.
        func count(_ edges: [AgentEdge], _ host: Int, _ key: String) -> Int { Int(edges[host].values[key] ?? 0) }
        let served = count(close, 0, "1.writes") - count(open, 0, "1.writes")
        let answered = [1, 2].map { count(close, $0, "2.completed") - count(open, $0, "2.completed") }.reduce(0, +)
        #expect(served > 1000 && abs(served - answered) * 100 <= served * 5, "served \(served), answered \(answered)")
        // One kernel under all three hosts: the clocks agree, so the offset is within the round trip.
        for s in [a, b, c] {
            let offset = try #require(s.clockOffsetNanos)
            #expect(UInt64(abs(offset)) <= s.shortestRoundTripNanos, "\(s.named): offset \(offset) ns, round trip \(s.shortestRoundTripNanos) ns")
        }
        for s in [a, b, c] { s.close() }
        #expect(!Self.alive(server) && loads.allSatisfy { !Self.alive($0) })
        for name in ["a", "b", "c"] { #expect(hosts.processes(in: name).isEmpty, "host \(name) still runs \(hosts.processes(in: name))") }
        #expect(hosts.remove().isEmpty)
        #expect(hosts.leftovers.isEmpty, "namespaces or bridge left: \(hosts.leftovers)")
        #expect(!NetworkNamespace.muxlabNamespaces().contains { $0.hasPrefix("muxlab-\(getpid())-host-") })
    }

    @Test("faults: unreachable, key refused, another version, the session killed, the server killed: named, nothing left")
    func faults() throws {
        if let reason = TestHosts.unavailableReason() { Issue.record("not run: \(reason); make test runs as root with openssh-server installed"); return }
        let hosts = try TestHosts(["a"], net: 2)
        let logs = try ScratchDirectory()
        let muxlab = try TestSupport.muxlab
        let version = try TestSupport.runToEnd(muxlab, ["--version"], timeout: 20).stdout.first ?? ""
        let address = hosts.addresses["a"]!
        func failure(_ host: RemoteHost, muxlab path: String = muxlab) -> String {
            do {
                _ = try AgentSession(host: host, localVersion: version, localExecutable: path, logDirectory: logs.path, connectTimeout: 2)
                return "connected"
            } catch {
                return "\(error)"
            }
        }
        // Nothing at that address on the bridge: the connect times out.
        let nowhere = failure(try RemoteHost(name: "gone", ssh: "root@\(hosts.subnet).99", sshOptions: hosts.sshOptions))
        #expect(nowhere.hasPrefix("host gone (root@\(hosts.subnet).99): ssh failed") && (nowhere.contains("timed out") || nowhere.contains("No route to host")), "\(nowhere)")
        // A key the host does not accept.
        let other = logs.path + "/other"
        _ = try TestSupport.runToEnd("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", other], timeout: 10)
        var options = hosts.sshOptions
        options[1] = other
        let refused = failure(try RemoteHost(name: "a", ssh: "root@\(address)", sshOptions: options))
        #expect(refused.hasPrefix("host a (root@\(address)): ssh failed") && refused.contains("Permission denied"), "\(refused)")
        // Another build there: its hello names its version, refused with both named.
        let old = try logs.write("old-muxlab", """
            #!/bin/sh
            if [ "$1" = --version ]; then echo 'muxlab 0.8.0 (commit 0000000)'; exit 0; fi
            echo '{"hello":{"version":"muxlab 0.8.0 (commit 0000000)","pid":1}}'
            cat >/dev/null

            """)
        chmod(old, 0o755)
        let oldHost = try RemoteHost(name: "a", ssh: "root@\(address)", sshOptions: hosts.sshOptions, muxlab: old)
        let mismatch = failure(oldHost)
        #expect(mismatch == "host a (root@\(address)): its muxlab agent is muxlab 0.8.0 (commit 0000000), the driver is \(version): install the driver's build there (make install PREFIX=...)")
        // The check before a run says the same of it, and "ready" of the host with this build.
        let checked = HostCheck.problems([oldHost, try RemoteHost(name: "a", ssh: "root@\(address)", sshOptions: hosts.sshOptions)],
                                         localVersion: version, localExecutable: muxlab)
        #expect(checked.map(\.problem) == ["host a (root@\(address)): runs muxlab 0.8.0 (commit 0000000), the driver is \(version): install the driver's build there (make install PREFIX=...)", nil])
        #expect(hosts.processes(in: "a").isEmpty, "after the refusals: \(hosts.processes(in: "a"))")

        let host = try RemoteHost(name: "a", ssh: "root@\(address)", sshOptions: hosts.sshOptions)
        // The server killed on its host: the agent says how it ended, with its stderr.
        let a = try AgentSession(host: host, localVersion: version, localExecutable: muxlab, logDirectory: logs.path)
        let server = try a.spawn(child: 1, arguments: Self.serveArguments + ["--listen", address], counters: "server").pid
        _ = try Self.await(a, child: 1) { if case .ready = $0 { true } else { false } }
        kill(server, SIGKILL)
        let ended = TestSupport.eventually(10) { _ = try? a.receive(child: 1, timeout: 0.2); return a.exitStatus(child: 1) != nil }
        #expect(ended && a.exitStatus(child: 1)?.status == "killed by signal 9 (Killed)")
        a.close()

        // The ssh session killed mid-cell: the driver's next read names the host; the agent's child dies there.
        let b = try AgentSession(host: host, localVersion: version, localExecutable: muxlab, logDirectory: logs.path)
        let orphan = try b.spawn(child: 1, arguments: Self.serveArguments + ["--listen", address], counters: "server").pid
        _ = try Self.await(b, child: 1) { if case .ready = $0 { true } else { false } }
        kill(b.master.pid, SIGKILL)
        var said = ""
        do { while true { _ = try b.receive(child: 1, timeout: 1) } } catch { said = "\(error)" }
        #expect(said.hasPrefix("host a (root@\(address)): the ssh"), "\(said)")
        #expect(TestSupport.eventually(10) { !Self.alive(orphan) }, "the server the agent started, pid \(orphan), outlived its session")
        b.close()
        #expect(TestSupport.eventually(5) { hosts.processes(in: "a").isEmpty }, "host a still runs \(hosts.processes(in: "a"))")
        #expect(hosts.remove().isEmpty)
        #expect(hosts.leftovers.isEmpty, "namespaces or bridge left: \(hosts.leftovers)")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/muxlab-ssh-\(getpid())-a"))
    }
}
