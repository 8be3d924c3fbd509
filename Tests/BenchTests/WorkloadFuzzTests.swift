import Foundation
import Testing
import Bench

// Bad workload files, mutated from the shipped ones: none crashes or hangs the
// loader, every rejection is a WorkloadError naming the file and the key (or
// the line:column of a syntax error), and whatever loads expands into cells
// that keep the loader's promises.
//
// Reproduce a run with MUXLAB_FUZZ_SEED=<seed> (and MUXLAB_FUZZ_MUTANTS=<n>);
// mutant i depends only on the seed and i.

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, and a seed replays every mutant.
private struct SplitMix64 {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in 0..<bound.
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(max(bound, 1))) }
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
    /// 1...limit, log-uniform: small sizes often, the limit sometimes.
    mutating func size(upTo limit: Int) -> Int {
        let bits = below(Int.bitWidth - limit.leadingZeroBitCount + 1)
        return min(limit, 1 + below(1 << bits))
    }
}

// MARK: - What mutants are made of

/// Values of every TOML type, in and out of each key's range, as TOML text.
private let valuePool: [String] = {
    let strings = [
        "\"\"", "\"x\"", "\"poll\"", "\"epoll\"", "\"reactor\"", "\"http\"", "\"io_uring\"",
        "\"5s\"", "\"250ms\"", "\"0.3s\"", "\"-1s\"", "\"1e999s\"", "\"1e-400\"", "\"nan\"", "\"NaN\"",
        "\"inf\"", "\"-inf\"", "\"0x10\"", "\"5 s\"", "\"s\"", "\"ms\"", "\"2h\"", "\"3600.0001\"", "\"12us\"",
        "\"1-3\"", "\"3-1\"", "\"0,,1\"", "\"0-4095\"", "\"4096\"", "\"-1\"", "\" 1 \"", "\"0-\"", "\"99999999999999999999\"",
        "\"é🙂ñ\u{202E}\u{0301}\"", "\"\\u0000\"", "\"a\\u0000b\"", "\"\\t\"", "'literal'", "'''multi\nline'''",
        "\"\"\"multi\nline\"\"\"", "\"--io=poll\"", "\"--port\"", "\"=\"", "\"M2\"", "\"m2\"", "\"Idle_Scaling\"",
        "\"\(String(repeating: "a", count: 100_000))\"", "\"\(String(repeating: "🙂", count: 5_000))\"",
    ]
    let integers = [
        "0", "-1", "1", "2", "10", "64", "65", "256", "257", "1023", "1024", "4095", "4096", "100000", "100001",
        "1048576", "1048577", "10000000", "10000001", "9223372036854775807", "-9223372036854775808",
        "9223372036854775808", "0x7fffffff", "0o777", "0b101", "1_000", "+5", "01", "1__0",
    ]
    let floats = [
        "0.0", "-0.0", "0.05", "0.1", "0.09999", "1.5", "3600.0", "3600.1", "7200.5", "1e308", "1.8e308",
        "-1.5", "1e-320", "nan", "+nan", "-nan", "inf", "-inf", "1.", ".5", "10.0",
    ]
    let others = [
        "true", "false", "True", "1979-05-27", "07:32:00", "1979-05-27T07:32:00Z",
        "1979-05-27T07:32:00.999999-07:00", "1979-13-45", "[]", "[[]]", "[1]", "[1, 2, 2]", "[\"a\"]",
        "[\"poll\", \"poll\"]", "[1, \"a\"]", "[[1], [2]]", "[{}]", "[[\"--a\"], [\"--b\"]]", "[[\"--io\", \"poll\"]]",
        "[true]", "[1.5]", "[\"1s\", 2, 3.5]", "{}", "{ a = 1 }", "{ io = \"poll\" }", "{ x = { y = { z = 1 } } }",
        "[" + (1...2_000).map(String.init).joined(separator: ", ") + "]",
        String(repeating: "[", count: 300) + String(repeating: "]", count: 300),
        String(repeating: "{a=", count: 300) + "1" + String(repeating: "}", count: 300),
        "", "=", "\"unterminated", "[1, 2", "{ a = 1",
    ]
    return strings + integers + floats + others
}()

/// Keys the loader should refuse where they land, and some it knows.
private let keyPool: [String] = Workload.settingKeys + [
    "title", "include", "defaults", "experiment", "id", "claims", "description", "base", "matrix",
    "colour", "titel", "claim", "\"\"", "\"with space\"", "\"é🙂\"", "\"a\\u0000b\"", "\"io\"", "'model'",
    "a.b", "experiment.id", "defaults.io", "base.io", "matrix.io", "1234", "-", "_", "IO",
    String(repeating: "k", count: 10_000),
]

