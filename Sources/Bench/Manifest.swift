import Foundation
import Kernel

/// `manifest.json`: what ran, where, from which source, and how far it got.
/// Rewritten atomically as the run progresses, so it is never half-written.
public struct Manifest: Codable, Equatable, Sendable {
    public enum Status: String, Codable, Sendable {
        case running, complete, interrupted, failed
    }

    public struct NUMANode: Codable, Equatable, Sendable {
        public var node: Int
        /// The node's CPUs as the kernel lists them ("0-1").
        public var cpus: String
        public init(node: Int, cpus: String) {
            self.node = node
            self.cpus = cpus
        }
    }

    public var host: String
    /// uname -r.
    public var kernel: String
    /// /proc/cpuinfo "model name"; "unknown" if absent.
    public var cpuModel: String
    /// Online CPUs.
    public var cpuCount: Int
    /// /proc/meminfo MemTotal, KiB.
    public var memoryKB: Int
    public var numaNodes: [NUMANode]
    /// `git rev-parse --short HEAD` in the working directory; "" outside a repository. A user running muxlab
    /// from their own project records their project's commit here; muxlab's own is `muxlabCommit`.
    public var gitCommit: String
    /// Uncommitted or untracked changes in the working tree.
    public var gitDirty: Bool
    /// The commit the running muxlab was built from (`muxlab.commit` beside the binary, written by every
    /// `make build`); nil where the file is absent (a bare `swift build`) or in manifests written before it.
    public var muxlabCommit: String?
    /// Whether that build's tree had uncommitted changes; nil with `muxlabCommit`.
    public var muxlabDirty: Bool?
    /// First line of `swift --version`, or "unknown".
    public var toolchain: String
    public var commandLine: [String]
    /// The workload file's path.
    public var workload: String
    public var startedAt: Date
    public var finishedAt: Date?
    public var status: Status
    public var cellsTotal: Int
    public var cellsDone: Int
    public var cellsFailed: Int
    /// Free-form additions, e.g. "probe_overhead_ns".
    public var notes: [String: String]

    enum CodingKeys: String, CodingKey {
        case host, kernel
        case cpuModel = "cpu_model"
        case cpuCount = "cpu_count"
        case memoryKB = "memory_kb"
        case numaNodes = "numa_nodes"
        case gitCommit = "git_commit"
        case gitDirty = "git_dirty"
        case muxlabCommit = "muxlab_commit"
        case muxlabDirty = "muxlab_dirty"
        case toolchain
        case commandLine = "command_line"
        case workload
        case startedAt = "started_at"
        case finishedAt = "finished_at"
        case status
        case cellsTotal = "cells_total"
        case cellsDone = "cells_done"
        case cellsFailed = "cells_failed"
        case notes
    }

    public init(
        host: String, kernel: String, cpuModel: String, cpuCount: Int, memoryKB: Int,
        numaNodes: [NUMANode], gitCommit: String, gitDirty: Bool, muxlabCommit: String? = nil, muxlabDirty: Bool? = nil, toolchain: String,
        commandLine: [String], workload: String, startedAt: Date = Date(), finishedAt: Date? = nil,
        status: Status = .running, cellsTotal: Int = 0, cellsDone: Int = 0, cellsFailed: Int = 0,
        notes: [String: String] = [:]
    ) {
        self.host = host
        self.kernel = kernel
        self.cpuModel = cpuModel
        self.cpuCount = cpuCount
        self.memoryKB = memoryKB
        self.numaNodes = numaNodes
        self.gitCommit = gitCommit
        self.gitDirty = gitDirty
        self.muxlabCommit = muxlabCommit
        self.muxlabDirty = muxlabDirty
        self.toolchain = toolchain
        self.commandLine = commandLine
        self.workload = workload
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.status = status
        self.cellsTotal = cellsTotal
        self.cellsDone = cellsDone
        self.cellsFailed = cellsFailed
        self.notes = notes
    }

