import Foundation
import Kernel
import Load
import TOMLKit

/// A workload file that cannot be used: the message names the file, the
/// experiment, the key, the value and what is allowed.
public struct WorkloadError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One `[[experiment]]` table after loading.
public struct Experiment: Equatable, Sendable {
    /// The workload file that defines it (as reached from the loaded path).
    public let file: String
    public let id: String
    public let claims: [String]
    public let description: String?
    /// Indices (`Cell.index`) of its cells, in run order.
    public let cellIndices: ClosedRange<Int>
}

/// A workload file with its includes, expanded into cells.
///
/// Format (TOML):
///
///     title = "..."                      # optional
///     include = ["other.toml"]           # optional, relative to this file; run first
///     [defaults]                         # optional, this file's experiments only
///     duration = "5s"
///     [[experiment]]
///     id = "idle-scaling"                # [a-z0-9-]+
///     claims = ["M2", "M3"]              # [A-Z][0-9]+, may be empty
///     description = "..."                # optional
///     [experiment.base]                  # overrides [defaults]
///     protocol = "echo"
///     [experiment.matrix]                # lists; their cartesian product is the cells
///     io = ["select", "poll"]
///     connections = [10, 100]
///     [[experiment.variants]]            # optional: cells that differ in several settings at once,
///     rate = 50000                       # each crossed with the matrix, in file order
///     [[experiment.variants]]
///     connections = 4
///
/// A peer server instead of `muxlab serve`: `server_command = ["taskset", "-c", "{cpus}",
/// "nginx", "-p", "{workdir}", "-c", "{workdir}/nginx.conf"]` with `server_config =
/// "peers/nginx.conf"` (a template beside the workload, written into {workdir} with
/// {port}, {host}, {cpus}, {workdir} filled in); `model` then names the peer. `load = "wrk"`
/// drives a cell with wrk instead of `muxlab load`.
///
/// `topology = "netns"` runs the server and the load in two network namespaces of their own,
/// joined by a veth pair (`NetworkNamespaces.swift`); "loopback", the default, runs both on 127.0.0.1.
///
/// `repeat = N` (defaults or base, not matrix) runs the whole matrix N times,
/// round by round; rows carry the `repeat` number.
///
/// Matrix keys vary in the order of `Workload.settingKeys` (first slowest),
/// values in file order.
public struct Workload: Sendable {
    /// The path it was loaded from.
    public let path: String
    /// The top file's `title`, if any.
    public let title: String?
    /// Experiments in run order, included files' first.
    public let experiments: [Experiment]
    private let expanded: [Cell]

    /// Every cell of every experiment, numbered 1...n in run order.
    public func cells() -> [Cell] { expanded }

    /// Reads, validates and expands a workload file and everything it includes.
    /// Every cell is checked here, so a workload that loads runs without
    /// surprises from its settings.
    public static func load(path: String) throws -> Workload {
        var loader = Loader()
        try loader.loadFile(path, chain: [], via: nil)
        guard !loader.cells.isEmpty else {
            throw WorkloadError("\(path): no experiments: add an [[experiment]] table or include = [\"other.toml\"]")
        }
        return Workload(path: path, title: loader.rootTitle, experiments: loader.experiments, expanded: loader.cells)
    }

    /// Most cells a workload may expand into, repeats included: hours of running even
    /// at the shortest settings, so only a matrix typo reaches it; refused before any cell is built.
    public static let maxCells = 10_000

    /// Names of the settings allowed in `[defaults]`, `base` and `matrix`, in matrix order.
    public static var settingKeys: [String] { settingSpecs.map(\.name) }

    /// Concurrency models `muxlab serve --model` knows.
    public static let models = [
        "reactor", "iterative", "thread-per-connection", "process-per-connection", "prefork",
        "reactor-thread-per-request", "reactor-worker", "reactor-pool", "multi-reactor",
        "multi-reactor-pool", "proactor",
    ]
    /// I/O back-ends `muxlab serve --io` knows.
    public static let ioBackends = ["blocking", "select", "poll", "epoll-lt", "epoll-et", "io_uring", "external"]

    /// The back-ends each model runs on, its default first (as `muxlab serve` decides).
    public static func ioModes(ofModel model: String) -> [String] {
        switch model {
        case "iterative", "thread-per-connection", "process-per-connection": return ["blocking"]
        case "prefork": return ["blocking", "epoll-et", "epoll-lt", "poll", "select"]
        case "proactor": return ["io_uring"]
        default: return ["epoll-et", "epoll-lt", "poll", "select"]
        }
    }
    public static let protocols = ["echo", "http"]
    /// What drives a cell: muxlab's own load generator, or wrk (HTTP, closed loop).
    public static let loadGenerators = ["muxlab", "wrk"]
    /// Where server and load meet: on loopback in the driver's own network namespace, or across
    /// a veth pair between two network namespaces the driver creates for the cell.
    public static let topologies = ["loopback", "netns"]

