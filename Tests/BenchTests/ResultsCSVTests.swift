import Foundation
import Testing
import Bench

/// The contract columns of DESIGN.md, in order.
private let contractColumns = """
    experiment, model, io, reactors, workers, protocol, connections, active,
    message_bytes, target_rps, duration_s, requests, errors, throughput_rps,
    latency_p50_us, latency_p99_us, latency_p999_us, latency_max_us,
    server_cpu_s, cpu_us_per_req, syscalls_per_req, mux_calls_per_req,
    fdset_bytes_per_req, copy_bytes_per_req, ctx_switches_per_req,
    involuntary_switches_per_req, wakeups_per_req, mallocs_per_req,
    page_faults, futex_waits_per_req, futex_wait_us_per_req,
    lock_contentions_per_req, server_cpus, client_cpus, numa_node, kernel
    """.split(whereSeparator: { $0 == "," || $0 == "\n" || $0 == " " }).map(String.init)

private func sampleCell() -> Cell {
    Cell(index: 3, experiment: "idle-scaling", claims: ["M2", "M4"], io: "poll", connections: 100, active: 10,
         varied: ["io", "connections"])
}

@Suite("results.csv and syscalls.csv")
struct ResultsCSVTests {
    @Test("columns start with the DESIGN.md contract, then muxlab's own")
    func columns() {
        #expect(contractColumns.count == 36)
        #expect(Array(ResultRow.columns.prefix(36)) == contractColumns)
        #expect(Array(ResultRow.columns.dropFirst(36).prefix(5)) == ["cell", "claims", "label", "server_args", "status"])
        // New columns are appended after the provenance ones, so older readers keep their positions.
        #expect(ResultRow.columns.firstIndex(of: "started_at")! < ResultRow.columns.firstIndex(of: "mux_calls_per_s")!)
        #expect(ResultRow.columns.firstIndex(of: "stall_call")! < ResultRow.columns.firstIndex(of: "load_args")!)
        #expect(ResultRow.columns.firstIndex(of: "server_command")! < ResultRow.columns.firstIndex(of: "topology")!)
        #expect(Set(ResultRow.columns).count == ResultRow.columns.count)
        #expect(ResultRow(cell: sampleCell()).fields().count == ResultRow.columns.count)
    }

    @Test("a row from a cell carries its parameters; unmeasured figures print empty, never 0")
    func emptyFigures() throws {
        let row = ResultRow(cell: sampleCell())
        #expect(row[column: "experiment"] == "idle-scaling")
        #expect(row[column: "io"] == "poll")
        #expect(row[column: "connections"] == "100")
        #expect(row[column: "active"] == "10")
        #expect(row[column: "message_bytes"] == "64")
        #expect(row[column: "target_rps"] == "")
        #expect(row[column: "duration_s"] == "5")
        #expect(row[column: "server_cpus"] == "1")
        #expect(row[column: "cell"] == "3")
        #expect(row[column: "claims"] == "M2 M4")
        #expect(row[column: "label"] == "io=poll connections=100")
        #expect(row[column: "status"] == "ok")
        for column in ["requests", "errors", "throughput_rps", "latency_p99_us", "mallocs_per_req", "page_faults",
                       "numa_node", "kernel", "reason", "started_at"] {
            #expect(row[column: column] == "", "\(column)")
        }
        #expect(row[column: "no_such_column"] == nil)

        var open = ResultRow(cell: Cell(rate: 5000))
        open.requests = 0
        #expect(open[column: "target_rps"] == "5000")
        #expect(open[column: "requests"] == "0")
    }

    @Test("doubles print with up to 3 decimals, no exponent, trailing zeros trimmed")
    func decimals() {
        #expect(formatDecimal(12.5) == "12.5")
        #expect(formatDecimal(0.003) == "0.003")
        #expect(formatDecimal(1200) == "1200")
        #expect(formatDecimal(1.23456) == "1.235")
        #expect(formatDecimal(-0.0001) == "0")
        #expect(formatDecimal(1e20) == "100000000000000000000")
        #expect(formatDecimal(.nan) == "")
        #expect(formatDecimal(.infinity) == "")
    }

    @Test("fields with commas, quotes and line breaks are quoted, and the reader gets them back")
    func quoting() throws {
        #expect(CSVTable.line(["a,b", "say \"hi\"", "plain", ""]) == "\"a,b\",\"say \"\"hi\"\"\",plain,\n")
        #expect(CSVTable.line(["two\nlines"]) == "two lines\n")

        let scratch = try ScratchDirectory()
        let csv = try ResultsCSV(path: scratch.path + "/out/results.csv")
        var row = ResultRow(cell: sampleCell())
        row.status = .failed
        row.reason = "server said \"no\", then exited"
        try csv.append(row)
        let table = try CSVTable.read(path: csv.path)
        #expect(table.rows.count == 1)
        #expect(table.rows[0]["reason"] == "server said \"no\", then exited")
        #expect(table.rows[0]["status"] == "failed")
    }

