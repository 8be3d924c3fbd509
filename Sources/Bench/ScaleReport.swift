import Foundation

/// Issue 7's scale figures, read from results.csv alone: every cell that held 10,000 connections or
/// more, with what it asked for and what it held, its errors, the memory per connection (server PSS,
/// the machine's slab growth) and the CPU per request on each side.
public struct ScaleReport {
    /// Cells from this many connections up are listed.
    public static let threshold = 10_000

    public let rows: [ResultRow]

    public init(rows: [ResultRow]) {
        self.rows = rows.filter { ($0.connections ?? 0) >= ScaleReport.threshold }
    }

    /// nil when results.csv has no cell of 10,000 connections or more.
    public static func load(directory: String) throws -> ScaleReport? {
        guard let rows = try ResultRow.readIfPresent(directory: directory) else { return nil }
        let report = ScaleReport(rows: rows)
        return report.rows.isEmpty ? nil : report
    }

    public var markdown: String {
        func f(_ value: Double?, _ digits: Int = 1) -> String { value.map { String(format: "%.\(digits)f", $0) } ?? "" }
        func n(_ value: Int?) -> String { value.map(String.init) ?? "" }
        var text = "| cell | experiment | connections asked | held (established) | errors (connect) | req/s | p99 µs | server PSS KiB/conn | slab KiB/conn | server CPU µs/req | server CPU util | load CPU util |\n"
        text += "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        for r in rows {
            let status = r.status == .ok ? "" : " (\(r.status.rawValue))"
            text += "| \(n(r.cell)) | \(r.experiment)\(status) | \(n(r.connections)) | \(n(r.connectionsEstablished)) | \(n(r.errors)) (\(n(r.errorsConnect))) | \(f(r.throughputRPS, 0)) | \(f(r.latencyP99Us, 0)) | \(f(r.serverPSSKBPerConn, 2)) | \(f(r.kernelSlabKBPerConn, 2)) | \(f(r.cpuUsPerReq, 1)) | \(f(r.serverCPUUtil, 2)) | \(f(r.clientCPUUtil, 2)) |\n"
        }
        return text
    }

    /// Writes `scale.md` into the results directory; returns its path.
    public func write(to directory: String) throws -> String {
        let path = directory + "/scale.md"
        try PosixFile.writeAtomically(path, "# Scale: cells of \(ScaleReport.threshold) connections or more\n\n" + markdown)
        return path
    }
}
