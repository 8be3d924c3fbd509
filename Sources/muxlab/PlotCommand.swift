import ArgumentParser

struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw PNG plots for a results directory (matplotlib), from its CSV files alone.")

    @Argument(help: "A results directory written by `muxlab bench`.")
    var directory: String

    func run() throws {
        throw ValidationError("muxlab plot is being built (issue 4)")
    }
}