    @Test("rows read back into equal ResultRows")
    func roundTrip() throws {
        let scratch = try ScratchDirectory()
        let csv = try ResultsCSV(path: scratch.path + "/results.csv")
        var measured = ResultRow(cell: sampleCell())
        measured.requests = 123_456
        measured.errors = 0
        measured.throughputRPS = 24_691.2
        measured.latencyP50Us = 38.125
        measured.cpuUsPerReq = 4.5
        measured.pageFaults = 12
        measured.kernel = "6.18.0"
        measured.serverArgs = ["--epollout", "always"]
        measured.startedAt = Date(timeIntervalSince1970: 1_750_000_000)
        measured.probeStatus = "on"
        var notApplicable = ResultRow(cell: Cell(index: 4, experiment: "fd-limit", io: "select", connections: 2000))
        notApplicable.status = .notApplicable
        notApplicable.reason = "select cannot watch more than FD_SETSIZE = 1024 descriptors"
        try csv.append(measured)
        try csv.append(notApplicable)

        let table = try CSVTable.read(path: csv.path)
        #expect(table.header == ResultRow.columns)
        #expect(table.missingColumns(contractColumns).isEmpty)
        #expect(table.missingColumns(["experiment", "verdict", "io", "bogus"]) == ["verdict", "bogus"])
        #expect(try table.rows.map(ResultRow.init(record:)) == [measured, notApplicable])
        #expect(table.rows[0]["started_at"] == "2025-06-15T15:06:40Z")
        #expect(table.column("status") == ["ok", "not-applicable"])
    }

    @Test("appending after reopening keeps the earlier rows and writes the header once")
    func reopen() throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path + "/results.csv"
        try ResultsCSV(path: path).append(ResultRow(cell: Cell(index: 1)))
        try ResultsCSV(path: path).append(ResultRow(cell: Cell(index: 2)))
        let table = try CSVTable.read(path: path)
        #expect(table.column("cell") == ["1", "2"])
        let text = try scratch.read("results.csv")
        #expect(text.components(separatedBy: "experiment,model,io").count == 2)
    }

    @Test("a row cut off by a crash is dropped when the file is reopened")
    func partialLine() throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path + "/results.csv"
        try ResultsCSV(path: path).append(ResultRow(cell: Cell(index: 1)))
        let handle = try #require(FileHandle(forWritingAtPath: path))
        handle.seekToEndOfFile()
        handle.write(Data("adhoc,reactor,epo".utf8))
        handle.closeFile()
        let csv = try ResultsCSV(path: path)
        #expect(csv.droppedPartialLine)
        try csv.append(ResultRow(cell: Cell(index: 2)))
        #expect(try CSVTable.read(path: path).column("cell") == ["1", "2"])
    }

    @Test("an existing file with another header is refused, naming the file")
    func headerMismatch() throws {
        let scratch = try ScratchDirectory()
        let path = try scratch.write("results.csv", "experiment,model,io,threads\nx,reactor,poll,1\n")
        #expect(throws: DataFileError("\(path): header differs from this muxlab's columns (column 4 is \"threads\", expected \"reactors\"): write to a new directory or move the old file away")) {
            try ResultsCSV(path: path)
        }
        #expect(try scratch.read("results.csv") == "experiment,model,io,threads\nx,reactor,poll,1\n")
    }

    @Test("an empty existing file gets the header")
    func emptyFile() throws {
        let scratch = try ScratchDirectory()
        let path = try scratch.write("results.csv", "")
        _ = try ResultsCSV(path: path)
        #expect(try CSVTable.read(path: path).header == ResultRow.columns)
    }

    @Test("a full disk or an unusable directory is an error naming the path and strerror")
    func systemErrors() throws {
        #expect(throws: DataFileError("/dev/full: write: No space left on device")) {
            try ResultsCSV(path: "/dev/full")
        }
        let scratch = try ScratchDirectory()
        let file = try scratch.write("plain-file", "x")
        #expect(throws: DataFileError("\(file): mkdir: Not a directory")) {
            try ResultsCSV(path: file + "/run/results.csv")
        }
    }

    @Test("syscalls.csv is long form, one line per syscall, appended per cell")
    func syscalls() throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path + "/syscalls.csv"
        let csv = try SyscallsCSV(path: path)
        try csv.append(cell: "1", experiment: "idle-scaling", entries: [
            (name: "epoll_wait", count: 1000, totalNs: 180_000, errors: 0, eagain: 0),
            (name: "read", count: 2000, totalNs: 134_000, errors: 1000, eagain: 1000),
        ])
        try csv.append(cell: "2", experiment: "idle-scaling", entries: [])
        try SyscallsCSV(path: path).append(cell: "2", experiment: "idle-scaling", entries: [
            (name: "select", count: 5, totalNs: 1_450, errors: 0, eagain: 0),
        ])
        #expect(try scratch.read("syscalls.csv") == """
            cell,experiment,syscall,count,total_ns,errors,eagain
            1,idle-scaling,epoll_wait,1000,180000,0,0
            1,idle-scaling,read,2000,134000,1000,1000
            2,idle-scaling,select,5,1450,0,0

            """)
    }

    @Test("the reader handles quoted line breaks and CRLF, and reports broken files with a line number")
    func reader() throws {
        let table = try CSVTable.parse("a,b\r\n\"x\ny\",\"\"\"q\"\"\"\r\n1,\r\n")
        #expect(table.header == ["a", "b"])
        #expect(table.rows == [["a": "x\ny", "b": "\"q\""], ["a": "1", "b": ""]])

        #expect(throws: DataFileError("t.csv: line 3: 1 fields, header has 2")) {
            try CSVTable.parse("a,b\n1,2\n3\n", path: "t.csv")
        }
        #expect(throws: DataFileError("t.csv: line 2: unterminated quoted field")) {
            try CSVTable.parse("a,b\n1,\"open\n", path: "t.csv")
        }
        #expect(throws: DataFileError("t.csv: empty file: no header")) {
            try CSVTable.parse("", path: "t.csv")
        }
        #expect(throws: DataFileError("results column cell = \"three\": expected an integer")) {
            try ResultRow(record: ["experiment": "x", "cell": "three"])
        }
    }
}
