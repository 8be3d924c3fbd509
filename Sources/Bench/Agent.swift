#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Kernel
import Probe

/// `muxlab agent`: the driver's hands on another host, started over ssh and spoken to over the session's
/// stdin and stdout in `ControlMessage` lines. It starts `muxlab serve` and `muxlab load` there, passes
/// their control lines through unchanged (tagged with the driver's number for the child), reads their
/// counters and CPU at each edge the driver asks for, and says when one ends.
///
/// Every child is its own process group and dies with the agent (PR_SET_PDEATHSIG). The agent ends its
/// children when the driver says `stop`, when the session's stdin closes (the ssh session ended or broke)
/// and on SIGTERM, SIGHUP or SIGINT; an agent killed outright leaves them to PR_SET_PDEATHSIG.
public final class Agent {
    let driver: ControlChannel
    let version: String
    let executable: String
    /// Where the children's stderr files go (made on start, removed at the end).
    let directory: String
    private var children: [Int: Child] = [:]

    final class Child {
        let process: ChildProcess
        let counters: ServerCounterFile?
        let countersKind: String?
        let cpu: CellCPU?
        var reported = false
        /// When an `end` asked for it: SIGKILL after this instant (monotonic ns).
        var killAt: UInt64?
        /// The kernel probes on its process tree, once the driver asked (`attach`).
        var sampler: KernelSampler?
        init(process: ChildProcess, counters: ServerCounterFile?, countersKind: String?, cpu: CellCPU?) {
            self.process = process
            self.counters = counters
            self.countersKind = countersKind
            self.cpu = cpu
        }
    }

    /// `version`: this build's `muxlab --version` line, sent first; `executable`: the muxlab its children run.
    public init(driver: ControlChannel = .standard, version: String, executable: String) throws {
        self.driver = driver
        self.version = version
        self.executable = executable
        directory = "/tmp/muxlab-agent-\(getpid())"
        // An agent killed outright (SIGKILL, a host's OOM killer) leaves its children's stderr files.
        _ = removeStaleDirectories(prefix: "muxlab-agent-")
        guard mkdir(directory, 0o700) == 0 || errno == EEXIST else { throw SystemError("mkdir(\(directory))", errno: errno) }
    }

    /// Set by the signal handler; the loop sees it within one poll period.
    nonisolated(unsafe) static var signalled: Int32 = 0

    /// Serves the driver until it says stop or goes away; every child is ended before it returns.
    public func run() {
        for sig in [SIGTERM, SIGHUP, SIGINT] { signal(sig) { Agent.signalled = $0 } }
        signal(SIGPIPE, SIG_IGN)
        driver.send(.hello(version: version, pid: getpid()))
        defer { shutDown() }
        while Agent.signalled == 0 {
            var fds = [pollfd(fd: driver.input, events: Int16(POLLIN), revents: 0)]
            let open = children.filter { !($0.value.process.channel?.closed ?? true) }.sorted { $0.key < $1.key }
            fds += open.map { pollfd(fd: $0.value.process.channel!.input, events: Int16(POLLIN), revents: 0) }
            let r = Glibc.poll(&fds, nfds_t(fds.count), 100)
            if r < 0 && errno != EINTR { return }
            for (i, (id, child)) in open.enumerated() where fds[i + 1].revents != 0 {
                guard let channel = child.process.channel else { continue }
                channel.fill()
                while let line = channel.bufferedLine() { driver.send(.relay(child: id, line: line)) }
            }
            if fds[0].revents != 0 {
                driver.fill()
                do {
                    while let message = try driver.buffered() {
                        if case .stop = message { return }
                        handle(message)
                    }
                } catch {
                    driver.send(.failed(child: nil, reason: "\(error)"))
                }
                if driver.closed { return }
            }
            reportExits()
        }
    }

    func handle(_ message: ControlMessage) {
        switch message {
        case .spawn(let id, let arguments, let counters, let cpu):
            spawn(id, arguments: arguments, countersKind: counters, cpu: cpu)
        case .relay(let id, let line):
            guard let child = children[id], child.process.status == nil, let channel = child.process.channel else {
                driver.send(.failed(child: id, reason: "no running child \(id) on this host"))
                return
            }
            channel.send(line: line)
        case .edge(let id):
            driver.send(edge(id))
        case .attach(let id):
            guard let child = children[id], child.process.poll() == nil else {
                driver.send(.failed(child: id, reason: "no running child \(id) on this host"))
                return
            }
            do {
                let sampler = try child.sampler ?? KernelSampler(pid: child.process.pid, allocations: false)
                child.sampler = sampler
                let missing = sampler.failures
                driver.send(.attached(child: id, status: missing.isEmpty ? "ok" : "ok except " + missing.map(\.description).joined(separator: "; ")))
            } catch {
                driver.send(.failed(child: id, reason: "the probes cannot attach: \(error)"))
            }
        case .end(let id):
            guard let child = children[id] else {
                driver.send(.failed(child: id, reason: "no child \(id) on this host"))
                return
            }
            if child.process.poll() == nil, child.killAt == nil {
                child.process.signal(SIGTERM)
                child.killAt = monotonicNanos() + 2_000_000_000
            }
        default:
            driver.send(.failed(child: nil, reason: "muxlab agent does not take \(String(describing: message).prefix(80))"))
        }
    }

