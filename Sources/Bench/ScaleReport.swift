import Foundation

/// Issue 7's scale figures, read from results.csv alone: every cell that held 10,000 connections or
/// more, with what it asked for and what it held, its errors, the memory per connection (server PSS,
/// the machine's slab growth) and the CPU per request on each side.
public struct ScaleReport {
    /// Cells from this many connections up are listed.
    public static let threshold = 10_000

    public let rows: [[String: String]]

    public init(rows: [[String: String]]) {
        self.rows = rows.filter { ($0["connections"].flatMap { Int($0) } ?? 0) >= ScaleReport.threshold }
    }

    /// nil when results.csv has no cell of 10,000 connections or more.
    public static func load(directory: String) throws -> ScaleReport? {
        let path = directory + "/results.csv"
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let report = ScaleReport(rows: try CSVTable.read(path: path).rows)
        return report.rows.isEmpty ? nil : report
    }

    public var markdown: String {
        func f(_ r: [String: String], _ column: String, _ digits: Int = 1) -> String {
            r[column].flatMap { Double($0) }.map { String(format: "%.\(digits)f", $0) } ?? ""
        }
        var text = "| cell | experiment | connections asked | held (established) | errors (connect) | req/s | p99 µs | server PSS KiB/conn | slab KiB/conn | server CPU µs/req | server CPU util | load CPU util |\n"
        text += "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        for r in rows {
            let status = r["status"] == "ok" ? "" : " (\(r["status"] ?? ""))"
            text += "| \(r["cell"] ?? "") | \(r["experiment"] ?? "")\(status) | \(r["connections"] ?? "") | \(r["connections_established"] ?? "") | \(r["errors"] ?? "") (\(r["errors_connect"] ?? "")) | \(f(r, "throughput_rps", 0)) | \(f(r, "latency_p99_us", 0)) | \(f(r, "server_pss_kb_per_conn", 2)) | \(f(r, "kernel_slab_kb_per_conn", 2)) | \(f(r, "cpu_us_per_req", 1)) | \(f(r, "server_cpu_util", 2)) | \(f(r, "client_cpu_util", 2)) |\n"
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
