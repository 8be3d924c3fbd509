import Foundation

/// A results file that cannot be read or written: names the path and, for
/// system errors, what failed and strerror ("out/results.csv: write: No space left on device").
public struct DataFileError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }

    static func system(_ path: String, _ operation: String, _ code: Int32 = errno) -> DataFileError {
        DataFileError("\(path): \(operation): \(String(cString: strerror(code)))")
    }
}

// MARK: - results.csv

/// `results.csv`: one row per cell, appended as each cell finishes.
/// Each row is one write() on an O_APPEND descriptor followed by fsync, so a
/// run killed half-way keeps every finished row.
public final class ResultsCSV: @unchecked Sendable {
    public let path: String
    private let file: AppendOnlyCSV

    /// Opens or creates the file (and its directory). Writes the header to a new
    /// or empty file; refuses a file whose header is not `ResultRow.columns`.
    public init(path: String) throws {
        self.path = path
        file = try AppendOnlyCSV(path: path, header: ResultRow.columns)
    }

    /// True when opening dropped an unfinished last line left by a killed run.
    public var droppedPartialLine: Bool { file.droppedPartialLine }

    public func append(_ row: ResultRow) throws {
        try file.append(lines: [row.fields()])
    }
}

// MARK: - syscalls.csv

/// `syscalls.csv`, long form: one line per (cell, syscall).
public final class SyscallsCSV: @unchecked Sendable {
    public static let columns = ["cell", "experiment", "syscall", "count", "total_ns", "errors", "eagain"]

    public let path: String
    private let file: AppendOnlyCSV

    public init(path: String) throws {
        self.path = path
        file = try AppendOnlyCSV(path: path, header: SyscallsCSV.columns)
    }

    public var droppedPartialLine: Bool { file.droppedPartialLine }

    /// Appends one cell's syscalls in a single write. `cell` is `String(cell.index)`,
    /// the `cell` column of results.csv.
    public typealias Entries = [(name: String, count: UInt64, totalNs: UInt64, errors: UInt64, eagain: UInt64)]

    public func append(cell: String, experiment: String, entries: Entries) throws {
        guard !entries.isEmpty else { return }
        try file.append(lines: entries.map {
            [cell, experiment, $0.name, String($0.count), String($0.totalNs), String($0.errors), String($0.eagain)]
        })
    }
}

/// An append-only CSV file with a fixed header.
final class AppendOnlyCSV {
    let path: String
    private let fd: Int32
    private(set) var droppedPartialLine = false

    init(path: String, header: [String]) throws {
        self.path = path
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try PosixFile.makeDirectories(directory) }
        let fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw DataFileError.system(path, "open") }
        self.fd = fd
        do {
            try prepare(header: header)
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    /// Writes the header to an empty file, checks it on a used one, and drops
    /// an unfinished last line (a row cut off by a crash was never finished).
    private func prepare(header: [String]) throws {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw DataFileError.system(path, "fstat") }
        guard info.st_size > 0 else {
            try write(CSVTable.line(header))
            try PosixFile.syncDirectory(of: path)
            return
        }
        let existing = try readFirstLine()
        guard existing == CSVTable.line(header) else {
            let found = CSVTable.parseRecords(existing).first?.fields ?? []
            let firstDifference = zip(found, header).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(found.count, header.count)
            let detail = firstDifference < found.count
                ? "column \(firstDifference + 1) is \"\(found[firstDifference])\", expected "
                    + (firstDifference < header.count ? "\"\(header[firstDifference])\"" : "no more columns")
                : "it has \(found.count) columns, expected \(header.count)"
            throw DataFileError("\(path): header differs from this muxlab's columns (\(detail)): write to a new directory or move the old file away")
        }
        var last: UInt8 = 0
        guard pread(fd, &last, 1, off_t(info.st_size - 1)) == 1 else { throw DataFileError.system(path, "read") }
        if last != UInt8(ascii: "\n") {
            let keep = try offsetAfterLastNewline(size: Int(info.st_size))
            guard ftruncate(fd, off_t(keep)) == 0 else { throw DataFileError.system(path, "ftruncate") }
            droppedPartialLine = true
        }
    }

    /// The header line including its newline ("" if the file has no newline yet).
    private func readFirstLine() throws -> String {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        var offset: off_t = 0
        while true {
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
            if n < 0 { throw DataFileError.system(path, "read") }
            if n == 0 { return String(decoding: bytes, as: UTF8.self) }
            if let newline = chunk[0..<n].firstIndex(of: UInt8(ascii: "\n")) {
                bytes += chunk[0...newline]
                return String(decoding: bytes, as: UTF8.self)
            }
            bytes += chunk[0..<n]
            offset += off_t(n)
        }
    }

    private func offsetAfterLastNewline(size: Int) throws -> Int {
        var end = size
        var chunk = [UInt8](repeating: 0, count: 4096)
        while end > 0 {
            let start = max(0, end - chunk.count)
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, end - start, off_t(start)) }
            guard n == end - start else { throw DataFileError.system(path, "read") }
            if let newline = chunk[0..<n].lastIndex(of: UInt8(ascii: "\n")) { return start + newline + 1 }
            end = start
        }
        return 0
    }

    func append(lines: [[String]]) throws {
        try write(lines.map(CSVTable.line).joined())
    }

    /// One write() for the whole text, then fsync; a short write is finished or reported.
    private func write(_ text: String) throws {
        var bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                throw DataFileError.system(path, "write")
            }
            done += n
        }
        bytes.removeAll()
        // EINVAL: a pipe or device that cannot sync (e.g. /dev/stdout); nothing to make durable.
        if fsync(fd) != 0 && errno != EINVAL { throw DataFileError.system(path, "fsync") }
    }
}

