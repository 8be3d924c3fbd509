import ArgumentParser
import Glibc
import Kernel
import Plots

struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw PNG plots for a results directory (matplotlib), from its CSV files alone.",
        discussion: """
        Reads DIR/results.csv and, when present, DIR/timeline.csv (never the live
        system) and writes DIR/plots/:
          idle-scaling.png  M2-M5: CPU and syscalls per request vs connections
          fdset-bytes.png   M2, M3: fd-set bytes per request, fds scanned per wake-up
          lt-vs-et.png      E1, E2, M7: LT vs ET calls, EPOLLOUT loop, lost requests
          emfile.png        E4: accept calls and CPU over time (from timeline.csv)
          killers.png       K1-K4: copy bytes, switches, mallocs, futex waits and CPU
                            per request, A vs B
          models.png        C7: throughput and p99 per model
          reactors.png      C6, C9: throughput vs event loops and vs pool size
          herd.png          C3: wake-ups and accept calls per accepted connection
        A plot without rows is skipped with a note on stderr; empty CSV cells are
        missing values; repeated cells show the median with min-max error bars.
        Captions name the rows' host, kernel and commit. One line per PNG written.
        Runs muxplot.py (shipped beside the binary) with the first python3 that
        imports matplotlib: from PATH, then /usr/bin/python3.
        Exit status: 0 plots written (some may be skipped); 1 nothing plotted (no
        results.csv, a missing identifying column, no python3 or matplotlib);
        3 a plot failed to draw.

        EXAMPLES:
          muxlab plot results/reference
          muxlab plot results/idle --out /tmp/idle-plots
        """
    )

    @Argument(help: "A results directory written by `muxlab bench`.")
    var directory: String

    @Option(help: "Where the PNGs go (default: DIR/plots).")
    var out: String?

    @Option(help: "The python3 to run (default: the first on PATH, then /usr/bin/python3, that imports matplotlib).")
    var python: String?

    func run() throws {
        let script: String
        let interpreter: String
        do {
            script = try PlotScript.locate()
            interpreter = try PlotScript.interpreter(python)
        } catch let e as PlotSetupError {
            writeLine("muxlab plot: \(e)", fd: 2)
            throw ExitCode(1)
        }
        var arguments = [script, directory]
        if let out { arguments += ["--out", out] }
        // stderr is inherited: the script's skip notes and errors reach the user as written.
        let child = try ChildProcess(executable: interpreter, arguments: arguments)
        let status = PlotScript.relayOutput(of: child)
        switch status {
        case .exited(0):
            return
        case .exited(let code):
            throw ExitCode(code)
        case .signaled(let sig):
            writeLine("muxlab plot: \(interpreter) \(script): \(status)", fd: 2)
            throw ExitCode(128 + sig)
        }
    }
}

/// Why the plot script cannot run; says what to install.
struct PlotSetupError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The matplotlib script behind `muxlab plot` and the python3 that runs it.
enum PlotScript {
    /// SwiftPM copies `plots/muxplot.py` into this bundle directory beside the executable.
    static let bundleDirectory = PlotsBundle.directory
    static let installHint = "run `make deps` (installs python3-matplotlib)"

    /// The script's path: `<dir of muxlab>/muxlab_Plots.resources/muxplot.py`.
    static func locate() throws -> String {
        let executable = currentExecutablePath()
        let directory = executable.contains("/") ? String(executable[..<executable.lastIndex(of: "/")!]) : "."
        let path = directory + "/" + bundleDirectory + "/muxplot.py"
        guard access(path, R_OK) == 0 else {
            throw PlotSetupError("\(path) not found: the plot script ships beside the muxlab binary; "
                + "rebuild with `swift build -c release` and run muxlab from its build directory")
        }
        return path
    }

    /// The python3 to use: `requested` if given (a path, or a name looked up on PATH), else the
    /// first python3 on PATH, then /usr/bin/python3, that imports matplotlib. A pyenv or venv
    /// python3 first on PATH often lacks the Debian package's matplotlib: it is passed over.
    static func interpreter(_ requested: String?) throws -> String {
        let candidates: [String]
        if let requested {
            candidates = requested.contains("/") ? [requested] : executablesOnPath(named: requested)
            guard let first = candidates.first, access(first, X_OK) == 0 else {
                throw PlotSetupError("\(requested) not found or not executable; \(installHint)")
            }
        } else {
            candidates = executablesOnPath(named: "python3") + ["/usr/bin/python3"]
        }
        var tried: [String] = []
        for path in candidates where !tried.contains(path) && access(path, X_OK) == 0 {
            tried.append(path)
            if importsMatplotlib(path) { return path }
        }
        guard !tried.isEmpty else {
            throw PlotSetupError("python3 not found (searched PATH and /usr/bin); \(installHint)")
        }
        throw PlotSetupError("matplotlib is not importable by python3 (tried \(tried.joined(separator: ", "))); \(installHint)")
    }

    static func importsMatplotlib(_ python: String) -> Bool {
        guard let child = try? ChildProcess(executable: python, arguments: ["-c", "import matplotlib"],
                                            stderrPath: "/dev/null") else { return false }
        guard let status = child.wait(timeout: 60) else {
            child.stop()
            return false
        }
        return status == .exited(0)
    }

    /// Copies the child's stdout lines to ours as they come; returns how the child ended.
    static func relayOutput(of child: ChildProcess) -> ExitStatus {
        while true {
            if let line = child.readLine(timeout: 0.5) {
                writeLine(line)
                continue
            }
            if let status = child.poll() {
                for line in child.readRemaining(timeout: 2) { writeLine(line) }
                return status
            }
            usleep(10_000)  // end of output seen, exit not yet reaped
        }
    }
}