    /// Describes this machine and source tree; status `running`, counts 0.
    /// Runs `git` (in the current directory) and `swift --version` as child
    /// processes: call it before the driver starts its own children.
    public static func gather(commandLine: [String], workload: String) -> Manifest {
        let cpuinfo = (try? PosixFile.readText("/proc/cpuinfo")) ?? ""
        let meminfo = (try? PosixFile.readText("/proc/meminfo")) ?? ""
        let commit = Manifest.runTool(["git", "rev-parse", "--short", "HEAD"], timeout: 5)
        let isRepository = commit?.status == 0
        var dirty = false
        if isRepository, let status = Manifest.runTool(["git", "status", "--porcelain"], timeout: 10), status.status == 0 {
            dirty = !status.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        }
        var toolchain = "unknown"
        if let swift = Manifest.runTool(["swift", "--version"], timeout: 5, mergeErrors: true), swift.status == 0,
           let first = swift.output.split(separator: "\n").first {
            toolchain = first.trimmingCharacters(in: .whitespaces)
        }
        let build = BuildStamp.read()
        return Manifest(
            host: hostName(),
            kernel: kernelRelease(),
            cpuModel: field("model name", in: cpuinfo) ?? "unknown",
            cpuCount: max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))),
            memoryKB: field("MemTotal", in: meminfo).flatMap { Int($0.split(separator: " ").first ?? "") } ?? 0,
            numaNodes: numaLayout(),
            gitCommit: isRepository ? commit!.output.trimmingCharacters(in: .whitespacesAndNewlines) : "",
            gitDirty: dirty,
            muxlabCommit: build?.commit,
            muxlabDirty: build?.dirty,
            toolchain: toolchain,
            commandLine: commandLine,
            workload: workload)
    }

    /// The commit rows are measured with: muxlab's own build where known, else the working directory's.
    public var measuredCommit: String { muxlabCommit ?? gitCommit }

    /// Writes pretty JSON to `path.tmp`, fsyncs it, then renames it over `path`.
    public func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        let data = try encoder.encode(self) + Data("\n".utf8)
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try PosixFile.makeDirectories(directory) }

        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw DataFileError.system(temporary, "open") }
        var written = 0
        var failure: DataFileError?
        data.withUnsafeBytes { buffer in
            while written < buffer.count {
                let n = Glibc.write(fd, buffer.baseAddress! + written, buffer.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = .system(temporary, "write")
                    return
                }
                written += n
            }
        }
        if failure == nil && fsync(fd) != 0 { failure = .system(temporary, "fsync") }
        close(fd)
        if let failure {
            unlink(temporary)
            throw failure
        }
        guard rename(temporary, path) == 0 else {
            let error = DataFileError.system(path, "rename from \(temporary)")
            unlink(temporary)
            throw error
        }
        try PosixFile.syncDirectory(of: path)
    }

    public static func read(path: String) throws -> Manifest {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do {
            return try decoder.decode(Manifest.self, from: Data(try PosixFile.readText(path).utf8))
        } catch let error as DataFileError {
            throw error
        } catch {
            throw DataFileError("\(path): not a muxlab manifest: \(error)")
        }
    }
}

// MARK: - Gathering

/// The value of "key : value" or "key: value" on the first matching line.
private func field(_ key: String, in text: String) -> String? {
    for line in text.split(separator: "\n") {
        let parts = line.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == key else { continue }
        return parts[1].trimmingCharacters(in: .whitespaces)
    }
    return nil
}

private func hostName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count - 1) == 0 else { return "unknown" }
    return String(cString: buffer)
}

private func kernelRelease() -> String {
    var name = utsname()
    guard uname(&name) == 0 else { return "unknown" }
    var release = name.release
    let capacity = MemoryLayout.size(ofValue: release)
    return withUnsafePointer(to: &release) {
        $0.withMemoryRebound(to: CChar.self, capacity: capacity) { String(cString: $0) }
    }
}

private func numaLayout() -> [Manifest.NUMANode] {
    let root = "/sys/devices/system/node"
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
    return entries.compactMap { entry -> Manifest.NUMANode? in
        guard entry.hasPrefix("node"), let node = Int(entry.dropFirst(4)) else { return nil }
        let cpus = (try? PosixFile.readText("\(root)/\(entry)/cpulist")) ?? ""
        return Manifest.NUMANode(node: node, cpus: cpus.trimmingCharacters(in: .whitespacesAndNewlines))
    }.sorted { $0.node < $1.node }
}

private final class OutputBox: @unchecked Sendable {
    var data = Data()
}

extension Manifest {
    /// Runs a tool found on PATH with an argument list (no shell); nil if it cannot
    /// start or does not finish within `timeout` seconds (it is then terminated).
    public static func runTool(_ arguments: [String], timeout: Double, mergeErrors: Bool = false) -> (status: Int32, output: String)? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = mergeErrors ? pipe : FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { return nil }

        // Drain concurrently so a chatty tool cannot fill the pipe and stall.
        let box = OutputBox()
        let drained = DispatchSemaphore(value: 0)
        let reader = pipe.fileHandleForReading
        DispatchQueue.global().async {
            box.data = reader.readDataToEndOfFile()
            drained.signal()
        }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(5_000) }
        if process.isRunning {
            process.terminate()
            return nil
        }
        // A grandchild may keep the pipe open; do not wait for it forever.
        guard drained.wait(timeout: .now() + 2) == .success else { return nil }
        return (process.terminationStatus, String(decoding: box.data, as: UTF8.self))
    }
}

/// `muxlab.commit` beside the running binary: "COMMIT" or "COMMIT dirty" on its first line. The Makefile writes
/// it after every build and `make install` copies it (a file, not a compiled-in constant, so a new commit does
/// not rebuild the package). `muxlab --version`, the manifest and an agent's handshake read it.
public struct BuildStamp: Equatable, Sendable {
    public let commit: String
    public let dirty: Bool
    /// The stamp's first line as written ("abc1234 dirty").
    public var text: String { dirty ? commit + " dirty" : commit }

    public init?(text: String) {
        let words = (text.split(separator: "\n", omittingEmptySubsequences: false).first ?? "").split(separator: " ")
        guard let first = words.first, !first.isEmpty else { return nil }
        commit = String(first)
        dirty = words.dropFirst().contains("dirty")
    }

    /// The file beside `executable`.
    public static func path(executable: String = currentExecutablePath()) -> String {
        (executable as NSString).deletingLastPathComponent + "/muxlab.commit"
    }

    /// nil when the file is absent, unreadable or empty.
    public static func read(executable: String = currentExecutablePath()) -> BuildStamp? {
        (try? PosixFile.readText(path(executable: executable))).flatMap(BuildStamp.init(text:))
    }
}
