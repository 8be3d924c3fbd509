#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Kernel
import Load
import TestSupport
import Testing

/// Runs `muxlab` with `arguments` to its end; its stdout lines, stderr text and status.
func runMuxlab(_ arguments: [String], timeout: Double = 30) throws -> (lines: [String], stderr: String, status: Kernel.ExitStatus?) {
    let errPath = "/tmp/muxlab-test-\(getpid())-\(monotonicNanos()).err"
    let child = try ChildProcess(executable: try TestSupport.muxlab, arguments: arguments, stderrPath: errPath)
    defer { child.stop(); unlink(errPath) }
    let lines = child.readRemaining(timeout: timeout)
    let status = child.wait(timeout: 5)
    return (lines, readSmallFile(errPath) ?? "", status)
}

/// Pids whose parent is `pid` (from /proc/*/stat; this kernel has no /proc/PID/task/TID/children).
func childPids(of pid: Int32) -> [Int32] {
    guard let dir = opendir("/proc") else { return [] }
    defer { closedir(dir) }
    var out: [Int32] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard let p = Int32(name), let stat = readSmallFile("/proc/\(p)/stat"),
              let close = stat.lastIndex(of: ")") else { continue }
        // After "pid (comm)": state, then ppid.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        if fields.count > 1, Int32(fields[1]) == pid { out.append(p) }
    }
    return out
}

@Suite("Multi-process load", .serialized)
struct MultiProcessLoadTests {
    @Test("--processes 2: one summary, phases forwarded once each, histograms merged, requests match the server's count")
    func twoProcesses() throws {
        let (server, endpoint) = try TestSupport.startServer(["--io", "epoll-et", "--protocol", "http"])
        defer { server.stop() }
        let active = 6
        let run = try runMuxlab(["load", "--target", "\(endpoint)", "--protocol", "http", "--connections", "30",
                                 "--active", "\(active)", "--processes", "2", "--warmup", "0s", "--duration", "1s",
                                 "--cpus", "0-1", "--phases", "--json"])
        #expect(run.status == .exited(0), "\(run.stderr)")
        #expect(run.lines.filter { $0.hasPrefix("phase ") } == ["phase connected", "phase measure", "phase done"])
        let summaries = run.lines.filter { $0.hasPrefix("{") }
        guard summaries.count == 1 else {
            Issue.record("expected one summary line, got \(summaries.count): \(run.lines.map { String($0.prefix(80)) })")
            return
        }
        let s = try JSONDecoder().decode(LoadSummary.self, from: Data(summaries[0].utf8))
        #expect(s.processes == 2)
        #expect(s.connections == 30 && s.active == active)
        #expect(s.errorsTotal == 0, "\(s.errors)")
        #expect(s.requests > 100)
        #expect(s.latencySamples == s.requests, "the merged histogram holds every request once")
        #expect(s.connectionsOpened == 30)
        // The server also answered the requests still in flight when the window closed: at most one per active connection.
        server.signal(SIGUSR1)
        var stats: String?
        for _ in 0..<10 where stats == nil {
            if let line = server.readLine(timeout: 1), line.hasPrefix("stats ") { stats = line }
        }
        let field = try #require(stats?.split(separator: " ").first { $0.hasPrefix("http_requests=") })
        let served = try #require(Int(field.dropFirst("http_requests=".count)))
        #expect(served >= s.requests && served - s.requests <= active, "server answered \(served), load counted \(s.requests)")
    }

