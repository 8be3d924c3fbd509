/// Parsing of the small value languages the CLI and workload files share:
/// durations ("5s", "250ms", "2m", "1.5") and CPU lists ("0", "0-3,6").

/// A user-facing parse error: names the value and what is allowed.
public struct ValueError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Seconds from "1.5", "5s", "250ms", "2m", "1h". Negative or non-finite values are refused.
public func parseDuration(_ text: String, name: String = "duration") throws -> Double {
    let s = text.trimmingCharacters(in: " \t")
    let units: [(String, Double)] = [("ms", 0.001), ("us", 0.000_001), ("s", 1), ("m", 60), ("h", 3600)]
    var number = Substring(s)
    var scale = 1.0
    for (suffix, factor) in units where s.hasSuffix(suffix) {
        number = s.dropLast(suffix.count)
        scale = factor
        break
    }
    guard let value = Double(number), value.isFinite, value >= 0 else {
        throw ValueError("\(name) '\(text)' is not a duration: use seconds like 5, 5s, 250ms, 2m")
    }
    return value * scale
}

/// A set of CPU ids, written as the kernel writes them: "0", "0-3", "0,2,4-5".
public struct CPUList: Equatable, Hashable, CustomStringConvertible, Sendable {
    public let cpus: [Int]

    public init(_ cpus: [Int]) { self.cpus = Array(Set(cpus)).sorted() }

    public init(parsing text: String, name: String = "cpus") throws {
        var out: [Int] = []
        let trimmed = text.trimmingCharacters(in: " \t")
        guard !trimmed.isEmpty else { throw ValueError("\(name) is empty: use a CPU list like 0, 1-3 or 0,2") }
        for part in trimmed.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count == 1 || bounds.count == 2,
                  let lo = Int(bounds[0].trimmingCharacters(in: " ")),
                  let hi = Int(bounds[bounds.count - 1].trimmingCharacters(in: " ")),
                  lo >= 0, hi >= lo, hi < 4096
            else {
                throw ValueError("\(name) '\(text)' is not a CPU list: use ids 0-4095 like 0, 1-3 or 0,2")
            }
            out.append(contentsOf: lo...hi)
        }
        self.init(out)
    }

    /// The kernel's compact form: "0-3,6".
    public var description: String {
        var parts: [String] = []
        var i = 0
        while i < cpus.count {
            var j = i
            while j + 1 < cpus.count && cpus[j + 1] == cpus[j] + 1 { j += 1 }
            parts.append(i == j ? "\(cpus[i])" : "\(cpus[i])-\(cpus[j])")
            i = j + 1
        }
        return parts.joined(separator: ",")
    }
}

extension StringProtocol {
    /// Drops leading and trailing characters found in `set` (Foundation-free).
    public func trimmingCharacters(in set: String) -> String {
        var sub = Substring(self)
        while let f = sub.first, set.contains(f) { sub.removeFirst() }
        while let l = sub.last, set.contains(l) { sub.removeLast() }
        return String(sub)
    }
}
