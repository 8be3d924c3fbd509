#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Kernel

/// One edge read on a host: every child's counters and CPU ("CHILD.NAME"), the host's clock when it read
/// them (CLOCK_REALTIME ns) and the round trip it took.
public struct AgentEdge: Sendable {
    public let values: [String: UInt64]
    /// By child: the probes' snapshot as wire text, where attached.
    public let kernel: [String: String]
    public let hostClock: UInt64
    public let roundTripNanos: UInt64
}

/// The driver's side of one host: an OpenSSH connection the driver owns (`ssh -M -N`, a child of its own,
/// its control socket in a directory of the driver's) and, over it, a session running `muxlab agent`.
/// Every ssh is BatchMode (never a password prompt). `close` stops the agent, ends the connection with
/// `ssh -O exit` and stops the master; a driver that dies takes its ssh children with it (PR_SET_PDEATHSIG),
/// and the agent, its stdin closed, ends its own children.
public final class AgentSession {
    public let host: RemoteHost
    /// The agent's pid on its host.
    public private(set) var agentPID: Int32 = 0
    /// The host's wall clock minus the driver's (ns), from the edges' round trips: the midpoint estimate,
    /// taken at the shortest round trip seen (NTP's rule); nil before the first edge.
    public private(set) var clockOffsetNanos: Int64?
    /// The shortest edge round trip so far (ns).
    public private(set) var shortestRoundTripNanos: UInt64 = .max
    let master: ChildProcess
    let session: ChildProcess
    let controlDirectory: String
    let logDirectory: String
    let channel: ControlChannel
    /// Relayed lines by child, and the agent's other messages, in arrival order.
    private var relayed: [Int: [String]] = [:]
    private var others: [ControlMessage] = []
    private var exits: [Int: (status: String, stderr: [String])] = [:]
    private var nextEdge = 1
    private var closed = false
    /// Sessions this process opened, numbering their log files (a host connected again keeps the last one's).
    nonisolated(unsafe) static var opened = 0

    /// "host a (root@10.77.0.2)": how every message names the host.
    public var named: String { "host \(host.name) (\(host.shown))" }

    /// Connects (bounded by ssh's ConnectTimeout), starts the agent and checks its version against
    /// `localVersion`. Throws, naming the host and its address, when ssh cannot connect, the agent does not
    /// start or answer, or it is another build; nothing is left running then.
    public init(host: RemoteHost, localVersion: String, localExecutable: String, logDirectory: String,
                connectTimeout: Int = 5, helloTimeout: Double = 20) throws {
        self.host = host
        self.logDirectory = logDirectory
        // A session whose ssh died is written to before the driver sees it: EPIPE, not a fatal SIGPIPE.
        signal(SIGPIPE, SIG_IGN)
        AgentSession.opened += 1
        let stem = "\(logDirectory)/host-\(host.name)-\(AgentSession.opened)"
        controlDirectory = "/tmp/muxlab-ssh-\(getpid())-\(host.name)"
        guard mkdir(controlDirectory, 0o700) == 0 || errno == EEXIST else {
            throw CellFailure("host \(host.name): cannot make \(controlDirectory): \(String(cString: strerror(errno)))")
        }
        let at = "host \(host.name) (\(host.shown))"
        do {
            master = try ChildProcess(executable: "/usr/bin/env",
                                      arguments: Array(AgentSession.masterCommand(host, controlDirectory: controlDirectory, connectTimeout: connectTimeout)),
                                      stderrPath: "\(stem)-ssh-master.err")
        } catch {
            rmdir(controlDirectory)
            throw CellFailure("\(at): cannot start ssh: \(error)")
        }
        // The master is up once its control socket answers `ssh -O check`; until then it may still fail.
        let deadline = monotonicNanos() + UInt64((Double(connectTimeout) + 10) * 1e9)
        while true {
            if let status = master.poll() {
                rmdir(controlDirectory)
                let said = master.stderrTail(2).joined(separator: " | ")
                throw CellFailure("\(at): ssh failed (\(status)): \(said.isEmpty ? "no message" : said)")
            }
            if AgentSession.controlCheck(host, controlDirectory: controlDirectory) { break }
            if monotonicNanos() > deadline {
                master.stop(grace: 0.5)
                rmdir(controlDirectory)
                throw CellFailure("\(at): ssh did not connect within \(connectTimeout + 10) s: \(master.stderrTail(2).joined(separator: " | "))")
            }
            usleep(50_000)
        }
        let muxlab = host.muxlab ?? localExecutable
        do {
            session = try ChildProcess(executable: "/usr/bin/env",
                                       arguments: host.sshCommand([muxlab, "agent"], controlDirectory: controlDirectory, connectTimeout: connectTimeout),
                                       stderrPath: "\(stem)-agent.err", control: true)
        } catch {
            AgentSession.endMaster(host, master: master, controlDirectory: controlDirectory)
            throw CellFailure("\(at): cannot start ssh: \(error)")
        }
        channel = session.channel!
        do {
            try awaitHello(muxlab: muxlab, localVersion: localVersion, timeout: helloTimeout)
        } catch {
            close()
            throw error
        }
    }