extension CSVTable {
    /// One CSV record with RFC 4180 quoting and a trailing newline. Line breaks
    /// inside a field become spaces so every record is one line (greppable, and
    /// a crash can only cut the last line).
    public static func line(_ fields: [String]) -> String {
        fields.map { field -> String in
            var text = field
            if text.contains(where: { $0 == "\n" || $0 == "\r" || $0 == "\r\n" }) {
                text = String(text.map { $0 == "\n" || $0 == "\r" || $0 == "\r\n" ? " " : $0 })
            }
            guard text.contains(where: { $0 == "," || $0 == "\"" }) else { return text }
            return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }.joined(separator: ",") + "\n"
    }
}

// MARK: - Reading

/// A CSV file read whole: the header and one dictionary per row.
/// `DIR/results.csv` of a run directory, with `columns` present: what `muxlab report` and `muxlab compare`
/// read. Errors name the directory or file and what is wrong.
public func readRunResults(_ directory: String, requiring columns: [String]) throws -> (path: String, table: CSVTable) {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) else {
        throw DataFileError("\(directory): no such directory")
    }
    guard isDirectory.boolValue else { throw DataFileError("\(directory): not a directory") }
    let path = directory + "/results.csv"
    guard FileManager.default.fileExists(atPath: path) else {
        throw DataFileError("\(path): no such file (run `muxlab bench` with --out \(directory) first)")
    }
    let table = try CSVTable.read(path: path)
    let missing = table.missingColumns(columns)
    guard missing.isEmpty else {
        throw DataFileError("\(path): missing column\(missing.count == 1 ? "" : "s") \(missing.joined(separator: ", ")) (every results.csv needs \(columns.joined(separator: ", ")))")
    }
    return (path, table)
}

public struct CSVTable: Equatable, Sendable {
    public let header: [String]
    public let rows: [[String: String]]

    public init(header: [String], rows: [[String: String]]) {
        self.header = header
        self.rows = rows
    }

    public static func read(path: String) throws -> CSVTable {
        try parse(try PosixFile.readText(path), path: path)
    }

    /// Parses RFC 4180 text (quoted fields may hold commas, quotes and line breaks;
    /// CRLF or LF line ends). Every row must have as many fields as the header.
    public static func parse(_ text: String, path: String = "<csv>") throws -> CSVTable {
        var records = parseRecords(text)
        guard !records.isEmpty else { throw DataFileError("\(path): empty file: no header") }
        if records[0].fields[0].hasPrefix("\u{FEFF}") { records[0].fields[0].removeFirst() }
        if let last = records.last, last.unterminated {
            throw DataFileError("\(path): line \(last.startLine): unterminated quoted field")
        }
        let header = records[0].fields
        var seen = Set<String>()
        for name in header where !seen.insert(name).inserted {
            throw DataFileError("\(path): header names column \"\(name)\" twice")
        }
        var rows: [[String: String]] = []
        for record in records.dropFirst() {
            if record.fields == [""] { continue }  // blank line
            guard record.fields.count == header.count else {
                throw DataFileError("\(path): line \(record.startLine): \(record.fields.count) fields, header has \(header.count)")
            }
            rows.append(Dictionary(uniqueKeysWithValues: zip(header, record.fields)))
        }
        return CSVTable(header: header, rows: rows)
    }

