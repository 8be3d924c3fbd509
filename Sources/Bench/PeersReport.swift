import Foundation

/// Issue 7's peer comparisons, read from results.csv alone: muxlab's server against nginx under
/// the same wrk (experiments `peers-server` and `peers-server-nginx`), other peers' servers under
/// that wrk (`peers-server-NAME`, e.g. issue 16's SwiftNIO server) beside nginx, and `muxlab load`
/// against wrk on the same nginx (`peers-load`). Each side is the median over its repeats; each
/// ratio says whether it meets its target (where it has one) and which side's CPU was the limit.
public struct PeersReport {
    /// One side of a comparison: the medians of its rows.
    public struct Side: Equatable {
        public var name: String
        public var runs: Int
        public var rps: Double?
        public var serverCPUUsPerReq: Double?
        public var syscallsPerReq: Double?
        public var copyBytesPerReq: Double?
        public var p99Us: Double?
        public var serverCPUUtil: Double?
        public var clientCPUUtil: Double?
        public var clientCPUUsPerReq: Double?
        public var cells: [Int]
    }

    public struct Comparison: Equatable {
        public var title: String
        /// The side measured against the reference, and the reference (nginx, or wrk).
        public var ours: Side
        public var reference: Side
        /// ours / reference requests per second, and the target it should reach (nil: a peer beside
        /// nginx, compared with no target of muxlab's).
        public var rpsRatio: Double?
        public var target: Double?
        /// reference / ours CPU µs per request of the part being compared (above 1: ours is cheaper).
        public var cpuRatio: Double?
        public var cpuRatioLabel: String
    }

    /// A side at or above this CPU utilisation (per CPU it was pinned to) was the limit of the run.
    public static let saturated = 0.95

    public let comparisons: [Comparison]
    /// Every server measured under the same wrk (muxlab's variants, nginx, other peers), in file order.
    public let servers: [Side]

    public init(rows: [ResultRow]) {
        let ok = rows.filter { $0.status == .ok }
        func side(_ name: String, _ rows: [ResultRow]) -> Side {
            func median(_ column: KeyPath<ResultRow, Double?>) -> Double? {
                Measured(metric: "", samples: rows.compactMap { $0[keyPath: column] })?.median
            }
            return Side(name: name, runs: rows.count, rps: median(\.throughputRPS), serverCPUUsPerReq: median(\.cpuUsPerReq),
                        syscallsPerReq: median(\.syscallsPerReq), copyBytesPerReq: median(\.copyBytesPerReq),
                        p99Us: median(\.latencyP99Us),
                        serverCPUUtil: median(\.serverCPUUtil), clientCPUUtil: median(\.clientCPUUtil),
                        clientCPUUsPerReq: median(\.clientCPUUsPerReq), cells: rows.compactMap(\.cell))
        }
        func ratio(_ a: Double?, _ b: Double?) -> Double? {
            guard let a, let b, b > 0 else { return nil }
            return a / b
        }
        var out: [Comparison] = []
        let nginx = ok.filter { $0.experiment == "peers-server-nginx" }
        let muxlabRows = ok.filter { $0.experiment == "peers-server" }
        // One side per muxlab variant (its server_args), in file order.
        let muxlabSides = orderedUnique(muxlabRows.map { $0.serverArgs.joined(separator: " ") }).map { v in
            let mine = muxlabRows.filter { $0.serverArgs.joined(separator: " ") == v }
            let model = mine.first.map(\.model).flatMap { $0.isEmpty ? nil : $0 } ?? "reactor"
            return side("muxlab \(model)" + (v.isEmpty ? "" : " " + v), mine)
        }
        // Other peers' servers under the same wrk: experiments peers-server-NAME, named by their model.
        let peerExperiments = orderedUnique(ok.map(\.experiment).filter { $0.hasPrefix("peers-server-") && $0 != "peers-server-nginx" })
        let peerSides = peerExperiments.map { e in
            let mine = ok.filter { $0.experiment == e }
            let name = mine.first.map(\.model).flatMap { $0.isEmpty ? nil : $0 } ?? String(e.dropFirst("peers-server-".count))
            return side(name, mine)
        }
        let everyServer = muxlabSides + (nginx.isEmpty ? [] : [side("nginx", nginx)]) + peerSides
        if !nginx.isEmpty {
            let reference = side("nginx", nginx)
            for ours in muxlabSides {
                out.append(Comparison(title: "server under wrk", ours: ours, reference: reference,
                                      rpsRatio: ratio(ours.rps, reference.rps), target: 1.2,
                                      cpuRatio: ratio(reference.serverCPUUsPerReq, ours.serverCPUUsPerReq),
                                      cpuRatioLabel: "server CPU µs/req, nginx / muxlab"))
            }
            for peer in peerSides {
                out.append(Comparison(title: "peer server under wrk", ours: peer, reference: reference,
                                      rpsRatio: ratio(peer.rps, reference.rps), target: nil,
                                      cpuRatio: ratio(reference.serverCPUUsPerReq, peer.serverCPUUsPerReq),
                                      cpuRatioLabel: "server CPU µs/req, nginx / \(peer.name)"))
            }
        }
        let loads = ok.filter { $0.experiment == "peers-load" }
        let muxlabLoad = loads.filter { $0.loadGenerator == .muxlab }
        let wrkLoad = loads.filter { $0.loadGenerator == .wrk }
        if !muxlabLoad.isEmpty && !wrkLoad.isEmpty {
            let ours = side("muxlab load", muxlabLoad), reference = side("wrk", wrkLoad)
            out.append(Comparison(title: "load generator against nginx", ours: ours, reference: reference,
                                  rpsRatio: ratio(ours.rps, reference.rps), target: 1.1,
                                  cpuRatio: ratio(reference.clientCPUUsPerReq, ours.clientCPUUsPerReq),
                                  cpuRatioLabel: "load CPU µs/req, wrk / muxlab load"))
        }
        comparisons = out
        self.servers = everyServer
    }

