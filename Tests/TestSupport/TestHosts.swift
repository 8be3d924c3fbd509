#if canImport(Glibc)
import Glibc
#endif
import Kernel

/// Test hosts on this machine, for the multi-host tests: each a network namespace of its own
/// (`muxlab-<test pid>-host-<name>`) with a veth into a bridge in this namespace, an address on
/// 10.215.<n>.0/24 and an OpenSSH server (Debian's openssh-server, installed by `make deps`) that
/// accepts only a key made for this test. The namespaces hold no route out: what goes to a test host
/// stays on this machine. `remove` stops the sshds, removes the namespaces, the bridge and the keys;
/// it also returns the pids still in a namespace at that moment, which a test expects to be none.
public final class TestHosts {
    public let names: [String]
    public let subnet: String
    /// Each host's address, by name.
    public let addresses: [String: String]
    /// The client key (private) the hosts accept, and the directory of the test's files.
    public let key: String
    public let directory: String
    public let bridge: String
    private var sshd: [String: ChildProcess] = [:]
    private var namespaces: [String] = []
    private var bridgeMade = false

    /// Why test hosts cannot be made here (root, ip, sshd, ssh-keygen), or nil when they can.
    public static func unavailableReason() -> String? {
        if geteuid() != 0 { return "needs root to make network namespaces and run sshd (this runs as uid \(geteuid()))" }
        for tool in ["/usr/sbin/sshd", "/usr/bin/ssh", "/usr/bin/ssh-keygen"] where access(tool, X_OK) != 0 {
            return "needs \(tool) (Debian's openssh-server and openssh-client; `make deps` installs them)"
        }
        if executablesOnPath(named: "ip", extraDirectories: ["/usr/sbin", "/sbin"]).isEmpty { return "needs ip (iproute2)" }
        return nil
    }

    /// The namespace of host `name`.
    public func namespace(_ name: String) -> String { "muxlab-\(getpid())-host-\(name)" }

    /// Makes the hosts `names` (e.g. ["a", "b", "c"]) on subnet 10.215.`net`.0/24 (a test's own number,
    /// so suites running side by side do not meet): the bridge at .1, the hosts at .10, .11, ...
    public init(_ names: [String], net: Int) throws {
        self.names = names
        subnet = "10.215.\(net)"
        var addresses: [String: String] = [:]
        for (i, name) in names.enumerated() { addresses[name] = "\(subnet).\(10 + i)" }
        self.addresses = addresses
        directory = "/tmp/muxlab-hosts-\(getpid())-\(net)"
        key = directory + "/id"
        // IFNAMSIZ leaves 15 characters: "mxb<pid>n<net>" and its ports "...v<i>" fit for a 7-digit pid.
        bridge = "mxb\(getpid())n\(net)"
        do {
            try make()
        } catch {
            _ = remove()
            throw error
        }
    }

