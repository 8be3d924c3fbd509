import Foundation
import Kernel
import Vocabulary
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
    /// `[hosts.NAME]` of every file loaded, by name (empty: every cell runs on this machine).
    public let hosts: [String: RemoteHost]
    private let expanded: [Cell]

    /// The hosts the cells name, in name order.
    public var hostsInUse: [RemoteHost] {
        let names = Set(expanded.flatMap { ($0.serverHost.map { [$0] } ?? []) + $0.loadHosts })
        return names.sorted().compactMap { hosts[$0] }
    }

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
        return Workload(path: path, title: loader.rootTitle, experiments: loader.experiments, hosts: loader.hosts, expanded: loader.cells)
    }

    /// Most cells a workload may expand into, repeats included: hours of running even
    /// at the shortest settings, so only a matrix typo reaches it; refused before any cell is built.
    public static let maxCells = 10_000

    /// Names of the settings allowed in `[defaults]`, `base` and `matrix`, in matrix order.
    public static var settingKeys: [String] { settingSpecs.map(\.name) }

    /// Concurrency models `muxlab serve --model` knows (the vocabulary's).
    public static let models = ServerModel.allCases.map(\.rawValue)
    /// I/O back-ends `muxlab serve --io` knows, and "external" for a server_command's own.
    public static let ioBackends = IOMode.allCases.map(\.rawValue) + ["external"]

    /// The back-ends each model runs on, its default first (as `muxlab serve` decides).
    public static func ioModes(ofModel model: String) -> [String] {
        (ServerModel(rawValue: model) ?? .reactor).ioModes.map(\.rawValue)
    }
    public static let protocols = WireProtocol.allCases.map(\.rawValue)
    /// What drives a cell: muxlab's own load generator, or wrk (HTTP, closed loop).
    public static let loadGenerators = LoadGeneratorKind.allCases.map(\.rawValue)
    /// Where server and load meet: on loopback in the driver's own network namespace, or across
    /// a veth pair between two network namespaces the driver creates for the cell.
    public static let topologies = Topology.allCases.map(\.rawValue)
}

// MARK: - Loading

private struct Loader {
    var experiments: [Experiment] = []
    var cells: [Cell] = []
    var rootTitle: String?
    /// Experiment id -> file that defined it, to refuse duplicates.
    var seenIDs: [String: String] = [:]
    /// `[hosts]` of the files loaded so far; a name defined twice must be defined alike.
    var hosts: [String: RemoteHost] = [:]

