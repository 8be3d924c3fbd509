#if canImport(Glibc)
import Glibc
#endif
import Bench
import Foundation
import Kernel
import TestSupport
import Testing

/// A user's own service under the driver, for real: workloads/own-service.toml against services/orders.py
/// (probes on), `muxlab bench --server-command`, and wrk with a script of the user's.
@Suite("End to end: your own service", .serialized)
struct OwnServiceBenchTests {
    static func requireTools(_ tools: [String]) throws {
        for tool in tools {
            let found = ["/usr/sbin/", "/usr/bin/", "/sbin/", "/bin/"].contains { access($0 + tool, X_OK) == 0 }
            guard found else { throw ValueError("\(tool) is not installed: `make test` installs it (apt-get) before the tests") }
        }
    }

    static func bench(_ arguments: [String], out: String, timeout: Double = 180) throws -> (status: Kernel.ExitStatus?, stdout: [String], child: ChildProcess) {
        try? FileManager.default.removeItem(atPath: out)
        let child = try ChildProcess(executable: try TestSupport.muxlab, arguments: ["bench"] + arguments + ["--out", out],
                                     stderrPath: out + ".err")
        var lines: [String] = []
        let deadline = monotonicNanos() + UInt64(timeout * 1e9)
        while monotonicNanos() < deadline, child.poll() == nil {
            if let line = child.readLine(timeout: 1) { lines.append(line) }
        }
        lines += child.readRemaining(timeout: 1)
        let status = child.wait(timeout: 5)
        if status == nil { child.stop() }  // past the test's bound: ended here, by pid, not left running
        return (status, lines, child)
    }