    private func awaitHello(muxlab: String, localVersion: String, timeout: Double) throws {
        let deadline = monotonicNanos() + UInt64(timeout * 1e9)
        while monotonicNanos() < deadline {
            let message: ControlMessage?
            do {
                message = try channel.receive(timeout: 0.2)
            } catch {
                throw CellFailure("\(named): \(muxlab) agent did not speak muxlab's control protocol (\(error)): install the driver's build there (make install PREFIX=...)")
            }
            if case .hello(let version, let pid)? = message {
                guard version == localVersion else {
                    throw CellFailure("\(named): its muxlab agent is \(version), the driver is \(localVersion): install the driver's build there (make install PREFIX=...)")
                }
                agentPID = pid
                return
            }
            if message == nil, channel.closed || session.poll() != nil {
                let status = session.wait(timeout: 2).map { "\($0)" } ?? "closed its output"
                let said = session.stderrTail(2).joined(separator: " | ")
                throw CellFailure("\(named): \(muxlab) agent ended before it said hello (\(status)): \(said.isEmpty ? "no message" : said)")
            }
        }
        throw CellFailure("\(named): \(muxlab) agent said no hello within \(formatSeconds(timeout))")
    }

    /// `ssh -M -N`: the connection itself, in the foreground (a child of the driver, never a daemon);
    /// ControlPersist=no, so it ends with `ssh -O exit` or with the driver.
    static func masterCommand(_ host: RemoteHost, controlDirectory: String, connectTimeout: Int) -> [String] {
        var command = ["ssh", "-M", "-N", "-n", "-o", "BatchMode=yes", "-o", "ConnectTimeout=\(connectTimeout)",
                       "-o", "ControlPath=\(controlDirectory)/%C", "-o", "ControlPersist=no",
                       "-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3"]
        if let port = host.port { command += ["-p", String(port)] }
        command += host.sshOptions
        command.append(host.destination)
        return command
    }

    static func controlCommand(_ host: RemoteHost, _ operation: String, controlDirectory: String) -> [String] {
        var command = ["ssh", "-o", "BatchMode=yes", "-o", "ControlPath=\(controlDirectory)/%C", "-O", operation]
        if let port = host.port { command += ["-p", String(port)] }
        command += host.sshOptions
        command.append(host.destination)
        return command
    }

    static func controlCheck(_ host: RemoteHost, controlDirectory: String) -> Bool {
        Manifest.runTool(controlCommand(host, "check", controlDirectory: controlDirectory), timeout: 5, mergeErrors: true)?.status == 0
    }

    /// `ssh -O exit`, then the master child itself if it is still there, and the control directory.
    static func endMaster(_ host: RemoteHost, master: ChildProcess, controlDirectory: String) {
        if master.poll() == nil {
            _ = Manifest.runTool(controlCommand(host, "exit", controlDirectory: controlDirectory), timeout: 5, mergeErrors: true)
            if master.wait(timeout: 3) == nil { master.stop(grace: 1) }
        }
        try? FileManager.default.removeItem(atPath: controlDirectory)
    }

    /// Starts `muxlab ARGUMENTS` on the host as child `child`: its pid there, and how its CPU is accounted.
    @discardableResult
    public func spawn(child: Int, arguments: [String], counters: String? = nil, cpu: Bool = false,
                      timeout: Double = 10) throws -> (pid: Int32, cpuSource: String?) {
        channel.send(.spawn(child: child, arguments: arguments, counters: counters, cpu: cpu))
        let reply = try awaitOther(timeout: timeout) { message in
            switch message {
            case .spawned(child, _, _), .failed(.some(child), _): return true
            default: return false
            }
        }
        switch reply {
        case .spawned(_, let pid, let source): return (pid, source)
        case .failed(_, let reason): throw CellFailure("\(named): \(reason)")
        default: throw CellFailure("\(named): the agent did not say whether muxlab \(arguments.first ?? "") started within \(formatSeconds(timeout))")
        }
    }

    /// Sends a control message to child `child` there.
    public func send(child: Int, _ message: ControlMessage) {
        channel.send(.relay(child: child, line: String(decoding: message.encodedLine().dropLast(), as: UTF8.self)))
    }

    /// The next control message child `child` sent, waiting up to `timeout` s; nil on timeout. Throws when
    /// the session ended (naming the host) or the child sent a line that is not a message.
    public func receive(child: Int, timeout: Double) throws -> ControlMessage? {
        let deadline = monotonicNanos() + UInt64(max(0, timeout) * 1e9)
        while true {
            if var lines = relayed[child], !lines.isEmpty {
                let line = lines.removeFirst()
                relayed[child] = lines
                return try ControlMessage.decode(line)
            }
            let now = monotonicNanos()
            if now >= deadline { return nil }
            try pump(timeout: Double(deadline - now) / 1e9)
        }
    }