    /// Required columns that the header lacks, in the order given.
    public func missingColumns(_ required: [String]) -> [String] {
        let present = Set(header)
        return required.filter { !present.contains($0) }
    }

    /// One column's values, "" where a row has none.
    public func column(_ name: String) -> [String] {
        rows.map { $0[name] ?? "" }
    }

    struct Record {
        var fields: [String]
        /// Line where the record starts, 1-based.
        var startLine: Int
        /// The text ended inside a quoted field.
        var unterminated = false
    }

    static func parseRecords(_ text: String) -> [Record] {
        var records: [Record] = []
        var fields: [String] = []
        var field = [UInt8]()
        var inQuotes = false
        var line = 1
        var recordLine = 1
        var atFieldStart = true
        let bytes = Array(text.utf8)
        var i = 0
        func endField() {
            fields.append(String(decoding: field, as: UTF8.self))
            field.removeAll(keepingCapacity: true)
            atFieldStart = true
        }
        func endRecord() {
            endField()
            records.append(Record(fields: fields, startLine: recordLine))
            fields.removeAll()
        }
        while i < bytes.count {
            let byte = bytes[i]
            if inQuotes {
                if byte == UInt8(ascii: "\"") {
                    if i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: "\"") {
                        field.append(byte)
                        i += 1
                    } else {
                        inQuotes = false
                    }
                } else {
                    if byte == UInt8(ascii: "\n") { line += 1 }
                    field.append(byte)
                }
            } else {
                switch byte {
                case UInt8(ascii: "\""):
                    if atFieldStart { inQuotes = true; atFieldStart = false } else { field.append(byte) }
                case UInt8(ascii: ","):
                    endField()
                case UInt8(ascii: "\r") where i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: "\n"):
                    break  // the \n ends the record
                case UInt8(ascii: "\n"):
                    endRecord()
                    line += 1
                    recordLine = line
                default:
                    field.append(byte)
                    atFieldStart = false
                }
            }
            i += 1
        }
        if inQuotes {
            endField()
            records.append(Record(fields: fields, startLine: recordLine, unterminated: true))
        } else if !field.isEmpty || !fields.isEmpty {
            endRecord()
        }
        return records
    }
}

// MARK: - POSIX file helpers

/// Small file operations whose errors name the path and strerror.
enum PosixFile {
    /// Reads a whole UTF-8 text file; errors name the path and strerror.
    static func readText(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DataFileError.system(path, "cannot open") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw DataFileError.system(path, "cannot read")
            }
            if n == 0 { break }
            bytes += chunk[0..<n]
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw DataFileError("\(path): not UTF-8 text")
        }
        return text
    }

    /// mkdir -p; errors name the directory that could not be made.
    static func makeDirectories(_ path: String) throws {
        var info = stat()
        if stat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else { throw DataFileError.system(path, "mkdir", ENOTDIR) }
            return
        }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty && parent != path { try makeDirectories(parent) }
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw DataFileError.system(path, "mkdir") }
    }

    /// fsync the directory holding `path`, so a new or renamed entry survives a crash.
    static func syncDirectory(of path: String) throws {
        var directory = (path as NSString).deletingLastPathComponent
        if directory.isEmpty { directory = "." }
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }  // not a directory we can open (e.g. /dev): nothing to sync
        defer { close(fd) }
        if fsync(fd) != 0 && errno != EINVAL { throw DataFileError.system(directory, "fsync") }
    }
}

// MARK: - timeline.csv

/// `timeline.csv`: the server sampled every `timeline` seconds during a cell (cells that ask for it).
/// Counters are cumulative since the cell's first sample; fds and RSS are instantaneous.
/// One row of `timeline.csv`: a server sampled during a cell. The columns are this struct's `schema`,
/// read back (the stability report) through the same list that writes them.
public struct TimelineSample: Equatable, Sendable {
    public var cell: Int
    public var experiment: String
    public var label: String
    /// Seconds since the cell's first sample.
    public var seconds: Double
    /// The load's phase: connect, warmup, measure, done.
    public var phase: String
    public var cpuSeconds: Double?
    /// Kernel counters since the evidence window's first sample (empty with probes off).
    public var muxCalls: UInt64?
    public var acceptCalls: UInt64?
    public var syscalls: UInt64?
    public var fds: Int?
    public var rssKB: Int?