    @Test("workloads/own-service.toml: POST with a JSON body, chunked replies, Connection: close and a request file, probed, 0 errors")
    func ownServiceWorkload() throws {
        try Self.requireTools(["python3", "taskset"])
        let out = "/tmp/muxlab-e2e-own-\(getpid())"
        // A shorter copy of the shipped workload: the same experiments, one round of 1 s windows.
        let shipped = try String(contentsOfFile: TestSupport.packageRoot + "/workloads/own-service.toml", encoding: .utf8)
        let quick = shipped.replacingOccurrences(of: "duration = \"2s\"", with: "duration = \"1s\"")
            .replacingOccurrences(of: "repeat = 2", with: "repeat = 1")
        let path = TestSupport.packageRoot + "/workloads/own-service-e2e-\(getpid()).toml"
        try quick.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let run = try Self.bench([path], out: out)
        #expect(run.status == Kernel.ExitStatus.exited(0), "bench: \(String(describing: run.status)): \(run.child.stderrTail(10))")
        let rows = try CSVTable.read(path: out + "/results.csv").rows
        #expect(rows.map { $0["experiment"] ?? "" } == ["own-service-keepalive", "own-service-close", "own-service-mix"])
        for r in rows {
            let what = r["experiment"] ?? ""
            #expect(r["status"] == "ok" && r["verify"] == "ok", "\(what): \(r["status"] ?? "") \(r["reason"] ?? "") verify \(r["verify"] ?? "")")
            #expect((Int(r["requests"] ?? "") ?? 0) > 100 && r["errors"] == "0", "\(what): \(r["requests"] ?? "no") requests, errors \(r["errors"] ?? "")")
            #expect(Double(r["cpu_us_per_req"] ?? "") != nil && Double(r["syscalls_per_req"] ?? "") != nil,
                    "\(what): CPU \(r["cpu_us_per_req"] ?? "empty"), syscalls \(r["syscalls_per_req"] ?? "empty") per request")
        }
        #expect(rows[0]["http_request"]?.contains("--method POST --path /orders") == true, "\(rows[0]["http_request"] ?? "")")
        // Keep-alive: no connection replaced; Connection: close: about one per request.
        #expect(rows[0]["closed_by_server"] == "0", "keep-alive closed \(rows[0]["closed_by_server"] ?? "")")
        let closed = Int(rows[1]["closed_by_server"] ?? "") ?? 0, requests = Int(rows[1]["requests"] ?? "") ?? .max
        #expect(closed >= requests, "Connection: close: \(closed) closed by the server for \(requests) requests")
    }

    @Test("muxlab bench --server-command: the workload written beside the rows, the table printed, the files named")
    func oneCommand() throws {
        try Self.requireTools(["python3", "taskset"])
        let out = "/tmp/muxlab-e2e-onecmd-\(getpid())"
        let run = try Self.bench(["--server-command", "python3 \(TestSupport.packageRoot)/services/orders.py --port {port}",
                                  "--path", "/health", "--expect-body", "ok", "--connections", "5,20", "--repeat", "1",
                                  "--duration", "1s", "--probes", "off"], out: out)
        #expect(run.status == Kernel.ExitStatus.exited(0), "bench: \(String(describing: run.status)): \(run.child.stderrTail(10))")
        let workload = try String(contentsOfFile: out + "/workload.toml", encoding: .utf8)
        #expect(workload.contains("server_command = [\"taskset\", \"-c\", \"{cpus}\", \"python3\""), "\(workload)")
        #expect(workload.contains("path = \"/health\"") && workload.contains("connections = [5, 20]"), "\(workload)")
        let rows = try CSVTable.read(path: out + "/results.csv").rows
        #expect(rows.count == 2 && rows.allSatisfy { $0["status"] == "ok" && $0["model"] == "python3" }, "\(rows.map { $0["reason"] ?? "" })")
        let table = run.stdout.first { $0.hasPrefix("| 5 |") }
        #expect(table?.contains("| 1 of 1 |") == true, "\(run.stdout.suffix(8))")
        #expect(run.stdout.contains { $0.hasPrefix("Rows: \(out)/results.csv") }, "\(run.stdout.suffix(8))")
        // Refusals name the value and what is allowed.
        let bad = try Self.bench(["--server-command", "python3 app.py"], out: out + "-bad", timeout: 20)
        #expect(bad.status == Kernel.ExitStatus.exited(2) && bad.child.stderrTail(3).joined().contains("no {port} in it"), "\(bad.child.stderrTail(3))")
    }

    @Test("wrk with the user's Lua script and flags: its request hook shapes the load, its done hook runs, and muxlab's report still fills the row")
    func wrkScript() throws {
        try Self.requireTools(["python3", "taskset", "wrk"])
        let out = "/tmp/muxlab-e2e-wrkscript-\(getpid())"
        let dir = out + "-in"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let marker = dir + "/done-ran"
        try """
        wrk.method = "POST"
        wrk.path = "/orders"
        wrk.body = '{"items": [1, 2]}'
        wrk.headers["Content-Type"] = "application/json"
        done = function(summary, latency, requests)
          local f = io.open("\(marker)", "w"); f:write(summary.requests); f:close()
        end
        """.write(toFile: dir + "/orders.lua", atomically: true, encoding: .utf8)
        try """
        [defaults]
        duration = "1s"
        warmup = "0.5s"
        server_cpus = "1"
        client_cpus = "0"
        protocol = "http"
        connections = 4
        malloc_probe = false
        [[experiment]]
        id = "wrk-own-script"
        [experiment.base]
        model = "orders-py"
        server_command = ["taskset", "-c", "{cpus}", "python3", "\(TestSupport.packageRoot)/services/orders.py", "--port", "{port}"]
        load = "wrk"
        wrk_script = "orders.lua"
        load_args = ["--latency"]
        """.write(toFile: dir + "/w.toml", atomically: true, encoding: .utf8)
        let run = try Self.bench([dir + "/w.toml", "--probes", "off"], out: out)
        #expect(run.status == Kernel.ExitStatus.exited(0), "bench: \(String(describing: run.status)): \(run.child.stderrTail(10))")
        let rows = try CSVTable.read(path: out + "/results.csv").rows
        let r = try #require(rows.first)
        #expect(r["status"] == "ok" && (Int(r["requests"] ?? "") ?? 0) > 50, "\(r["reason"] ?? "") requests \(r["requests"] ?? "")")
        #expect(FileManager.default.fileExists(atPath: marker), "the user's done hook ran")
        #expect(r["http_request"]?.hasPrefix("wrk_script=") == true)
        // wrk counts a non-2xx/3xx answer as a status error, and the service answers GET / with 404:
        // 0 errors means every request was the script's POST /orders.
        #expect(r["errors"] == "0", "errors \(r["errors"] ?? "")")
        // A driver-owned wrk flag in load_args is refused at load time.
        try """
        [[experiment]]
        id = "x"
        [experiment.base]
        protocol = "http"
        load = "wrk"
        load_args = ["-c", "100"]
        """.write(toFile: dir + "/bad.toml", atomically: true, encoding: .utf8)
        let bad = try Self.bench([dir + "/bad.toml"], out: out + "-bad", timeout: 20)
        #expect(bad.status == Kernel.ExitStatus.exited(2) && bad.child.stderrTail(3).joined().contains("-c is set by the driver"), "\(bad.child.stderrTail(3))")
    }
}
