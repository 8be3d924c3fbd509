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

    @Test("muxlab's own build commit: muxlab.commit beside the binary, the working directory's commit apart")
    func buildStamp() throws {
        #expect(BuildStamp(text: "abc1234 dirty\n") == BuildStamp(text: "abc1234 dirty"))
        #expect(BuildStamp(text: "abc1234\n")?.dirty == false)
        #expect(BuildStamp(text: "abc1234 dirty")?.text == "abc1234 dirty")
        #expect(BuildStamp(text: "") == nil && BuildStamp(text: "\nabc") == nil)
        let scratch = try ScratchDirectory()
        let exe = scratch.path + "/muxlab"
        #expect(BuildStamp.read(executable: exe) == nil)
        _ = try scratch.write("muxlab.commit", "def5678 dirty\n")
        #expect(BuildStamp.read(executable: exe) == BuildStamp(text: "def5678 dirty"))

        var manifest = sample()
        #expect(manifest.measuredCommit == "abc1234")
        manifest.muxlabCommit = "def5678"
        manifest.muxlabDirty = true
        #expect(manifest.measuredCommit == "def5678")
        let path = scratch.path + "/manifest.json"
        try manifest.write(to: path)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        #expect(object["muxlab_commit"] as? String == "def5678" && object["git_commit"] as? String == "abc1234")
        #expect(try Manifest.read(path: path) == manifest)
        // A manifest written before the field reads back without it.
        let old = try scratch.write("old.json", String(decoding: try Data(contentsOf: URL(fileURLWithPath: path)), as: UTF8.self)
            .replacingOccurrences(of: "\"muxlab_commit\" : \"def5678\",", with: "").replacingOccurrences(of: "\"muxlab_dirty\" : true,", with: ""))
        #expect(try Manifest.read(path: old).muxlabCommit == nil)
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