    public init(cell: Int, experiment: String, label: String, seconds: Double, phase: String, cpuSeconds: Double? = nil,
                muxCalls: UInt64? = nil, acceptCalls: UInt64? = nil, syscalls: UInt64? = nil, fds: Int? = nil, rssKB: Int? = nil) {
        self.cell = cell
        self.experiment = experiment
        self.label = label
        self.seconds = seconds
        self.phase = phase
        self.cpuSeconds = cpuSeconds
        self.muxCalls = muxCalls
        self.acceptCalls = acceptCalls
        self.syscalls = syscalls
        self.fds = fds
        self.rssKB = rssKB
    }

    /// A column: its name, how it prints, how it parses (nil: malformed).
    struct Column {
        let name: String
        let text: (TimelineSample) -> String
        let parse: (inout TimelineSample, String) -> Bool
    }

    static func required<T>(_ name: String, _ path: WritableKeyPath<TimelineSample, T>, _ show: @escaping (T) -> String,
                            _ read: @escaping (String) -> T?) -> Column {
        Column(name: name, text: { show($0[keyPath: path]) }, parse: { sample, text in
            guard let value = read(text) else { return false }
            sample[keyPath: path] = value
            return true
        })
    }

    static func optional<T>(_ name: String, _ path: WritableKeyPath<TimelineSample, T?>, _ show: @escaping (T) -> String,
                            _ read: @escaping (String) -> T?) -> Column {
        Column(name: name, text: { $0[keyPath: path].map(show) ?? "" }, parse: { sample, text in
            guard let value = read(text) else { return false }
            sample[keyPath: path] = value
            return true
        })
    }

    static let schema: [Column] = [
        required("cell", \.cell, String.init, { Int($0) }),
        required("experiment", \.experiment, { $0 }, { $0 }),
        required("label", \.label, { $0 }, { $0 }),
        required("t_s", \.seconds, formatDecimal, { Double($0) }),
        required("phase", \.phase, { $0 }, { $0 }),
        optional("server_cpu_s", \.cpuSeconds, formatDecimal, { Double($0) }),
        optional("mux_calls", \.muxCalls, { String($0) }, { UInt64($0) }),
        optional("accept_calls", \.acceptCalls, { String($0) }, { UInt64($0) }),
        optional("syscalls", \.syscalls, { String($0) }, { UInt64($0) }),
        optional("server_fds", \.fds, String.init, { Int($0) }),
        optional("server_rss_kb", \.rssKB, String.init, { Int($0) }),
    ]

    /// The columns every timeline file must have.
    static let identifying = ["cell", "label", "t_s", "phase"]
    /// The ones no row may leave empty (a cell's label is empty when nothing in its experiment varies).
    static let nonEmpty = ["cell", "t_s", "phase"]

    /// A row read back; an empty optional column stays nil, a malformed one throws naming it.
    public init(record: [String: String]) throws {
        self.init(cell: 0, experiment: "", label: "", seconds: 0, phase: "")
        for column in Self.schema {
            guard let text = record[column.name], !text.isEmpty else {
                if Self.nonEmpty.contains(column.name) { throw DataFileError("timeline column \(column.name) is empty") }
                continue
            }
            guard column.parse(&self, text) else { throw DataFileError("timeline column \(column.name) = \"\(text)\": not a number") }
        }
    }

    var fields: [String] { Self.schema.map { $0.text(self) } }
}

public final class TimelineCSV: @unchecked Sendable {
    public static let columns = TimelineSample.schema.map(\.name)

    public let path: String
    private let file: AppendOnlyCSV

    public init(path: String) throws {
        self.path = path
        file = try AppendOnlyCSV(path: path, header: TimelineCSV.columns)
    }

    /// One sample; nil figures print empty (e.g. kernel counters with probes off).
    public func append(_ sample: TimelineSample) throws {
        try file.append(lines: [sample.fields])
    }
}
