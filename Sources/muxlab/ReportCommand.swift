import ArgumentParser

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write DIR/findings.md and DIR/findings.csv: a verdict per claim from DIR/results.csv.")

    @Argument(help: "A results directory written by `muxlab bench`.")
    var directory: String

    func run() throws {
        throw ValidationError("muxlab report is being built (issue 4)")
    }
}
