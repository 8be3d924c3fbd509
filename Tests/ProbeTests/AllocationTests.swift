#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Kernel
import Probe
import TestSupport
import Testing

@Suite("Hot paths allocate nothing in steady state (the malloc probe's proof)", .serialized)
struct AllocationTests {
    static let variants: [(String, String)] = [
        ("select", "echo"), ("poll", "echo"), ("epoll-lt", "echo"), ("epoll-et", "echo"),
        ("epoll-lt", "http"), ("epoll-et", "http"),
    ]

    @Test("server and load generator: 0 mallocs in the measured window", arguments: variants)
    func noMallocsPerRequest(io: String, wire: String) throws {
        try requireRoot()
        let (server, endpoint) = try TestSupport.startServer(["--io", io, "--protocol", wire, "--cpus", "1"])
        defer { server.stop() }
        let load = try ChildProcess(executable: try TestSupport.muxlab, arguments: [
            "load", "--target", "\(endpoint)", "--connections", "100", "--active", "20", "--protocol", wire,
            "--warmup", "1.5s", "--duration", "1s", "--cpus", "0", "--phases", "--json"])
        defer { load.stop() }
        #expect(load.readLine(timeout: 10) == "phase connected")
        let serverProbe = try KernelSampler(pid: server.pid, allocations: true)
        let loadProbe = try KernelSampler(pid: load.pid, allocations: true)
        #expect(serverProbe.countsAllocations && loadProbe.countsAllocations)
        #expect(load.readLine(timeout: 10) == "phase measure")
        let s0 = try serverProbe.snapshot(), l0 = try loadProbe.snapshot()
        #expect(load.readLine(timeout: 10) == "phase done")
        let s1 = try serverProbe.snapshot(), l1 = try loadProbe.snapshot()
        let summary = load.readLine(timeout: 10) ?? ""
        let serverDelta = KernelCounters(from: s0, to: s1)
        let loadDelta = KernelCounters(from: l0, to: l1)
        #expect(summary.contains("\"errors_total\":0"))
        #expect(serverDelta.totals.read_calls > 1000, "the window saw traffic")
        #expect(serverDelta.totals.mallocs == 0, "server \(io)/\(wire): \(serverDelta.totals.mallocs) mallocs")
        #expect(loadDelta.totals.mallocs == 0, "load generator: \(loadDelta.totals.mallocs) mallocs")
    }

    @Test("the load generator pipelining 8 requests, and reading chunked answers to POSTs: 0 mallocs in the window",
          arguments: ["pipeline-http", "pipeline-echo", "chunked-post"])
    func loadNoMallocs(kind: String) throws {
        try requireRoot()
        var server: ChildProcess
        var endpoint: Endpoint
        var request: [String]
        let body = "/tmp/muxlab-alloc-body-\(getpid()).json"
        try "{\"items\": [1, 2, 3]}".write(toFile: body, atomically: true, encoding: .utf8)
        defer { unlink(body) }
        switch kind {
        case "chunked-post":
            server = try ChildProcess(executable: "/usr/bin/python3", arguments: [TestSupport.packageRoot + "/services/orders.py", "--port", "0"],
                                      stderrPath: "/tmp/muxlab-alloc-orders-\(getpid()).err")
            let line = server.readLine(timeout: 10) ?? ""
            let port = try #require(TestSupport.keyValues(line)["port"].flatMap { UInt16($0) }, "orders.py: \(line)")
            endpoint = Endpoint(host: "127.0.0.1", port: port)
            request = ["--protocol", "http", "--method", "POST", "--path", "/orders", "--body-file", body, "--expect-status", "201",
                       "--expect-body", "accepted", "--connections", "4", "--active", "4"]
        default:
            let wire = kind == "pipeline-http" ? "http" : "echo"
            (server, endpoint) = try TestSupport.startServer(["--io", "epoll-et", "--protocol", wire, "--cpus", "1"])
            request = ["--protocol", wire, "--pipeline", "8", "--connections", "100", "--active", "20"]
        }
        defer { server.stop() }
        let load = try ChildProcess(executable: try TestSupport.muxlab, arguments: ["load", "--target", "\(endpoint)"] + request
            + ["--warmup", "1.5s", "--duration", "1s", "--cpus", "0", "--phases", "--json"])
        defer { load.stop() }
        #expect(load.readLine(timeout: 10) == "phase connected")
        let loadProbe = try KernelSampler(pid: load.pid, allocations: true)
        #expect(loadProbe.countsAllocations)
        #expect(load.readLine(timeout: 10) == "phase measure")
        let l0 = try loadProbe.snapshot()
        #expect(load.readLine(timeout: 10) == "phase done")
        let l1 = try loadProbe.snapshot()
        let summary = load.readLine(timeout: 10) ?? ""
        #expect(summary.contains("\"errors_total\":0"), "\(summary)")
        let delta = KernelCounters(from: l0, to: l1)
        // orders.py (Python, a thread per connection) answers a few hundred POSTs a second here; 176 reads
        // were seen in one window, so the bar is that answers came at all, well above zero.
        #expect(delta.totals.read_calls > 50, "the window saw answers: \(delta.totals.read_calls) reads")
        #expect(delta.totals.mallocs == 0, "load generator (\(kind)): \(delta.totals.mallocs) mallocs")
    }