    /// Flags the driver derives from settings; passing them in server_args would contradict the cell.
    static let reservedServerFlags: [String: String] = [
        "--model": "model", "--io": "io", "--protocol": "protocol", "--reactors": "reactors",
        "--workers": "workers", "--cpus": "server_cpus", "--numa-node": "numa_node", "--port": "(chosen by the driver)",
        "--listen": "topology", "--allow-non-loopback": "topology (traffic stays on loopback or in muxlab's own namespaces)",
    ]
    /// The same for load_args: the flags the driver passes `muxlab load` itself.
    static let reservedLoadFlags: [String: String] = [
        "--target": "(the driver's server)", "--connections": "connections", "--active": "active",
        "--message-size": "message_size", "--protocol": "protocol", "--duration": "duration", "--warmup": "warmup",
        "--connect-rate": "connect_rate", "--cpus": "client_cpus", "--request-timeout": "request_timeout",
        "--rate": "rate", "--json": "(the driver's)", "--phases": "(the driver's)",
        "--allow-non-loopback": "topology (traffic stays on loopback or in muxlab's own namespaces)",
    ]
}

// MARK: - Settings

/// What one settings key accepts.
private enum SettingKind {
    case choice([String])
    /// A model `muxlab serve` knows, or any [a-z0-9-]+ name for an external server (checked per cell).
    case modelName
    /// A file path relative to the workload file.
    case path
    case int(ClosedRange<Int>)
    case duration(ClosedRange<Double>)
    case cpus
    case strings
    case bool
}

private struct SettingSpec {
    let name: String
    let kind: SettingKind
}

/// The allowed keys, in matrix order (first key varies slowest).
private let settingSpecs: [SettingSpec] = [
    SettingSpec(name: "model", kind: .modelName),
    SettingSpec(name: "io", kind: .choice(Workload.ioBackends)),
    SettingSpec(name: "protocol", kind: .choice(Workload.protocols)),
    SettingSpec(name: "reactors", kind: .int(1...64)),
    SettingSpec(name: "workers", kind: .int(0...256)),
    SettingSpec(name: "connections", kind: .int(1...100_000)),
    // Upper bound is `connections`, checked per cell once both are known.
    SettingSpec(name: "active", kind: .int(0...100_000)),
    SettingSpec(name: "message_size", kind: .int(1...1_048_576)),
    SettingSpec(name: "rate", kind: .int(1...10_000_000)),
    SettingSpec(name: "duration", kind: .duration(0.1...3600)),
    SettingSpec(name: "warmup", kind: .duration(0...600)),
    SettingSpec(name: "connect_rate", kind: .int(1...1_000_000)),
    SettingSpec(name: "server_cpus", kind: .cpus),
    SettingSpec(name: "client_cpus", kind: .cpus),
    SettingSpec(name: "numa_node", kind: .int(0...1023)),
    SettingSpec(name: "server_args", kind: .strings),
    SettingSpec(name: "timeout", kind: .duration(1...7200)),
    SettingSpec(name: "request_timeout", kind: .duration(0.1...600)),
    SettingSpec(name: "allow_errors", kind: .bool),
    SettingSpec(name: "needs_cpus", kind: .int(1...4096)),
    SettingSpec(name: "timeline", kind: .duration(0.05...600)),
    SettingSpec(name: "evidence_duration", kind: .duration(0.1...3600)),
    SettingSpec(name: "repeat", kind: .int(1...100)),
    SettingSpec(name: "load_args", kind: .strings),
    SettingSpec(name: "server_command", kind: .strings),
    SettingSpec(name: "server_config", kind: .path),
    SettingSpec(name: "load", kind: .choice(Workload.loadGenerators)),
    SettingSpec(name: "malloc_probe", kind: .bool),
    SettingSpec(name: "topology", kind: .choice(Workload.topologies)),
]

/// A validated setting value.
private enum SettingValue: Hashable {
    case text(String)
    case int(Int)
    case seconds(Double)
    case cpus(CPUList)
    case strings([String])
    case flag(Bool)
}

private typealias Settings = [String: SettingValue]

private extension SettingKind {
    /// What is allowed, for messages: "an integer 1...100000".
    var allowed: String {
        switch self {
        case .choice(let names): return "one of " + names.joined(separator: ", ")
        case .modelName: return "one of " + Workload.models.joined(separator: ", ") + " (or a peer's name with server_command)"
        case .path: return "a file path (relative to the workload file)"
        case .int(let range): return "an integer \(range.lowerBound)...\(range.upperBound)"
        case .duration(let range):
            return "a duration \(formatDecimal(range.lowerBound))...\(formatDecimal(range.upperBound)) s"
                + " (seconds as a number, or a string like \"5s\", \"250ms\", \"2m\")"
        case .cpus: return "a CPU list string like \"0\", \"1-3\" or \"0,2\""
        case .strings: return "an array of strings"
        case .bool: return "true or false"
        }
    }
}

// MARK: - Loading

private struct Loader {
    var experiments: [Experiment] = []
    var cells: [Cell] = []
    var rootTitle: String?
    /// Experiment id -> file that defined it, to refuse duplicates.
    var seenIDs: [String: String] = [:]

