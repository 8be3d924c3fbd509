#if canImport(Glibc)
import Glibc
#endif
import Bench
import Foundation
import Kernel
import TestSupport
import Testing

/// One measured window on both sides (issue 13): every muxlab model at 1,000 connections, the timing
/// window and the evidence window each counted by the server and by the load, the kernel's counts
/// per request divided by requests of that same window.
@Suite("End to end: one window on both sides, every model at 1,000 connections", .serialized)
struct WindowTests {
    static let workload = """
    [defaults]
    duration = "1s"
    warmup = "0.3s"
    evidence_duration = "0.5s"
    server_cpus = "1"
    client_cpus = "0"
    connections = 1000
    active = 20
    malloc_probe = false

    [[experiment]]
    id = "window-models"
    [experiment.matrix]
    model = ["process-per-connection", "thread-per-connection", "reactor", "reactor-thread-per-request", "reactor-worker", "reactor-pool", "multi-reactor", "multi-reactor-pool", "proactor"]

    [[experiment]]
    id = "window-prefork"
    [experiment.base]
    model = "prefork"
    io = "epoll-et"
    server_args = ["--accept", "reuseport"]

    [[experiment]]
    id = "window-io"
    [experiment.base]
    model = "reactor"
    [experiment.matrix]
    io = ["poll", "epoll-lt"]
    """

    func bench(_ workload: String, name: String, arguments: [String] = [], timeout: Double) throws -> [[String: String]] {
        try ModelsMatrixTests().bench(workload, name: name, arguments: arguments, timeout: timeout)
    }

    func number(_ r: [String: String], _ key: String) -> Double? { Double(r[key] ?? "") }

    @Test("server and load count the same requests in both windows; a 64 B echo makes one data read and one write per request")
    func oneWindowEveryModel() throws {
        guard geteuid() == 0 else {
            throw ValueError("the evidence window's counts come from eBPF probes, which need root (uid \(geteuid())); CI runs as root")
        }
        let rows = try bench(WindowTests.workload, name: "window", timeout: 300)
        #expect(rows.count == 12)
        for r in rows {
            let what = "\(r["model"] ?? "") \(r["io"] ?? "")"
            #expect(r["status"] == "ok", "\(what): \(r["status"] ?? "") \(r["reason"] ?? "")")
            #expect(r["probe_status"] == "ok", "\(what): probes \(r["probe_status"] ?? "")")
            #expect(r["server_cpu_source"] == "cgroup-v1" || r["server_cpu_source"] == "cgroup-v2", "\(what): CPU from \(r["server_cpu_source"] ?? "")")
            // malloc_probe = false: no counter preloaded, and the sampler attaches no uprobe: empty, never 0.
            #expect(r["mallocs_per_req"] == "", "\(what): mallocs_per_req \(r["mallocs_per_req"] ?? "nil") with nothing counting them")
            for (load, server) in [("requests", "server_requests"), ("evidence_requests", "evidence_server_requests")] {
                let l = number(r, load) ?? 0, s = number(r, server) ?? -1
                #expect(l > 100, "\(what): \(load) \(l)")
                // Both read at the driver's edges, µs apart: at each edge a request per active connection may be
                // answered and not yet received, or answered and not yet published by the server's loop.
                #expect(abs(s - l) <= l * 0.01 + 40, "\(what): \(server) \(s) vs \(load) \(l)")
            }
            // The two windows are the same length on both sides.
            if let load = number(r, "duration_s"), let server = number(r, "server_window_s"), let driver = number(r, "window_s") {
                #expect(abs(server - load) < 0.05 && abs(driver - load) < 0.05, "\(what): windows load \(load), server \(server), driver \(driver) s")
            } else {
                Issue.record("\(what): a window length is empty")
            }
            // The timing window's 1 s cut into 4 sub-windows of ~0.25 s: together they hold the server's requests
            // and its CPU (each sub-window's CPU per request weighted by its requests gives cpu_us_per_req).
            let rps = (r["throughput_rps_samples"] ?? "").split(separator: " ").compactMap { Double($0) }
            let cpu = (r["cpu_us_per_req_samples"] ?? "").split(separator: " ").compactMap { Double($0) }
            #expect(rps.count == 4 && cpu.count == 4, "\(what): sub-window samples \(rps) \(cpu)")
            if rps.count == 4, cpu.count == 4, let served = number(r, "server_requests"), let window = number(r, "window_s"),
               let perRequest = number(r, "cpu_us_per_req") {
                let summed = rps.reduce(0, +) * window / 4
                #expect(abs(summed - served) <= served * 0.1, "\(what): sub-windows hold \(summed) requests, the server answered \(served)")
                let weighted = zip(cpu, rps).map { $0 * $1 }.reduce(0, +) / rps.reduce(0, +)
                #expect(abs(weighted - perRequest) <= perRequest * 0.1, "\(what): sub-windows' CPU \(weighted) µs/request vs \(perRequest)")
            }
            let reads = (number(r, "reads_per_req") ?? 0) - (number(r, "eagain_reads_per_req") ?? 0)
            let writes = number(r, "writes_per_req") ?? 0
            switch r["model"] {
            case "proactor":
                // io_uring's recv and send are not syscalls: its bytes are the completions' (64 in, 64 out).
                #expect(abs((number(r, "copy_bytes_per_req") ?? 0) - 128) < 2, "\(what): \(r["copy_bytes_per_req"] ?? "") copy bytes per request")
            case "reactor-thread-per-request", "reactor-worker", "reactor-pool", "multi-reactor-pool":
                // Handing a request to a worker and back adds an eventfd write and read to some requests.
                #expect(reads >= 0.98 && reads < 1.3 && writes >= 0.98 && writes < 1.3, "\(what): \(reads) reads, \(writes) writes per request")
            default:
                #expect(abs(reads - 1) < 0.02, "\(what): \(reads) data reads per request")
                #expect(abs(writes - 1) < 0.02, "\(what): \(writes) writes per request")
            }
        }
    }

