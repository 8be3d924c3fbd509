import Foundation

// Claim S1: how many connections a GiB of memory holds, from the scale cells' own memory figures.

extension ClaimRule {
    static let s1 = ClaimRule(
        claim: "S1",
        metric: "cells of \(formatCount(s1MinimumConnections)) connections or more naming S1 (c100k.toml): server_pss_kb_per_conn + kernel_slab_kb_per_conn = KiB per connection, so connections per GiB (on loopback the slab holds both ends' sockets: an upper bound on the server's share)",
        threshold: "at the largest count: supported when every run holds >= \(s1Holds.shown) connections per GiB; refuted when every run holds < \(s1Short.shown) (the claim overstates what a GiB holds); else inconclusive",
        thresholds: [s1Holds, s1Short],
        columns: ["connections", "server_pss_kb_per_conn", "kernel_slab_kb_per_conn"],
        decide: decideS1)
}

/// The seed's figure: 100,000 connections per GiB (2 GB, 200,000).
let s1PerGiB = 100_000
let s1Holds = Threshold("connections per GiB at the largest count, every run", .atLeast, Double(s1PerGiB), meaning: "supported")
/// Well short of "about 100,000": below this many per GiB the claim is refuted.
let s1Short = Threshold("connections per GiB at the largest count, every run", .below, 0.8 * Double(s1PerGiB), meaning: "refuted")
let s1RefutedBelow = s1Short.value
/// Below this many connections the fixed memory of a process dominates the per-connection figure.
let s1MinimumConnections = 10_000

/// KiB of server PSS and kernel slab per connection, and so connections per GiB.
private let connectionsPerGiB = Metric(name: "1 GiB / (server_pss_kb_per_conn + kernel_slab_kb_per_conn)") { row in
    guard let pss = row.serverPSSKBPerConn, let slab = row.kernelSlabKBPerConn, pss + slab > 0 else { return nil }
    return 1_048_576 / (pss + slab)
}

func decideS1(_ data: ClaimRows) -> Finding {
    let large = data.rows.filter { ($0.connections ?? 0) >= s1MinimumConnections }
    let groups = repeatGroups(large)
    guard let largest = groups.max(by: { $0.connections < $1.connections }) else {
        return data.lacking("no ok row of \(formatCount(s1MinimumConnections)) connections or more", among: large.isEmpty ? nil : large)
    }
    let listing = groups.sorted { $0.connections < $1.connections }.map { group in
        "\(formatCount(group.connections)) connections: server PSS \(figure(group, .serverPSSKBPerConn)) + slab \(figure(group, .kernelSlabKBPerConn)) KiB/connection = \(count(group, connectionsPerGiB)) per GiB"
    }.joined(separator: "; ")
    guard let perGiB = largest.measure(connectionsPerGiB) else {
        return data.finding(.inconclusive, listing + "; server_pss_kb_per_conn or kernel_slab_kb_per_conn empty", rows: largest.rows)
    }
    let verdict: Verdict
    var text = listing
    if s1Holds.holds(perGiB) {
        verdict = .supported
        text += ": a GiB holds \(formatMedianCount(perGiB.median.rounded())) connections, at least the claimed \(formatCount(s1PerGiB))"
    } else if s1Short.holds(perGiB) {
        verdict = .refuted
        text += ": a GiB holds only \(formatMedianCount(perGiB.median.rounded())), well short of \(formatCount(s1PerGiB))"
    } else {
        verdict = .inconclusive
        text += ": between \(formatCount(Int(s1RefutedBelow))) and \(formatCount(s1PerGiB)) per GiB, or runs on both sides"
    }
    return data.finding(verdict, text + " " + Noise.note([perGiB]), rows: groups.flatMap(\.rows))
}