private let headerPool = [
    "[defaults]", "[[experiment]]", "[experiment]", "[experiment.base]", "[experiment.matrix]",
    "[[experiment.matrix]]", "[[experiment.base]]", "[defaults.base]", "[[defaults]]", "[title]", "[include]",
    "[experiment.matrix.io]", "[\"experiment\"]", "[ experiment . base ]", "[x]", "[[x]]", "[experiment.unknown]",
    "[]", "[[", "[experiment", "[[experiment]",
]

/// Include targets, relative to the mutant: missing, itself, a cycle, directories, devices, seeds.
private let includePool = [
    "\"nope.toml\"", "\"mutant.toml\"", "\"./mutant.toml\"", "\"sub/../mutant.toml\"", "\"cycle.toml\"",
    "\"\"", "\".\"", "\"sub\"", "\"sub/\"", "\"/dev/null\"", "\"/nonexistent/x.toml\"", "\"ci.toml\"",
    "\"idle-scaling.toml\"", "\"default.toml\"", "\"sub/nested.toml\"", "\"empty.toml\"", "\"é🙂.toml\"",
    "\"\(String(repeating: "n", count: 300)).toml\"", "\"\(String(repeating: "d/", count: 3_000))x.toml\"",
]

private let unicodePool = [
    "é", "🙂", "\u{FEFF}", "\u{202E}", "\u{0301}", "\u{2028}", "ß", "\u{00A0}", "中文", "\u{1F1FA}\u{1F1F8}",
]

private let interestingBytes: [UInt8] = [
    0x00, 0x01, 0x09, 0x0A, 0x0D, 0x1B, 0x20, 0x22, 0x23, 0x27, 0x2C, 0x2E, 0x3D, 0x5B, 0x5C, 0x5D,
    0x7B, 0x7D, 0x7F, 0x80, 0xBF, 0xC0, 0xC3, 0xE2, 0xEF, 0xF0, 0xF8, 0xFF,
]

// MARK: - Mutations

private typealias Lines = [[UInt8]]

private func lines(_ bytes: [UInt8]) -> Lines {
    bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map(Array.init)
}

private func joined(_ lines: Lines) -> [UInt8] { Array(lines.joined(separator: [0x0A])) }

/// (key, value) of a `key = value` line; nil for headers, comments and blank lines.
private func assignment(_ line: [UInt8]) -> (key: [UInt8], value: [UInt8])? {
    guard let first = line.first(where: { $0 != 0x20 && $0 != 0x09 }), first != 0x5B, first != 0x23, line.count >= 3 else { return nil }
    for i in 0...(line.count - 3) where line[i] == 0x20 && line[i + 1] == 0x3D && line[i + 2] == 0x20 {
        return (Array(line[..<i]), Array(line[(i + 3)...]))
    }
    return nil
}

/// One way to spoil a workload file.
private struct Mutation {
    let name: String
    let apply: (inout [UInt8], inout SplitMix64, _ seeds: [[UInt8]]) -> Void
}

private func insertLine(_ text: String, into bytes: inout [UInt8], _ rng: inout SplitMix64) {
    var all = lines(bytes)
    all.insert(Array(text.utf8), at: rng.below(all.count + 1))
    bytes = joined(all)
}

/// Rewrites the value of a random `key = value` line; with none, inserts a random one.
private func rewriteValue(_ bytes: inout [UInt8], _ rng: inout SplitMix64, _ rewrite: ([UInt8], inout SplitMix64) -> [UInt8]) {
    var all = lines(bytes)
    let candidates = all.indices.filter { assignment(all[$0]) != nil }
    guard !candidates.isEmpty else { return insertLine("\(rng.pick(keyPool)) = \(rng.pick(valuePool))", into: &bytes, &rng) }
    let index = rng.pick(candidates)
    let (key, value) = assignment(all[index])!
    all[index] = key + Array(" = ".utf8) + rewrite(value, &rng)
    bytes = joined(all)
}