    private func make() throws {
        removeStale()
        _ = try run("/bin/rm", ["-rf", directory])
        guard mkdir(directory, 0o700) == 0 else { throw SystemError("mkdir(\(directory))", errno: errno) }
        try run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "muxlab-test", "-f", key])
        try run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "muxlab-test-host", "-f", directory + "/host"])
        try run("/bin/cp", [key + ".pub", directory + "/authorized_keys"])
        // sshd's privilege separation directory; Debian's service makes it, a bare sshd needs it.
        if access("/run/sshd", F_OK) != 0 { mkdir("/run/sshd", 0o755) }
        try ip(["link", "add", bridge, "type", "bridge"])
        bridgeMade = true
        try ip(["addr", "add", "\(subnet).1/24", "dev", bridge])
        try ip(["link", "set", bridge, "up"])
        for (i, name) in names.enumerated() {
            let ns = namespace(name)
            try ip(["netns", "add", ns])
            namespaces.append(ns)
            let outside = "\(bridge)v\(i)"
            try ip(["link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", ns])
            try ip(["link", "set", outside, "master", bridge])
            try ip(["link", "set", outside, "up"])
            try ip(["-n", ns, "addr", "add", addresses[name]! + "/24", "dev", "eth0"])
            try ip(["-n", ns, "link", "set", "lo", "up"])
            try ip(["-n", ns, "link", "set", "eth0", "up"])
            sshd[name] = try ChildProcess(executable: ipPath, arguments: ["netns", "exec", ns, "/usr/sbin/sshd", "-D", "-e", "-f", "/dev/null",
                "-o", "ListenAddress=\(addresses[name]!)", "-o", "HostKey=\(directory)/host", "-o", "PidFile=none",
                "-o", "AuthorizedKeysFile=\(directory)/authorized_keys", "-o", "StrictModes=no", "-o", "UsePAM=no",
                "-o", "PermitRootLogin=prohibit-password", "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no"],
                stderrPath: "\(directory)/sshd-\(name).log")
        }
        for name in names {
            let endpoint = Endpoint(host: addresses[name]!, port: 22)
            var last = ""
            let up = try TestSupport.eventually(10) {
                if let status = sshd[name]!.poll() { throw ValueError("sshd of test host \(name) exited (\(status)): \(sshd[name]!.stderrTail(3))") }
                do {
                    close(try TestSupport.connect(endpoint))
                    return true
                } catch {
                    last = "\(error)"
                    return false
                }
            }
            guard up else { throw ValueError("sshd of test host \(name) does not accept on \(endpoint) within 10 s (\(last)): \(sshd[name]!.stderrTail(3))") }
        }
    }

    /// The workload's `[hosts]` for these hosts: root with the test's key, host keys not remembered.
    public func hostsTOML(muxlab: String? = nil, only: [String]? = nil) -> String {
        (only ?? names).map { name in
            var text = "[hosts.\(name)]\nssh = \"root@\(addresses[name]!)\"\n" + "ssh_options = [\(sshOptions.map { "\"\($0)\"" }.joined(separator: ", "))]\n"
            if let muxlab { text += "muxlab = \"\(muxlab)\"\n" }
            return text
        }.joined(separator: "\n")
    }

    /// ssh options for these hosts: the test's key, no known_hosts file touched, only errors printed.
    public var sshOptions: [String] {
        ["-i", key, "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
    }

    /// The pids in host `name`'s namespace now besides its sshd (`ip netns pids`).
    public func processes(in name: String) -> [Int32] {
        guard let out = try? run(ipPath, ["netns", "pids", namespace(name)]) else { return [] }
        let daemon = sshd[name]?.pid
        return out.split(separator: "\n").compactMap { Int32($0.trimmingCharacters(in: .whitespaces)) }.filter { $0 != daemon }
    }

    /// Stops the sshds, removes the namespaces, the bridge and the files; returns "host: pids" for every
    /// namespace where something still ran before that (killed then, by pid), which a test expects empty.
    @discardableResult
    public func remove() -> [String] {
        var left: [String] = []
        for name in names where namespaces.contains(namespace(name)) {
            let pids = processes(in: name)
            if !pids.isEmpty { left.append("\(name): \(pids.map(String.init).joined(separator: " "))") }
        }
        for (_, daemon) in sshd { daemon.stop(grace: 1) }
        sshd.removeAll()
        for name in names where namespaces.contains(namespace(name)) {
            for pid in processes(in: name) { kill(pid, SIGKILL) }
        }
        for ns in namespaces.reversed() { _ = try? ip(["netns", "del", ns]) }
        namespaces.removeAll()
        if bridgeMade { _ = try? ip(["link", "del", bridge]); bridgeMade = false }
        _ = try? run("/bin/rm", ["-rf", directory])
        return left
    }

    deinit { remove() }

    /// What of these hosts the system still lists (their namespaces, the bridge): empty once `remove` ran.
    public var leftovers: [String] {
        let listed = NetworkNamespace.muxlabNamespaces()
        var left = names.map { namespace($0) }.filter { listed.contains($0) }
        if access("/sys/class/net/\(bridge)", F_OK) == 0 { left.append(bridge) }
        return left
    }

    /// Test hosts and bridges of test processes that are gone (a test killed outright leaves them): their
    /// subnet would shadow this run's.
    private func removeStale() {
        func gone(_ pid: Int32?) -> Bool { pid.map { $0 != getpid() && kill($0, 0) != 0 && errno == ESRCH } ?? false }
        for ns in NetworkNamespace.muxlabNamespaces() where ns.contains("-host-") {
            let pid = ns.split(separator: "-").dropFirst().first.flatMap { Int32($0) }
            guard gone(pid) else { continue }
            if let out = try? run(ipPath, ["netns", "pids", ns]) {
                for p in out.split(separator: "\n").compactMap({ Int32($0) }) { kill(p, SIGKILL) }
            }
            _ = try? ip(["netns", "del", ns])
        }
        let links = (try? run(ipPath, ["-o", "link", "show", "type", "bridge"])) ?? ""
        for line in links.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 1, fields[1].hasPrefix("mxb") else { continue }
            let name = fields[1].dropLast()  // "mxb123n1:"
            let pid = name.dropFirst(3).split(separator: "n").first.flatMap { Int32($0) }
            if gone(pid) { _ = try? ip(["link", "del", String(name)]) }
        }
    }

    private var ipPath: String { executablesOnPath(named: "ip", extraDirectories: ["/usr/sbin", "/sbin"]).first ?? "/usr/sbin/ip" }

    private func ip(_ arguments: [String]) throws { try run(ipPath, arguments) }

    /// Runs a tool to its end; its stdout, or an error naming the command and its stderr.
    @discardableResult
    private func run(_ executable: String, _ arguments: [String]) throws -> String {
        let done = try TestSupport.runToEnd(executable, arguments, timeout: 10)
        guard done.status.succeeded else {
            throw ValueError("\(([executable] + arguments).joined(separator: " ")) failed (\(done.status)): \(done.stderr)")
        }
        return done.stdout.joined(separator: "\n")
    }
}