    /// How child `child` ended, once the agent said so.
    public func exitStatus(child: Int) -> (status: String, stderr: [String])? { exits[child] }

    /// Reads every child's counters and CPU there now; updates the clock offset from the round trip.
    public func edge(timeout: Double = 5) throws -> AgentEdge {
        try receiveEdge(sendEdge(), timeout: timeout)
    }

    /// Asks for an edge and returns at once (its id), so a window's edges on several hosts go out together.
    public func sendEdge() -> (id: Int, sent: UInt64) {
        let id = nextEdge
        nextEdge += 1
        let sent = realtimeNanos()
        channel.send(.edge(id: id))
        return (id, sent)
    }

    /// The answer to `sendEdge`'s request.
    public func receiveEdge(_ request: (id: Int, sent: UInt64), timeout: Double = 5) throws -> AgentEdge {
        let id = request.id
        let reply = try awaitOther(timeout: timeout) { if case .edgeRead(id, _, _, _, _) = $0 { return true } else { return false } }
        let received = realtimeNanos()
        guard case .edgeRead(_, let from, let at, let values, let kernel)? = reply else {
            throw CellFailure("\(named): the agent read no edge within \(formatSeconds(timeout))")
        }
        let roundTrip = received >= request.sent ? received - request.sent : 0
        if roundTrip < shortestRoundTripNanos {
            shortestRoundTripNanos = roundTrip
            // The host read its clock around the middle of the round trip: its midpoint minus ours.
            clockOffsetNanos = Int64(bitPattern: from / 2 + at / 2) - Int64(bitPattern: request.sent / 2 + received / 2)
        }
        return AgentEdge(values: values, kernel: kernel, hostClock: at, roundTripNanos: roundTrip)
    }

    /// Attaches the kernel probes to child `child` there: the row's probe_status ("ok", "ok except ...") or,
    /// where they cannot attach (not root there, no BPF), why, prefixed "failed". Throws when the session broke.
    public func attach(child: Int, timeout: Double = 30) throws -> String {
        channel.send(.attach(child: child))
        let reply = try awaitOther(timeout: timeout) { message in
            switch message {
            case .attached(child, _), .failed(.some(child), _): return true
            default: return false
            }
        }
        switch reply {
        case .attached(_, let status): return status
        case .failed(_, let reason): return "failed on host \(host.name): \(reason)"
        default: return "failed on host \(host.name): the agent did not answer within \(formatSeconds(timeout))"
        }
    }

    /// Ends child `child` there (SIGTERM, SIGKILL 2 s later) and waits up to `timeout` for the agent to say it ended.
    public func end(child: Int, timeout: Double = 5) {
        guard broken == nil else { return }
        channel.send(.end(child: child))
        let deadline = monotonicNanos() + UInt64(timeout * 1e9)
        while exits[child] == nil, monotonicNanos() < deadline {
            do { try pump(timeout: 0.2) } catch { return }
        }
    }

    /// Takes whatever the agent sent so far without waiting; throws, naming the host, when the session ended.
    public func drain() throws {
        while try pump(timeout: 0) {}
    }

    /// Tells the agent to stop its children and end, waits for the session to close, ends the connection.
    public func close() {
        guard !closed else { return }
        closed = true
        channel.send(.stop)
        if session.wait(timeout: 5) == nil { session.stop(grace: 1) }
        AgentSession.endMaster(host, master: master, controlDirectory: controlDirectory)
    }

    deinit { close() }

    /// Why the session is no more, or nil while it runs.
    public var broken: String? {
        func said(_ child: ChildProcess) -> String {
            let lines = child.stderrTail(2).joined(separator: " | ")
            return lines.isEmpty ? "" : ": " + lines
        }
        if let status = master.poll() { return "\(named): the ssh connection ended (\(status))\(said(master))" }
        if let status = session.poll() { return "\(named): the ssh session running its agent ended (\(status))\(said(session))" }
        return nil
    }

    private func awaitOther(timeout: Double, _ match: (ControlMessage) -> Bool) throws -> ControlMessage? {
        let deadline = monotonicNanos() + UInt64(max(0, timeout) * 1e9)
        while true {
            if let i = others.firstIndex(where: match) { return others.remove(at: i) }
            let now = monotonicNanos()
            if now >= deadline { return nil }
            try pump(timeout: Double(deadline - now) / 1e9)
        }
    }

    /// Takes one message the agent sent (waiting up to `timeout` s for it), sorting relayed lines by child;
    /// false when none came.
    @discardableResult
    private func pump(timeout: Double) throws -> Bool {
        guard let message = try channel.receive(timeout: min(timeout, 0.2)) else {
            if channel.closed || session.poll() != nil {
                throw CellFailure(broken ?? "\(named): the ssh session closed its output")
            }
            return false
        }
        switch message {
        case .relay(let child, let line): relayed[child, default: []].append(line)
        case .exited(let child, let status, let stderr):
            exits[child] = (status, stderr)
            others.append(message)
        default: others.append(message)
        }
        return true
    }
}
