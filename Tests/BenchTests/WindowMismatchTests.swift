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

    @Test("1 % and two requests per active connection, counts read at one instant")
    func equalWindows() {
        #expect(counted(load: 1271, server: 1257).windowMismatch(cell) == nil, "14 apart: 1 % (12.7) + 2 in flight or unpublished")
        let why = counted(load: 1271, server: 1256).windowMismatch(cell)
        #expect(why?.contains("the server answered 1256 requests, the load counted 1271") == true, "\(why ?? "nil")")
    }

    @Test("counts read 3 ms apart may differ by what completes in those 3 ms, and no more")
    func readingsApart() {
        // 1,271 requests in 0.25 s (5,084/s), the two sides read 3 ms apart in all: up to 16 more.
        let row = counted(load: 1271, server: 1250, seconds: 0.25)
        #expect(row.windowMismatch(cell, apart: (timing: 0.003, evidence: 0)) == nil)
        let far = counted(load: 1271, server: 1200, seconds: 0.25).windowMismatch(cell, apart: (timing: 0.003, evidence: 0))
        #expect(far?.contains("+ 16 in the 3 ms between the two sides' readings") == true, "\(far ?? "nil")")
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