private let mutations: [Mutation] = [
    Mutation(name: "flip bits") { bytes, rng, _ in
        guard !bytes.isEmpty else { return }
        for _ in 0..<rng.size(upTo: 4) { bytes[rng.below(bytes.count)] ^= 1 << UInt8(rng.below(8)) }
    },
    Mutation(name: "insert bytes") { bytes, rng, _ in
        for _ in 0..<rng.size(upTo: 8) {
            let byte = rng.chance(70) ? rng.pick(interestingBytes) : UInt8(truncatingIfNeeded: rng.next())
            bytes.insert(byte, at: rng.below(bytes.count + 1))
        }
    },
    Mutation(name: "overwrite bytes") { bytes, rng, _ in
        guard !bytes.isEmpty else { return }
        for _ in 0..<rng.size(upTo: 4) { bytes[rng.below(bytes.count)] = rng.pick(interestingBytes) }
    },
    Mutation(name: "truncate") { bytes, rng, _ in bytes = Array(bytes.prefix(rng.below(bytes.count + 1))) },
    Mutation(name: "delete lines") { bytes, rng, _ in
        var all = lines(bytes)
        let start = rng.below(all.count)
        all.removeSubrange(start..<min(all.count, start + rng.size(upTo: 3)))
        bytes = joined(all)
    },
    Mutation(name: "duplicate line") { bytes, rng, _ in
        var all = lines(bytes)
        all.insert(all[rng.below(all.count)], at: rng.below(all.count + 1))
        bytes = joined(all)
    },
    Mutation(name: "swap lines") { bytes, rng, _ in
        var all = lines(bytes)
        all.swapAt(rng.below(all.count), rng.below(all.count))
        bytes = joined(all)
    },
    Mutation(name: "splice line from another seed") { bytes, rng, seeds in
        let donor = lines(rng.pick(seeds))
        insertLine(String(decoding: rng.pick(donor), as: UTF8.self), into: &bytes, &rng)
    },
    Mutation(name: "swap values") { bytes, rng, _ in
        var all = lines(bytes)
        let candidates = all.indices.filter { assignment(all[$0]) != nil }
        guard candidates.count >= 2 else { return }
        let (a, b) = (rng.pick(candidates), rng.pick(candidates))
        let (keyA, valueA) = assignment(all[a])!
        let (keyB, valueB) = assignment(all[b])!
        all[a] = keyA + Array(" = ".utf8) + valueB
        all[b] = keyB + Array(" = ".utf8) + valueA
        bytes = joined(all)
    },
    Mutation(name: "replace value") { bytes, rng, _ in
        rewriteValue(&bytes, &rng) { _, rng in Array(rng.pick(valuePool).utf8) }
    },
    Mutation(name: "add to a list") { bytes, rng, _ in
        rewriteValue(&bytes, &rng) { value, rng in
            guard value.first == 0x5B else { return Array("[".utf8) + value + Array(", \(rng.pick(valuePool))]".utf8) }
            return Array("[\(rng.pick(valuePool)), ".utf8) + value.dropFirst()
        }
    },
    Mutation(name: "unknown or misplaced key") { bytes, rng, _ in
        insertLine("\(rng.pick(keyPool)) = \(rng.pick(valuePool))", into: &bytes, &rng)
    },
    Mutation(name: "table header") { bytes, rng, _ in insertLine(rng.pick(headerPool), into: &bytes, &rng) },
    Mutation(name: "include") { bytes, rng, _ in
        let targets = (0..<rng.size(upTo: 3)).map { _ in rng.pick(includePool) }
        let value = rng.chance(80) ? "[" + targets.joined(separator: ", ") + "]" : rng.pick(valuePool)
        var all = lines(bytes)
        if let existing = all.firstIndex(where: { assignment($0)?.key == Array("include".utf8) }) {
            all[existing] = Array("include = \(value)".utf8)
        } else {
            // Top level is before the first table header; anywhere else is a misplaced key.
            let firstHeader = all.firstIndex(where: { $0.first == 0x5B }) ?? all.count
            all.insert(Array("include = \(value)".utf8), at: rng.chance(85) ? rng.below(firstHeader + 1) : rng.below(all.count + 1))
        }
        bytes = joined(all)
    },
    Mutation(name: "huge matrix") { bytes, rng, _ in
        var text = "\n[[experiment]]\nid = \"huge-\(rng.below(1000))\"\n[experiment.base]\nconnect_rate = 1000000\n"
        if rng.chance(30) { text += "repeat = \(rng.pick([2, 50, 100]))\n" }
        text += "[experiment.matrix]\n"
        let axes: [(String, (Int) -> String)] = [
            ("connections", { "\($0 + 1)" }), ("message_size", { "\($0 + 1)" }), ("rate", { "\($0 + 1)" }),
            ("workers", { "\($0 % 257)" }), ("reactors", { "\($0 % 64 + 1)" }), ("numa_node", { "\($0 % 1024)" }),
            ("warmup", { "\"\($0 % 600)ms\"" }), ("server_args", { "[\"--x\($0)\"]" }),
        ]
        var chosen = Set<String>()
        for _ in 0..<(1 + rng.below(4)) {
            let (key, element) = rng.pick(axes)
            guard chosen.insert(key).inserted else { continue }
            let count = rng.size(upTo: 20_000)
            text += "\(key) = [" + (0..<count).map(element).joined(separator: ", ") + "]\n"
        }
        bytes += Array(text.utf8)
    },
    Mutation(name: "random value token") { bytes, rng, _ in
        // Shapes of numbers, dates and keywords, to reach the parser's value scanners.
        let alphabet = Array("0123456789+-._:eEtTzZxXoObBinfaIN \"'[]{},#=".unicodeScalars)
        var token = ""
        for _ in 0..<rng.size(upTo: 24) { token.unicodeScalars.append(rng.pick(alphabet)) }
        if rng.chance(50) {
            rewriteValue(&bytes, &rng) { _, _ in Array(token.utf8) }
        } else {
            insertLine(rng.chance(50) ? "\(rng.pick(keyPool)) = \(token)" : token, into: &bytes, &rng)
        }
    },
    Mutation(name: "unicode") { bytes, rng, _ in
        bytes.insert(contentsOf: Array(rng.pick(unicodePool).utf8), at: rng.below(bytes.count + 1))
    },
    Mutation(name: "long line") { bytes, rng, _ in
        let filler = String(repeating: rng.pick(["x", "é", "#", " ", "\\"]), count: rng.size(upTo: 200_000))
        insertLine(rng.pick(["# \(filler)", "description = \"\(filler)\"", filler]), into: &bytes, &rng)
    },
    Mutation(name: "line endings and BOM") { bytes, rng, _ in
        switch rng.below(3) {
        case 0: bytes = Array(String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "\n", with: "\r\n").utf8)
        case 1: bytes = Array(String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "\n", with: "\r").utf8)
        default: bytes = [0xEF, 0xBB, 0xBF] + bytes
        }
    },
    Mutation(name: "empty file") { bytes, rng, _ in bytes = Array(rng.pick(["", " ", "\n\n", "# only a comment\n", "\t"]).utf8) },
]