    @Test("--probes off runs the timing window only: the evidence columns stay empty, the timing ones are there")
    func probesOff() throws {
        let one = WindowTests.workload.components(separatedBy: "[[experiment]]\nid = \"window-prefork\"")[0]
            .replacingOccurrences(of: "model = [\"process-per-connection\", \"thread-per-connection\", \"reactor\", \"reactor-thread-per-request\", \"reactor-worker\", \"reactor-pool\", \"multi-reactor\", \"multi-reactor-pool\", \"proactor\"]", with: "model = [\"reactor\"]")
        let rows = try bench(one, name: "window-off", arguments: ["--probes", "off"], timeout: 60)
        #expect(rows.count == 1)
        for r in rows {
            #expect(r["status"] == "ok", "\(r["reason"] ?? "")")
            #expect(r["probe_status"] == "off")
            #expect(number(r, "throughput_rps") != nil && number(r, "cpu_us_per_req") != nil && number(r, "server_requests") != nil)
            for key in ["evidence_requests", "probe_overhead", "syscalls_per_req", "reads_per_req", "evidence_throughput_rps"] {
                #expect(r[key] == "", "\(key) = \(r[key] ?? "nil") with probes off")
            }
        }
    }

    @Test("a driver descheduled 40 ms between reading a window's close and telling the load: both sides' counts are still of one instant")
    func driverStalledAtTheEdge() throws {
        // The fault CI met on a host that steals time (10 % of these CPUs' time in a 34 s bench): the driver
        // read the server's counters, lost the CPU for ms, and the load's window, closed on the late message,
        // ran on: 38 requests more than the server's. The load's count is now read beside the server's.
        let one = """
        [defaults]
        duration = "0.5s"
        warmup = "0.2s"
        evidence_duration = "0.3s"
        server_cpus = "1"
        client_cpus = "0"
        connections = 1
        malloc_probe = false

        [[experiment]]
        id = "edge-stall"
        [experiment.base]
        model = "reactor"
        """
        let rows = try bench(one, name: "edge-stall", arguments: ["--edge-stall-ms", "40"] + (geteuid() == 0 ? [] : ["--probes", "off"]), timeout: 60)
        #expect(rows.count == 1)
        for r in rows {
            #expect(r["status"] == "ok", "\(r["status"] ?? "") \(r["reason"] ?? "")")
            let pairs = [("requests", "server_requests")] + (geteuid() == 0 ? [("evidence_requests", "evidence_server_requests")] : [])
            for (load, server) in pairs {
                let l = number(r, load) ?? 0, s = number(r, server) ?? -1
                // At ~5,000 requests/s the 40 ms after the edge hold ~200: a window that ran on would show them.
                // Under host steal the rate can fall to ~1,300/s (385 in the 0.3 s evidence window in one CI
                // run): the 40 ms then still hold ~50, well past the 1 % + 2 allowed.
                #expect(l > 100 && abs(s - l) <= l * 0.01 + 2, "\(load) \(l) vs \(server) \(s)")
            }
            #expect(r["duration_s"] == r["window_s"], "the requests' window is the driver's: \(r["duration_s"] ?? "") vs \(r["window_s"] ?? "")")
        }
    }

