import ArgumentParser
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a workload matrix.")
    @Argument var workload: String
    func run() throws { throw ValidationError("bench: not built yet") }
}
