import ArgumentParser
import Kernel

@main
struct MuxLab: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "muxlab",
        abstract: "Measure server I/O models (select, poll, epoll LT/ET) with real sockets and kernel evidence.",
        discussion: """
        EXAMPLES:
          muxlab serve --model reactor --io epoll-et --cpus 1 --port 8080
          muxlab load --target 127.0.0.1:8080 --connections 1000 --active 10 --duration 5s --cpus 0
          muxlab bench workloads/ci.toml --out results/ci
          muxlab compare results/reference results/ci
          muxlab --version        # the release and the commit this binary was built from
        """,
        subcommands: [Serve.self, Load.self, Bench.self, Report.self, Compare.self, Plot.self, ProbeCommand.self, Calibrate.self, Hosts.self, AgentCommand.self]
    )

    /// `muxlab compare` is for CI, where 2 means a regression: its usage errors exit 1, not ArgumentParser's 64.
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments == ["--version"] {
            writeLine(BuildInfo.line(), fd: 1)
            return
        }
        guard arguments.first == "compare" else { return main(nil) }
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            guard exitCode(for: error) == .validationFailure else { exit(withError: error) }
            writeLine(fullMessage(for: error), fd: 2)
            exit(withError: ExitCode(1))
        }
    }
}

/// Range check for numeric options: the message names the option, the value and the range.
func check<T: Comparable>(_ value: T, _ range: ClosedRange<T>, _ option: String, unit: String = "") throws {
    guard range.contains(value) else {
        throw ValidationError("\(option) \(value) is out of range: allowed \(range.lowerBound)...\(range.upperBound)\(unit)")
    }
}

/// Duration options take "5", "5s", "250ms", "2m".
struct DurationArgument: ExpressibleByArgument {
    let seconds: Double
    init?(argument: String) {
        guard let s = try? parseDuration(argument) else { return nil }
        seconds = s
    }
    init(seconds: Double) { self.seconds = seconds }
    var defaultValueDescription: String { "\(seconds)s" }
}

extension CPUList: ExpressibleByArgument {
    public init?(argument: String) {
        try? self.init(parsing: argument)
    }
}