    @Test("a cell whose window the host stole from is set aside in disturbed.csv and measured again after the others; --attempts 1 keeps it")
    func disturbedCellsMeasuredAgain() throws {
        let two = """
        [defaults]
        duration = "0.4s"
        warmup = "0.2s"
        server_cpus = "1"
        client_cpus = "0"
        connections = 2
        malloc_probe = false

        [[experiment]]
        id = "steal"
        [experiment.base]
        model = "reactor"
        [experiment.matrix]
        protocol = ["echo", "http"]
        """
        // The first attempt of each cell is told it lost 60 % to the host (a fault; the /proc/stat reading is added to).
        let rows = try bench(two, name: "steal", arguments: ["--probes", "off", "--assume-steal-pct", "60"], timeout: 60)
        #expect(rows.map { $0["protocol"] ?? "" } == ["echo", "http"])
        for r in rows {
            #expect(r["status"] == "ok", "\(r["reason"] ?? "")")
            #expect(r["attempts"] == "2", "attempts \(r["attempts"] ?? "")")
            // The second attempt's steal is what the host really took (no fault added): a share, kept whatever it is.
            let steal = try #require(number(r, "steal_share"), "steal_share empty")
            #expect(steal >= 0 && steal <= 1)
            #expect(number(r, "requests") ?? 0 > 50)
        }
        let out = "/tmp/muxlab-e2e-steal-\(getpid())"
        let aside = try CSVTable.read(path: out + "/disturbed.csv").rows
        #expect(aside.map { $0["cell"] ?? "" } == ["1", "2"])
        for r in aside {
            #expect(r["attempts"] == "1" && (number(r, "steal_share") ?? 0) >= 0.6, "\(r["attempts"] ?? "") \(r["steal_share"] ?? "")")
            #expect(r["reason"]?.contains("set aside: the host stole") == true, "\(r["reason"] ?? "")")
            #expect(number(r, "requests") ?? 0 > 50, "the set-aside attempt is a full measurement, kept")
        }
        let manifest = try String(contentsOfFile: out + "/manifest.json", encoding: .utf8)
        #expect(manifest.contains("remeasured"), "the manifest names the cells measured again")

        let kept = try bench(two, name: "steal-once", arguments: ["--probes", "off", "--assume-steal-pct", "60", "--attempts", "1"], timeout: 60)
        #expect(kept.count == 2 && kept.allSatisfy { $0["attempts"] == "1" && (number($0, "steal_share") ?? 0) >= 0.6 })
        #expect(!FileManager.default.fileExists(atPath: "/tmp/muxlab-e2e-steal-once-\(getpid())/disturbed.csv"))

        // A spent budget keeps disturbed cells as measured, and the manifest names them.
        let spent = try bench(two, name: "steal-budget", arguments: ["--probes", "off", "--assume-steal-pct", "60", "--remeasure-budget-pct", "0"], timeout: 60)
        #expect(spent.count == 2 && spent.allSatisfy { $0["status"] == "ok" && $0["attempts"] == "1" && (number($0, "steal_share") ?? 0) >= 0.6 })
        #expect(!FileManager.default.fileExists(atPath: "/tmp/muxlab-e2e-steal-budget-\(getpid())/disturbed.csv"))
        let spentManifest = try String(contentsOfFile: "/tmp/muxlab-e2e-steal-budget-\(getpid())/manifest.json", encoding: .utf8)
        #expect(spentManifest.contains("kept_disturbed") && !spentManifest.contains("\"remeasured\""), "\(spentManifest)")
    }
}
