import Foundation
import Kernel
import Testing
@testable import Bench

/// Which cells past one process's descriptor limit the runner lets run (issue 7's C100K):
/// those whose server and load can spread the connections over processes.
@Suite("Scale: cells beyond one process's descriptors")
struct ScaleTests {
    func reasons(_ experiments: String) throws -> [String?] {
        let scratch = try ScratchDirectory()
        let workload = try Workload.load(path: try scratch.write("scale.toml", "[defaults]\ntimeout = \"600s\"\n" + experiments))
        let runner = try BenchRunner(workload: workload, options: RunnerOptions(outDirectory: scratch.path + "/out",
                                                                                 executable: "/bin/false", commandLine: []))
        return workload.cells().map(runner.notApplicable)
    }

    @Test("100,000 connections run on prefork with enough workers and muxlab load; a one-process server or wrk is named as the limit")
    func beyondOneProcess() throws {
        let hard = DescriptorLimit.current().hard
        let many = hard * 5
        guard many <= 100_000 else {
            Issue.record("the hard descriptor limit here is \(hard): 5 processes' worth exceeds the 100,000 connections a workload may ask for")
            return
        }
        /// One experiment of `many` connections on `model` (prefork with `workers`), muxlab load unless said.
        func experiment(_ id: String, model: String, workers: Int = 0, load: String = "muxlab") -> String {
            let server = model == "prefork" ? "model = \"prefork\"\nio = \"epoll-et\"\nworkers = \(workers)\n" : ""
            let traffic = load == "wrk" ? "protocol = \"http\"\nload = \"wrk\"\n" : "active = 10\n"
            return "[[experiment]]\nid = \"\(id)\"\n[experiment.base]\n" + server + traffic + "connections = \(many)\n"
        }
        let r = try reasons(experiment("prefork", model: "prefork", workers: 8) + experiment("reactor", model: "reactor")
                            + experiment("prefork-too-few", model: "prefork", workers: 2)
                            + experiment("wrk", model: "prefork", workers: 8, load: "wrk"))
        #expect(r[0] == nil, "prefork with 8 workers and muxlab load: \(r[0] ?? "")")
        #expect(r[1]?.contains("1 server process may open") == true && r[1]?.contains("model = \"prefork\" with workers >= 6") == true, "\(r[1] ?? "ran")")
        #expect(r[2]?.contains("2 server processes may open") == true, "\(r[2] ?? "ran")")
        #expect(r[3]?.contains("wrk is one process") == true, "\(r[3] ?? "ran")")
    }
}