    /// One measured window of `load` against a server started with `serverArguments`: the
    /// server's malloc count over the window, and its `http_requests` counted inside it
    /// (two SIGUSR1 stats lines just after the window opens and just before it closes, when
    /// `countRequests`; those lines allocate, so the zero-malloc checks do not ask for them).
    func serverWindow(_ serverArguments: [String], wire: String, countRequests: Bool) throws -> (mallocs: UInt64, reads: UInt64, requests: Int?) {
        let (server, endpoint) = try TestSupport.startServer(serverArguments + ["--protocol", wire, "--cpus", "1"])
        defer { server.stop() }
        let load = try ChildProcess(executable: try TestSupport.muxlab, arguments: [
            "load", "--target", "\(endpoint)", "--connections", "100", "--active", "20", "--protocol", wire,
            "--warmup", "1.5s", "--duration", "1s", "--cpus", "0", "--phases", "--json"])
        defer { load.stop() }
        #expect(load.readLine(timeout: 10) == "phase connected")
        let probe = try KernelSampler(pid: server.pid, allocations: true)
        #expect(probe.countsAllocations)
        #expect(load.readLine(timeout: 10) == "phase measure")
        let s0 = try probe.snapshot()
        let first = countRequests ? try requestsServed(server) : 0
        // The measured second runs meanwhile; the last stats line is taken near its end.
        if countRequests { usleep(800_000) }
        let last = countRequests ? try requestsServed(server) : 0
        #expect(load.readLine(timeout: 10) == "phase done")
        let s1 = try probe.snapshot()
        let summary = load.readLine(timeout: 10) ?? ""
        #expect(summary.contains("\"errors_total\":0"), "load: \(summary)")
        let delta = KernelCounters(from: s0, to: s1)
        return (delta.totals.mallocs, delta.totals.read_calls, countRequests ? last - first : nil)
    }

    /// The server's `http_requests` now.
    func requestsServed(_ server: ChildProcess) throws -> Int {
        server.signal(SIGUSR1)
        guard let line = server.readLine(timeout: 5), line.hasPrefix("stats "),
              let field = line.split(separator: " ").first(where: { $0.hasPrefix("http_requests=") }),
              let n = Int(field.dropFirst("http_requests=".count)) else {
            throw ValueError("no stats line with http_requests from the server: \(server.stderrTail(3))")
        }
        return n
    }

    static let poolVariants: [(String, String)] = [
        ("reactor-pool", "global-lock"), ("reactor-pool", "per-worker"),
        ("multi-reactor-pool", "global-lock"), ("multi-reactor-pool", "per-worker"),
    ]

    @Test("K3: the pool models hand requests to workers and back with 0 mallocs in the measured window",
          arguments: poolVariants, ["echo", "http"])
    func poolModelsAllocateNothing(variant: (String, String), wire: String) throws {
        try requireRoot()
        var arguments = ["--model", variant.0, "--queue", variant.1, "--workers", "2", "--compute-us", "20"]
        if variant.0 == "multi-reactor-pool" { arguments += ["--reactors", "2"] }
        let window = try serverWindow(arguments, wire: wire, countRequests: false)
        #expect(window.reads > 1000, "the window saw traffic")
        #expect(window.mallocs == 0, "\(variant.0) --queue \(variant.1) \(wire): \(window.mallocs) mallocs")
    }

    @Test("K3: --alloc per-request makes at least one malloc per request", arguments: ["reactor", "reactor-pool"])
    func perRequestAllocationShows(model: String) throws {
        try requireRoot()
        let window = try serverWindow(["--model", model, "--alloc", "per-request"], wire: "http", countRequests: true)
        let requests = window.requests ?? 0
        #expect(requests > 1000, "the window saw traffic: \(requests) requests")
        #expect(window.mallocs >= UInt64(requests), "\(model): \(window.mallocs) mallocs for \(requests) requests")
    }
}
