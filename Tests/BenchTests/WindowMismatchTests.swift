import Testing
@testable import Bench

/// A row whose load counted `load` requests over `seconds` and whose server answered `server` in its window.
private func counted(load: Int, server: Int, seconds: Double = 1) -> ResultRow {
    var row = ResultRow(experiment: "models", model: "multi-reactor", io: "epoll-et", protocol: "http")
    row.requests = load
    row.serverRequests = server
    row.durationS = seconds
    return row
}

@Suite("window mismatch: server and load count the same requests, within what the edges explain")
struct WindowMismatchTests {
    let cell = Cell(index: 1, experiment: "models", claims: [], io: "epoll-et", connections: 1, active: 1)

    @Test("1 % and one request per active connection, with windows of equal length")
    func equalWindows() {
        #expect(counted(load: 1271, server: 1259).windowMismatch(cell) == nil, "12 apart: 1 % (12.7) + 1 in flight")
        let why = counted(load: 1271, server: 1256).windowMismatch(cell)
        #expect(why?.contains("the server answered 1256 requests, the load counted 1271") == true, "\(why ?? "nil")")
    }

    @Test("a load window 3 ms longer than the server's may count what it completes in those 3 ms, and no more")
    func skewedEdges() {
        // A CI run: 1,271 requests in ~0.25 s (5,084/s), the load's window 3 ms longer: up to 16 more.
        let row = counted(load: 1271, server: 1256, seconds: 0.25)
        #expect(row.windowMismatch(cell, edgeGaps: (timing: 0.003, evidence: 0)) == nil)
        let far = counted(load: 1271, server: 1200, seconds: 0.25).windowMismatch(cell, edgeGaps: (timing: 0.003, evidence: 0))
        #expect(far?.contains("+ 16 in the 3 ms the two windows' lengths differ") == true, "\(far ?? "nil")")
    }
}

@Suite("bench --server-extra: flags added to every server, a cell's own setting wins")
struct ServerExtraTests {
    @Test("a flag the cell sets itself is left out with its value; the others are kept")
    func cellWins() {
        let extra = ["--compute-us", "2", "--alloc", "per-request"]
        #expect(RunnerOptions.extraFlags(extra, besides: ["--compute-us", "200"]) == ["--alloc", "per-request"])
        #expect(RunnerOptions.extraFlags(extra, besides: ["--compute-us=200"]) == ["--alloc", "per-request"])
        #expect(RunnerOptions.extraFlags(extra, besides: ["--copy", "staged"]) == extra)
        #expect(RunnerOptions.extraFlags(["--compute-us=2"], besides: ["--compute-us", "200"]).isEmpty)
    }
}
