import Foundation
import Testing
@testable import Bench

/// The rows as `muxlab report` reads them: each CSV record through the typed schema.
private func typed(_ records: [[String: String]]) throws -> [ResultRow] { try records.map(ResultRow.init(record:)) }

/// peers.md and scale.md, built from results.csv rows alone.
@Suite("Peers and scale reports")
struct PeersReportTests {
    func row(_ cell: Int, _ experiment: String, load: String = "wrk", args: String = "", model: String = "reactor",
             rps: Double, cpu: Double, serverUtil: Double, clientUtil: Double?, clientCPU: Double? = nil) -> [String: String] {
        var r = ["cell": String(cell), "experiment": experiment, "status": "ok", "load": load, "server_args": args,
                 "model": model, "throughput_rps": String(rps), "cpu_us_per_req": String(cpu),
                 "server_cpu_util": String(serverUtil), "syscalls_per_req": "2.3", "latency_p99_us": "900"]
        if let clientUtil { r["client_cpu_util"] = String(clientUtil) }
        if let clientCPU { r["client_cpu_us_per_req"] = String(clientCPU) }
        return r
    }

    @Test("medians per side, ratios against their targets, and the saturated CPU named as the limit")
    func ratios() throws {
        let rows = [
            row(1, "peers-server", args: "--et-read until-short", rps: 120_000, cpu: 8, serverUtil: 0.9, clientUtil: 0.99),
            row(2, "peers-server", args: "--et-read until-short", rps: 100_000, cpu: 9, serverUtil: 0.9, clientUtil: 0.99),
            row(3, "peers-server", args: "--et-read until-short", rps: 130_000, cpu: 7, serverUtil: 0.9, clientUtil: 0.99),
            row(4, "peers-server-nginx", model: "nginx", rps: 100_000, cpu: 10, serverUtil: 0.96, clientUtil: 0.97),
            row(5, "peers-load", load: "muxlab", model: "nginx", rps: 95_000, cpu: 10, serverUtil: 0.98, clientUtil: 0.8, clientCPU: 8),
            row(6, "peers-load", load: "wrk", model: "nginx", rps: 90_000, cpu: 10, serverUtil: 0.9, clientUtil: 0.98, clientCPU: 10),
            // A failed row never counts.
            ["cell": "7", "experiment": "peers-server-nginx", "status": "failed", "throughput_rps": "1"],
        ]
        let report = try PeersReport(rows: typed(rows))
        #expect(report.comparisons.count == 2)
        let server = try #require(report.comparisons.first)
        #expect(server.ours.rps == 120_000 && server.ours.cells == [1, 2, 3] && server.reference.cells == [4])
        #expect(server.rpsRatio == 1.2 && server.cpuRatio == 10.0 / 8)
        #expect(PeersReport.limit(server.ours) == "load CPU" && PeersReport.limit(server.reference) == "both CPUs")
        let load = report.comparisons[1]
        #expect(load.target == 1.1 && abs((load.rpsRatio ?? 0) - 95.0 / 90) < 1e-9 && load.cpuRatio == 10.0 / 8)
        #expect(PeersReport.limit(load.ours) == "server CPU")
        let text = report.markdown
        #expect(text.contains("req/s ratio 1.200 (target ≥ 1.2: meets)"), "\(text)")
        #expect(text.contains("req/s ratio 1.056 (target ≥ 1.1: misses)"), "\(text)")
        #expect(text.contains("| muxlab reactor --et-read until-short | 120000 |"), "\(text)")
    }

    @Test("another peer's server (peers-server-swiftnio) sits beside nginx with no target; every server in one table with its copies")
    func otherPeer() throws {
        var nio = [row(5, "peers-server-swiftnio", model: "swiftnio", rps: 80_000, cpu: 12.5, serverUtil: 1, clientUtil: 0.7),
                   row(6, "peers-server-swiftnio", model: "swiftnio", rps: 70_000, cpu: 14, serverUtil: 1, clientUtil: 0.7)]
        for i in nio.indices { nio[i]["copy_bytes_per_req"] = "160" }
        var nginx = row(4, "peers-server-nginx", model: "nginx", rps: 100_000, cpu: 10, serverUtil: 0.96, clientUtil: 0.97)
        nginx["copy_bytes_per_req"] = "150"
        let rows = [row(1, "peers-server", args: "--et-read until-short", rps: 120_000, cpu: 8, serverUtil: 0.9, clientUtil: 0.99), nginx] + nio
        let report = try PeersReport(rows: typed(rows))
        #expect(report.servers.map(\.name) == ["muxlab reactor --et-read until-short", "nginx", "swiftnio"])
        #expect(report.comparisons.count == 2)
        let peer = try #require(report.comparisons.last)
        #expect(peer.target == nil && peer.ours.cells == [5, 6] && peer.ours.serverCPUUsPerReq == 13.25)
        #expect(peer.cpuRatio == 10 / 13.25)
        let text = report.markdown
        #expect(text.contains("| swiftnio | 2 | 75000 | 900 | 13.25 | 2.30 | 160 | 0.755 | server CPU |"), "\(text)")
        #expect(text.contains("| nginx | 1 | 100000 | 900 | 10.00 | 2.30 | 150 | 1 | both CPUs |"), "\(text)")
        #expect(text.contains("(a peer beside nginx: no target); server CPU µs/req, nginx / swiftnio = 0.755"), "\(text)")
    }

