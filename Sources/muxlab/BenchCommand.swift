import ArgumentParser
import Bench
import Foundation
import Glibc
import Kernel
import Load
import Vocabulary

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a workload matrix: one CSV row per cell, appended as each cell finishes.",
        discussion: """
        Writes DIR/results.csv, DIR/syscalls.csv, DIR/manifest.json and DIR/logs/ (each child's stderr).
        A cell that cannot apply (select past FD_SETSIZE) is recorded with its reason, not run.
        Each cell runs one server and one set of connections through two windows, opened and closed
        by this driver on both sides: a timing window with no probe attached (throughput, latency,
        CPU), then the probes attach and an evidence window (evidence_duration, default the duration
        up to 1 s) gives the kernel's counts per request and probe_overhead, its throughput over the
        timing window's. --probes off runs the timing window only.
        A row whose server and load count different requests (more than 1 % plus those in flight)
        is status window-mismatch: kept, named, and left out of every verdict.
        Exit status: 0 all cells ok or not applicable; 1 some cell failed or had a window mismatch;
        130/143 interrupted.

        EXAMPLES:
          muxlab bench workloads/ci.toml
          muxlab bench workloads/idle-scaling.toml --out results/idle
          muxlab bench workloads/ci.toml --probes off
          muxlab bench workloads/models.toml --list       # the cells and the time they need, nothing run

        YOUR OWN SERVER (one command; the workload is written to DIR/workload.toml):
          muxlab bench --server-command 'python3 services/orders.py --port {port}' --method POST --path /orders \\
              --header 'Content-Type: application/json' --body-file order.json --connections 10,100 --out results/orders
          muxlab bench --server-command 'nginx -p {workdir} -c {workdir}/nginx.conf' --server-config workloads/peers/nginx.conf --connections 50 --rate 20000
        {port} is the port the driver picks, {cpus} the server's CPUs (without it the command runs under
        taskset -c {cpus}), {workdir} a directory of its own.
        """
    )

    @Argument(help: "Workload file (TOML); omitted with --server-command.")
    var workload: String?

    @Option(name: .customLong("server-command"),
            help: ArgumentHelp("Measure your own server: its command line with {port} (and optionally {cpus}, {workdir}), run as a one-experiment workload (written to DIR/workload.toml) through the same timing and evidence windows.", valueName: "command"))
    var serverCommand: String?

    @Option(help: ArgumentHelp("With --server-command: a config file the server reads, copied into {workdir} for each cell with {port}, {cpus}, {workdir} and {host} filled in (e.g. nginx.conf with listen {host}:{port}).", valueName: "file"))
    var serverConfig: String?

    @Option(name: .customLong("protocol"), help: "With --server-command: http (default) or echo.")
    var wire: WireProtocol = .http

    @OptionGroup(title: "HTTP request (with --server-command)")
    var request: HTTPRequestOptions

    @Option(help: ArgumentHelp("With --server-command: connection counts, one cell each (default 10,100,1000).", valueName: "list"))
    var connections: String?

    @Option(help: ArgumentHelp("With --server-command: active connections per cell (default all).", valueName: "n"))
    var active: Int?

    @Option(help: ArgumentHelp("With --server-command: requests/s in total, open loop (default closed loop).", valueName: "rps"))
    var rate: Int?

    @Option(help: "With --server-command: the timing window (default 5s).")
    var duration: DurationArgument?

    @Option(name: .customLong("repeat"), help: ArgumentHelp("With --server-command: rounds of the cells (default 3), the samples of every interval.", valueName: "n"))
    var repeats: Int?

    @Option(help: ArgumentHelp("With --server-command: the server's CPUs (default 1).", valueName: "list"))
    var serverCpus: String?

    @Option(help: ArgumentHelp("With --server-command: the load's CPUs (default 0).", valueName: "list"))
    var clientCpus: String?

    @Option(help: "Results directory (default: results/<UTC timestamp>); never overwritten.")
    var out: String?

    @Option(help: "Kernel probes: on (an evidence window with the eBPF sampler after each timing window, needs root) or off (timing window only, probe columns empty).")
    var probes: Switch = .on

    @Flag(name: .shortAndLong, help: "More detail.")
    var verbose = false

    @Flag(help: "Print the cells the workload expands into and the time they need; run nothing.")
    var list = false

    @Option(name: .customLong("server-extra"),
            help: ArgumentHelp("muxlab serve flags appended to every muxlab server of the run, written --server-extra=\"--compute-us 2\" (with =, as the value starts with --); recorded in server_extra, which muxlab compare does not match on (a run with an injected cost lines up with one without).", valueName: "flags"))
    var serverExtra: String?

    @Option(help: ArgumentHelp("Times a cell is measured at most: a cell whose timing or evidence window lost more than \(disturbedSteal.shown) of its CPUs to the host (steal, /proc/stat) is set aside in disturbed.csv and measured again after the other cells; 1 never measures again (1-5).", valueName: "n"))
    var attempts = 2

    @Option(name: .customLong("remeasure-budget-pct"),
            help: ArgumentHelp("Measuring cells again may add at most this percent of the run's estimated time (at least a minute; 0 never measures again); past it a disturbed cell is kept as measured, its steal in steal_share and the manifest's kept_disturbed (0-100).", valueName: "pct"))
    var remeasureBudgetPct = 25

    /// A test's fault: the driver sleeps this long after reading each window's closing edge, before telling the load.
    @Option(name: .customLong("edge-stall-ms"), help: .hidden)
    var edgeStallMs = 0

    /// A test's fault: percent of steal added to what /proc/stat shows in each cell's first attempt.
    @Option(name: .customLong("assume-steal-pct"), help: .hidden)
    var assumeStealPct = 0

    /// The flags that only --server-command takes, by name, when given.
    var ownServerFlags: [String] {
        request.given + [("--connections", connections != nil), ("--active", active != nil), ("--rate", rate != nil),
                         ("--duration", duration != nil), ("--repeat", repeats != nil), ("--server-cpus", serverCpus != nil),
                         ("--client-cpus", clientCpus != nil), ("--server-config", serverConfig != nil)]
            .filter(\.1).map(\.0)
    }

    func validate() throws {
        switch (workload, serverCommand) {
        case (nil, nil): throw ValidationError("give a workload file, or --server-command 'ARGV with {port}' for your own server")
        case (let w?, _?): throw ValidationError("\(w) and --server-command: give one (--server-command writes its own workload)")
        case (_?, nil):
            if let flag = ownServerFlags.first { throw ValidationError("\(flag) goes with --server-command; a workload file sets it as a key") }
        case (nil, _?):
            if let repeats, !(1...100).contains(repeats) { throw ValidationError("--repeat \(repeats) is outside 1-100") }
            if let rate, !(1...10_000_000).contains(rate) { throw ValidationError("--rate \(rate) is outside 1-10000000 requests/s") }
            if let serverConfig, !FileManager.default.isReadableFile(atPath: serverConfig) {
                throw ValidationError("--server-config \(serverConfig): no readable file there")
            }
            if let duration, !(0.1...3600).contains(duration.seconds) { throw ValidationError("--duration \(duration.seconds) s is outside 0.1-3600 s") }
            if wire != .http, let flag = request.given.first {
                throw ValidationError("\(flag) describes HTTP requests; it needs --protocol http")
            }
        }
        guard (0...1000).contains(edgeStallMs) else { throw ValidationError("--edge-stall-ms \(edgeStallMs) is outside 0-1000 ms") }
        guard (1...5).contains(attempts) else { throw ValidationError("--attempts \(attempts) is outside 1-5") }
        guard (0...100).contains(remeasureBudgetPct) else { throw ValidationError("--remeasure-budget-pct \(remeasureBudgetPct) is outside 0-100") }
        guard (0...100).contains(assumeStealPct) else { throw ValidationError("--assume-steal-pct \(assumeStealPct) is outside 0-100") }
    }

    /// --server-command's plan, from the flags.
    func ownServerPlan(_ command: String) throws -> OwnServerPlan {
        let portInConfig = serverConfig.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) }?.contains("{port}") ?? false
        var plan = OwnServerPlan(command: try OwnServerPlan.words(command, portInConfig: portInConfig))
        plan.wire = wire
        plan.serverConfig = serverConfig
        plan.http = request.spec
        if let connections { plan.connections = try OwnServerPlan.connectionList(connections) }
        plan.active = active
        plan.rate = rate
        if let duration { plan.duration = duration.seconds }
        if let repeats { plan.repeats = repeats }
        if let serverCpus { plan.serverCPUs = serverCpus }
        if let clientCpus { plan.clientCPUs = clientCpus }
        return plan
    }

    /// --server-command: its workload written into the run's directory (created here; a finished run there is
    /// refused); the workload's path and the directory.
    func prepareOwnServer(_ command: String) throws -> (String, String?) {
        let dir = out ?? "results/" + Self.timestamp()
        do {
            let plan = try ownServerPlan(command)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            if FileManager.default.fileExists(atPath: dir + "/results.csv") {
                throw ValueError("\(dir)/results.csv exists already; choose a new --out directory (earlier runs are never overwritten)")
            }
            let path = dir + "/workload.toml"
            try plan.toml().write(toFile: path, atomically: true, encoding: .utf8)
            return (path, dir)
        } catch {
            writeLine("muxlab bench: \(error)", fd: 2)
            throw ExitCode(2)
        }
    }

    /// After a --server-command run: the table per connection count and where the files are.
    static func printOwnServerSummary(_ dir: String) {
        guard let rows = try? ResultRow.readIfPresent(directory: dir) else { return }
        writeLine("")
        writeLine(OwnServerPlan.summary(rows))
        writeLine("Rows: \(dir)/results.csv (every column: README, results.csv columns); kernel counts by syscall: \(dir)/syscalls.csv; "
            + "the workload: \(dir)/workload.toml; latency histograms: \(dir)/histograms/; logs: \(dir)/logs/")
        writeLine("Charts: muxlab plot \(dir); a later run against this one: muxlab compare \(dir) NEW_DIR")
    }

    /// Cells on other hosts: every host they name answers over ssh and runs this build, before any load starts
    /// (an unreachable one costs seconds, not a run). Returns this build's --version line, which each host's
    /// agent must say again; "" when no cell names a host.
    static func checkRemoteHosts(_ loaded: Workload) throws -> String {
        guard loaded.cells().contains(where: \.remote) else { return "" }
        let version = BuildInfo.line()
        guard Hosts.check(loaded.hostsInUse, command: "muxlab bench", version: version) else { throw ExitCode(1) }
        return version
    }

    func run() throws {
        let (workloadPath, ownDirectory) = try serverCommand.map(prepareOwnServer) ?? (workload ?? "", String?.none)
        let workload = workloadPath
        let loaded: Workload
        do {
            loaded = try Workload.load(path: workload)
        } catch let e as WorkloadError {
            writeLine("muxlab bench: \(e)", fd: 2)
            throw ExitCode(2)
        }
        var extraFlags: [String] = []
        if let serverExtra {
            do {
                extraFlags = try Self.serverExtraFlags(serverExtra)
            } catch {
                writeLine("muxlab bench: \(error)", fd: 2)
                throw ExitCode(2)
            }
        }
        let problems = Preflight.problems(loaded.cells())
        if !problems.isEmpty {
            for line in problems { writeLine("muxlab bench: \(workload): \(line)", fd: 2) }
            throw ExitCode(2)
        }
        let version = try Self.checkRemoteHosts(loaded)
        if list {
            var total = 0.0
            for cell in loaded.cells() {
                let seconds = cell.plannedSeconds(probes: probes == .on)
                total += seconds
                let pass = cell.repeats > 1 ? " (pass \(cell.repetition)/\(cell.repeats))" : ""
                let fixed = ["model", "io"].filter { !cell.varied.contains($0) }.map { "\($0)=\(cell.settingText($0))" }
                writeLine("\(cell.id)  " + (fixed + [cell.label]).filter { !$0.isEmpty }.joined(separator: " ") + "\(pass)  ~\(formatDecimal(seconds)) s")
            }
            writeLine("\(loaded.cells().count) cells, about \(formatDecimal((total / 60 * 10).rounded() / 10)) min (warm-up, the timing window, with probes the evidence window, and ~2 s each; connecting comes on top)")
            return
        }
        let dir = ownDirectory ?? out ?? "results/" + Self.timestamp()
        if FileManager.default.fileExists(atPath: dir + "/results.csv") {
            writeLine("muxlab bench: \(dir)/results.csv exists already; choose a new --out directory (earlier runs are never overwritten)", fd: 2)
            throw ExitCode(2)
        }
        var options = RunnerOptions(outDirectory: dir, executable: currentExecutablePath(), commandLine: CommandLine.arguments)
        options.serverExtra = extraFlags
        options.muxlabVersion = version
        options.edgeStall = Double(edgeStallMs) / 1000
        options.attempts = attempts
        options.remeasureBudget = Double(remeasureBudgetPct) / 100
        options.assumeSteal = Double(assumeStealPct) / 100
        options.verbose = verbose
        options.probes = probes == .on
        let handler: @convention(c) (Int32) -> Void = { sig in benchInterruptSignal = sig }
        signal(SIGINT, handler)
        signal(SIGTERM, handler)
        signal(SIGPIPE, SIG_IGN)
        let outcome: RunOutcome
        do {
            outcome = try BenchRunner(workload: loaded, options: options).run()
        } catch {
            ChildRegistry.shared.killAll()
            writeLine("muxlab bench: \(error)", fd: 2)
            throw ExitCode(1)
        }
        ChildRegistry.shared.killAll()
        if let sig = outcome.interruptedBy {
            writeLine("muxlab bench: interrupted by signal \(sig); finished rows kept in \(dir)/results.csv", fd: 2)
            throw ExitCode(128 + sig)
        }
        if !outcome.failed.isEmpty {
            writeLine("muxlab bench: \(outcome.failed.count) cell(s) failed:", fd: 2)
            for f in outcome.failed { writeLine("  \(f.cell): \(f.reason)", fd: 2) }
        }
        if !outcome.mismatched.isEmpty {
            writeLine("muxlab bench: \(outcome.mismatched.count) cell(s) measured with server and load disagreeing (window-mismatch, not data):", fd: 2)
            for f in outcome.mismatched { writeLine("  \(f.cell): \(f.reason)", fd: 2) }
        }
        if ownDirectory != nil { Self.printOwnServerSummary(dir) }
        if !outcome.failed.isEmpty || !outcome.mismatched.isEmpty { throw ExitCode(1) }
    }

    /// "--compute-us 2" as words; the first must be a flag and none may be the driver's own (port, control, cpus).
    static func serverExtraFlags(_ text: String) throws -> [String] {
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard let first = words.first, first.hasPrefix("--") else {
            throw ValueError("--server-extra \"\(text)\": expected muxlab serve flags starting with --, e.g. \"--compute-us 2\"")
        }
        let owned = ["--port", "--control", "--cpus", "--model", "--io", "--protocol", "--listen", "--numa-node", "--reactors", "--workers"]
        if let clash = words.first(where: { word in owned.contains { word == $0 || word.hasPrefix($0 + "=") } }) {
            throw ValueError("--server-extra \"\(text)\": \(clash) is set by the workload or the driver; allowed are the other muxlab serve flags (--compute-us, --alloc, --copy, ...)")
        }
        return words
    }

    static func timestamp() -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return f.string(from: Date())
    }
}

enum Switch: String, ExpressibleByArgument, CaseIterable {
    case on, off
}
