import Foundation

/// The time a set of CPUs spent, by the kernel's account in /proc/stat (USER_HZ ticks): all of it, and
/// the part the hypervisor stole (the vCPU was runnable but another guest ran). On a shared host, steal
/// in a window means the cell's server and load ran slower than their code does: CPU per request and
/// wake-ups per accept moved 4-5x in a minute of 35-55 % steal here, with nothing changed.
public struct HostCPUTimes: Equatable, Sendable {
    /// user + nice + system + idle + iowait + irq + softirq + steal (guest time is inside user already).
    public let total: UInt64
    public let steal: UInt64

    public init(total: UInt64, steal: UInt64) {
        self.total = total
        self.steal = steal
    }

    /// The CPUs' lines of /proc/stat summed; nil when the file cannot be read or names none of them.
    public static func read(cpus: [Int]) -> HostCPUTimes? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return nil }
        return parse(text, cpus: cpus)
    }

    /// `cpuN user nice system idle iowait irq softirq steal guest guest_nice` lines for the CPUs asked for.
    public static func parse(_ text: String, cpus: [Int]) -> HostCPUTimes? {
        let wanted = Set(cpus)
        var total: UInt64 = 0, steal: UInt64 = 0, found = 0
        for line in text.split(separator: "\n") where line.hasPrefix("cpu") {
            let fields = line.split(separator: " ")
            guard let n = Int(fields[0].dropFirst(3)), wanted.contains(n), fields.count >= 9 else { continue }
            let ticks = fields[1...8].compactMap { UInt64($0) }
            guard ticks.count == 8 else { continue }
            total += ticks.reduce(0, +)
            steal += ticks[7]
            found += 1
        }
        return found == 0 ? nil : HostCPUTimes(total: total, steal: steal)
    }

    /// The share of the CPUs' time stolen since `earlier` (0-1); nil when no tick passed.
    public func stealShare(since earlier: HostCPUTimes) -> Double? {
        guard total > earlier.total, steal >= earlier.steal else { return nil }
        return min(1, Double(steal - earlier.steal) / Double(total - earlier.total))
    }
}
