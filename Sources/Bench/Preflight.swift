import Kernel

/// Checks every cell against this machine before anything runs: a CPU or NUMA node
/// that does not exist is one line naming the cell, the value and what exists; a netns
/// cell where namespaces cannot be made (not root, no `ip`) says what it needs. A cell that needs more
/// CPUs than the machine has (`needs_cpus`) is not an error: it is written "not testable here".
public enum Preflight {
    /// Why the cell cannot show its claim on this machine (it needs more CPUs than are online); nil when it can.
    public static func notTestable(_ cell: Cell, online: CPUList = Placement.onlineCPUs()) -> String? {
        guard let needed = cell.needsCPUs, needed > online.cpus.count else { return nil }
        let loops = cell.reactors > 1 ? "\(cell.reactors) loops on server_cpus \(cell.serverCPUs), " : "server_cpus \(cell.serverCPUs), "
        return "not testable here: needs \(needed) CPUs (\(loops)beside the load's client_cpus \(cell.clientCPUs)); this machine has \(online.cpus.count) CPU\(online.cpus.count == 1 ? "" : "s") in all (\(online))"
    }

    public static func problems(_ cells: [Cell], online: CPUList = Placement.onlineCPUs(),
                                numaNodes: Int = Placement.numaNodeCount,
                                netnsUnavailable: @autoclosure () -> String? = CellNetwork.unavailableReason()) -> [String] {
        var seen = Set<String>()
        var out: [String] = []
        func report(_ text: String) { if seen.insert(text).inserted { out.append(text) } }
        let there = Set(online.cpus)
        for cell in cells {
            if notTestable(cell, online: online) != nil { continue }  // never runs here: its CPUs need not exist
            for (key, list) in [("server_cpus", cell.serverCPUs), ("client_cpus", cell.clientCPUs)] {
                let missing = list.cpus.filter { !there.contains($0) }
                if !missing.isEmpty {
                    report("experiment \"\(cell.experiment)\": \(key) = \"\(list)\": CPU \(CPUList(missing)) does not exist; this machine has CPUs \(online)")
                }
            }
            if let node = cell.numaNode, node >= numaNodes {
                report("experiment \"\(cell.experiment)\": numa_node = \(node) does not exist; this machine has NUMA node\(numaNodes == 1 ? " 0" : "s 0-\(numaNodes - 1)")")
            }
            if cell.topology == .netns, let reason = netnsUnavailable() {
                report("experiment \"\(cell.experiment)\": topology = \"netns\" \(reason)")
            }
        }
        return out
    }
}