    /// `chain`: the files (display path, canonical path) being loaded above this one.
    /// `via`: "file: include \"name\"" when reached through an include, for messages.
    /// `only`: the experiment ids to take from this file (an include entry "file.toml#id,id"); nil: all.
    mutating func loadFile(_ path: String, chain: [(shown: String, canonical: String)], via: String?, only: Set<String>? = nil) throws {
        let text: String
        do {
            text = try PosixFile.readText(path)
        } catch let error as DataFileError {
            var message = error.description
            if error == DataFileError("\(path): not UTF-8 text"),
               let bytes = FileManager.default.contents(atPath: path), let at = firstInvalidUTF8(in: Array(bytes)) {
                message = "\(path):\(at.line):\(at.column): not UTF-8 text: save the file as UTF-8"
            }
            throw WorkloadError((via.map { "\($0): " } ?? "") + message)
        }
        let root: TOMLTable
        do {
            if let spot = unparsableSpot(in: text) {
                // Parse what comes before it, so an earlier syntax error is still the one reported.
                _ = try TOMLTable(string: String(String.UnicodeScalarView(text.unicodeScalars.prefix(spot.statement))))
                throw WorkloadError("\(path):\(spot.line):\(spot.column): TOML syntax error: \(spot.what)")
            }
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            let at = error.source.begin
            let position = at.line > 0 ? "\(at.line):\(at.column):" : ""
            throw WorkloadError("\(path):\(position) TOML syntax error: \(error.description)")
        }
        let canonical = canonicalPath(path)
        let chain = chain + [(path, canonical)]

        try checkKeys(root, allowed: ["title", "include", "defaults", "experiment"], at: "\(path): top level")
        if let title = root["title"] {
            guard let string = title.string else {
                throw WorkloadError("\(path): title = \(render(title)): must be a string, not \(typeName(title))")
            }
            if chain.count == 1 { rootTitle = string }  // an included file's title is not the workload's
        }

        if let include = root["include"] {
            guard let list = include.array, list.allSatisfy({ $0.type == .string }) else {
                throw WorkloadError("\(path): include = \(render(include)): must be an array of file names, like include = [\"idle-scaling.toml\"]")
            }
            let directory = (path as NSString).deletingLastPathComponent
            for entry in list {
                let parts = entry.string!.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)
                let name = String(parts[0])
                let only = parts.count == 2 ? Set(parts[1].split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }) : nil
                if let only, only.isEmpty || only.contains("") {
                    throw WorkloadError("\(path): include \"\(entry.string!)\": after # list experiment ids separated by commas, like \"models.toml#c1-iterative,c8-proactor\"")
                }
                let target = name.hasPrefix("/") || directory.isEmpty ? name : directory + "/" + name
                let targetCanonical = canonicalPath(target)
                if let loop = chain.firstIndex(where: { $0.canonical == targetCanonical }) {
                    let cycle = chain[loop...].map(\.shown) + [target]
                    throw WorkloadError("\(path): include \"\(name)\": include cycle: " + cycle.joined(separator: " -> "))
                }
                try loadFile(target, chain: chain, via: "\(path): include \"\(entry.string!)\"", only: only)
            }
        }

        var defaults: Settings = [:]
        if let table = root["defaults"] {
            guard let table = table.table else {
                throw WorkloadError("\(path): defaults = \(render(table)): must be a table: [defaults]")
            }
            defaults = try parseSettings(table, at: "\(path): [defaults]")
        }

        guard let experimentsValue = root["experiment"] else { return }
        guard let list = experimentsValue.array, list.allSatisfy({ $0.type == .table }) else {
            throw WorkloadError("\(path): experiment must be an array of tables: write each as [[experiment]]")
        }
        var taken: Set<String> = []
        for (position, entry) in list.enumerated() {
            if let only {
                guard let id = entry.table!["id"]?.string, only.contains(id) else { continue }
                taken.insert(id)
            }
            try loadExperiment(entry.table!, number: position + 1, file: path, defaults: defaults)
        }
        if let only, let missing = only.subtracting(taken).sorted().first {
            let ids = list.compactMap { $0.table?["id"]?.string }
            throw WorkloadError("\((via.map { "\($0): " } ?? ""))no experiment \"\(missing)\" in \(path); it has: \(ids.joined(separator: ", "))")
        }
    }

    mutating func loadExperiment(_ table: TOMLTable, number: Int, file: String, defaults: Settings) throws {
        let anonymous = "\(file): experiment #\(number)"
        try checkKeys(table, allowed: ["id", "claims", "description", "base", "matrix", "variants"], at: anonymous)
        let id = try experimentID(table, at: anonymous)
        let at = "\(file): experiment \"\(id)\""
        if let other = seenIDs[id] {
            throw WorkloadError("\(at): id \"\(id)\" is already used by an experiment in \(other) (is a file included twice?)")
        }
        seenIDs[id] = file
        let claims = try experimentClaims(table, at: at)
        var description: String?
        if let value = table["description"] {
            guard let text = value.string else {
                throw WorkloadError("\(at): description = \(render(value)): must be a string, not \(typeName(value))")
            }
            description = text
        }
        var base: Settings = [:]
        if let value = table["base"] {
            guard let baseTable = value.table else {
                throw WorkloadError("\(at): base = \(render(value)): must be a table: [experiment.base]")
            }
            base = try parseSettings(baseTable, at: at)
        }
        var axes: [(key: String, values: [SettingValue])] = []
        if let value = table["matrix"] {
            guard let matrixTable = value.table else {
                throw WorkloadError("\(at): matrix = \(render(value)): must be a table: [experiment.matrix]")
            }
            axes = try parseMatrix(matrixTable, at: "\(at): matrix")
        }
        let variants = try experimentVariants(table, at: at)

        var varied = axes.filter { $0.values.count > 1 }.map(\.key)
        if variants.count > 1 {
            let keys = Set(variants.flatMap(\.keys)).filter { key in Set(variants.map { $0[key] }).count > 1 }
            varied += Workload.settingKeys.filter { keys.contains($0) && !varied.contains($0) }
        }
        let settings = defaults.merging(base) { _, new in new }
        var repeats = 1
        if case .int(let n)? = settings["repeat"] { repeats = n }
        try checkCellCount(axes: axes, variants: variants.count, repeats: repeats, at: at)
        let round = try variants.flatMap { variant in
            try cartesianProduct(axes).map { combination in
                var cellSettings = settings.merging(variant) { _, new in new }
                for (key, value) in combination { cellSettings[key] = value }
                return try makeCell(
                    index: 0, experiment: id, claims: claims,
                    settings: cellSettings, varied: varied, at: at, directory: (file as NSString).deletingLastPathComponent)
            }
        }
        let first = cells.count + 1
        // Repeats run round by round (A B C A B C), so drift on a shared machine spreads over every variant.
        for pass in 1...repeats {
            for var cell in round {
                cell.index = cells.count + 1
                cell.repetition = pass
                cells.append(cell)
            }
        }
        experiments.append(Experiment(
            file: file, id: id, claims: claims, description: description,
            cellIndices: first...cells.count))
    }

    func experimentID(_ table: TOMLTable, at anonymous: String) throws -> String {
        guard let idValue = table["id"] else {
            throw WorkloadError("\(anonymous): missing id: add id = \"some-name\" ([a-z0-9-]+)")
        }
        guard let id = idValue.string else {
            throw WorkloadError("\(anonymous): id = \(render(idValue)): must be a string of [a-z0-9-]+, not \(typeName(idValue))")
        }
        guard !id.isEmpty, id.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }) else {
            throw WorkloadError("\(anonymous): id = \(render(idValue)): must match [a-z0-9-]+ (lowercase letters, digits, dashes)")
        }
        return id
    }

    func experimentClaims(_ table: TOMLTable, at: String) throws -> [String] {
        guard let claimsValue = table["claims"] else { return [] }
        guard let list = claimsValue.array, list.allSatisfy({ $0.type == .string }) else {
            throw WorkloadError("\(at): claims = \(render(claimsValue)): must be an array of claim ids like [\"M2\", \"E1\"]")
        }
        return try list.map { entry in
            let claim = entry.string!
            guard isClaimID(claim) else {
                throw WorkloadError("\(at): claims = \(render(claimsValue)): \"\(claim)\" is not a claim id: use an upper-case letter and a number, like \"M2\" (see CLAIMS.md)")
            }
            return claim
        }
    }

    /// `[[experiment.variants]]`: cells that differ in several settings at once (an open loop at 50 connections
    /// beside closed loops at 2 to 6), each crossed with the matrix; one empty variant when there are none.
    func experimentVariants(_ table: TOMLTable, at: String) throws -> [Settings] {
        guard let value = table["variants"] else { return [[:]] }
        guard let list = value.array, !list.isEmpty, list.allSatisfy({ $0.table != nil }) else {
            throw WorkloadError("\(at): variants = \(render(value)): must be one or more tables: [[experiment.variants]] with settings like connections = 4")
        }
        return try list.enumerated().map { k, entry in
            if let value = entry.table!["repeat"] {
                throw WorkloadError("\(at): variant #\(k + 1): repeat = \(render(value)): applies to the whole experiment: set it in [experiment.base] or [defaults]")
            }
            return try parseSettings(entry.table!, at: "\(at): variant #\(k + 1)")
        }
    }

    /// Refuses a matrix past `Workload.maxCells` before building it (the count is capped, so it cannot overflow).
    func checkCellCount(axes: [(key: String, values: [SettingValue])], variants: Int, repeats: Int, at: String) throws {
        let cap = Workload.maxCells + 1
        let planned = [variants, repeats].reduce(axes.reduce(1) { min($0 * $1.values.count, cap) }) { min($0 * $1, cap) }
        guard cells.count + planned > Workload.maxCells else { return }
        var factors = axes.map { "\($0.key) \($0.values.count)" }
        if variants > 1 { factors.append("variants \(variants)") }
        if repeats > 1 { factors.append("repeat \(repeats)") }
        let count = planned > Workload.maxCells ? "more than \(Workload.maxCells)" : "\(planned)"
        let shape = factors.isEmpty ? "" : " (" + factors.joined(separator: " x ") + ")"
        let before = cells.isEmpty ? "" : " after \(cells.count) from the experiments before it"
        throw WorkloadError("\(at): matrix: \(count) cells\(shape)\(before): a workload may have at most \(Workload.maxCells) cells: shorten the lists or split the workload")
    }
}

