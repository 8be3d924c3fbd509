import ArgumentParser
import Foundation
import Bench
import Kernel

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write DIR/findings.md and DIR/findings.csv: a verdict per claim from DIR/results.csv.",
        discussion: """
        Reads DIR/results.csv and DIR/syscalls.csv (if present), never the live system.
        One line per claim of CLAIMS.md: supported, refuted, inconclusive or not run,
        with the numbers behind it. Prints the findings table (markdown).
        When DIR/timeline.csv exists, also DIR/stability.md: per cell, the server's
        descriptors and RSS over the measured window and whether they stayed flat.
        Exit status: 0 report written, whatever the verdicts; 1 unreadable input.

        EXAMPLES:
          muxlab report results/2026-11-23T10-00-00Z
          muxlab report results/reference
        """
    )

    @Argument(help: "A results directory written by `muxlab bench`.")
    var directory: String?

    @Flag(help: "Print docs/claims.md instead: every claim with its workloads, what its rule reads and when each verdict is given.")
    var claimsDoc = false

    @Option(help: "With --claims-doc: the directory of workload files whose experiments are listed.")
    var workloads = "workloads"

    func validate() throws {
        if directory == nil && !claimsDoc { throw ValidationError("missing the results directory: muxlab report DIR (or --claims-doc)") }
    }

    func run() throws {
        if claimsDoc {
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: workloads)) ?? []).filter { $0.hasSuffix(".toml") }
            guard !files.isEmpty else {
                writeLine("muxlab report: --workloads \(workloads): no .toml workload files there", fd: 2)
                throw ExitCode(1)
            }
            do {
                writeLine(try ClaimsDocument.markdown(workloads: files.map { workloads + "/" + $0 }))
            } catch {
                writeLine("muxlab report: \(error)", fd: 2)
                throw ExitCode(1)
            }
            return
        }
        guard let directory else { return }
        let dir = directory.count > 1 && directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        let report: FindingsReport
        let paths: [String]
        do {
            report = try FindingsReport.load(directory: dir)
            paths = try report.write(to: dir)
        } catch {
            writeLine("muxlab report: \(error)", fd: 2)
            throw ExitCode(1)
        }
        writeLine(report.table)
        var written = paths
        // Cells that kept a timeline also get a stability table (the soak's flat lines).
        do {
            if let stability = try StabilityReport.load(directory: dir), !stability.series.isEmpty {
                let path = try stability.write(to: dir)
                writeLine("\nStability (timeline.csv, measured window):\n" + stability.markdown)
                written.append(path)
            }
            // A run of the peers workload also gets its ratios (issue 7).
            if let peers = try PeersReport.load(directory: dir) {
                written.append(try peers.write(to: dir))
                writeLine("\nPeers (results.csv):" + peers.markdown)
            }
            // Cells of 10,000 connections and more: what they held and at what cost (issue 7).
            if let scale = try ScaleReport.load(directory: dir) {
                written.append(try scale.write(to: dir))
                writeLine("\nScale (results.csv, cells of \(ScaleReport.threshold) connections or more):\n" + scale.markdown)
            }
            // Open-loop rows beside closed-loop ones: what the schedule costs the load (issue 13).
            if let openLoop = try OpenLoopReport.load(directory: dir) {
                written.append(try openLoop.write(to: dir))
                writeLine("\nOpen loop (results.csv, load CPU per request against the closed loop at the same throughput):\n" + openLoop.markdown)
            }
        } catch {
            writeLine("muxlab report: \(error)", fd: 2)
            throw ExitCode(1)
        }
        writeLine("wrote \(written.joined(separator: ", "))")
    }
}
