import Foundation
import Kernel
import Load
import TOMLKit

// MARK: - Settings

/// What one settings key accepts.
enum SettingKind {
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
    /// Any non-empty string (checked per cell where its meaning is known).
    case text
}

struct SettingSpec {
    let name: String
    let kind: SettingKind
}

/// The allowed keys, in matrix order (first key varies slowest).
let settingSpecs: [SettingSpec] = [
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
    // HTTP requests of muxlab's load (`muxlab load --method ...`): files relative to the workload.
    SettingSpec(name: "method", kind: .text),
    SettingSpec(name: "path", kind: .text),
    SettingSpec(name: "headers", kind: .strings),
    SettingSpec(name: "body_file", kind: .path),
    SettingSpec(name: "request_file", kind: .path),
    SettingSpec(name: "expect_status", kind: .int(HTTPRequestSpec.statusRange.lowerBound...HTTPRequestSpec.statusRange.upperBound)),
    SettingSpec(name: "expect_body", kind: .text),
    // load = "wrk": the user's Lua script (its done hook chained before muxlab's).
    SettingSpec(name: "wrk_script", kind: .path),
    // Other machines ([hosts.NAME]): the server's, and the load's (its connections split across them).
    SettingSpec(name: "server_host", kind: .text),
    SettingSpec(name: "load_hosts", kind: .strings),
]

/// A path as the workload wrote it, relative to the workload's directory unless absolute.
func besideWorkload(_ path: String, _ directory: String) -> String {
    path.hasPrefix("/") || directory.isEmpty ? path : directory + "/" + path
}

/// A validated setting value.
enum SettingValue: Hashable {
    case text(String)
    case int(Int)
    case seconds(Double)
    case cpus(CPUList)
    case strings([String])
    case flag(Bool)
}

typealias Settings = [String: SettingValue]

extension SettingKind {
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
        case .text: return "a non-empty string"
        }
    }
}

/// Parses `[defaults]` or `base`: every key must be a known setting.
func parseSettings(_ table: TOMLTable, at: String) throws -> Settings {
    try checkKeys(table, allowed: Workload.settingKeys, at: at)
    var settings: Settings = [:]
    for spec in settingSpecs {
        guard let value = table[spec.name] else { continue }
        settings[spec.name] = try parseSetting(spec, value, at: at)
    }
    return settings
}

/// Parses `matrix`: every key a known setting, every value a non-empty list of distinct values.
func parseMatrix(_ table: TOMLTable, at: String) throws -> [(key: String, values: [SettingValue])] {
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
func parseSetting(_ spec: SettingSpec, _ value: TOMLValueConvertible, at: String) throws -> SettingValue {
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

    case .path, .text:
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
        return .seconds(try parseDurationSetting(spec, value, range: range, prefix: prefix))

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
        return .strings(try parseArguments(spec, value, prefix: prefix))
    }
}

/// A duration: seconds as a number, or a string with a unit ("2s", "500ms").
private func parseDurationSetting(_ spec: SettingSpec, _ value: TOMLValueConvertible, range: ClosedRange<Double>, prefix: String) throws -> Double {
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
    default: throw WorkloadError("\(prefix): must be \(spec.kind.allowed), not \(typeName(value))")
    }
    guard seconds.isFinite, range.contains(seconds) else {
        let shown = value.type == .string && seconds.isFinite ? " (\(formatDecimal(seconds)) s)" : ""
        throw WorkloadError("\(prefix)\(shown): must be \(spec.kind.allowed)")
    }
    return seconds
}

/// An argument list (server_args, load_args): strings, none of them a flag the driver sets from a key.
private func parseArguments(_ spec: SettingSpec, _ value: TOMLValueConvertible, prefix: String) throws -> [String] {
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
    return strings
}

extension Workload {
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