/// Every combination of the axes, first axis slowest.
private func cartesianProduct(_ axes: [(key: String, values: [SettingValue])]) -> [[(String, SettingValue)]] {
    var combinations: [[(String, SettingValue)]] = [[]]
    for axis in axes {
        combinations = combinations.flatMap { prefix in axis.values.map { prefix + [(axis.key, $0)] } }
    }
    return combinations
}

/// Builds one cell from merged settings and checks what spans several keys.
private func makeCell(
    index: Int, experiment: String, claims: [String], settings: Settings, varied: [String], at: String, directory: String
) throws -> Cell {
    var cell = Cell(index: index, experiment: experiment, claims: claims, varied: varied)
    for (key, value) in settings {
        switch (key, value) {
        case ("model", .text(let v)): cell.model = v
        case ("io", .text(let v)): cell.io = v
        case ("protocol", .text(let v)): cell.protocol = v
        case ("reactors", .int(let v)): cell.reactors = v
        case ("workers", .int(let v)): cell.workers = v
        case ("connections", .int(let v)): cell.connections = v
        case ("active", .int(let v)): cell.active = v
        case ("message_size", .int(let v)): cell.messageSize = v
        case ("rate", .int(let v)): cell.rate = v
        case ("duration", .seconds(let v)): cell.duration = v
        case ("warmup", .seconds(let v)): cell.warmup = v
        case ("connect_rate", .int(let v)): cell.connectRate = v
        case ("server_cpus", .cpus(let v)): cell.serverCPUs = v
        case ("client_cpus", .cpus(let v)): cell.clientCPUs = v
        case ("numa_node", .int(let v)): cell.numaNode = v
        case ("server_args", .strings(let v)): cell.serverArgs = v
        case ("load_args", .strings(let v)): cell.loadArgs = v
        case ("server_command", .strings(let v)): cell.serverCommand = v
        case ("server_config", .text(let v)): cell.serverConfig = v.hasPrefix("/") ? v : (directory.isEmpty ? v : directory + "/" + v)
        case ("load", .text(let v)): cell.load = v
        case ("malloc_probe", .flag(let v)): cell.mallocProbe = v
        case ("topology", .text(let v)): cell.topology = v
        case ("timeout", .seconds(let v)): cell.timeout = v
        case ("request_timeout", .seconds(let v)): cell.requestTimeout = v
        case ("allow_errors", .flag(let v)): cell.allowErrors = v
        case ("needs_cpus", .int(let v)): cell.needsCPUs = v
        case ("timeline", .seconds(let v)): cell.timeline = v
        case ("evidence_duration", .seconds(let v)): cell.evidenceDuration = v
        case ("repeat", .int(let v)): cell.repeats = v
        default: throw WorkloadError("\(at): \(key) = \(value): parsed as the wrong kind of value (a bug in muxlab)")
        }
    }
    if settings["active"] == nil { cell.active = cell.connections }
    let external = !cell.serverCommand.isEmpty
    let place0 = cell.label.isEmpty ? at : "\(at): cell \(cell.label)"
    if !external && !Workload.models.contains(cell.model) {
        throw WorkloadError("\(place0): model = \"\(cell.model)\": must be one of \(Workload.models.joined(separator: ", ")) (any other name needs server_command, for an external server)")
    }
    if !external && cell.serverConfig != nil {
        throw WorkloadError("\(place0): server_config = \"\(cell.serverConfig!)\" applies only with server_command (an external server)")
    }
    if external && !cell.serverArgs.isEmpty {
        throw WorkloadError("\(place0): server_args = \(cell.serverArgs) are flags of muxlab serve; an external server takes its arguments in server_command")
    }
    if cell.load == "wrk" {
        guard cell.protocol == "http", cell.rate == nil, cell.active == cell.connections, cell.loadArgs.isEmpty else {
            throw WorkloadError("\(place0): load = \"wrk\" drives HTTP in a closed loop over every connection: it needs protocol = \"http\", no rate, active = connections and no load_args")
        }
    }
    let ioModes = external ? ["external"] + Workload.ioBackends : Workload.ioModes(ofModel: cell.model)
    if settings["io"] == nil { cell.io = ioModes[0] }
    if settings["timeout"] == nil { cell.timeout = Cell.defaultTimeout(warmup: cell.warmup, duration: cell.duration) + (cell.evidenceDuration ?? 0) }

    let place = cell.label.isEmpty ? at : "\(at): cell \(cell.label)"
    if !ioModes.contains(cell.io) {
        throw WorkloadError("\(place): model = \"\(cell.model)\" runs on io = \(ioModes.map { "\"\($0)\"" }.joined(separator: " or ")), not \"\(cell.io)\"")
    }
    if cell.topology == "netns" && cell.connections > LoadGenerator.portsPerSource {
        throw WorkloadError("\(place): topology = \"netns\" with connections = \(cell.connections): the load has one source address there (~\(LoadGenerator.portsPerSource) ephemeral ports); more connections need topology = \"loopback\" (extra sources 127.0.0.2, ...)")
    }
    if cell.active > cell.connections {
        throw WorkloadError("\(place): active = \(cell.active) exceeds connections = \(cell.connections): active must be an integer 0...connections")
    }
    let ramp = Double(cell.connections) / Double(cell.connectRate)
    // The evidence window follows the timing window when probes are on.
    let evidence = cell.evidenceSeconds
    let needed = ramp + cell.warmup + cell.duration + evidence
    if cell.timeout <= needed {
        throw WorkloadError("\(place): timeout = \(formatDecimal(cell.timeout)) s is too short: connecting (\(cell.connections) connections at connect_rate = \(cell.connectRate)/s, \(formatDecimal(ramp)) s) + warmup (\(formatDecimal(cell.warmup)) s) + duration (\(formatDecimal(cell.duration)) s) + evidence window (\(formatDecimal(evidence)) s) need \(formatDecimal(needed)) s: raise timeout or connect_rate")
    }
    return cell
}