// MARK: - The harness

/// A mutated file and how it was made.
private struct Mutant {
    let number: Int
    var bytes: [UInt8]
    var operators: [String] = []
    /// Written as inner.toml and included by the mutant, so the error comes from an included file.
    var included: [UInt8]?

    /// Escaped for a failure report, cut short if long.
    func shown(_ bytes: [UInt8]) -> String {
        var text = ""
        for byte in bytes.prefix(3_000) {
            switch byte {
            case 0x0A, 0x20...0x7E: text.unicodeScalars.append(UnicodeScalar(byte))
            default: text += String(format: "\\x%02X", byte)
            }
        }
        return bytes.count > 3_000 ? text + "... (\(bytes.count) bytes)" : text
    }
}

/// Replaces the file at `path` with `bytes`; plain write(2), as Data.write costs a millisecond a file here.
private func overwrite(_ path: String, with bytes: [UInt8]) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    defer { close(fd) }
    var written = 0
    while written < bytes.count {
        let n = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        written += n
    }
}

/// What a crash handler prints: a Swift trap ends the process before any Issue is recorded.
nonisolated(unsafe) private let crashNote = UnsafeMutablePointer<CChar>.allocate(capacity: 1_024)

private func setCrashNote(_ text: String) {
    let bytes = Array(text.utf8.prefix(1_022))
    bytes.withUnsafeBufferPointer { buffer in
        buffer.withMemoryRebound(to: CChar.self) { crashNote.update(from: $0.baseAddress!, count: bytes.count) }
    }
    crashNote[bytes.count] = 0x0A
    crashNote[bytes.count + 1] = 0
}

private let crashSignals = [SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGABRT, SIGFPE]

private func installCrashNote() {
    for number in crashSignals {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { number in
            _ = write(2, crashNote, strlen(crashNote))
            signal(number, SIG_DFL)
            raise(number)
        }
        sigaction(number, &action, nil)
    }
}

private func removeCrashNote() {
    for number in crashSignals { signal(number, SIG_DFL) }
}

