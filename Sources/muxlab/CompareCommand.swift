import ArgumentParser
import Bench
import Kernel

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare two runs cell by cell, for CI: exit 2 when a metric regressed beyond its threshold.",
        discussion: """
        Reads BASE_DIR/results.csv and NEW_DIR/results.csv. Cells are matched by their
        settings (experiment, model, io, reactors, workers, protocol, connections, active,
        message_bytes, target_rps, server_args, load_args, load, topology, server and client
        CPUs), never by cell number. The ok rows of a variant (its `repeat` rows, or their
        sub-window samples where a `<metric>_samples` column exists) are its samples.
        Per variant and metric, new over base with a 95 % interval (Welch's t on logs):
          regressed  the whole interval beyond the threshold on the bad side
          improved   the whole interval beyond the threshold on the good side
          unchanged  the whole interval within ± the threshold
          undecided  otherwise, or under 2 samples a side (add `repeat` rows)
          new / missing  the variant ran in one run only
        Metrics and default thresholds: cpu_us_per_req 10 %, latency_p99_us 20 %,
        latency_p50_us 10 %, throughput_rps 10 % (higher is better), syscalls_per_req 5 %,
        client_cpu_us_per_req 10 %.
        Prints the table (markdown) and writes NEW_DIR/compare.md and NEW_DIR/compare.csv.
        Exit status: 0 nothing regressed; 2 something regressed (each regressed cell's
        label, its cells in NEW and the metric on stderr); 1 an error (a missing
        directory or results.csv, an unreadable CSV, a bad flag).

        EXAMPLES:
          muxlab compare results/reference results/20261201T100000Z
          muxlab compare base/ new/ --threshold cpu_us_per_req=5 --threshold latency_p99_us=30
        """
    )

    @Argument(help: "The baseline run directory (written by `muxlab bench --out`).")
    var base: String

    @Argument(help: "The run directory to judge; compare.md and compare.csv are written into it.")
    var new: String

    @Option(name: .long, help: ArgumentHelp("Override a metric's threshold in percent (repeatable).", valueName: "METRIC=PCT"))
    var threshold: [String] = []

    func validate() throws {
        _ = try thresholds()
    }

    func thresholds() throws -> CompareThresholds {
        var thresholds = CompareThresholds()
        do {
            for argument in threshold { try thresholds.set(argument) }
        } catch {
            throw ValidationError("\(error)")
        }
        return thresholds
    }

    func run() throws {
        let trim = { (d: String) in d.count > 1 && d.hasSuffix("/") ? String(d.dropLast()) : d }
        let comparison: Comparison
        let paths: [String]
        do {
            comparison = try Comparison.load(base: trim(base), new: trim(new), thresholds: try thresholds())
            paths = try comparison.write(to: trim(new))
        } catch {
            writeLine("muxlab compare: \(error)", fd: 2)
            throw ExitCode(1)
        }
        writeLine(comparison.table)
        writeLine(comparison.summary)
        writeLine("wrote \(paths.joined(separator: ", "))")
        let regressions = comparison.regressionMessages
        guard regressions.isEmpty else {
            for message in regressions { writeLine("muxlab compare: \(message)", fd: 2) }
            throw ExitCode(2)
        }
    }
}