/// Parses `[defaults]` or `base`: every key must be a known setting.
private func parseSettings(_ table: TOMLTable, at: String) throws -> Settings {
    try checkKeys(table, allowed: Workload.settingKeys, at: at)
    var settings: Settings = [:]
    for spec in settingSpecs {
        guard let value = table[spec.name] else { continue }
        settings[spec.name] = try parseSetting(spec, value, at: at)
    }
    return settings
}

/// Parses `matrix`: every key a known setting, every value a non-empty list of distinct values.
private func parseMatrix(_ table: TOMLTable, at: String) throws -> [(key: String, values: [SettingValue])] {
    try checkKeys(table, allowed: Workload.settingKeys, at: at)
    var axes: [(key: String, values: [SettingValue])] = []
    for spec in settingSpecs {
        guard let value = table[spec.name] else { continue }
        if spec.name == "repeat" {
            throw WorkloadError("\(at): repeat = \(render(value)): repeat is not a matrix axis: set it in [defaults] or [experiment.base], like repeat = 3")
        }
        guard let list = value.array else {
            throw WorkloadError("\(at): \(spec.name) = \(render(value)): matrix values must be lists of \(spec.kind.allowed), like \(spec.name) = [\(render(value))]")
        }
        guard !list.isEmpty else {
            throw WorkloadError("\(at): \(spec.name) = []: a matrix list must not be empty: give at least one value (\(spec.kind.allowed)) or remove the key")
        }
        var values: [SettingValue] = []
        var seen = Set<SettingValue>()  // not values.contains: a long list would take quadratic time
        for element in list {
            let parsed = try parseSetting(spec, element, at: at)
            guard seen.insert(parsed).inserted else {
                throw WorkloadError("\(at): \(spec.name) = \(render(value)): \(render(element)) is listed twice")
            }
            values.append(parsed)
        }
        axes.append((spec.name, values))
    }
    return axes
}