/// Aborts with the mutant's seed and text if one load runs this long: an in-process hang cannot be cancelled.
private final class HangWatchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var started: ContinuousClock.Instant?
    private var report: () -> String = { "" }
    private var finished = false
    let limit: Duration

    init(limit: Duration) {
        self.limit = limit
        Thread.detachNewThread { [self] in
            while true {
                Thread.sleep(forTimeInterval: 0.25)
                lock.lock()
                if finished { lock.unlock(); return }
                if let started, ContinuousClock.now - started > limit {
                    FileHandle.standardError.write(Data("workload fuzz: a load ran over \(limit): \(report())\n".utf8))
                    abort()
                }
                lock.unlock()
            }
        }
    }

    func begin(_ report: @escaping () -> String) { lock.lock(); started = .now; self.report = report; lock.unlock() }
    func end() { lock.lock(); started = nil; lock.unlock() }
    func stop() { lock.lock(); finished = true; lock.unlock() }
}

/// The keys a rejection may name, found as ": key = " in the message.
private let namedKeys = Workload.settingKeys + ["title", "include", "defaults", "experiment", "id", "claims", "description", "base", "matrix",
                                               "hosts", "ssh", "ssh_options", "muxlab"]

/// Sorts a rejection message into a category, or explains why it does not name its subject.
/// Matches Unicode scalars, not Characters: a combining mark in a name joins the quote before it.
private func classify(_ message: String, directory: String) -> (category: String?, problem: String?) {
    func has(_ needle: String) -> Bool { message.range(of: needle, options: .literal) != nil }
    let scalars = Array(message.unicodeScalars)
    let prefix = Array((directory + "/").unicodeScalars)
    guard scalars.starts(with: prefix) else {
        return (nil, "does not start with a file path under \(directory)")
    }
    // "<path>:<line>:<column>: ..." for syntax errors.
    let afterDirectory = scalars[prefix.count...]
    if let colon = afterDirectory.firstIndex(of: ":") {
        let parts = afterDirectory[(colon + 1)...].split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            .map { String(String.UnicodeScalarView($0)) }
        if parts.count == 3, let line = Int(parts[0]), let column = Int(parts[1]), line > 0, column > 0 {
            return (has("TOML syntax error") ? "syntax error (line:column)" : "not TOML text (line:column)", nil)
        }
    }
    if has(": unknown key \"") { return ("unknown key", nil) }
    if has(": include \"") || has(": include = ") { return ("include", nil) }
    if has(": active = ") && has("exceeds connections") { return ("active > connections", nil) }
    if has(": timeout = ") && has("too short") { return ("timeout too short", nil) }
    if has(" cells") && has("at most") && has(": matrix") { return ("too many cells", nil) }
    // "key = value", or "headers: \"Name: value\"" for one item of a list.
    for key in namedKeys where has(": \(key) = ") || has(": \(key): \"") {
        return (Workload.settingKeys.contains(key) ? "setting value" : "\(key) value", nil)
    }
    if has(": missing id") || has(": id \"") { return ("id", nil) }
    // A host's table named in the message: "[hosts.a]: missing ssh ...", "[hosts.A]: a host name must match ...".
    if has("[hosts.") { return ("hosts", nil) }
    if has(": experiment must be") { return ("experiment not an array of tables", nil) }
    if has(": no experiments") { return ("no experiments", nil) }
    return (nil, "names neither a key nor a line:column")
}

/// What a loaded workload promises; each broken promise as a sentence.
private func brokenPromises(_ workload: Workload) -> [String] {
    var broken: [String] = []
    let cells = workload.cells()
    if cells.isEmpty || cells.count > Workload.maxCells { broken.append("loaded with \(cells.count) cells") }
    if cells.map(\.index) != Array(1..<(cells.count + 1)) { broken.append("cell indices are not 1...\(cells.count)") }
    var next = 1
    for experiment in workload.experiments {
        if experiment.cellIndices.lowerBound != next { broken.append("experiment \(experiment.id) starts at \(experiment.cellIndices.lowerBound), not \(next)") }
        next = experiment.cellIndices.upperBound + 1
        for cell in cells where experiment.cellIndices.contains(cell.index) && cell.experiment != experiment.id {
            broken.append("cell \(cell.id) lies in experiment \(experiment.id)")
        }
    }
    if next != cells.count + 1 { broken.append("experiments cover 1...\(next - 1), cells are 1...\(cells.count)") }
    for cell in cells {
        func check(_ holds: Bool, _ what: String) { if !holds { broken.append("cell \(cell.id): \(what)") } }
        // Comparisons, not ranges: a range with its bounds the wrong way round would trap.
        check(cell.active >= 0 && cell.active <= cell.connections, "active \(cell.active) not in 0...connections \(cell.connections)")
        check(cell.timeout > cell.warmup + cell.duration, "timeout \(cell.timeout) <= warmup \(cell.warmup) + duration \(cell.duration)")
        check(Workload.ioBackends.contains(cell.io), "io \(cell.io)")
        check(Workload.models.contains(cell.model) || !cell.serverCommand.isEmpty, "model \(cell.model) without server_command")
        check(Workload.ioModes(ofModel: cell.model).contains(cell.io) || !cell.serverCommand.isEmpty, "model \(cell.model) on io \(cell.io)")
        check(Workload.protocols.contains(cell.protocol.rawValue), "protocol \(cell.protocol)")
        check((1...100_000).contains(cell.connections), "connections \(cell.connections)")
        check((1...1_048_576).contains(cell.messageSize), "message_size \(cell.messageSize)")
        check((0.1...3600).contains(cell.duration), "duration \(cell.duration)")
        check((0...600).contains(cell.warmup), "warmup \(cell.warmup)")
        check(cell.repetition >= 1 && cell.repetition <= cell.repeats, "repetition \(cell.repetition) of \(cell.repeats)")
        check(cell.claims.allSatisfy { $0.first?.isUppercase == true }, "claims \(cell.claims)")
    }
    return broken
}

