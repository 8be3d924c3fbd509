import Bench

/// Fixtures write one row per variant for brevity; a verdict needs an interval, which needs 2 or more samples a
/// side. `twoRuns` gives every variant that has one row a second, identical run (repeat 2): a variant measured
/// twice with no spread, so the rules decide on the figures the fixture wrote. Variants given with several
/// repeats keep them as they are; a test of what one run decides passes its rows as they are.
func twoRuns(_ rows: [ResultRow]) -> [ResultRow] {
    func key(_ r: ResultRow) -> String {
        [r.experiment, r.model, r.io, r.protocol, "\(r.connections ?? -1)", "\(r.active ?? -1)", "\(r.workers ?? -1)",
         "\(r.reactors ?? -1)", "\(r.messageBytes ?? -1)", "\(r.targetRPS ?? -1)", r.serverArgs.joined(separator: " "),
         r.loadArgs.joined(separator: " "), r.status.rawValue, r.claims.joined(separator: " ")].joined(separator: "|")
    }
    var counts: [String: Int] = [:]
    for r in rows { counts[key(r), default: 0] += 1 }
    var out: [ResultRow] = []
    for r in rows {
        out.append(r)
        if counts[key(r)] == 1 && r.status == .ok {
            var second = r
            second.repetition = (r.repetition ?? 1) + 1
            // The same cell number: the evidence's cell list names the fixture's rows as written.
            out.append(second)
        }
    }
    return out
}