    @Test("no peers experiment, no comparison; a missing CPU figure is said, not guessed")
    func absent() throws {
        #expect(try PeersReport(rows: typed([row(1, "e1-busy-loop", rps: 1, cpu: 1, serverUtil: 1, clientUtil: 1)])).comparisons.isEmpty)
        let report = try PeersReport(rows: typed([row(1, "peers-server", rps: 100, cpu: 1, serverUtil: 0.5, clientUtil: nil),
                                                  row(2, "peers-server-nginx", rps: 100, cpu: 1, serverUtil: 0.5, clientUtil: nil)]))
        #expect(PeersReport.limit(report.comparisons[0].ours) == "not known (a CPU figure is missing)")
    }

    @Test("scale lists the cells of 10,000 connections or more, failed ones marked")
    func scale() throws {
        let rows = [["cell": "1", "experiment": "small", "connections": "9999", "status": "ok"],
                    ["cell": "2", "experiment": "c100k", "connections": "100000", "connections_established": "100000",
                     "errors": "0", "errors_connect": "0", "server_pss_kb_per_conn": "0.232", "status": "ok"],
                    ["cell": "3", "experiment": "c100k", "connections": "100000", "status": "failed"]]
        let report = try ScaleReport(rows: typed(rows))
        #expect(report.rows.map(\.cell) == [2, 3])
        #expect(report.markdown.contains("| 2 | c100k | 100000 | 100000 | 0 (0) |"), "\(report.markdown)")
        #expect(report.markdown.contains("| 0.23 |") && report.markdown.contains("| 3 | c100k (failed) |"), "\(report.markdown)")
    }
}

/// openloop.md: the open loop's CPU per request against the closed loop's at the same throughput.
@Suite("Open-loop cost report")
struct OpenLoopReportTests {
    func row(_ cell: Int, repeat r: Int = 1, rate: Int? = nil, connections: Int, rps: Double, cpu: Double,
             load: String = "muxlab", args: String = "", status: String = "ok") -> [String: String] {
        ["cell": String(cell), "experiment": "open-loop-cost", "repeat": String(r), "status": status, "load": load,
         "target_rps": rate.map(String.init) ?? "", "connections": String(connections), "load_args": args,
         "throughput_rps": String(rps), "client_cpu_us_per_req": String(cpu), "unsent": rate == nil ? "" : "0"]
    }

    @Test("the closed loop's CPU per request is interpolated between the closed rows of the same repeat that bracket the open row")
    func interpolates() throws {
        let rows = [
            row(1, rate: 50_000, connections: 50, rps: 50_000, cpu: 13),
            row(2, connections: 3, rps: 40_000, cpu: 12),
            row(3, connections: 4, rps: 60_000, cpu: 8),
            row(4, connections: 6, rps: 120_000, cpu: 5),
            // Another repeat's closed rows never bracket this one's open row.
            row(5, repeat: 2, rate: 50_000, connections: 50, rps: 50_000, cpu: 20),
            row(6, repeat: 2, connections: 3, rps: 55_000, cpu: 10),
            row(7, repeat: 2, connections: 4, rps: 70_000, cpu: 8),
            // wrk rows and failed rows never count.
            row(8, repeat: 2, connections: 2, rps: 30_000, cpu: 1, load: "wrk"),
            row(9, repeat: 2, connections: 2, rps: 30_000, cpu: 1, status: "failed"),
        ]
        let report = try OpenLoopReport(rows: typed(rows))
        #expect(report.comparisons.count == 2)
        let first = try #require(report.comparisons.first)
        #expect(first.closedCPU == 10 && first.closedConnections == [3, 4])
        #expect(first.ratio == 1.3)
        #expect(report.comparisons[1].closedCPU == nil && report.comparisons[1].ratio == nil)
        let text = report.markdown
        #expect(text.contains("| 1 | open-loop-cost | 1 | 50000 |  | 50000 | 0 | 13.00 | 10.00 (3–4) | 1.30 |"), "\(text)")
        #expect(text.contains("not bracketed"), "\(text)")
        #expect(text.contains("median 1.30, range 1.30–1.30 over 1 repeats: within the 1.5x target"), "\(text)")
    }

    @Test("an open loop past the target is said to be above it")
    func above() throws {
        let report = try OpenLoopReport(rows: typed([row(1, rate: 50_000, connections: 50, rps: 50_000, cpu: 30, args: "--batch 0us"),
                                                     row(2, connections: 3, rps: 40_000, cpu: 12),
                                                     row(3, connections: 4, rps: 60_000, cpu: 8)]))
        #expect(report.markdown.contains("(--batch 0us): open ÷ closed CPU per request median 3.00"))
        #expect(report.markdown.contains("above the 1.5x target"))
    }

    @Test("no closed row beside the open ones: no ratio, and the report says what to add")
    func unbracketed() throws {
        let report = try OpenLoopReport(rows: typed([row(1, rate: 50_000, connections: 50, rps: 50_000, cpu: 13)]))
        #expect(report.comparisons.count == 1 && report.comparisons[0].ratio == nil)
        #expect(report.markdown.contains("no closed-loop pair brackets its throughput"))
    }
}