    @Test("a child that dies is reported by pid and status, and the parent does not wait for it")
    func deadChild() throws {
        let (server, endpoint) = try TestSupport.startServer(["--io", "epoll-et"])
        defer { server.stop() }
        let errPath = "/tmp/muxlab-test-\(getpid())-deadchild.err"
        defer { unlink(errPath) }
        let load = try ChildProcess(executable: try TestSupport.muxlab, arguments: [
            "load", "--target", "\(endpoint)", "--connections", "4", "--processes", "2", "--warmup", "0s",
            "--duration", "20s", "--phases", "--json"], stderrPath: errPath)
        defer { load.stop() }
        #expect(load.readLine(timeout: 15) == "phase connected")
        let children = childPids(of: load.pid)
        try #require(children.count == 2, "children of \(load.pid): \(children)")
        let started = monotonicNanos()
        _ = kill(children[0], SIGKILL)  // a process this test started, through the load parent
        let status = load.wait(timeout: 10)
        #expect(status == .exited(2))
        #expect(Double(monotonicNanos() - started) / 1e9 < 5, "the parent noticed at once, not at the end of its 20 s")
        let message = readSmallFile(errPath) ?? ""
        #expect(message.contains("pid \(children[0])") && message.contains("signal 9"), "\(message)")
        #expect(childPids(of: load.pid).isEmpty, "the other child was stopped too")
    }

    @Test("shares: connections, active connections and rate split evenly; CPUs round-robin; sources apart")
    func shares() throws {
        var config = LoadConfig(target: Endpoint(host: "127.0.0.1", port: 9))
        config.connections = 10
        config.active = 5
        config.rate = 1001
        config.processes = 3
        config.cpus = CPUList([0, 1])
        let shares = try LoadProcesses.split(config)
        #expect(shares.map(\.connections) == [4, 3, 3])
        #expect(shares.map(\.active) == [2, 2, 1])
        #expect(shares.compactMap(\.rate).reduce(0, +) == 1001)
        #expect(shares.map(\.cpu) == [0, 1, 0])
        #expect(Set(shares.map(\.sourceFirst)).count == 3)
        #expect(LoadProcesses.automaticCount(connections: LoadGenerator.connectionsPerProcess) == 1)
        #expect(LoadProcesses.automaticCount(connections: LoadGenerator.connectionsPerProcess + 1) == 2)

        // 100,000 over 6 processes: two source addresses each, none shared, at most 12,000 connections per address.
        config.connections = 100_000
        config.active = 1000
        config.rate = 10_000
        config.processes = 6
        let wide = try LoadProcesses.split(config)
        let each = LoadGenerator.sourceCount(connections: wide[0].connections, requestsPerConnection: 0)
        #expect(each == 2 && wide[0].connections <= each * LoadGenerator.connectionsPerSource)
        #expect(wide.map(\.sourceFirst) == [0, 2, 4, 6, 8, 10])
        #expect(LoadGenerator.sourceCount(connections: LoadGenerator.connectionsPerSource, requestsPerConnection: 0) == 1)
        #expect(LoadGenerator.sourceCount(connections: 10, requestsPerConnection: 5) == 4)
    }

    @Test("a rate too low to give each process a request per second is refused, naming --rate")
    func rateTooLow() {
        var config = LoadConfig(target: Endpoint(host: "127.0.0.1", port: 9))
        config.connections = 10
        config.active = 10
        config.rate = 2
        config.processes = 3
        #expect(throws: LoadError.self) { try LoadProcesses.split(config) }
        do { _ = try LoadProcesses.split(config) } catch { #expect("\(error)".contains("--rate 2")) }
    }

    @Test("bad values are refused, naming the option and the allowed range", arguments: [
        (["--requests-per-connection=-1"], "--requests-per-connection -1 is out of range: allowed 0...1000000"),
        (["--requests-per-connection", "1000001"], "--requests-per-connection 1000001 is out of range: allowed 0...1000000"),
        (["--processes", "0"], "--processes 0 is out of range: allowed 1...64"),
        (["--processes", "65"], "--processes 65 is out of range: allowed 1...64"),
        (["--processes", "5", "--connections", "4"], "--processes 5 is out of range: allowed 1...4"),
        (["--batch", "20ms"], "--batch 20.0 is out of range: allowed 0.0...10.0 ms"),
        (["--hang-up", "--requests-per-connection", "2"], "--hang-up reads no answers"),
    ])
    func refusals(extra: [String], message: String) throws {
        let run = try runMuxlab(["load", "--target", "127.0.0.1:9"] + extra, timeout: 10)
        let text: String = run.stderr
        #expect(run.status != Kernel.ExitStatus.exited(0))
        #expect(text.contains(message), "\(text)")
        #expect(run.lines.isEmpty)
    }
}
