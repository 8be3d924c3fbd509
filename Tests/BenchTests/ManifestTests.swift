import Foundation
import Testing
import Bench

@Suite("manifest.json")
struct ManifestTests {
    private func sample() -> Manifest {
        Manifest(
            host: "bench-1", kernel: "6.18.0", cpuModel: "Test CPU", cpuCount: 2, memoryKB: 24_000_000,
            numaNodes: [.init(node: 0, cpus: "0-1")], gitCommit: "abc1234", gitDirty: true,
            toolchain: "Swift version 6.3.1", commandLine: ["muxlab", "bench", "workloads/ci.toml"],
            workload: "workloads/ci.toml", startedAt: Date(timeIntervalSince1970: 1_750_000_000),
            cellsTotal: 16)
    }

    @Test("write is atomic: the file is valid JSON, no .tmp is left, a rewrite replaces it")
    func atomicWrite() throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path + "/run/manifest.json"
        var manifest = sample()
        try manifest.write(to: path)
        #expect(!FileManager.default.fileExists(atPath: path + ".tmp"))
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
        let object = try #require(json as? [String: Any])
        #expect(object["status"] as? String == "running")
        #expect(object["started_at"] as? String == "2025-06-15T15:06:40Z")
        #expect(object["memory_kb"] as? Int == 24_000_000)
        #expect(object["finished_at"] == nil)

        manifest.status = .complete
        manifest.cellsDone = 16
        manifest.finishedAt = Date(timeIntervalSince1970: 1_750_000_100)
        manifest.notes["probe_overhead_ns"] = "120"
        try manifest.write(to: path)
        #expect(!FileManager.default.fileExists(atPath: path + ".tmp"))
        #expect(try Manifest.read(path: path) == manifest)
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path + "/run") == ["manifest.json"])
    }

    @Test("a write that cannot happen names the path and leaves the old file")
    func failedWrite() throws {
        let scratch = try ScratchDirectory()
        let file = try scratch.write("plain-file", "x")
        #expect(throws: DataFileError("\(file): mkdir: Not a directory")) {
            try sample().write(to: file + "/manifest.json")
        }
    }

    @Test("gather describes this machine")
    func gather() {
        let manifest = Manifest.gather(commandLine: ["muxlab", "bench", "w.toml"], workload: "w.toml")
        #expect(!manifest.host.isEmpty)
        #expect(!manifest.kernel.isEmpty && manifest.kernel != "unknown")
        #expect(manifest.cpuCount >= 1)
        #expect(manifest.memoryKB > 0)
        #expect(!manifest.cpuModel.isEmpty)
        #expect(!manifest.toolchain.isEmpty)
        #expect(manifest.status == .running)
        #expect(manifest.commandLine == ["muxlab", "bench", "w.toml"])
        #expect(manifest.gitCommit.isEmpty ? !manifest.gitDirty : manifest.gitCommit.count >= 7)
    }

    @Test("a tool that does not finish in time is given up on")
    func toolTimeout() {
        let start = Date()
        #expect(Manifest.runTool(["sleep", "5"], timeout: 0.2) == nil)
        #expect(Date().timeIntervalSince(start) < 3)
        #expect(Manifest.runTool(["no-such-tool-muxlab"], timeout: 5)?.status == 127)
        #expect(Manifest.runTool(["echo", "hi"], timeout: 5)?.output == "hi\n")
    }
}