    func spawn(_ id: Int, arguments: [String], countersKind: String?, cpu: Bool) {
        guard children[id] == nil else {
            driver.send(.failed(child: id, reason: "child \(id) was started already"))
            return
        }
        do {
            var arguments = arguments
            var environment = ChildProcess.currentEnvironmentList()
            var counters: ServerCounterFile?
            switch countersKind {
            case nil: break
            case "server":
                counters = try ServerCounterFile(tag: "agent-\(id)")
                environment.append(counters!.environmentEntry)
            case "load":
                counters = try ServerCounterFile(tag: "agent-\(id)", kind: "load")
                arguments += ["--counters", counters!.path]
            case let other?:
                throw ValueError("counters \"\(other)\": allowed are \"server\" and \"load\"")
            }
            let process = try ChildProcess(executable: executable, arguments: arguments, stderrPath: "\(directory)/child-\(id).err",
                                           environment: environment, control: true)
            let account = cpu ? CellCPU(name: "muxlab-agent-\(getpid())-\(id)", pid: process.pid) : nil
            children[id] = Child(process: process, counters: counters, countersKind: countersKind, cpu: account)
            driver.send(.spawned(child: id, pid: process.pid, cpuSource: account?.source.rawValue))
        } catch {
            driver.send(.failed(child: id, reason: "cannot start muxlab \(arguments.first ?? ""): \(error)"))
        }
    }

    /// Every child's counters and CPU, between two readings of this host's wall clock.
    func edge(_ id: Int) -> ControlMessage {
        var values: [String: UInt64] = [:]
        var kernel: [String: String] = [:]
        // Processes a child forked since the probes attached (a /proc walk: slow, so before the clock).
        for c in children.values { c.sampler?.addTree() }
        let from = realtimeNanos()
        for (child, c) in children {
            if let snapshot = try? c.sampler?.snapshot() { kernel[String(child)] = snapshot.wireText }
            if let cpu = c.cpu?.nanos() { values["\(child).cpu_ns"] = cpu }
            guard let counters = c.counters else { continue }
            if c.countersKind == "load" {
                values["\(child).completed"] = counters.sum(.completed)
            } else {
                for (key, value) in counters.read() { values["\(child).\(key)"] = value }
            }
        }
        return .edgeRead(id: id, from: from, at: realtimeNanos(), values: values, kernel: kernel)
    }

    /// Tells the driver once about each child that ended.
    func reportExits() {
        for (id, child) in children where !child.reported {
            if let at = child.killAt, monotonicNanos() > at, child.process.poll() == nil { child.process.signal(SIGKILL) }
            guard let status = child.process.poll() else { continue }
            child.cpu?.remove()
            if let channel = child.process.channel {
                channel.fill()
                while let line = channel.bufferedLine() { driver.send(.relay(child: id, line: line)) }
            }
            child.reported = true
            driver.send(.exited(child: id, status: "\(status)", stderr: child.process.stderrTail(5)))
        }
    }

    /// Ends every child (SIGTERM to its group, SIGKILL after a grace), removes its cgroup and files.
    func shutDown() {
        for child in children.values where child.process.poll() == nil { child.process.signal(SIGTERM) }
        for child in children.values {
            if child.process.wait(timeout: 2) == nil { child.process.stop(grace: 0) }
            child.cpu?.remove()  // also for one that outlived SIGKILL: its tasks go back to the parent group
            child.sampler = nil
        }
        reportExits()
        children.removeAll()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// CLOCK_REALTIME in nanoseconds: the one clock two hosts can be compared on.
public func realtimeNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Directories `DIRECTORY/PREFIX<pid>[-...]` of processes that are gone (killed outright, so they could not
/// clean up), removed with their files; a running process's are left alone. Returns the paths removed.
public func removeStaleDirectories(prefix: String, in directory: String = "/tmp") -> [String] {
    var removed: [String] = []
    for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix(prefix) {
        let rest = name.dropFirst(prefix.count)
        guard let pid = Int32(rest.prefix(while: { $0.isNumber })), pid > 0, pid != getpid(),
              kill(pid, 0) != 0 && errno == ESRCH else { continue }
        let path = directory + "/" + name
        if (try? FileManager.default.removeItem(atPath: path)) != nil { removed.append(path) }
    }
    return removed
}
