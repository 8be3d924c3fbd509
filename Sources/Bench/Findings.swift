import Foundation

/// A claim's verdict in the findings report.
public enum Verdict: String, Sendable, CaseIterable {
    case supported
    case refuted
    case inconclusive
    /// No row of results.csv names the claim.
    case notRun = "not run"
    /// The rows ran, but this machine cannot show the claim either way; the evidence names what is needed
    /// (more cores, a lighter load). Never noise dressed as a verdict: that is `inconclusive`.
    case notTestable = "not testable here"
}

/// One line of the findings: a claim, its verdict, the numbers behind it and the cells they came from.
public struct Finding: Equatable, Sendable {
    public var claim: String
    public var verdict: Verdict
    public var evidence: String
    /// `cell` numbers of the rows used.
    public var cells: [Int]

    public init(claim: String, verdict: Verdict, evidence: String, cells: [Int] = []) {
        self.claim = claim
        self.verdict = verdict
        self.evidence = evidence
        self.cells = cells
    }
}

/// The claims muxlab decides (docs/claims.md, generated from these and the rules), each in one sentence.
public enum Claims {
    public static let all: [(id: String, text: String)] = [
        ("M1", "select watches at most FD_SETSIZE = 1024 descriptors per process."),
        ("M2", "select/poll copy the whole interest set into the kernel on every call, so cost grows with total fds."),
        ("M3", "select/poll hand back the whole set and the app rescans it: O(total) per wake-up."),
        ("M4", "epoll cost depends on active connections, not total."),
        ("M5", "With few connections, all of them active, epoll can be slower than select/poll."),
        ("M6", "epoll uses mmap / shared memory to avoid copying events (myth)."),
        ("M7", "poll behaves like epoll ET (myth: poll is level-triggered)."),
        ("M8", "select past 1,024 descriptors needs a process per 1,024 connections (a million would need about a thousand), and switching between them costs."),
        ("E1", "LT with EPOLLOUT registered at accept time busy-loops."),
        ("E2", "ET must read until EAGAIN or events are lost, so it costs one extra read per wake-up but fewer epoll_wait calls."),
        ("E3", "ET requires non-blocking descriptors."),
        ("E4", "accept under EMFILE busy-loops in LT, the reserve-descriptor trick fixes it, and ET instead silently stops accepting."),
        ("E5", "epoll keeps its descriptors in a red-black tree: insert, find and delete cost O(log N)."),
        ("K1", "Data copies cost: every copy between buffers and across the kernel boundary."),
        ("K2", "Context switches cost: on one core a reactor beats many threads; on many cores threads help only up to a point."),
        ("K3", "Memory allocation costs: use pools, avoid asking the OS."),
        ("K4", "Lock contention costs: design locks away."),
        ("C1", "An iterative server serves one client at a time: short connections only."),
        ("C2", "Thread (process) per connection: concurrency is limited by threads and switches grow with connections."),
        ("C3", "Prefork/prethreaded accept has a thundering herd."),
        ("C4", "A single reactor cannot use more than one core."),
        ("C5", "Reactor + thread pool suits CPU-heavy requests; the I/O thread must do the sending."),
        ("C6", "Multiple reactors (one loop per thread) scale with cores / NICs."),
        ("C7", "Multiple reactors + thread pool (model 9) is the best general model."),
        ("C8", "A proactor (async I/O) is in theory more efficient, and Linux lacked mature async I/O (outdated: io_uring)."),
        ("C9", "Thread pool size T = C / P (C cores, P compute fraction)."),
        ("T1", "A process holds about 300 threads, so thread-per-connection tops out near 300 connections (32-bit, 10 MB stacks; outdated on 64-bit)."),
        ("L1", "Servers that pull work balance better than a dispatcher that pushes it round-robin."),
        ("H1", "A write to a peer that has reset raises SIGPIPE and kills a server that does not ignore it."),
        ("H2", "The side that closes first holds TIME_WAIT; servers should let clients close."),
        ("H3", "Idle connections must be reaped by a timeout or they hold resources."),
        ("S1", "1 GB of memory holds about 100,000 connections, 2 GB about 200,000."),
    ]

    public static func text(of id: String) -> String? {
        all.first { $0.id == id }?.text
    }
}