/// Checks one value against its key's type and range.
private func parseSetting(_ spec: SettingSpec, _ value: TOMLValueConvertible, at: String) throws -> SettingValue {
    let prefix = "\(at): \(spec.name) = \(render(value))"
    func wrongType() -> WorkloadError {
        WorkloadError("\(prefix): must be \(spec.kind.allowed), not \(typeName(value))")
    }
    switch spec.kind {
    case .choice(let names):
        guard let text = value.string else {
            throw WorkloadError("\(prefix): must be a string, \(spec.kind.allowed); not \(typeName(value))")
        }
        guard names.contains(text) else { throw WorkloadError("\(prefix): must be \(spec.kind.allowed)") }
        return .text(text)

    case .modelName:
        guard let text = value.string else {
            throw WorkloadError("\(prefix): must be a string, \(spec.kind.allowed); not \(typeName(value))")
        }
        guard !text.isEmpty, text.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }) else {
            throw WorkloadError("\(prefix): must be \(spec.kind.allowed)")
        }
        return .text(text)

    case .path:
        guard let text = value.string, !text.isEmpty, !text.contains("\0") else { throw wrongType() }
        return .text(text)

    case .int(let range):
        guard value.type == .int, let number = value.int else { throw wrongType() }
        guard range.contains(number) else {
            let allowed = spec.name == "active" ? "an integer 0...connections" : spec.kind.allowed
            throw WorkloadError("\(prefix): must be \(allowed)")
        }
        return .int(number)

    case .duration(let range):
        let seconds: Double
        switch value.type {
        case .int: seconds = Double(value.int!)
        case .double: seconds = value.double!
        case .string:
            do {
                seconds = try parseDuration(value.string!, name: spec.name)
            } catch let error as ValueError {
                throw WorkloadError("\(prefix): \(error.description)")
            }
        default: throw wrongType()
        }
        guard seconds.isFinite, range.contains(seconds) else {
            let shown = value.type == .string && seconds.isFinite ? " (\(formatDecimal(seconds)) s)" : ""
            throw WorkloadError("\(prefix)\(shown): must be \(spec.kind.allowed)")
        }
        return .seconds(seconds)

    case .cpus:
        guard let text = value.string else { throw wrongType() }
        do {
            return .cpus(try CPUList(parsing: text, name: spec.name))
        } catch let error as ValueError {
            throw WorkloadError("\(prefix): \(error.description)")
        }

    case .bool:
        guard value.type == .bool, let flag = value.bool else { throw wrongType() }
        return .flag(flag)

    case .strings:
        guard let list = value.array, list.allSatisfy({ $0.type == .string }) else {
            throw WorkloadError("\(prefix): must be an array of strings like [\"--epollout\", \"always\"] (in the matrix, a list of such arrays), not \(typeName(value))")
        }
        let strings = list.map { $0.string! }
        if let reserved = spec.name == "server_args" ? Workload.reservedServerFlags
            : spec.name == "load_args" ? Workload.reservedLoadFlags : nil {
            for argument in strings {
                let flag = String(argument.split(separator: "=", maxSplits: 1).first ?? "")
                if let key = reserved[flag] {
                    throw WorkloadError("\(prefix): \(flag) is set by the driver from \(key): use that key instead")
                }
            }
        }
        return .strings(strings)
    }
}

