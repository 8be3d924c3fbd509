#if canImport(Glibc)
import Glibc
#endif
import Bench
import Foundation
import Kernel
import TestSupport
import Testing

/// Every concurrency model through the real driver: spawned, verified with one round trip,
/// loaded, probed and stopped, echo and http; then the killers' and the herd's evidence.
@Suite("End to end: models 1-10 and the killer toggles under a tiny load", .serialized)
struct ModelsMatrixTests {
    static let models = """
    [defaults]
    duration = "0.5s"
    warmup = "0.3s"
    server_cpus = "1"
    client_cpus = "0"
    connections = 4
    request_timeout = "1s"

    [[experiment]]
    id = "models"
    claims = ["C7"]
    [experiment.matrix]
    model = ["iterative", "process-per-connection", "thread-per-connection", "prefork", "reactor", "reactor-thread-per-request", "reactor-worker", "reactor-pool", "multi-reactor", "multi-reactor-pool", "proactor"]
    protocol = ["echo", "http"]
    """

    func bench(_ workload: String, name: String, arguments: [String] = [], timeout: Double) throws -> [[String: String]] {
        let out = "/tmp/muxlab-e2e-\(name)-\(getpid())"
        try? FileManager.default.removeItem(atPath: out)
        let path = out + ".toml"
        try workload.write(toFile: path, atomically: true, encoding: .utf8)
        let child = try ChildProcess(executable: try TestSupport.muxlab, arguments: ["bench", path, "--out", out] + arguments,
                                     stderrPath: out + ".err")
        let status = child.wait(timeout: timeout)
        let rows = try CSVTable.read(path: out + "/results.csv").rows
        #expect(status == .exited(0), "bench \(name): \(String(describing: status)): \(child.stderrTail(10))")
        return rows
    }

    @Test("every model, echo and http: verified, requests completed, no errors (the iterative one serves one client at a time)")
    func everyModelServes() throws {
        // One keep-alive client at a time is all the iterative server and blocking prefork can do:
        // their cells run with one connection so that a clean pass means something.
        let rows = try bench(ModelsMatrixTests.models.replacingOccurrences(of: "connections = 4", with: "connections = 1"),
                             name: "models-1", timeout: 180)
        #expect(rows.count == 22)
        for r in rows {
            let what = "\(r["model"] ?? "") \(r["protocol"] ?? "")"
            #expect(r["status"] == "ok", "\(what): \(r["reason"] ?? "")")
            #expect(r["verify"] == "ok", "\(what): verify \(r["verify"] ?? "")")
            #expect((Int(r["requests"] ?? "") ?? 0) > 10, "\(what): \(r["requests"] ?? "no") requests")
            #expect(r["errors"] == "0", "\(what): \(r["errors"] ?? "") errors")
            #expect(r["probe_status"]?.hasPrefix("ok") == true, "\(what): probes \(r["probe_status"] ?? "")")
        }
    }

    @Test("the concurrent models serve 4 connections at once, echo and http")
    func concurrentModelsServe() throws {
        let concurrent = ModelsMatrixTests.models.replacingOccurrences(of: "\"iterative\", ", with: "")
        let rows = try bench(concurrent, name: "models-4", timeout: 180)
        #expect(rows.count == 20)
        for r in rows {
            let what = "\(r["model"] ?? "") \(r["protocol"] ?? "")"
            #expect(r["status"] == "ok", "\(what): \(r["reason"] ?? "")")
            #expect(r["errors"] == "0", "\(what): \(r["errors"] ?? "") errors")
            // Prefork's blocking acceptors serve one connection each: 4 processes, 4 connections.
            #expect(r["connections_served"] == "4", "\(what): \(r["connections_served"] ?? "") of 4 connections served")
        }
    }

    static let killers = """
    [defaults]
    duration = "1s"
    warmup = "0.5s"
    server_cpus = "1"
    client_cpus = "0"
    connections = 10

    [[experiment]]
    id = "k3-alloc"
    claims = ["K3"]
    [experiment.matrix]
    model = ["reactor", "reactor-pool"]
    server_args = [["--alloc", "pooled"], ["--alloc", "per-request"]]

    [[experiment]]
    id = "c3-herd"
    claims = ["C3"]
    [experiment.base]
    model = "prefork"
    io = "epoll-et"
    rate = 500
    load_args = ["--requests-per-connection", "1"]
    [experiment.matrix]
    server_args = [["--accept", "shared-epoll"], ["--accept", "epoll-exclusive"], ["--accept", "reuseport"]]
    """

    @Test("K3: pooled variants make 0 mallocs per request, per-request ones one per answer (but those in flight at the edges); C3: a shared epoll wakes more per accept")
    func killersAndHerd() throws {
        guard geteuid() == 0 else {
            throw ValueError("the malloc and wake-up figures come from eBPF probes, which need root (uid \(geteuid())); CI runs as root")
        }
        let rows = try bench(ModelsMatrixTests.killers, name: "killers", timeout: 120)
        #expect(rows.count == 7)
        for r in rows { #expect(r["status"] == "ok", "\(r["label"] ?? ""): \(r["reason"] ?? "")") }
        for r in rows where r["experiment"] == "k3-alloc" {
            let mallocs = Double(r["mallocs_per_req"] ?? "")
            #expect(mallocs != nil, "\(r["label"] ?? ""): mallocs_per_req empty (\(r["probe_status"] ?? ""))")
            if r["server_args"] == "--alloc pooled" {
                #expect((mallocs ?? 1) < 0.01, "\(r["model"] ?? "") pooled: \(mallocs ?? -1) mallocs per request")
            } else {
                // One malloc per answer, counted by the server, over requests counted by the load at the same
                // edges: at each edge a request per active connection may be answered on one side only.
                // The CSV keeps 3 decimals, so the column may read up to half a unit (0.0005) below the
                // exact figure (a fresh clone's CI read 0.999 against a bound of 0.99908 over 21,681 requests).
                let requests = Double(r["requests"] ?? "") ?? 1, active = Double(r["active"] ?? "") ?? 0
                #expect((mallocs ?? 0) + 0.0005 >= 1 - 2 * active / requests,
                        "\(r["model"] ?? "") per-request: \(mallocs ?? -1) mallocs per request over \(Int(requests)) requests, \(Int(active)) active")
            }
        }
        func wakeups(_ mode: String) -> Double? {
            rows.first { $0["experiment"] == "c3-herd" && $0["server_args"] == "--accept \(mode)" }
                .flatMap { Double($0["wakeups_per_accept"] ?? "") }
        }
        let shared = wakeups("shared-epoll"), exclusive = wakeups("epoll-exclusive"), reuseport = wakeups("reuseport")
        #expect(shared != nil && exclusive != nil && reuseport != nil, "wake-ups per accept: \(String(describing: (shared, exclusive, reuseport)))")
        if let shared, let exclusive, let reuseport {
            #expect(shared > exclusive, "shared epoll \(shared) vs EPOLLEXCLUSIVE \(exclusive) wake-ups per accept")
            #expect(shared > reuseport, "shared epoll \(shared) vs SO_REUSEPORT \(reuseport) wake-ups per accept")
        }
    }
}