/// One line of syscalls.csv: a syscall's count in one cell's window.
public struct SyscallCount: Equatable, Sendable {
    public var cell: Int
    public var syscall: String
    public var count: Int

    public init(cell: Int, syscall: String, count: Int) {
        self.cell = cell
        self.syscall = syscall
        self.count = count
    }
}

/// The findings of one results directory: a verdict per claim, built from the CSV files alone.
public struct FindingsReport {
    /// Columns without which rows cannot be told apart or mapped to claims.
    public static let identifyingColumns = ["experiment", "claims", "io", "status"]

    public let findings: [Finding]
    /// Where the rows came from, printed in findings.md.
    public var source: String
    let rows: [ResultRow]

    /// - Parameters:
    ///   - columns: the header of results.csv; a rule whose columns are not all in it is inconclusive.
    ///   - syscalls: syscalls.csv, nil when the file was absent.
    public init(rows: [ResultRow], syscalls: [SyscallCount]? = nil, columns: [String] = ResultRow.columns, source: String = "") {
        self.rows = rows
        self.source = source
        let present = Set(columns)
        findings = Claims.all.map { claim in
            let claimed = rows.filter { $0.claims.contains(claim.id) }
            guard !claimed.isEmpty else {
                return Finding(claim: claim.id, verdict: .notRun, evidence: "no rows for \(claim.id) in results.csv")
            }
            guard let rule = ClaimRule.rule(for: claim.id) else {
                return Finding(claim: claim.id, verdict: .inconclusive,
                               evidence: "no rule for \(claim.id) yet (\(statusSummary(claimed)))", cells: cellNumbers(claimed))
            }
            let missing = rule.columns.filter { !present.contains($0) }
            guard missing.isEmpty else {
                return Finding(claim: claim.id, verdict: .inconclusive,
                               evidence: "results.csv lacks column\(missing.count == 1 ? "" : "s") \(missing.joined(separator: ", ")) that this rule reads",
                               cells: cellNumbers(claimed))
            }
            var finding = rule.decide(ClaimRows(claim: claim.id, rows: claimed, allRows: rows, syscalls: syscalls))
            let uncounted = claimed.filter { $0.status != .ok && !finding.cells.contains($0.cell ?? -1) }
            if !uncounted.isEmpty { finding.evidence += "; not counted: " + statusSummary(uncounted).dropFirst("rows: ".count) }
            return finding
        }
    }

    /// Reads DIR/results.csv and, when present, DIR/syscalls.csv. Nothing else: never the live system.
    public static func load(directory: String) throws -> FindingsReport {
        let (resultsPath, table) = try readRunResults(directory, requiring: identifyingColumns)
        let rows = try ResultRow.rows(of: table, path: resultsPath)
        let syscallsPath = directory + "/syscalls.csv"
        let syscalls = FileManager.default.fileExists(atPath: syscallsPath) ? try readSyscalls(path: syscallsPath) : nil
        return FindingsReport(rows: rows, syscalls: syscalls, columns: table.header, source: directory)
    }

    static func readSyscalls(path: String) throws -> [SyscallCount] {
        let table = try CSVTable.read(path: path)
        let missing = table.missingColumns(["cell", "syscall", "count"])
        guard missing.isEmpty else {
            throw DataFileError("\(path): missing column\(missing.count == 1 ? "" : "s") \(missing.joined(separator: ", "))")
        }
        return try table.rows.enumerated().map { index, record in
            guard let cell = Int(record["cell"]!), let count = Int(record["count"]!) else {
                throw DataFileError("\(path): row \(index + 1): cell and count must be integers")
            }
            return SyscallCount(cell: cell, syscall: record["syscall"]!, count: count)
        }
    }

    // MARK: Output