    /// `chain`: the files (display path, canonical path) being loaded above this one.
    /// `via`: "file: include \"name\"" when reached through an include, for messages.
    /// `only`: the experiment ids to take from this file (an include entry "file.toml#id,id"); nil: all.
    mutating func loadFile(_ path: String, chain: [(shown: String, canonical: String)], via: String?, only: Set<String>? = nil) throws {
        let root = try Loader.parse(path, via: via)
        let canonical = canonicalPath(path)
        let chain = chain + [(path, canonical)]

        try checkKeys(root, allowed: ["title", "include", "hosts", "defaults", "experiment"], at: "\(path): top level")
        if let title = root["title"] {
            guard let string = title.string else {
                throw WorkloadError("\(path): title = \(render(title)): must be a string, not \(typeName(title))")
            }
            if chain.count == 1 { rootTitle = string }  // an included file's title is not the workload's
        }

        if let include = root["include"] { try loadIncludes(include, of: path, chain: chain) }
        if let value = root["hosts"] { try mergeHosts(value, at: path, into: &hosts) }

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

    /// An include list: each file (or `file#id,id`) loaded in turn, a cycle refused naming its files.
    mutating func loadIncludes(_ include: TOMLValueConvertible, of path: String, chain: [(shown: String, canonical: String)]) throws {
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

    /// The file's text parsed as TOML; a file that is not UTF-8 or not TOML is refused naming the line and column.
    static func parse(_ path: String, via: String?) throws -> TOMLTable {
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
        do {
            if let spot = unparsableSpot(in: text) {
                // Parse what comes before it, so an earlier syntax error is still the one reported.
                _ = try TOMLTable(string: String(String.UnicodeScalarView(text.unicodeScalars.prefix(spot.statement))))
                throw WorkloadError("\(path):\(spot.line):\(spot.column): TOML syntax error: \(spot.what)")
            }
            return try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            let at = error.source.begin
            let position = at.line > 0 ? "\(at.line):\(at.column):" : ""
            throw WorkloadError("\(path):\(position) TOML syntax error: \(error.description)")
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
                let cell = try makeCell(
                    index: 0, experiment: id, claims: claims,
                    settings: cellSettings, varied: varied, at: at, directory: (file as NSString).deletingLastPathComponent)
                try checkHosts(cell, hosts: hosts, at: at)
                return cell
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
func cartesianProduct(_ axes: [(key: String, values: [SettingValue])]) -> [[(String, SettingValue)]] {
    var combinations: [[(String, SettingValue)]] = [[]]
    for axis in axes {
        combinations = combinations.flatMap { prefix in axis.values.map { prefix + [(axis.key, $0)] } }
    }
    return combinations
}

/// A choice setting's typed value. The setting's spec checked the word against the same cases, so a miss
/// here is a spec and a type that disagree: said as such, never trapped.
private func chosen<T: RawRepresentable & CaseIterable>(_ word: String, _ key: String, _ at: String) throws -> T where T.RawValue == String {
    guard let value = T(rawValue: word) else {
        throw WorkloadError("\(at): \(key) = \"\(word)\": must be one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return value
}

/// Builds one cell from merged settings and checks what spans several keys.
func makeCell(
    index: Int, experiment: String, claims: [String], settings: Settings, varied: [String], at: String, directory: String
) throws -> Cell {
    var cell = Cell(index: index, experiment: experiment, claims: claims, varied: varied)
    for (key, value) in settings {
        switch (key, value) {
        case ("model", .text(let v)): cell.model = v
        case ("io", .text(let v)): cell.io = v
        case ("protocol", .text(let v)): cell.protocol = try chosen(v, key, at)
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
        case ("server_command", .strings(let v)):
            // {workload_dir}: the workload file's directory, absolute (a script shipped beside the workload).
            let absolute = directory.hasPrefix("/") ? directory
                : FileManager.default.currentDirectoryPath + (directory.isEmpty ? "" : "/" + directory)
            cell.serverCommand = v.map { $0.replacingOccurrences(of: "{workload_dir}", with: absolute) }
        case ("server_config", .text(let v)): cell.serverConfig = besideWorkload(v, directory)
        case ("load", .text(let v)): cell.load = try chosen(v, key, at)
        case ("malloc_probe", .flag(let v)): cell.mallocProbe = v
        case ("topology", .text(let v)): cell.topology = try chosen(v, key, at)
        case ("timeout", .seconds(let v)): cell.timeout = v
        case ("request_timeout", .seconds(let v)): cell.requestTimeout = v
        case ("allow_errors", .flag(let v)): cell.allowErrors = v
        case ("needs_cpus", .int(let v)): cell.needsCPUs = v
        case ("timeline", .seconds(let v)): cell.timeline = v
        case ("evidence_duration", .seconds(let v)): cell.evidenceDuration = v
        case ("repeat", .int(let v)): cell.repeats = v
        case ("method", .text(let v)): cell.http.method = v
        case ("path", .text(let v)): cell.http.path = v
        case ("headers", .strings(let v)): cell.http.headers = v
        case ("body_file", .text(let v)): cell.http.bodyFile = besideWorkload(v, directory)
        case ("request_file", .text(let v)): cell.http.requestFile = besideWorkload(v, directory)
        case ("expect_status", .int(let v)): cell.http.expectStatus = v
        case ("expect_body", .text(let v)): cell.http.expectBody = v
        case ("wrk_script", .text(let v)): cell.wrkScript = besideWorkload(v, directory)
        case ("server_host", .text(let v)): cell.serverHost = v
        case ("load_hosts", .strings(let v)): cell.loadHosts = v
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
    if !cell.http.isDefault {
        // Name the first request key the workload set, with its value, so the message points at a line.
        let httpKeys = ["method", "path", "headers", "body_file", "request_file", "expect_status", "expect_body"]
        let given = httpKeys.first { settings[$0] != nil } ?? "method"
        let setting = "\(given) = \(cell.settingText(given))"
        guard cell.protocol == .http else {
            throw WorkloadError("\(place0): \(setting): \(httpKeys.joined(separator: ", ")) describe HTTP requests: they need protocol = \"http\", not \"\(cell.protocol.rawValue)\"")
        }
        guard cell.load == .muxlab else {
            throw WorkloadError("\(place0): \(setting): load = \"wrk\" sends its own requests: \(httpKeys.joined(separator: ", ")) are for muxlab's load (give wrk a wrk_script)")
        }
        do { _ = try cell.http.build(host: "127.0.0.1") } catch let e as LoadError {
            throw WorkloadError("\(place0): \(HTTPRequestSpec.inWorkloadTerms(e.description))")
        }
    }
    if cell.load == .wrk {
        guard cell.protocol == .http, cell.rate == nil, cell.active == cell.connections else {
            throw WorkloadError("\(place0): load = \"wrk\" drives HTTP in a closed loop over every connection: it needs protocol = \"http\", no rate and active = connections")
        }
        if let owned = cell.loadArgs.first(where: { arg in WrkReport.ownedFlags.contains { arg == $0 || arg.hasPrefix($0 + "=") } }) {
            throw WorkloadError("\(place0): load_args = \(cell.loadArgs): \(owned) is set by the driver (threads from client_cpus, connections, duration, request_timeout, the report script); give wrk's other flags (-H 'K: V', --latency) and a wrk_script for requests of your own")
        }
    }
    if let script = cell.wrkScript {
        guard cell.load == .wrk else {
            throw WorkloadError("\(place0): wrk_script = \"\(script)\" applies only with load = \"wrk\"")
        }
        guard FileManager.default.isReadableFile(atPath: script) else {
            throw WorkloadError("\(place0): wrk_script = \"\(script)\": no readable file there (paths are relative to the workload file)")
        }
    }
    let ioModes = external ? ["external"] + Workload.ioBackends : Workload.ioModes(ofModel: cell.model)
    if settings["io"] == nil { cell.io = ioModes[0] }
    if settings["timeout"] == nil { cell.timeout = Cell.defaultTimeout(warmup: cell.warmup, duration: cell.duration) + (cell.evidenceDuration ?? 0) }

    let place = cell.label.isEmpty ? at : "\(at): cell \(cell.label)"
    if !ioModes.contains(cell.io) {
        throw WorkloadError("\(place): model = \"\(cell.model)\" runs on io = \(ioModes.map { "\"\($0)\"" }.joined(separator: " or ")), not \"\(cell.io)\"")
    }
    if !external, let model = cell.serverModel, let io = cell.ioMode {
        // The server's own combination rules, applied before anything runs: a workload that loads runs.
        var variant = ServerVariant(model: model, io: io, wire: cell.protocol)
        variant.reactors = cell.reactors
        variant.workers = cell.workers
        do {
            try variant.apply(flags: cell.serverArgs)
        } catch {
            throw WorkloadError("\(place): server_args = \(cell.serverArgs): \(error)")
        }
        if let problem = variant.problems(ServerVariant.workloadSpelling).first {
            let flags = problem.setting.workloadKey == nil ? "server_args = \(cell.serverArgs): " : ""
            throw WorkloadError("\(place): \(flags)\(problem.text)")
        }
    }
    if cell.topology == .netns && cell.connections > LoadGenerator.portsPerSource {
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
