#if canImport(Glibc)
import Glibc
#endif
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
}
