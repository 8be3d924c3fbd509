import Foundation
import Vocabulary

// Claim T1: "a process holds about 300 threads", from thread-per-connection with glibc's default stack.

extension ClaimRule {
    static let t1 = ClaimRule(
        claim: "T1",
        metric: "t1-threads: thread-per-connection with --thread-stack default at \(formatCount(t1ClaimedThreads)) connections and more (few active): per count connections_established of connections, errors, server_refused, server_threads (one per connection), and memory per thread from server_rss_kb / server_pss_kb (their growth per added thread; server_pss_kb_per_conn shown)",
        threshold: "a count is held when every run is ok with established = connections, 0 errors, 0 refused and server_threads >= connections; refuted (outdated): a count of >= \(t1Refuted.shown) (\(t1RefuteFactor)x \(formatCount(t1ClaimedThreads))) held; supported: the most held <= \(t1Supported.shown) while a larger count failed or was refused; else inconclusive. Memory per thread is judged against the stack: resident < \(t1Resident.shown) of it says the stack is address space, not memory",
        thresholds: [t1Refuted, t1Supported, t1Resident],
        columns: ["thread_stack", "connections", "connections_established", "errors", "server_threads", "server_rss_kb"],
        decide: decideT1)
}

/// The seed's figure: about 300 threads (and so connections) per process.
let t1ClaimedThreads = 300
/// Holding this many times the claimed figure refutes it.
let t1RefuteFactor = 10
let t1Refuted = Threshold("connections one process held, a thread each", .atLeast, Double(t1RefuteFactor * t1ClaimedThreads), meaning: "refuted")
let t1RefutedAt = Int(t1Refuted.value)
/// "Near 300": a server that holds nothing above this supports the claim.
let t1Supported = Threshold("the most connections held, a larger count failing", .atMost, Double(2 * t1ClaimedThreads), meaning: "supported")
let t1SupportedBelow = Int(t1Supported.value)
/// Resident memory per thread below this share of its stack: the stack is reserved address space, not memory.
let t1Resident = Threshold("RSS per added thread over its stack", .below, 0.1, unit: .percent, meaning: "shown: the stack is address space")

/// The `--thread-stack` value T1 reads: glibc's default stack.
private let t1Stack = "default"

/// server_pss_kb: the whole server's PSS at the window's end (T1 reads its growth per added thread).
private let serverPSSKB = Metric("server_pss_kb", \.serverPSSKB)

/// Why one run did not hold its connections, or nil when it did.
private func notHeld(_ row: ResultRow) -> String? {
    guard row.status == .ok else { return row.status.rawValue + (row.reason.map { " (\(String($0.prefix(100))))" } ?? "") }
    let n = row.connections ?? 0
    if let established = row.connectionsEstablished, established < n { return "\(formatCount(established)) of \(formatCount(n)) established" }
    if let refused = row.serverRefused, refused > 0 { return "\(formatCount(refused)) refused" }
    if let errors = row.errors, errors > 0 { return "\(formatCount(errors)) errors" }
    guard let threads = row.serverThreads else { return "server_threads empty" }
    if threads < n { return "\(formatCount(threads)) threads for \(formatCount(n)) connections" }
    return nil
}