    /// nil when results.csv holds none of the peers experiments.
    public static func load(directory: String) throws -> PeersReport? {
        guard let rows = try ResultRow.readIfPresent(directory: directory) else { return nil }
        let report = PeersReport(rows: rows)
        return report.comparisons.isEmpty && report.servers.isEmpty ? nil : report
    }

    /// What limited a run: the side whose CPU was saturated (server, load, both), from the medians.
    static func limit(_ s: Side) -> String {
        let server = (s.serverCPUUtil ?? 0) >= saturated, client = (s.clientCPUUtil ?? 0) >= saturated
        if s.serverCPUUtil == nil || s.clientCPUUtil == nil {
            if server || client { return server ? "server CPU" : "load CPU" }
            return "not known (a CPU figure is missing)"
        }
        switch (server, client) {
        case (true, true): return "both CPUs"
        case (true, false): return "server CPU"
        case (false, true): return "load CPU"
        default: return "neither CPU saturated"
        }
    }

    public var markdown: String {
        func f(_ v: Double?, _ digits: Int = 1) -> String { v.map { String(format: "%.\(digits)f", $0) } ?? "" }
        func rps(_ v: Double?) -> String { v.map { String(Int($0.rounded())) } ?? "" }
        var text = ""
        if servers.count > 1 {
            let nginxCPU = servers.first { $0.name == "nginx" }?.serverCPUUsPerReq
            text += "\nservers under the same wrk (medians; copies are bytes copied between user and kernel per request)\n\n"
            text += "| server | runs | req/s | p99 µs | server CPU µs/req | syscalls/req | copy bytes/req | nginx CPU / its CPU | limited by |\n"
            text += "|---|---|---|---|---|---|---|---|---|\n"
            for s in servers {
                let versus = s.name == "nginx" ? "1" : f(nginxCPU.flatMap { n in s.serverCPUUsPerReq.flatMap { $0 > 0 ? n / $0 : nil } }, 3)
                text += "| \(s.name) | \(s.runs) | \(rps(s.rps)) | \(f(s.p99Us, 0)) | \(f(s.serverCPUUsPerReq, 2)) | \(f(s.syscallsPerReq, 2)) | \(f(s.copyBytesPerReq, 0)) | \(versus) | \(PeersReport.limit(s)) |\n"
            }
        }
        for c in comparisons {
            text += "\n\(c.title): \(c.ours.name) vs \(c.reference.name) (medians of \(c.ours.runs) and \(c.reference.runs) runs)\n\n"
            text += "| side | req/s | p99 µs | server CPU µs/req | syscalls/req | server CPU util | load CPU util | load CPU µs/req | limited by | cells |\n"
            text += "|---|---|---|---|---|---|---|---|---|---|\n"
            for s in [c.ours, c.reference] {
                let cells = s.cells.map(String.init).joined(separator: " ")
                text += "| \(s.name) | \(rps(s.rps)) | \(f(s.p99Us, 0)) | \(f(s.serverCPUUsPerReq, 2)) | \(f(s.syscallsPerReq, 2)) | \(f(s.serverCPUUtil, 2)) | \(f(s.clientCPUUtil, 2)) | \(f(s.clientCPUUsPerReq, 2)) | \(PeersReport.limit(s)) | \(cells) |\n"
            }
            if let target = c.target {
                let met = c.rpsRatio.map { $0 >= target ? "meets" : "misses" } ?? "cannot judge"
                text += "\nreq/s ratio \(f(c.rpsRatio, 3)) (target ≥ \(f(target, 1)): \(met)); \(c.cpuRatioLabel) = \(f(c.cpuRatio, 3))\n"
            } else {
                text += "\nreq/s ratio \(f(c.rpsRatio, 3)) (a peer beside nginx: no target); \(c.cpuRatioLabel) = \(f(c.cpuRatio, 3))\n"
            }
            if c.rpsRatio != nil, PeersReport.limit(c.ours) == "load CPU" || PeersReport.limit(c.reference) == "load CPU" {
                if c.title.hasSuffix("server under wrk") {
                    text += "The load's CPU was saturated: requests/s measure wrk's capacity as much as the servers'; the CPU per request compares the servers.\n"
                }
            }
        }
        return text
    }

    /// Writes `peers.md` into the results directory; returns its path.
    public func write(to directory: String) throws -> String {
        let path = directory + "/peers.md"
        try PosixFile.writeAtomically(path, "# Peers: muxlab vs nginx, other peers' servers and wrk\n" + markdown)
        return path
    }
}