// MARK: - Helpers

private func checkKeys(_ table: TOMLTable, allowed: [String], at: String) throws {
    for key in table.keys.sorted() where !allowed.contains(key) {
        throw WorkloadError("\(at): unknown key \"\(key)\": allowed keys are " + allowed.joined(separator: ", "))
    }
}

/// Where TOMLKit cannot be handed `text`, found before it is: TOMLKit passes C
/// strings, so a NUL would silently drop the rest of the file, and a `\u0000`
/// escape the rest of a string or key; and toml++ 3.4
/// fails an assertion, aborting the process, on a table header whose name starts
/// with anything but a key character or a quote (`[[` then a line break, `[=`;
/// marzer/tomlplusplus#301) and on a `}` or a Unicode line separator where an
/// array expects a value (`[}`). Each is a syntax error anyway. `statement` is the
/// scalar offset where the statement holding it begins, so what comes before can
/// still be parsed for an earlier error.
private func unparsableSpot(in text: String) -> (statement: Int, line: Int, column: Int, what: String)? {
    let scalars = Array(text.unicodeScalars)
    let end = scalars.firstIndex(of: "\0") ?? scalars.count  // toml++ would see nothing past it
    func lineStart(_ offset: Int) -> Int { scalars[..<offset].lastIndex(of: "\n").map { $0 + 1 } ?? 0 }
    func spot(_ statement: Int, _ offset: Int, _ what: String) -> (statement: Int, line: Int, column: Int, what: String) {
        let line = 1 + scalars[..<offset].reduce(0) { $1 == "\n" ? $0 + 1 : $0 }
        return (statement, line, offset - lineStart(offset) + 1, what)
    }
    func isBlank(_ i: Int) -> Bool { i < end && (scalars[i] == " " || scalars[i] == "\t") }
    var escapedNUL: Int?  // TOMLKit reads strings as C strings: a \u0000 would cut the string short
    func isEscapedNUL(_ j: Int) -> Bool {
        let digits = j + 1 < end && scalars[j + 1] == "u" ? 4 : j + 1 < end && scalars[j + 1] == "U" ? 8 : 0
        return digits > 0 && j + 1 + digits < end && scalars[(j + 2)...(j + 1 + digits)].allSatisfy { $0 == "0" }
    }
    /// Index just past the string opening at `i`, or where a line break or the end cuts it short.
    func skipString(_ i: Int) -> Int {
        let quote = scalars[i]
        let escapes = quote == "\""
        var j = i + 1
        if i + 2 < end && scalars[i + 1] == quote && scalars[i + 2] == quote {
            j = i + 3
            while j < end {
                if escapes && scalars[j] == "\\" {
                    if escapedNUL == nil && isEscapedNUL(j) { escapedNUL = j }
                    j += 2
                    continue
                }
                if j + 2 < end && scalars[j] == quote && scalars[j + 1] == quote && scalars[j + 2] == quote {
                    j += 3
                    for _ in 0..<2 where j < end && scalars[j] == quote { j += 1 }  // """a"""" ends in a quote
                    return j
                }
                j += 1
            }
            return end
        }
        while j < end && scalars[j] != "\n" {
            if escapes && scalars[j] == "\\" {
                if escapedNUL == nil && isEscapedNUL(j) { escapedNUL = j }
                j += 2
                continue
            }
            if scalars[j] == quote { return j + 1 }
            j += 1
        }
        return min(j, end)
    }

    func shown(_ scalar: Unicode.Scalar) -> String {
        scalar == "\n" ? "a line break" : scalar.value > 0x20 && scalar.value < 0x7F ? "'\(scalar)'" : String(format: "U+%04X", scalar.value)
    }

    var i = scalars.first == "\u{FEFF}" ? 1 : 0
    var open: [Unicode.Scalar] = []  // arrays and inline tables open in a value
    var statementStart = true
    var statement = 0  // where the statement being read began
    let escapedNULWhat = "a \\u0000 (NUL) escape in a string: it would cut the string short"
    while i < end {
        if let at = escapedNUL { return spot(statement, at, escapedNULWhat) }
        if statementStart && !["\n", " ", "\t", "\r", "#"].contains(scalars[i]) { statement = i }
        switch scalars[i] {
        case "\n":
            if open.isEmpty { statementStart = true }
            i += 1
        case " ", "\t", "\r":
            i += 1
        case "#":
            while i < end && scalars[i] != "\n" { i += 1 }
        case "\"", "'":
            i = skipString(i)
            statementStart = false
        case "[" where open.isEmpty && statementStart:
            var j = i + 1
            while isBlank(j) { j += 1 }
            if j == i + 1 && j < end && scalars[j] == "[" {
                j += 1
                while isBlank(j) { j += 1 }
            }
            if j < end {
                let first = scalars[j]
                let isKeyStart = ("0"..."9").contains(first) || ("a"..."z").contains(first) || ("A"..."Z").contains(first)
                    || ["_", "-", "\"", "'", "]"].contains(first)
                if !isKeyStart {
                    return spot(i, j, "a table name must start with a letter, digit, _, - or a quote, not \(shown(first))")
                }
            }
            // The rest of the header's line is its name, not a value.
            while j < end && scalars[j] != "\n" && scalars[j] != "#" {
                j = scalars[j] == "\"" || scalars[j] == "'" ? skipString(j) : j + 1
            }
            i = j
            statementStart = false
        case "[", "{":
            open.append(scalars[i])
            statementStart = false
            i += 1
        case "}" where open.last == "[":
            return spot(statement, i, "unexpected '}' in an array")
        case "\u{2028}", "\u{2029}", "\u{85}":
            return spot(statement, i, "unexpected \(shown(scalars[i])): a line separator outside a string")
        case "]", "}":
            _ = open.popLast()
            statementStart = false
            i += 1
        default:
            statementStart = false
            i += 1
        }
    }
    if let at = escapedNUL { return spot(statement, at, escapedNULWhat) }
    guard end < scalars.count else { return nil }
    return spot(statementStart ? lineStart(end) : statement, end, "a NUL character (U+0000) is not allowed in TOML text")
}