    /// The findings as a markdown table: id, claim, verdict, evidence.
    public var table: String {
        var lines = ["| id | claim | verdict | evidence |", "|---|---|---|---|"]
        for finding in findings {
            let cells = [finding.claim, Claims.text(of: finding.claim) ?? "", "**\(finding.verdict.rawValue)**", finding.evidence]
            lines.append("| " + cells.map(markdownCell).joined(separator: " | ") + " |")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// findings.md: title, source, host/kernel/commit, the table, and how each verdict is decided.
    public var markdown: String {
        var text = "# muxlab findings\n\n"
        text += source.isEmpty ? "Source: rows given in code" : "Source: `\(source)/results.csv`"
        text += " (\(rows.count) rows; \(statusSummary(rows).dropFirst("rows: ".count)))\n\n"
        for (name, values) in [("Host", rows.compactMap(\.host)), ("Kernel", rows.compactMap(\.kernel)), ("Commit", rows.compactMap(\.commit))] {
            let distinct = orderedDistinct(values)
            text += "- \(name): \(distinct.isEmpty ? "not recorded" : distinct.joined(separator: ", "))\n"
        }
        let known = Set(Claims.all.map(\.id))
        let unknown = orderedDistinct(rows.flatMap(\.claims).filter { !known.contains($0) })
        if !unknown.isEmpty { text += "- Rows name claims not in CLAIMS.md: \(unknown.joined(separator: ", "))\n" }
        text += "\n" + table + "\n"
        text += "## How each verdict is decided\n\n"
        text += "Only rows with status `ok` are data. Rows that differ only in `repeat` are one variant: "
        text += "a figure is the median of its samples. How a comparison is decided: " + Noise.method + ". "
        text += "A threshold on one variant (a count at least 1, a rate below 50 per second) must hold in every run. "
        text += "Linear growth is measured from the smallest connection count of at least \(linearBaselineConnections) when the series has one.\n\n"
        text += "| id | reads | verdict when |\n|---|---|---|\n"
        for rule in ClaimRule.all {
            text += "| " + [rule.claim, rule.metric, rule.threshold].map(markdownCell).joined(separator: " | ") + " |\n"
        }
        text += "\nThe numbers these rules decide by, from the rules' data (`Threshold` in Sources/Bench/Thresholds.swift):\n\n"
        text += thresholdTable(ClaimRule.all, withClaim: true)
        let unruled = Claims.all.map(\.id).filter { ClaimRule.rule(for: $0) == nil }
        if !unruled.isEmpty {
            text += "\nNo rule yet (inconclusive when rows exist, `not run` otherwise): \(unruled.joined(separator: ", ")).\n"
        }
        return text
    }

    /// findings.csv: claim, verdict, claim_text, evidence, rows (the cells used, space-separated).
    public var csv: String {
        CSVTable.line(["claim", "verdict", "claim_text", "evidence", "rows"])
            + findings.map { finding in
                CSVTable.line([finding.claim, finding.verdict.rawValue, Claims.text(of: finding.claim) ?? "", finding.evidence,
                               finding.cells.map(String.init).joined(separator: " ")])
            }.joined()
    }

    /// Writes DIR/findings.md and DIR/findings.csv, each through a temporary file and a rename.
    /// Returns the two paths.
    @discardableResult
    public func write(to directory: String) throws -> [String] {
        let paths = [directory + "/findings.md", directory + "/findings.csv"]
        try PosixFile.writeAtomically(paths[0], markdown)
        try PosixFile.writeAtomically(paths[1], csv)
        return paths
    }
}

/// One table cell: no line breaks, pipes escaped.
func markdownCell(_ text: String) -> String {
    text.replacingOccurrences(of: "\r", with: " ")
        .replacingOccurrences(of: "\n", with: " ")
        .replacingOccurrences(of: "|", with: "\\|")
}

func orderedDistinct(_ values: [String]) -> [String] {
    var seen = Set<String>()
    return values.filter { !$0.isEmpty && seen.insert($0).inserted }
}

extension PosixFile {
    /// Writes `text` to a temporary file beside `path`, fsyncs it and renames it over
    /// `path`: a reader sees the old file or the new one, never half of one.
    static func writeAtomically(_ path: String, _ text: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        let temporary = (directory.isEmpty ? "" : directory + "/") + ".\(name).tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw DataFileError.system(temporary, "open") }
        var bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                let code = errno
                close(fd)
                unlink(temporary)
                throw DataFileError.system(temporary, "write", code)
            }
            done += n
        }
        bytes.removeAll()
        if fsync(fd) != 0 {
            let code = errno
            close(fd)
            unlink(temporary)
            throw DataFileError.system(temporary, "fsync", code)
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw DataFileError.system(path, "rename", code)
        }
        try syncDirectory(of: path)
    }
}