func decideT1(_ data: ClaimRows) -> Finding {
    // Rows whose server ran with glibc's default stack, as its ready message said (a cell that never
    // started has no variant: kept, its failure is evidence).
    let rows = data.rows.filter { $0.model == ServerModel.threadPerConnection.rawValue && $0.variant?.threadStackIsGlibcDefault != false }
    guard !rows.isEmpty else { return data.lacking("no thread-per-connection rows with --thread-stack \(t1Stack)") }
    let counts = Array(Set(rows.compactMap(\.connections))).sorted()
    var held: [Int] = [], failed: [Int] = []
    var parts: [String] = []
    for n in counts {
        // A window-mismatch row is not data (server and load counted different requests): left out, named.
        let mismatched = rows.filter { $0.connections == n && $0.status == .windowMismatch }
        let runs = rows.filter { $0.connections == n && $0.status != .notApplicable && $0.status != .windowMismatch }
        guard !runs.isEmpty else {
            if !mismatched.isEmpty { parts.append("\(formatCount(n)) connections: not data (\(mismatched.count) window-mismatch row\(mismatched.count == 1 ? "" : "s"))") }
            continue
        }
        let why = runs.compactMap(notHeld)
        let group = repeatGroups(runs).first
        var text = "\(formatCount(n)) connections: "
        if why.isEmpty {
            held.append(n)
            text += "held, \(count(group, .serverThreads)) threads, RSS \(count(group, .serverRSSKB)) KB, PSS \(figure(group, .serverPSSKBPerConn)) KiB/connection"
        } else {
            failed.append(n)
            text += "not held in \(why.count) of \(runs.count) runs (\(why[0]))"
        }
        parts.append(text)
    }
    let used = rows.filter { $0.status != .notApplicable && $0.status != .windowMismatch }
    var listing = parts.joined(separator: "; ")
    if let stack = used.lazy.compactMap(\.variant?.threadStack).first { listing = "thread stack \(formatCount(stack / 1024)) KiB: " + listing }
    let most = held.max() ?? 0
    let verdict: Verdict
    var text = listing
    if t1Refuted.holds(Double(most)) {
        verdict = .refuted
        text += ": one process held \(formatCount(most)) connections, a thread each, >= \(t1RefuteFactor)x the claimed \(formatCount(t1ClaimedThreads)) (outdated on 64-bit)"
    } else if t1Supported.holds(Double(most)), let first = failed.filter({ $0 > most }).min() {
        verdict = .supported
        text += ": at most \(formatCount(most)) held, \(formatCount(first)) failed: the limit is near \(formatCount(t1ClaimedThreads))"
    } else {
        verdict = .inconclusive
        text += failed.contains(where: { $0 > most })
            ? ": held \(formatCount(most)), between \(formatCount(t1SupportedBelow)) and \(formatCount(t1RefutedAt))"
            : ": held \(formatCount(most)), no count of \(formatCount(t1RefutedAt)) or more tried and nothing larger failed"
    }
    if let memory = t1MemoryPerThread(repeatGroups(used.filter { held.contains($0.connections ?? -1) })) { text += "; " + memory }
    return data.finding(verdict, text, rows: used)
}

/// "memory per added thread (300 → 3,000): RSS 13 KiB, PSS 13 KiB, 0.2 % of the 8,192 KiB stack: ...":
/// the growth from the smallest held count to the largest, per added thread.
private func t1MemoryPerThread(_ groups: [RepeatGroup]) -> String? {
    let sorted = groups.sorted { $0.connections < $1.connections }
    guard sorted.count >= 2, let first = sorted.first, let last = sorted.last,
          let t0 = first.measure(.serverThreads)?.median, let t1 = last.measure(.serverThreads)?.median, t1 > t0,
          let r0 = first.measure(.serverRSSKB)?.median, let r1 = last.measure(.serverRSSKB)?.median else { return nil }
    let rss = (r1 - r0) / (t1 - t0)
    var text = "memory per added thread (\(formatCount(first.connections)) → \(formatCount(last.connections))): RSS \(formatFigure(rss)) KiB"
    if let p0 = first.measure(serverPSSKB)?.median, let p1 = last.measure(serverPSSKB)?.median {
        text += ", PSS \(formatFigure((p1 - p0) / (t1 - t0))) KiB"
    }
    let stackKiB = last.variant?.threadStack.map { Double($0) / 1024 }
    guard let stackKiB, stackKiB > 0 else { return text }
    let share = rss / stackKiB
    text += ", \(formatPercent(share)) of the \(formatCount(Int(stackKiB))) KiB stack"
    text += t1Resident.holds(share) ? ": the stack is reserved address space, only the touched pages are resident" : ": much of the stack is resident"
    return text
}