/// Line and column (in characters) of the first byte that is not UTF-8.
private func firstInvalidUTF8(in bytes: [UInt8]) -> (line: Int, column: Int)? {
    var parser = Unicode.UTF8.ForwardParser()
    var input = bytes.makeIterator()
    var (line, column) = (1, 1)
    while true {
        switch parser.parseScalar(from: &input) {
        case .valid(let encoded):
            if encoded.count == 1 && encoded.first == 0x0A { (line, column) = (line + 1, 1) } else { column += 1 }
        case .error: return (line, column)
        case .emptyInput: return nil
        }
    }
}

private func isClaimID(_ text: String) -> Bool {
    let scalars = Array(text.unicodeScalars)
    guard scalars.count >= 2, ("A"..."Z").contains(scalars[0]) else { return false }
    return scalars.dropFirst().allSatisfy { ("0"..."9").contains($0) }
}

/// The file's identity for cycle detection: absolute, symlinks resolved.
private func canonicalPath(_ path: String) -> String {
    URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
}

/// "an integer", "a string", ... for type errors.
private func typeName(_ value: TOMLValueConvertible) -> String {
    switch value.type {
    case .int: return "an integer"
    case .double: return "a floating-point number"
    case .string: return "a string"
    case .bool: return "a boolean"
    case .array: return "an array"
    case .table: return "a table"
    case .date: return "a date"
    case .time: return "a time"
    case .dateTime: return "a date-time"
    }
}

/// A value as it would be written in the file, for messages.
private func render(_ value: TOMLValueConvertible) -> String {
    switch value.type {
    case .string:
        let text = value.string ?? ""
        return "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    case .int: return String(value.int ?? 0)
    case .double:
        let number = value.double ?? 0
        return number == number.rounded() && abs(number) < 1e15 ? String(format: "%.1f", number) : "\(number)"
    case .bool: return String(value.bool ?? false)
    case .array: return "[" + (value.array.map { $0.map(render).joined(separator: ", ") } ?? "") + "]"
    case .table: return "{...}"
    default: return value.debugDescription
    }
}