@Suite("Workload files, mutated")
struct WorkloadFuzzTests {
    /// An input the fuzzing found, and how its message must begin (after the scratch directory).
    struct Found: CustomTestStringConvertible, Sendable {
        let what: String
        let bytes: [UInt8]
        let expected: String
        init(_ what: String, _ bytes: [UInt8], _ expected: String) { (self.what, self.bytes, self.expected) = (what, bytes, expected) }
        var testDescription: String { what }
    }

    /// Inputs the fuzzing found, each once crashing, hanging or silently cut short.
    static let foundCases: [Found] = [
        Found("`[[` then a line break aborted toml++", Array("[[experiment]]\nid = \"x\"\n[[\n".utf8), "main.toml:3:3: TOML syntax error"),
        Found("`[=` aborted toml++", Array("[=\n".utf8), "main.toml:1:2: TOML syntax error"),
        Found("`}` where an array expects a value aborted toml++", Array("[[experiment]]\nid = \"x\"\nclaims = [}\"E2\"]\n".utf8), "main.toml:3:11: TOML syntax error"),
        Found("a line separator in an array aborted toml++", Array("[[experiment]]\nid = \"x\"\nclaims = [\u{2028}]\n".utf8), "main.toml:3:11: TOML syntax error"),
        Found("a NUL byte cut the file short", Array("[[experiment]]\nid = \"x\"\n".utf8) + [0] + Array("[[experiment]]\n".utf8), "main.toml:3:1: TOML syntax error"),
        Found("a syntax error before a NUL is the one reported", Array("[[experiment]\n".utf8) + [0], "main.toml:1:"),
        Found("a \\u0000 escape silently cut an id short", Array("[[experiment]]\nid = \"a\\u0000b\"\n".utf8), "main.toml:2:8: TOML syntax error"),
        Found("a byte that is not UTF-8 had no position", Array("[[experiment]]\nid = \"x\"\nclaims = [\"".utf8) + [0xC0] + Array("\"]\n".utf8), "main.toml:3:12: not UTF-8 text"),
        Found("a matrix of 403 x 15 x 765 cells ran for minutes", Array(("[[experiment]]\nid = \"x\"\n[experiment.matrix]\n"
            + "connections = [\((1...403).map(String.init).joined(separator: ", "))]\n"
            + "message_size = [\((1...15).map(String.init).joined(separator: ", "))]\n"
            + "numa_node = [\((0..<765).map(String.init).joined(separator: ", "))]\n").utf8),
         "experiment \"x\": matrix: more than 10000 cells (connections 403 x message_size 15 x numa_node 765): a workload may have at most 10000 cells"),
    ]

    @Test("what the fuzzing found is a WorkloadError with its position or key", arguments: foundCases)
    func foundByFuzzing(_ found: Found) throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path + "/main.toml"
        try overwrite(path, with: found.bytes)
        let clock = ContinuousClock()
        let started = clock.now
        do {
            let workload = try Workload.load(path: path)
            Issue.record("loaded \(workload.cells().count) cells")
        } catch let error as WorkloadError {
            let message = error.description.replacingOccurrences(of: scratch.path + "/", with: "")
            #expect(message.hasPrefix(found.expected) || message.contains(": " + found.expected), "\(message)")
        }
        #expect(clock.now - started < .seconds(1))
    }

    @Test("valid TOML that looks like the guarded cases still loads")
    func lookalikesLoad() throws {
        let scratch = try ScratchDirectory()
        let path = try scratch.write("main.toml", #"""
            title = "[= [[ }]   # not a comment"
            [[experiment]]  # [= a comment
            id = "lookalike"
            description = """
            [[
            [=
            [}
            """
            [ experiment . matrix ]
            server_args = [
                [
                    "--a", # ]
                ],
                [ "--b", '}' ],
                [],
            ]
            io = [ 'poll', "epoll-et", ]
            [[experiment]]
            id = "inline"
            description = '\u0000 is text here, and so is "\\u0000"'
            base = { connections = 20, server_args = ["{", "}", "\\u0000"] }
            """#)
        let workload = try Workload.load(path: path)
        #expect(workload.cells().count == 7)
        #expect(workload.cells()[1].serverArgs == ["--b", "}"])
        #expect(workload.cells()[6].serverArgs == ["{", "}", "\\u0000"])
        #expect(workload.experiments[1].description == #"\u0000 is text here, and so is "\\u0000""#)
    }

    /// Seeds beside the shipped workloads, for keys those leave out.
    static let extraSeeds: [String: String] = [
        "all-settings.toml": """
            title = "every key"
            [defaults]
            model = "multi-reactor-pool"
            workers = 2
            duration = 1.5
            warmup = "250ms"
            repeat = 2
            [[experiment]]
            id = "all"
            claims = ["M1", "E4"]
            description = "every setting once"
            [experiment.base]
            protocol = "http"
            reactors = 2
            connections = 500
            active = 50
            message_size = 1024
            rate = 50000
            connect_rate = 1000
            server_cpus = "0-1"
            client_cpus = "0,1"
            numa_node = 0
            server_args = ["--pool-queue", "global"]
            timeout = "200s"
            request_timeout = "2s"
            allow_errors = true
            timeline = 0.5
            [experiment.matrix]
            io = ["poll", "epoll-lt"]
            duration = ["1s", 2]
            server_args = [[], ["--epollout", "always"]]
            """,
        "sub/nested.toml": "include = [\"../ci.toml\"]\n[[experiment]]\nid = \"nested\"\n[experiment.base]\nmodel = \"reactor-pool\"\n[experiment.matrix]\nworkers = [1, 2]\n",
        "cycle.toml": "include = [\"mutant.toml\"]\n[[experiment]]\nid = \"cycle\"\n",
        "empty.toml": "",
        "minimal.toml": "[[experiment]]\nid = \"x\"\n",
    ]

    static var repositoryRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    @Test("10,000+ mutated workload files: no crash, no hang, every rejection names file and key or line:column",
          .timeLimit(.minutes(1)))
    func mutatedFilesAreRejectedByName() throws {
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["MUXLAB_FUZZ_SEED"].flatMap { UInt64($0) } ?? 0x6D75_786C_6162  // "muxlab"
        let count = environment["MUXLAB_FUZZ_MUTANTS"].flatMap { Int($0) } ?? 12_000

        let scratch = try ScratchDirectory()
        var seeds: [(name: String, bytes: [UInt8])] = []
        let shipped = Self.repositoryRoot + "/workloads"
        for name in try FileManager.default.contentsOfDirectory(atPath: shipped).sorted() where name.hasSuffix(".toml") {
            let text = try String(contentsOfFile: shipped + "/" + name, encoding: .utf8)
            try scratch.write(name, text)
            seeds.append((name, Array(text.utf8)))
        }
        #expect(seeds.count >= 5, "shipped workloads under \(shipped)")
        // Files a workload names beside it (own-service/ holds a request file and a body) travel with
        // it, so a mutant of that workload loads or fails on its own text, not on a missing file.
        for name in try FileManager.default.contentsOfDirectory(atPath: shipped).sorted() {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: shipped + "/" + name, isDirectory: &isDirectory), isDirectory.boolValue else { continue }
            try FileManager.default.copyItem(atPath: shipped + "/" + name, toPath: scratch.path + "/" + name)
        }
        for (name, text) in Self.extraSeeds.sorted(by: { $0.key < $1.key }) {
            try scratch.write(name, text)
            if !["cycle.toml", "empty.toml"].contains(name) { seeds.append((name, Array(text.utf8))) }
        }
        for (name, _) in seeds {  // a seed that does not load would make every finding suspect
            #expect(throws: Never.self, "seed \(name)") { try Workload.load(path: scratch.path + "/" + name) }
        }
        let seedBytes = seeds.map(\.bytes)
        let mutantPath = scratch.path + "/mutant.toml"
        let innerPath = scratch.path + "/inner.toml"
        print("workload fuzz: seed \(seed), \(count) mutants, written to \(mutantPath) (left there after a crash)")

        installCrashNote()
        defer { removeCrashNote() }
        let watchdog = HangWatchdog(limit: .seconds(10))
        defer { watchdog.stop() }

        var accepted = 0
        var rejected: [String: Int] = [:]
        var operatorUse: [String: (accepted: Int, rejected: Int)] = [:]
        var failures = 0
        var slowest: (time: Duration, mutant: Int) = (.zero, 0)
        var loading = Duration.zero
        let clock = ContinuousClock()
        let started = clock.now

        for number in 0..<count {
            var rng = SplitMix64(seed: seed ^ (UInt64(number) &* 0xD1B5_4A32_D192_ED03))
            let origin = seeds[rng.below(seeds.count)]
            var mutant = Mutant(number: number, bytes: origin.bytes, operators: [origin.name])
            let rounds = rng.chance(60) ? 1 : (rng.chance(75) ? 2 : 3)
            for _ in 0..<rounds {
                let mutation = rng.pick(mutations)
                mutation.apply(&mutant.bytes, &rng, seedBytes)
                mutant.operators.append(mutation.name)
            }
            if rng.chance(8) {
                mutant.included = mutant.bytes
                mutant.bytes = Array("include = [\"inner.toml\"]\n[[experiment]]\nid = \"outer\"\n".utf8)
                mutant.operators.append("moved into an included file")
            }

            try overwrite(mutantPath, with: mutant.bytes)
            if let inner = mutant.included { try overwrite(innerPath, with: inner) }
            let identity = "seed \(seed) mutant #\(number) (\(mutant.operators.joined(separator: " + ")))"
            setCrashNote("workload fuzz: crashed in \(identity); text in \(mutantPath)")
            let frozen = mutant
            watchdog.begin { identity + ":\n" + frozen.shown(frozen.included ?? frozen.bytes) }

            let loadStarted = clock.now
            let outcome = Result { try Workload.load(path: mutantPath) }
            let elapsed = clock.now - loadStarted
            watchdog.end()
            if elapsed > slowest.time { slowest = (elapsed, number) }
            loading += elapsed

            var problems: [String] = []
            let spoiled = mutant.included ?? mutant.bytes
            switch outcome {
            case .success(let workload):
                accepted += 1
                problems += brokenPromises(workload)
                if spoiled.contains(0) || String(validating: spoiled, as: UTF8.self) == nil {
                    problems.append("loaded although the file has a NUL byte or is not UTF-8")
                }
            case .failure(let error as WorkloadError):
                let (category, problem) = classify(error.description, directory: scratch.path)
                rejected[category ?? "unnamed", default: 0] += 1
                if let problem { problems.append("message \(problem): \(error.description)") }
            case .failure(let error):
                rejected["not a WorkloadError", default: 0] += 1
                problems.append("threw \(type(of: error)), not a WorkloadError: \(error)")
            }
            for name in mutant.operators.dropFirst() {
                var use = operatorUse[name, default: (0, 0)]
                if case .success = outcome { use.accepted += 1 } else { use.rejected += 1 }
                operatorUse[name] = use
            }
            if elapsed > .seconds(1) { problems.append("took \(elapsed)") }

            if !problems.isEmpty {
                failures += 1
                if failures <= 20 {
                    var report = "\(identity): " + problems.prefix(5).joined(separator: "; ")
                    if let inner = mutant.included { report += "\n--- inner.toml:\n" + mutant.shown(inner) }
                    report += "\n--- mutant.toml:\n" + mutant.shown(mutant.bytes)
                    Issue.record(Comment(rawValue: report))
                }
            }
        }

        let total = clock.now - started
        let categories = rejected.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        let operators = operatorUse.sorted { $0.key < $1.key }
            .map { "\($0.key) \($0.value.accepted)/\($0.value.rejected)" }.joined(separator: ", ")
        let summary = """
            workload fuzz: seed \(seed): \(count) mutants in \(total): \(accepted) accepted, \(count - accepted) rejected \
            (\(categories)); loading took \(loading), the slowest \(slowest.time) (mutant #\(slowest.mutant)); \(failures) failing
            workload fuzz: operators (accepted/rejected): \(operators)
            """
        print(summary)
        #expect(failures == 0, Comment(rawValue: summary))
        #expect(count < 10_000 || accepted > 100, "too few mutants load for the cell checks to mean much")
        #expect(total < .seconds(60), Comment(rawValue: summary))
    }
}
